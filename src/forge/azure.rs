//! Azure DevOps (Services and Server), area `git` at `api-version=7.1`: pull request
//! statuses, the plan comment as a pull request thread, the pull requests of a commit and
//! their reviewers' votes.
//!
//! The token goes as `Bearer` when it is a JSON Web Token (Pipelines' `System.AccessToken`
//! is one) and as Basic with an empty user name otherwise (a personal access token).

use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::api::{Api, MAX_PAGES, Options, segment};
use super::{
    Call, Check, CheckState, CommentOutcome, Forge, ForgeError, ForgeKind, PullRequest, Review,
    Target,
};

const API_VERSION: (&str, &str) = ("api-version", "7.1");
/// `connectionData` exists only as a preview resource.
const CONNECTION_DATA_VERSION: (&str, &str) = ("api-version", "7.1-preview");
/// Azure DevOps refuses a longer comment ("A discussion comment cannot be longer than
/// 150000 characters"; not in the reference, seen in public reports).
const COMMENT_CHARS: usize = 150_000;
/// Pull requests asked for per page (`$top`).
const PAGE: usize = 100;
/// `CommentType` text and `CommentThreadStatus` closed, as numbers (requests may use them).
const TEXT_COMMENT: u8 = 1;
const CLOSED_THREAD: u8 = 4;
/// `GitPullRequestQueryType`: the pull request that made a merge commit, and those that
/// merged a commit.
const QUERY_LAST_MERGE_COMMIT: u8 = 1;
const QUERY_COMMIT: u8 = 2;
/// What a path segment of a web URL people read keeps encoded (a repository id's dashes
/// stay as they are).
const WEB_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

pub struct Azure {
    api: Api,
    /// `{project}/_apis/git/repositories/{repository}`, each part encoded.
    repo: String,
    /// Where people see the repository: `{collection}/{project}/_git/{repository}`.
    web: String,
    /// The token's identity: learnt from what it posted, else asked.
    me: OnceCell<Option<String>>,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "uniqueName")]
    unique_name: Option<String>,
    #[serde(default, rename = "displayName")]
    display_name: Option<String>,
}

impl Identity {
    /// What names a person in evidence, for authors and reviewers alike.
    fn login(&self) -> String {
        self.unique_name
            .clone()
            .or(self.display_name.clone())
            .unwrap_or_else(|| self.id.clone())
    }
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct List<T> {
    #[serde(default = "Vec::new", deserialize_with = "super::api::bounded")]
    value: Vec<T>,
}

#[derive(Deserialize)]
struct Posted {
    #[serde(default, rename = "createdBy")]
    created_by: Option<Identity>,
}

#[derive(Deserialize)]
struct Thread {
    id: u64,
    #[serde(default, deserialize_with = "super::api::bounded")]
    comments: Vec<ThreadComment>,
    #[serde(default, rename = "isDeleted")]
    is_deleted: bool,
    /// A thread at a file's line; the plan's is on the pull request itself.
    #[serde(default, rename = "threadContext")]
    thread_context: Option<Value>,
}

#[derive(Deserialize)]
struct ThreadComment {
    id: u64,
    #[serde(default, rename = "parentCommentId")]
    parent: u64,
    #[serde(default)]
    author: Option<Identity>,
    #[serde(default)]
    content: Option<String>,
    /// `"text"`, `"system"`... (numbers in requests, names in answers).
    #[serde(default, rename = "commentType")]
    comment_type: Value,
    #[serde(default, rename = "isDeleted")]
    is_deleted: bool,
}

#[derive(Deserialize)]
struct CommitRef {
    #[serde(rename = "commitId")]
    commit_id: String,
}

#[derive(Deserialize)]
struct Pull {
    #[serde(rename = "pullRequestId")]
    id: u64,
    /// `active`, `abandoned` or `completed`.
    #[serde(default)]
    status: String,
    #[serde(default, rename = "createdBy")]
    created_by: Option<Identity>,
    #[serde(default, rename = "lastMergeSourceCommit")]
    head: Option<CommitRef>,
    #[serde(default, rename = "lastMergeCommit")]
    merge: Option<CommitRef>,
    /// `refs/heads/<branch>` it merges into.
    #[serde(default, rename = "targetRefName")]
    target: String,
}

impl Pull {
    fn head_is(&self, sha: &str) -> bool {
        self.head
            .as_ref()
            .is_some_and(|c| c.commit_id.eq_ignore_ascii_case(sha))
    }

    fn merge_is(&self, sha: &str) -> bool {
        self.merge
            .as_ref()
            .is_some_and(|c| c.commit_id.eq_ignore_ascii_case(sha))
    }
}

#[derive(Deserialize)]
struct Reviewer {
    #[serde(flatten)]
    identity: Identity,
    #[serde(default)]
    vote: i32,
    /// A group: its vote is its members'.
    #[serde(default, rename = "isContainer")]
    is_container: bool,
}

#[derive(Deserialize)]
struct QueryAnswer {
    #[serde(default)]
    results: Vec<std::collections::BTreeMap<String, Vec<Pull>>>,
}

#[derive(Deserialize)]
struct ConnectionData {
    #[serde(rename = "authenticatedUser")]
    authenticated_user: Identity,
}

impl Azure {
    pub fn new(target: &Target, options: &Options) -> Result<Azure, ForgeError> {
        let (project, repository) = target.repository.split_once('/').ok_or_else(|| {
            ForgeError::Setup(format!(
                "Azure DevOps: `{}` is not `project/repository`",
                target.repository
            ))
        })?;
        let api = Api::new(
            "Azure DevOps",
            &target.api,
            (reqwest::header::AUTHORIZATION, authorization(&target.token)),
            &target.token,
            &[],
            options,
        )?;
        let web = |part: &str| utf8_percent_encode(part, WEB_SEGMENT).to_string();
        Ok(Azure {
            api,
            repo: format!(
                "{}/_apis/git/repositories/{}",
                segment(project),
                segment(repository)
            ),
            web: format!(
                "{}/{}/_git/{}",
                target.api.trim_end_matches('/'),
                web(project),
                web(repository)
            ),
            me: OnceCell::new(),
        })
    }

    /// The URL of `path` below the repository, with the API version.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ForgeError> {
        let mut query = query.to_vec();
        query.push(API_VERSION);
        self.api.url(&format!("{}/{path}", self.repo), &query)
    }

    /// Remembers who the token is, from something it just posted.
    fn learn(&self, identity: Option<Identity>) {
        if let Some(id) = identity.map(|i| i.id).filter(|id| !id.is_empty()) {
            let _ = self.me.set(Some(id));
        }
    }

    /// Who the token is: learnt from the status it set, else from `connectionData`.
    async fn me(&self) -> Option<&str> {
        self.me
            .get_or_init(|| async {
                let url = self
                    .api
                    .url("_apis/connectionData", &[CONNECTION_DATA_VERSION])
                    .ok()?;
                let data: ConnectionData = self
                    .api
                    .json(Method::GET, url, None, "reading the token's identity")
                    .await
                    .ok()?;
                Some(data.authenticated_user.id).filter(|id| !id.is_empty())
            })
            .await
            .as_deref()
    }

    /// The active pull requests whose head (`lastMergeSourceCommit`) is `sha`, from the
    /// list of active ones, page by page.
    async fn active_with_head(&self, sha: &str) -> Result<Vec<Pull>, ForgeError> {
        let mut found = Vec::new();
        let top = PAGE.to_string();
        for page in 0..MAX_PAGES {
            let skip = (page * PAGE).to_string();
            let url = self.url(
                "pullrequests",
                &[
                    ("searchCriteria.status", "active"),
                    ("$top", &top),
                    ("$skip", &skip),
                ],
            )?;
            let list: List<Pull> = self
                .api
                .json(Method::GET, url, None, "reading the active pull requests")
                .await?;
            let full = list.value.len() >= PAGE;
            found.extend(list.value.into_iter().filter(|p| p.head_is(sha)));
            if !full {
                return Ok(found);
            }
        }
        Err(ForgeError::Unexpected(format!(
            "reading the active pull requests: Azure DevOps has more than {MAX_PAGES} pages of them"
        )))
    }

    /// Sets the status on each active pull request `sha` heads; on the commit itself when
    /// none does (a merge commit's `gitward/apply`).
    async fn set(&self, sha: &str, check: &Check) -> Result<(), ForgeError> {
        let body = status_body(check);
        let pulls = self.active_with_head(sha).await?;
        let urls = if pulls.is_empty() {
            vec![self.url(&format!("commits/{}/statuses", segment(sha)), &[])?]
        } else {
            pulls
                .iter()
                .map(|p| self.url(&format!("pullRequests/{}/statuses", p.id), &[]))
                .collect::<Result<_, _>>()?
        };
        for url in urls {
            let posted: Posted = self
                .api
                .json(Method::POST, url, Some(&body), "setting the status")
                .await?;
            self.learn(posted.created_by);
        }
        Ok(())
    }

    async fn upsert(
        &self,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentOutcome, ForgeError> {
        let path = format!("pullRequests/{number}/threads");
        let threads: List<Thread> = self
            .api
            .json(
                Method::GET,
                self.url(&path, &[])?,
                None,
                "reading the pull request's threads",
            )
            .await?;
        let me = self.me().await;
        let mine = threads
            .value
            .iter()
            .rev()
            .find_map(|t| ours(t, marker, me).map(|c| (t, c)));
        match mine {
            Some((_, comment)) if comment.content.as_deref() == Some(body) => {
                Ok(CommentOutcome::Unchanged)
            }
            Some((thread, comment)) => {
                let url = self.url(
                    &format!("{path}/{}/comments/{}", thread.id, comment.id),
                    &[],
                )?;
                self.api
                    .send(
                        Method::PATCH,
                        url,
                        Some(&json!({ "content": body })),
                        "updating the plan comment",
                    )
                    .await?;
                Ok(CommentOutcome::Updated)
            }
            None => {
                // Closed: the plan informs; an active thread would hold the pull request
                // under a comment-resolution policy.
                let thread = json!({
                    "comments": [{"parentCommentId": 0, "content": body, "commentType": TEXT_COMMENT}],
                    "status": CLOSED_THREAD,
                });
                let created: Thread = self
                    .api
                    .json(
                        Method::POST,
                        self.url(&path, &[])?,
                        Some(&thread),
                        "commenting the plan",
                    )
                    .await?;
                self.learn(created.comments.into_iter().next().and_then(|c| c.author));
                Ok(CommentOutcome::Created)
            }
        }
    }

    /// Completed pull requests that made merge commit `sha` or merged it, from the pull
    /// request query.
    async fn queried(&self, sha: &str) -> Result<Vec<Pull>, ForgeError> {
        let body = json!({
            "queries": [
                {"type": QUERY_LAST_MERGE_COMMIT, "items": [sha]},
                {"type": QUERY_COMMIT, "items": [sha]},
            ],
        });
        let answer: QueryAnswer = self
            .api
            .json(
                Method::POST,
                self.url("pullrequestquery", &[])?,
                Some(&body),
                "querying the pull requests of a commit",
            )
            .await?;
        Ok(answer
            .results
            .into_iter()
            .flat_map(|by_commit| by_commit.into_values().flatten())
            .collect())
    }

    fn pull_request(&self, p: &Pull) -> PullRequest {
        let merged = p.status == "completed";
        PullRequest {
            number: p.id,
            author: p
                .created_by
                .as_ref()
                .map(Identity::login)
                .unwrap_or_default(),
            head_sha: p
                .head
                .as_ref()
                .map(|c| c.commit_id.clone())
                .unwrap_or_default(),
            base: p
                .target
                .strip_prefix("refs/heads/")
                .unwrap_or(&p.target)
                .to_owned(),
            merged,
            merge_sha: p
                .merge
                .as_ref()
                .filter(|_| merged)
                .map(|c| c.commit_id.clone()),
            url: format!("{}/pullrequest/{}", self.web, p.id),
        }
    }
}

/// Whether `token` is a JSON Web Token (three base64url parts, a JSON header): Pipelines'
/// `System.AccessToken` is, a personal access token is not.
fn is_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && token.starts_with("eyJ")
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
        })
}

/// `Authorization` for `token`: Bearer for `System.AccessToken`, Basic `:PAT` otherwise.
fn authorization(token: &str) -> String {
    if is_jwt(token) {
        format!("Bearer {token}")
    } else {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(":{token}"))
        )
    }
}

fn status_state(state: CheckState) -> &'static str {
    match state {
        CheckState::Pending => "pending",
        CheckState::Success => "succeeded",
        CheckState::Failure => "failed",
        CheckState::Error => "error",
    }
}

/// `gitward/plan` → genre `gitward`, name `plan`: the pair names the status.
fn status_context(context: &str) -> (&str, &str) {
    context.rsplit_once('/').unwrap_or(("gitward", context))
}

fn status_body(check: &Check) -> Value {
    let (genre, name) = status_context(&check.context);
    let mut body = json!({
        "state": status_state(check.state),
        "description": check.description,
        "context": {"name": name, "genre": genre},
    });
    if let Some(url) = &check.url {
        body["targetUrl"] = json!(url);
    }
    body
}

/// The plan comment of `thread` when gitward wrote it: the first comment of a live thread
/// on the pull request itself, a text comment starting with `marker` by the token's
/// identity — never a system thread, never a person's.
fn ours<'t>(thread: &'t Thread, marker: &str, me: Option<&str>) -> Option<&'t ThreadComment> {
    let me = me?;
    let first = thread.comments.iter().find(|c| c.parent == 0)?;
    let system = matches!(&first.comment_type, Value::String(s) if s == "system")
        || first.comment_type == json!(3);
    let by_me = first.author.as_ref().is_some_and(|a| a.id == me);
    let marked = first
        .content
        .as_deref()
        .is_some_and(|c| c.starts_with(marker));
    (!thread.is_deleted
        && thread.thread_context.is_none()
        && !first.is_deleted
        && !system
        && by_me
        && marked)
        .then_some(first)
}

/// A vote's name: 10 approved, 5 approved with suggestions, 0 none, −5 waiting for the
/// author, −10 rejected.
fn vote_state(vote: i32) -> &'static str {
    match vote {
        10 => "approved",
        5 => "approvedWithSuggestions",
        0 => "noVote",
        -5 => "waitingForAuthor",
        -10 => "rejected",
        _ => "unknown",
    }
}

/// Reviewers' votes as reviews. A vote carries no commit: the votes listed are those in
/// force (a branch policy decides whether a push resets them), so each counts as given on
/// the pull request's head. Groups vote through their members and are left out.
fn reviews_of(reviewers: Vec<Reviewer>, pull: &PullRequest) -> Vec<Review> {
    reviewers
        .into_iter()
        .filter(|r| !r.is_container && r.vote != 0)
        .map(|r| Review {
            reviewer: r.identity.login(),
            approved: matches!(r.vote, 10 | 5),
            state: vote_state(r.vote).to_owned(),
            at: None,
            commit: Some(pull.head_sha.clone()),
            url: pull.url.clone(),
            writer: None,
        })
        .collect()
}

impl Forge for Azure {
    fn kind(&self) -> ForgeKind {
        ForgeKind::AzureDevOps
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

    /// The active pull requests `sha` heads, and the completed ones it is the merge commit
    /// or the head of (the pull request query).
    fn pulls_for<'a>(&'a self, sha: &'a str) -> Call<'a, Vec<PullRequest>> {
        Box::pin(async move {
            let mut pulls = self.active_with_head(sha).await?;
            pulls.extend(
                self.queried(sha)
                    .await?
                    .into_iter()
                    .filter(|p| p.head_is(sha) || p.merge_is(sha)),
            );
            let mut seen = std::collections::HashSet::new();
            Ok(pulls
                .iter()
                .filter(|p| seen.insert(p.id))
                .map(|p| self.pull_request(p))
                .collect())
        })
    }

    fn reviews<'a>(&'a self, pull: &'a PullRequest) -> Call<'a, Vec<Review>> {
        Box::pin(async move {
            let url = self.url(&format!("pullRequests/{}/reviewers", pull.number), &[])?;
            let list: List<Reviewer> = self
                .api
                .json(
                    Method::GET,
                    url,
                    None,
                    "reading the pull request's reviewers",
                )
                .await?;
            Ok(reviews_of(list.value, pull))
        })
    }

    fn comment_limit(&self) -> usize {
        COMMENT_CHARS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = include_str!(
        "../../tests/fixtures/forges/azure-devops/list-threads.response-200.extract.json"
    );

    fn listed() -> Vec<Thread> {
        serde_json::from_str::<List<Thread>>(LIST).unwrap().value
    }

    #[test]
    fn pipelines_tokens_go_as_bearer_and_personal_tokens_as_basic() {
        let jwt = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJidWlsZCJ9.c2lnbmF0dXJl";
        assert!(is_jwt(jwt));
        assert_eq!(authorization(jwt), format!("Bearer {jwt}"));
        let pat = "3xampl3p3rs0nalacc3sst0k3n0123456789abcdefghijklmnop";
        assert!(!is_jwt(pat));
        assert_eq!(authorization("pat"), "Basic OnBhdA==");
        for not_jwt in [
            "eyJ.a",
            "eyJa..b",
            "eyJa.b.c.d",
            "eyJa.b c.d",
            "abc.def.ghi",
        ] {
            assert!(!is_jwt(not_jwt), "{not_jwt}");
        }
    }

    #[test]
    fn the_context_splits_into_genre_and_name() {
        assert_eq!(status_context("gitward/plan"), ("gitward", "plan"));
        assert_eq!(status_context("plan"), ("gitward", "plan"));
        let check = Check {
            context: "gitward/apply".to_owned(),
            state: CheckState::Pending,
            description: "waiting".to_owned(),
            url: Some("https://ci.example.com/1".to_owned()),
        };
        assert_eq!(
            status_body(&check),
            json!({
                "state": "pending",
                "description": "waiting",
                "context": {"name": "apply", "genre": "gitward"},
                "targetUrl": "https://ci.example.com/1",
            })
        );
        assert_eq!(status_state(CheckState::Success), "succeeded");
        assert_eq!(status_state(CheckState::Failure), "failed");
        assert_eq!(status_state(CheckState::Error), "error");
    }

    #[test]
    fn system_threads_and_other_peoples_threads_are_never_ours() {
        let threads = listed();
        let person = "d6245f20-2af8-44f4-9451-8107cb2767db";
        let system = "41113706-4320-4083-9150-925feb93fc22";
        // The text thread: ours only when its author is the token and it has the marker.
        assert!(ours(&threads[1], "This new", Some(person)).is_some());
        assert!(ours(&threads[1], "This new", None).is_none());
        assert!(ours(&threads[1], "This new", Some(system)).is_none());
        assert!(ours(&threads[1], "<!-- gitward:plan -->", Some(person)).is_none());
        // The system thread, even "by" the token and starting with the text.
        assert!(ours(&threads[0], "The pull request", Some(system)).is_none());
        let mut deleted = listed();
        deleted[1].is_deleted = true;
        assert!(ours(&deleted[1], "This new", Some(person)).is_none());
    }

    #[test]
    fn votes_of_ten_and_five_approve_and_groups_are_left_out() {
        let pull = PullRequest {
            number: 3,
            author: "ann@example.com".to_owned(),
            head_sha: "a".repeat(40),
            base: "main".to_owned(),
            merged: false,
            merge_sha: None,
            url: "https://dev.azure.com/acme/ops/_git/pki/pullrequest/3".to_owned(),
        };
        let reviewers: Vec<Reviewer> = serde_json::from_value(json!([
            {"id": "1", "uniqueName": "bob@example.com", "vote": 10},
            {"id": "2", "uniqueName": "carol@example.com", "vote": 5},
            {"id": "3", "uniqueName": "dave@example.com", "vote": -10},
            {"id": "4", "uniqueName": "erin@example.com", "vote": 0},
            {"id": "5", "displayName": "[ops]\\Reviewers", "vote": 10, "isContainer": true},
        ]))
        .unwrap();
        let reviews = reviews_of(reviewers, &pull);
        let seen: Vec<(&str, bool, &str)> = reviews
            .iter()
            .map(|r| (r.reviewer.as_str(), r.approved, r.state.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("bob@example.com", true, "approved"),
                ("carol@example.com", true, "approvedWithSuggestions"),
                ("dave@example.com", false, "rejected"),
            ]
        );
        assert!(
            reviews
                .iter()
                .all(|r| r.commit.as_deref() == Some(pull.head_sha.as_str()))
        );
    }
}
