//! GitHub's REST API (github.com and GitHub Enterprise Server): commit statuses, issue
//! comments, the pull requests of a commit and their reviews.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;

use super::api::{Api, Options, PER_PAGE, segment};
use super::{
    Call, Check, CommentOutcome, Forge, ForgeError, ForgeKind, PullRequest, Review, Target,
};

/// GitHub's limit on an issue comment's body, in characters.
const COMMENT_CHARS: usize = 65_536;

pub struct GitHub {
    api: Api,
    /// `owner/name`, each part encoded for a path.
    repo: String,
    /// The token's own login, once asked (`None`: the token may not ask, as Actions' cannot).
    login: OnceCell<Option<String>>,
}

#[derive(Deserialize)]
struct User {
    login: String,
    #[serde(default, rename = "type")]
    type_: String,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: Option<User>,
}

#[derive(Deserialize)]
struct Head {
    sha: String,
}

#[derive(Deserialize)]
struct Base {
    #[serde(rename = "ref")]
    reference: String,
}

#[derive(Deserialize)]
struct Pull {
    number: u64,
    user: Option<User>,
    head: Head,
    base: Base,
    #[serde(default)]
    merged_at: Option<String>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    html_url: String,
}

#[derive(Deserialize)]
struct GivenReview {
    user: Option<User>,
    state: String,
    #[serde(default)]
    submitted_at: Option<DateTime<Utc>>,
    #[serde(default)]
    commit_id: Option<String>,
    #[serde(default)]
    html_url: String,
}

impl GitHub {
    pub fn new(target: &Target, options: &Options) -> Result<GitHub, ForgeError> {
        let (owner, name) = target.repository.split_once('/').ok_or_else(|| {
            ForgeError::Setup(format!(
                "GitHub: `{}` is not `owner/name`",
                target.repository
            ))
        })?;
        let api = Api::new(
            "GitHub",
            &target.api,
            (
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", target.token),
            ),
            &target.token,
            &[
                ("accept", "application/vnd.github+json"),
                ("x-github-api-version", "2022-11-28"),
            ],
            options,
        )?;
        Ok(GitHub {
            api,
            repo: format!("{}/{}", segment(owner), segment(name)),
            login: OnceCell::new(),
        })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url, ForgeError> {
        self.api.url(&format!("repos/{}/{path}", self.repo), query)
    }

    /// The token's login, when the token may say (a personal or app token may; Actions'
    /// `GITHUB_TOKEN` may not).
    async fn login(&self) -> Option<&str> {
        self.login
            .get_or_init(|| async {
                let url = self.api.url("user", &[]).ok()?;
                let user: User = self
                    .api
                    .json(Method::GET, url, None, "reading the token's user")
                    .await
                    .ok()?;
                Some(user.login)
            })
            .await
            .as_deref()
    }

    /// Whether a comment is one gitward wrote: by the token's user when known, else by a bot
    /// (Actions' token comments as `github-actions[bot]`) — never a person's comment that
    /// merely carries the marker.
    fn ours(comment: &Comment, marker: &str, login: Option<&str>) -> bool {
        let Some(user) = &comment.user else {
            return false;
        };
        let by_us = match login {
            Some(login) => user.login == login,
            None => user.type_ == "Bot",
        };
        by_us
            && comment
                .body
                .as_deref()
                .is_some_and(|b| b.starts_with(marker))
    }

    async fn upsert(
        &self,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentOutcome, ForgeError> {
        let list = self.url(
            &format!("issues/{number}/comments"),
            &[("per_page", PER_PAGE)],
        )?;
        let comments: Vec<Comment> = self
            .api
            .linked_pages(list, "reading the pull request's comments")
            .await?;
        let login = self.login().await;
        let mine = comments.iter().rev().find(|c| Self::ours(c, marker, login));
        match mine {
            Some(comment) if comment.body.as_deref() == Some(body) => Ok(CommentOutcome::Unchanged),
            Some(comment) => {
                let url = self.url(&format!("issues/comments/{}", comment.id), &[])?;
                self.api
                    .send(
                        Method::PATCH,
                        url,
                        Some(&json!({ "body": body })),
                        "updating the plan comment",
                    )
                    .await?;
                Ok(CommentOutcome::Updated)
            }
            None => {
                let url = self.url(&format!("issues/{number}/comments"), &[])?;
                self.api
                    .send(
                        Method::POST,
                        url,
                        Some(&json!({ "body": body })),
                        "commenting the plan",
                    )
                    .await?;
                Ok(CommentOutcome::Created)
            }
        }
    }
}

impl Forge for GitHub {
    fn kind(&self) -> ForgeKind {
        ForgeKind::GitHub
    }

    fn set_check<'a>(&'a self, sha: &'a str, check: &'a Check) -> Call<'a, ()> {
        Box::pin(async move {
            let mut body = json!({
                "state": check.state.as_str(),
                "context": check.context,
                "description": check.description,
            });
            if let Some(url) = &check.url {
                body["target_url"] = json!(url);
            }
            let url = self.url(&format!("statuses/{}", segment(sha)), &[])?;
            self.api
                .send(Method::POST, url, Some(&body), "setting the commit status")
                .await?;
            Ok(())
        })
    }

    fn upsert_comment<'a>(
        &'a self,
        number: u64,
        marker: &'a str,
        body: &'a str,
    ) -> Call<'a, CommentOutcome> {
        Box::pin(self.upsert(number, marker, body))
    }

    fn pulls_for<'a>(&'a self, sha: &'a str) -> Call<'a, Vec<PullRequest>> {
        Box::pin(async move {
            let url = self.url(
                &format!("commits/{}/pulls", segment(sha)),
                &[("per_page", PER_PAGE)],
            )?;
            let pulls: Vec<Pull> = self
                .api
                .linked_pages(url, "reading the pull requests of a commit")
                .await?;
            Ok(pulls
                .into_iter()
                .map(|p| PullRequest {
                    number: p.number,
                    author: p.user.map(|u| u.login).unwrap_or_default(),
                    head_sha: p.head.sha,
                    base: p.base.reference,
                    merged: p.merged_at.is_some(),
                    merge_sha: p.merge_commit_sha,
                    url: p.html_url,
                })
                .collect())
        })
    }

    fn reviews<'a>(&'a self, pull: &'a PullRequest) -> Call<'a, Vec<Review>> {
        Box::pin(async move {
            let url = self.url(
                &format!("pulls/{}/reviews", pull.number),
                &[("per_page", PER_PAGE)],
            )?;
            let reviews: Vec<GivenReview> = self
                .api
                .linked_pages(url, "reading the pull request's reviews")
                .await?;
            Ok(reviews
                .into_iter()
                .filter_map(|r| {
                    Some(Review {
                        reviewer: r.user?.login,
                        approved: r.state == "APPROVED",
                        state: r.state,
                        at: r.submitted_at,
                        commit: r.commit_id,
                        url: r.html_url,
                    })
                })
                .collect())
        })
    }

    fn comment_limit(&self) -> usize {
        COMMENT_CHARS
    }
}
