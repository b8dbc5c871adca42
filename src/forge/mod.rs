//! Forges — where pull requests live: commit statuses, one plan comment per pull request kept
//! up to date, the pull requests a commit belongs to and their reviews. One trait, one module
//! per forge; [`api`] is the HTTP they share, [`ci`] finds the forge a CI job runs for, and
//! [`post`] decides what a plan report posts.

pub mod api;
pub mod azure;
pub mod bitbucket;
pub mod ci;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod post;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The forges gitward talks to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    clap::ValueEnum,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub enum ForgeKind {
    #[value(name = "github")]
    #[serde(rename = "github")]
    GitHub,
    #[value(name = "gitlab")]
    #[serde(rename = "gitlab")]
    GitLab,
    #[serde(rename = "gitea")]
    Gitea,
    #[serde(rename = "bitbucket")]
    Bitbucket,
    #[value(name = "azure-devops")]
    #[serde(rename = "azure-devops")]
    AzureDevOps,
}

impl ForgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "github",
            ForgeKind::GitLab => "gitlab",
            ForgeKind::Gitea => "gitea",
            ForgeKind::Bitbucket => "bitbucket",
            ForgeKind::AzureDevOps => "azure-devops",
        }
    }
}

impl std::fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a commit status, in the words every forge has one for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    Pending,
    Success,
    Failure,
    /// The check itself could not run (an invalid head).
    Error,
}

impl CheckState {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Pending => "pending",
            CheckState::Success => "success",
            CheckState::Failure => "failure",
            CheckState::Error => "error",
        }
    }
}

/// A commit status: `context` names it (`gitward/plan`), so a new one replaces the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub context: String,
    pub state: CheckState,
    /// One line, at most [`post::DESCRIPTION_CHARS`] characters.
    pub description: String,
    /// Where the details are (the CI job), when known.
    pub url: Option<String>,
}

/// What became of the plan comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommentOutcome {
    Created,
    Updated,
    /// The comment already said this.
    Unchanged,
}

impl CommentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CommentOutcome::Created => "created",
            CommentOutcome::Updated => "updated",
            CommentOutcome::Unchanged => "unchanged",
        }
    }
}

/// A pull (merge) request, as far as gates and posting need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    /// Its number (GitHub, Gitea, Bitbucket, Azure DevOps) or IID (GitLab).
    pub number: u64,
    /// Who opened it.
    pub author: String,
    /// The commit at its head now.
    pub head_sha: String,
    /// The branch it merges into.
    pub base: String,
    /// Whether it is merged.
    pub merged: bool,
    /// The commit its merge made, when merged and the forge says.
    pub merge_sha: Option<String>,
    /// Where people see it.
    pub url: String,
}

/// One review (GitHub, Gitea) or approval (GitLab) of a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    /// The reviewer's login.
    pub reviewer: String,
    pub approved: bool,
    /// The forge's word for the review's state (`APPROVED`, `CHANGES_REQUESTED`...).
    pub state: String,
    pub at: Option<DateTime<Utc>>,
    /// The head the review was given on, when the forge says.
    pub commit: Option<String>,
    pub url: String,
    /// Whether the reviewer may write to the repository, when the forge says (GitHub's
    /// `author_association`): on a public repository anyone may review.
    pub writer: Option<bool>,
}

/// Why a forge call failed; never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    /// No answer (network, timeout), or an answer worth trying again (429, 5xx).
    #[error("{0}")]
    Unavailable(String),
    /// The forge refused it: bad credentials, no permission.
    #[error("{0}")]
    Refused(String),
    /// What was asked for does not exist there (404).
    #[error("{0}")]
    NotFound(String),
    /// The forge answered something it does not answer.
    #[error("{0}")]
    Unexpected(String),
    /// What was asked cannot be done here (a setting is missing or wrong).
    #[error("{0}")]
    Setup(String),
}

pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, ForgeError>> + Send + 'a>>;

/// A forge's API for one repository.
pub trait Forge: Send + Sync {
    fn kind(&self) -> ForgeKind;

    /// Sets the commit status `check.context` of `sha`.
    fn set_check<'a>(&'a self, sha: &'a str, check: &'a Check) -> Call<'a, ()>;

    /// Makes the one comment on pull request `number` that starts with `marker` say `body`
    /// (which starts with it): updates the comment gitward wrote before, else creates one.
    fn upsert_comment<'a>(
        &'a self,
        number: u64,
        marker: &'a str,
        body: &'a str,
    ) -> Call<'a, CommentOutcome>;

    /// The pull requests `sha` is the head or the merge of.
    fn pulls_for<'a>(&'a self, sha: &'a str) -> Call<'a, Vec<PullRequest>>;

    /// The reviews of pull request `pull`, oldest first.
    fn reviews<'a>(&'a self, pull: &'a PullRequest) -> Call<'a, Vec<Review>>;

    /// Most characters a comment may have here.
    fn comment_limit(&self) -> usize;

    /// Shows `report` beside the code of `sha` where the forge has a place for it
    /// (Bitbucket's Code Insights), linking to `link`; nothing elsewhere.
    fn publish_insights<'a>(
        &'a self,
        _sha: &'a str,
        _report: &'a crate::report::PlanReport,
        _link: Option<&'a str>,
    ) -> Call<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// How to reach a repository on a forge.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: ForgeKind,
    /// The API's base URL, without a trailing `/` (`https://api.github.com`,
    /// `https://gitlab.example.com/api/v4`).
    pub api: String,
    /// The repository, in the forge's words: `owner/name` (GitHub, Gitea), the project's
    /// path or id (GitLab), `workspace/slug` (Bitbucket), `project/repository` (Azure DevOps).
    pub repository: String,
    pub token: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("kind", &self.kind)
            .field("api", &self.api)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// The client for `target`.
pub fn connect(target: &Target, options: &api::Options) -> Result<Box<dyn Forge>, ForgeError> {
    Ok(match target.kind {
        ForgeKind::GitHub => Box::new(github::GitHub::new(target, options)?),
        ForgeKind::GitLab => Box::new(gitlab::GitLab::new(target, options)?),
        ForgeKind::Gitea => Box::new(gitea::Gitea::new(target, options)?),
        ForgeKind::Bitbucket => Box::new(bitbucket::Bitbucket::new(target, options)?),
        ForgeKind::AzureDevOps => Box::new(azure::Azure::new(target, options)?),
    })
}

/// Where a repository's web URL says its API is, and what the repository is called there:
/// `https://github.com/o/r(.git)` → `https://api.github.com`, `o/r`; a GitHub Enterprise
/// host → `https://host/api/v3`; GitLab `https://host/group/sub/project` → `https://host/api/v4`,
/// `group/sub/project`; Gitea → `https://host/api/v1`; Bitbucket Cloud →
/// `https://api.bitbucket.org/2.0`; Azure DevOps `https://dev.azure.com/org/project/_git/repo`
/// → `https://dev.azure.com/org`, `project/repo`.
pub fn locate(kind: ForgeKind, repo_url: &str) -> Result<(String, String), ForgeError> {
    let shown = crate::redact::credentials(repo_url);
    let bad = |why: &str| ForgeError::Setup(format!("--repo-url `{shown}`: {why}"));
    let url = reqwest::Url::parse(repo_url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad("not an http(s) URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials go in --token-file, not in the URL"));
    }
    let host = url.host_str().ok_or_else(|| bad("no host"))?;
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(bad("`.` or `..` in the path"));
    }
    let two = || match parts.as_slice() {
        [owner, name] => Ok(format!("{owner}/{name}")),
        _ => Err(bad("expected https://host/<owner>/<repository>")),
    };
    Ok(match kind {
        ForgeKind::GitHub if host == "github.com" => ("https://api.github.com".to_owned(), two()?),
        ForgeKind::GitHub => (format!("{origin}/api/v3"), two()?),
        ForgeKind::Gitea => (format!("{origin}/api/v1"), two()?),
        ForgeKind::GitLab if parts.len() >= 2 => (format!("{origin}/api/v4"), parts.join("/")),
        ForgeKind::GitLab => return Err(bad("expected https://host/<group>/<project>")),
        ForgeKind::Bitbucket if host == "bitbucket.org" => {
            ("https://api.bitbucket.org/2.0".to_owned(), two()?)
        }
        ForgeKind::Bitbucket => (format!("{origin}/2.0"), two()?),
        ForgeKind::AzureDevOps => match parts.as_slice() {
            [org, project, "_git", repo] if host == "dev.azure.com" => {
                (format!("{origin}/{org}"), format!("{project}/{repo}"))
            }
            [project, "_git", repo] => (origin, format!("{project}/{repo}")),
            _ => {
                return Err(bad(
                    "expected https://dev.azure.com/<org>/<project>/_git/<repo>",
                ));
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_locate_their_api() {
        let cases = [
            (
                ForgeKind::GitHub,
                "https://github.com/acme/pki.git",
                "https://api.github.com",
                "acme/pki",
            ),
            (
                ForgeKind::GitHub,
                "https://ghe.example.com/acme/pki",
                "https://ghe.example.com/api/v3",
                "acme/pki",
            ),
            (
                ForgeKind::GitLab,
                "https://gitlab.example.com/ops/pki/config",
                "https://gitlab.example.com/api/v4",
                "ops/pki/config",
            ),
            (
                ForgeKind::Gitea,
                "http://127.0.0.1:3000/acme/pki",
                "http://127.0.0.1:3000/api/v1",
                "acme/pki",
            ),
            (
                ForgeKind::Bitbucket,
                "https://bitbucket.org/acme/pki",
                "https://api.bitbucket.org/2.0",
                "acme/pki",
            ),
            (
                ForgeKind::AzureDevOps,
                "https://dev.azure.com/acme/ops/_git/pki",
                "https://dev.azure.com/acme",
                "ops/pki",
            ),
        ];
        for (kind, url, api, repository) in cases {
            assert_eq!(
                locate(kind, url).unwrap(),
                (api.to_owned(), repository.to_owned()),
                "{url}"
            );
        }
    }

    #[test]
    fn urls_that_carry_credentials_or_climb_are_refused() {
        for url in [
            "https://token@github.com/acme/pki",
            "https://github.com/acme/../pki",
            "ssh://git@github.com/acme/pki",
            "https://github.com/acme",
            "file:///etc/passwd",
        ] {
            assert!(locate(ForgeKind::GitHub, url).is_err(), "{url}");
        }
    }
}
