//! GitHub's REST API (github.com and GitHub Enterprise Server): commit statuses, issue
//! comments, the pull requests of a commit and their reviews. Gitea speaks the same dialect
//! with a few differences, which [`Dialect`] holds; [`super::gitea`] builds on this client.

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

/// What differs between forges that speak GitHub's REST dialect.
pub(super) struct Dialect {
    pub kind: ForgeKind,
    /// What messages call the forge.
    pub name: &'static str,
    /// The word before the token in `Authorization`.
    pub scheme: &'static str,
    /// Headers the forge wants on every request.
    pub headers: &'static [(&'static str, &'static str)],
    /// The query parameter that sizes a page, and the size asked for.
    pub page: (&'static str, &'static str),
    /// Most characters a comment may have.
    pub comment_chars: usize,
    /// Whether a comment's author is the CI's own token, for when the token may not say
    /// who it is.
    pub ci_author: fn(&User) -> bool,
}

pub(super) const GITHUB: Dialect = Dialect {
    kind: ForgeKind::GitHub,
    name: "GitHub",
    scheme: "Bearer",
    headers: &[
        ("accept", "application/vnd.github+json"),
        ("x-github-api-version", "2022-11-28"),
    ],
    page: ("per_page", PER_PAGE),
    comment_chars: COMMENT_CHARS,
    // Actions' token comments as `github-actions[bot]`; another bot's comment is not ours
    // (an app's token, which may not say who it is either, comments anew each time).
    ci_author: |user| user.type_ == "Bot" && user.login == "github-actions[bot]",
};

pub struct GitHub {
    dialect: &'static Dialect,
    api: Api,
    /// `owner/name`, each part encoded for a path.
    repo: String,
    /// The token's own login, once asked (`None`: the token may not ask, as Actions' cannot).
    login: OnceCell<Option<String>>,
}

#[derive(Deserialize)]
pub(super) struct User {
    pub login: String,
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub id: i64,
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
pub(super) struct Pull {
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

impl Pull {
    pub(super) fn head_sha(&self) -> &str {
        &self.head.sha
    }
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
    /// Gitea keeps a dismissed review's state and says so here (GitHub makes it `DISMISSED`).
    #[serde(default)]
    dismissed: bool,
    /// GitHub's word for the reviewer's standing in the repository (`OWNER`, `MEMBER`,
    /// `COLLABORATOR`, `CONTRIBUTOR`, `NONE`...).
    #[serde(default)]
    author_association: Option<String>,
}

impl GitHub {
    pub fn new(target: &Target, options: &Options) -> Result<GitHub, ForgeError> {
        GitHub::with_dialect(target, options, &GITHUB)
    }

    /// A client for a forge that speaks `dialect`.
    pub(super) fn with_dialect(
        target: &Target,
        options: &Options,
        dialect: &'static Dialect,
    ) -> Result<GitHub, ForgeError> {
        let (owner, name) = target.repository.split_once('/').ok_or_else(|| {
            ForgeError::Setup(format!(
                "{}: `{}` is not `owner/name`",
                dialect.name, target.repository
            ))
        })?;
        let api = Api::new(
            dialect.name,
            &target.api,
            (
                reqwest::header::AUTHORIZATION,
                format!("{} {}", dialect.scheme, target.token),
            ),
            &target.token,
            dialect.headers,
            options,
        )?;
        Ok(GitHub {
            dialect,
            api,
            repo: format!("{}/{}", segment(owner), segment(name)),
            login: OnceCell::new(),
        })
    }

    /// The URL of `path` below the repository.
    pub(super) fn url(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Url, ForgeError> {
        self.api.url(&format!("repos/{}/{path}", self.repo), query)
    }

    pub(super) fn api(&self) -> &Api {
        &self.api
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

    /// Whether a comment is one gitward wrote: by the token's user when known, else by the
    /// CI's own token (see [`Dialect::ci_author`]) — never a person's comment that merely
    /// carries the marker.
    fn ours(&self, comment: &Comment, marker: &str, login: Option<&str>) -> bool {
        let Some(user) = &comment.user else {
            return false;
        };
        let by_us = match login {
            Some(login) => user.login == login,
            None => (self.dialect.ci_author)(user),
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
        let list = self.url(&format!("issues/{number}/comments"), &[self.dialect.page])?;
        let comments: Vec<Comment> = self
            .api
            .linked_pages(list, "reading the pull request's comments")
            .await?;
        let login = self.login().await;
        let mine = comments.iter().rev().find(|c| self.ours(c, marker, login));
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
        self.dialect.kind
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
                &[self.dialect.page],
            )?;
            let pulls: Vec<Pull> = self
                .api
                .linked_pages(url, "reading the pull requests of a commit")
                .await?;
            Ok(pulls.into_iter().map(pull_request).collect())
        })
    }

    fn reviews<'a>(&'a self, pull: &'a PullRequest) -> Call<'a, Vec<Review>> {
        Box::pin(async move {
            let url = self.url(
                &format!("pulls/{}/reviews", pull.number),
                &[self.dialect.page],
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
                        approved: r.state == "APPROVED" && !r.dismissed,
                        state: r.state,
                        at: r.submitted_at,
                        commit: r.commit_id,
                        url: r.html_url,
                        writer: r
                            .author_association
                            .map(|a| matches!(a.as_str(), "OWNER" | "MEMBER" | "COLLABORATOR")),
                    })
                })
                .collect())
        })
    }

    fn comment_limit(&self) -> usize {
        self.dialect.comment_chars
    }
}

/// A pull request as GitHub (and Gitea) answers it.
pub(super) fn pull_request(p: Pull) -> PullRequest {
    PullRequest {
        number: p.number,
        author: p.user.map(|u| u.login).unwrap_or_default(),
        head_sha: p.head.sha,
        base: p.base.reference,
        merged: p.merged_at.is_some(),
        merge_sha: p.merge_commit_sha,
        url: p.html_url,
    }
}
