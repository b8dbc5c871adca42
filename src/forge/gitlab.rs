//! GitLab's REST API v4 (gitlab.com and self-managed): commit statuses, merge request notes,
//! the merge requests of a commit and their approvals.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;

use super::api::{Api, Options, PER_PAGE, segment};
use super::{
    Call, Check, CheckState, CommentOutcome, Forge, ForgeError, ForgeKind, PullRequest, Review,
    Target,
};

/// GitLab's limit on a note's body, in characters.
const NOTE_CHARS: usize = 1_000_000;

pub struct GitLab {
    api: Api,
    /// The project's id or path, encoded as one path segment.
    project: String,
    /// The token's own username, once asked.
    username: OnceCell<Option<String>>,
}

#[derive(Deserialize)]
struct User {
    username: String,
}

#[derive(Deserialize)]
struct Note {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    author: Option<User>,
    #[serde(default)]
    system: bool,
}

#[derive(Deserialize)]
struct MergeRequest {
    iid: u64,
    author: Option<User>,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    target_branch: String,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    squash_commit_sha: Option<String>,
    #[serde(default)]
    web_url: String,
}

#[derive(Deserialize)]
struct Approvals {
    #[serde(default)]
    #[serde(deserialize_with = "super::api::bounded")]
    approved_by: Vec<Approver>,
}

#[derive(Deserialize)]
struct Approver {
    user: Option<User>,
    #[serde(default)]
    approved_at: Option<DateTime<Utc>>,
}

impl GitLab {
    pub fn new(target: &Target, options: &Options) -> Result<GitLab, ForgeError> {
        let api = Api::new(
            "GitLab",
            &target.api,
            (
                reqwest::header::HeaderName::from_static("private-token"),
                target.token.clone(),
            ),
            &target.token,
            &[],
            options,
        )?;
        Ok(GitLab {
            api,
            project: segment(&target.repository),
            username: OnceCell::new(),
        })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url, ForgeError> {
        self.api
            .url(&format!("projects/{}/{path}", self.project), query)
    }

    async fn username(&self) -> Option<&str> {
        self.username
            .get_or_init(|| async {
                let url = self.api.url("user", &[]).ok()?;
                let user: User = self
                    .api
                    .json(Method::GET, url, None, "reading the token's user")
                    .await
                    .ok()?;
                Some(user.username)
            })
            .await
            .as_deref()
    }

    /// Whether a note is one gitward wrote: by the token's own user, as `GET /user` says (a
    /// project access token's bot user may ask) — never a person's or another bot's note.
    fn ours(note: &Note, marker: &str, username: Option<&str>) -> bool {
        let Some(author) = &note.author else {
            return false;
        };
        // A token that may not say who it is edits nothing: it notes anew.
        let by_us = username.is_some_and(|username| author.username == username);
        !note.system && by_us && note.body.as_deref().is_some_and(|b| b.starts_with(marker))
    }

    async fn upsert(
        &self,
        iid: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentOutcome, ForgeError> {
        let list = self.url(
            &format!("merge_requests/{iid}/notes"),
            &[
                ("per_page", PER_PAGE),
                ("sort", "asc"),
                ("order_by", "created_at"),
            ],
        )?;
        let notes: Vec<Note> = self
            .api
            .linked_pages(list, "reading the merge request's notes")
            .await?;
        let username = self.username().await;
        match notes.iter().rev().find(|n| Self::ours(n, marker, username)) {
            Some(note) if note.body.as_deref() == Some(body) => Ok(CommentOutcome::Unchanged),
            Some(note) => {
                let url = self.url(&format!("merge_requests/{iid}/notes/{}", note.id), &[])?;
                self.api
                    .send(
                        Method::PUT,
                        url,
                        Some(&json!({ "body": body })),
                        "updating the plan note",
                    )
                    .await?;
                Ok(CommentOutcome::Updated)
            }
            None => {
                let url = self.url(&format!("merge_requests/{iid}/notes"), &[])?;
                self.api
                    .send(
                        Method::POST,
                        url,
                        Some(&json!({ "body": body })),
                        "noting the plan",
                    )
                    .await?;
                Ok(CommentOutcome::Created)
            }
        }
    }

    async fn set(&self, sha: &str, check: &Check) -> Result<(), ForgeError> {
        let state = match check.state {
            CheckState::Pending => "pending",
            CheckState::Success => "success",
            CheckState::Failure | CheckState::Error => "failed",
        };
        let mut body = json!({
            "state": state,
            "name": check.context,
            "description": check.description,
        });
        if let Some(url) = &check.url {
            body["target_url"] = json!(url);
        }
        let url = self.url(&format!("statuses/{}", segment(sha)), &[])?;
        match self
            .api
            .send(Method::POST, url, Some(&body), "setting the commit status")
            .await
        {
            // GitLab refuses to move a status to the state it is in: it is set.
            Err(ForgeError::Refused(text)) if text.contains("Cannot transition status") => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

impl Forge for GitLab {
    fn kind(&self) -> ForgeKind {
        ForgeKind::GitLab
    }

    fn set_check<'a>(&'a self, sha: &'a str, check: &'a Check) -> Call<'a, ()> {
        Box::pin(self.set(sha, check))
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
                &format!("repository/commits/{}/merge_requests", segment(sha)),
                &[("per_page", PER_PAGE)],
            )?;
            let requests: Vec<MergeRequest> = self
                .api
                .linked_pages(url, "reading the merge requests of a commit")
                .await?;
            Ok(requests
                .into_iter()
                .map(|m| PullRequest {
                    number: m.iid,
                    author: m.author.map(|u| u.username).unwrap_or_default(),
                    head_sha: m.sha.unwrap_or_default(),
                    base: m.target_branch,
                    merged: m.state == "merged",
                    merge_sha: m.merge_commit_sha.or(m.squash_commit_sha),
                    url: m.web_url,
                })
                .collect())
        })
    }

    fn reviews<'a>(&'a self, pull: &'a PullRequest) -> Call<'a, Vec<Review>> {
        Box::pin(async move {
            let url = self.url(&format!("merge_requests/{}/approvals", pull.number), &[])?;
            let approvals: Approvals = self
                .api
                .json(
                    Method::GET,
                    url,
                    None,
                    "reading the merge request's approvals",
                )
                .await?;
            // GitLab lists the approvals in force: those a new push reset are gone.
            Ok(approvals
                .approved_by
                .into_iter()
                .filter_map(|a| {
                    Some(Review {
                        reviewer: a.user?.username,
                        approved: true,
                        state: "approved".to_owned(),
                        at: a.approved_at,
                        commit: Some(pull.head_sha.clone()),
                        url: pull.url.clone(),
                        writer: None,
                    })
                })
                .collect())
        })
    }

    fn comment_limit(&self) -> usize {
        NOTE_CHARS
    }
}
