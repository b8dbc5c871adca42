//! Bitbucket Cloud's API 2.0: build statuses, pull request comments, the pull requests of a
//! commit and their participants' approvals, and the plan as a Code Insights report with
//! annotations at file:line.
//!
//! A token with a `:` is `user:app-password` (or `email:API token`) and goes as HTTP Basic;
//! any other token (repository, project or workspace access token) as `Bearer`.

use std::collections::HashSet;

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::api::{Api, MAX_PAGES, Options, segment};
use super::post::{headline, one_line};
use super::{
    Call, Check, CheckState, CommentOutcome, Forge, ForgeError, ForgeKind, PullRequest, Review,
    Target,
};
use crate::diag::Diagnostic;
use crate::model::FindingSeverity;
use crate::policy::{Finding, FindingStatus};
use crate::reconcile::decide::Verdict;
use crate::report::PlanReport;

/// Bitbucket Cloud documents no limit on a comment; Bitbucket refuses 32,768 characters and
/// more in public reports, so the comment stays below that.
const COMMENT_CHARS: usize = 32_767;
/// Items asked for per page (`pagelen`): what every listing used here allows.
const PAGE_LEN: &str = "50";
/// The Code Insights report's id on a commit: unique per commit, prefixed with the tool.
pub const REPORT_ID: &str = "gitward-plan";
/// Most annotations Bitbucket takes in one request, and on one report.
pub const ANNOTATIONS_PER_CALL: usize = 100;
pub const ANNOTATIONS_PER_REPORT: usize = 1000;
/// Bounds on an annotation's texts: Bitbucket Cloud documents none, these keep each one
/// readable (title and summary show in the diff, details when opened).
const TITLE_CHARS: usize = 100;
const SUMMARY_CHARS: usize = 450;
const DETAILS_CHARS: usize = 2000;

pub struct Bitbucket {
    api: Api,
    /// `workspace/slug`, each part encoded for a path.
    repo: String,
    /// Where people see the repository.
    web: String,
    /// The token's account's UUID, once asked (`None`: access tokens may not ask).
    account: OnceCell<Option<String>>,
}

/// An account as Bitbucket shows one: a person (`user`) or an access token's or app's bot
/// (`app_user`).
#[derive(Deserialize)]
struct Account {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default, rename = "type")]
    type_: String,
}

impl Account {
    /// What names the account in evidence; the same field for authors and reviewers, so
    /// "never the author" compares like with like.
    fn login(&self) -> String {
        [
            &self.nickname,
            &self.account_id,
            &self.uuid,
            &self.display_name,
        ]
        .into_iter()
        .find_map(|v| v.clone().filter(|v| !v.is_empty()))
        .unwrap_or_default()
    }
}

/// Bitbucket's page of a listing.
#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct Page<T> {
    #[serde(default = "Vec::new", deserialize_with = "super::api::bounded")]
    values: Vec<T>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    user: Option<Account>,
    #[serde(default)]
    deleted: bool,
    /// Set on a comment at a line of the diff.
    #[serde(default)]
    inline: Option<Value>,
    /// Set on a reply.
    #[serde(default)]
    parent: Option<Value>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    raw: Option<String>,
}

#[derive(Deserialize)]
struct Pull {
    id: u64,
    #[serde(default)]
    author: Option<Account>,
    /// `OPEN`, `MERGED`, `DECLINED` or `SUPERSEDED`.
    #[serde(default)]
    state: String,
    #[serde(default)]
    source: Option<Side>,
    #[serde(default)]
    destination: Option<Side>,
    #[serde(default)]
    merge_commit: Option<CommitRef>,
    #[serde(default)]
    links: Option<Links>,
    #[serde(default)]
    #[serde(deserialize_with = "super::api::bounded")]
    participants: Vec<Participant>,
}

#[derive(Deserialize)]
struct Side {
    #[serde(default)]
    branch: Option<Branch>,
    #[serde(default)]
    commit: Option<CommitRef>,
}

#[derive(Deserialize)]
struct Branch {
    name: String,
}

#[derive(Deserialize)]
struct CommitRef {
    hash: String,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    html: Option<Href>,
}

#[derive(Deserialize)]
struct Href {
    href: String,
}

#[derive(Deserialize)]
struct Participant {
    #[serde(default)]
    user: Option<Account>,
    #[serde(default)]
    approved: bool,
    /// `approved`, `changes_requested` or null.
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    participated_on: Option<DateTime<Utc>>,
}

impl Pull {
    fn head(&self) -> Option<&str> {
        Some(self.source.as_ref()?.commit.as_ref()?.hash.as_str())
    }
}

/// Whether Bitbucket's `hash` (often shortened to 12 digits) names commit `sha`.
fn same_commit(hash: &str, sha: &str) -> bool {
    hash.len() >= 7
        && sha.len() >= hash.len()
        && sha
            .get(..hash.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(hash))
}

impl Bitbucket {
    pub fn new(target: &Target, options: &Options) -> Result<Bitbucket, ForgeError> {
        let (workspace, slug) = target.repository.split_once('/').ok_or_else(|| {
            ForgeError::Setup(format!(
                "Bitbucket: `{}` is not `workspace/repository`",
                target.repository
            ))
        })?;
        let api = Api::new(
            "Bitbucket",
            &target.api,
            (reqwest::header::AUTHORIZATION, authorization(&target.token)),
            &target.token,
            &[],
            options,
        )?;
        let repo = format!("{}/{}", segment(workspace), segment(slug));
        Ok(Bitbucket {
            api,
            web: format!("https://bitbucket.org/{repo}"),
            repo,
            account: OnceCell::new(),
        })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ForgeError> {
        self.api
            .url(&format!("repositories/{}/{path}", self.repo), query)
    }

    /// Every item of a listing, following each page's `next` (never leaving the API), at
    /// most [`MAX_PAGES`] pages.
    async fn pages<T: DeserializeOwned>(
        &self,
        first: Url,
        what: &str,
    ) -> Result<Vec<T>, ForgeError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        for _ in 0..MAX_PAGES {
            let Some(url) = next.take() else {
                return Ok(items);
            };
            let page: Page<T> = self.api.json(Method::GET, url, None, what).await?;
            items.extend(page.values);
            next = match page.next {
                Some(link) => Some(self.api.same_origin(Url::parse(&link).map_err(|e| {
                    ForgeError::Unexpected(format!("{what}: a next page that is no URL: {e}"))
                })?)?),
                None => None,
            };
        }
        match next {
            None => Ok(items),
            Some(_) => Err(ForgeError::Unexpected(format!(
                "{what}: Bitbucket has more than {MAX_PAGES} pages of it"
            ))),
        }
    }

    /// The token's account, when the token may say: access tokens may not (`GET /user`
    /// refuses them).
    async fn account(&self) -> Option<&str> {
        self.account
            .get_or_init(|| async {
                let url = self.api.url("user", &[]).ok()?;
                let account: Account = self
                    .api
                    .json(Method::GET, url, None, "reading the token's account")
                    .await
                    .ok()?;
                account.uuid
            })
            .await
            .as_deref()
    }

    /// The pull requests `sha` is the head or the merge commit of. Bitbucket lists a
    /// commit's pull requests only once its "Pull Request Commit Links" app is installed
    /// (404 before): then the open pull requests are searched for the head instead.
    async fn pulls(&self, sha: &str) -> Result<Vec<Pull>, ForgeError> {
        let what = "reading the pull requests of a commit";
        let url = self.url(
            &format!("commit/{}/pullrequests", segment(sha)),
            &[("pagelen", PAGE_LEN)],
        )?;
        let pulls = match self.pages::<Pull>(url, what).await {
            Err(ForgeError::NotFound(_)) => {
                let open = self.url("pullrequests", &[("state", "OPEN"), ("pagelen", PAGE_LEN)])?;
                self.pages(open, "reading the open pull requests").await?
            }
            other => other?,
        };
        Ok(pulls
            .into_iter()
            .filter(|p| {
                p.head().is_some_and(|h| same_commit(h, sha))
                    || p.merge_commit
                        .as_ref()
                        .is_some_and(|m| same_commit(&m.hash, sha))
            })
            .collect())
    }

    /// The source branch of an open pull request `sha` heads: a build status shows on a
    /// pull request only with it as `refname`. Finding none only leaves the status on the
    /// commit alone, so a failure to look is no failure to post.
    async fn source_branch(&self, sha: &str) -> Option<String> {
        let pulls = self.pulls(sha).await.ok()?;
        pulls
            .into_iter()
            .filter(|p| p.state == "OPEN" && p.head().is_some_and(|h| same_commit(h, sha)))
            .find_map(|p| Some(p.source?.branch?.name))
    }

    async fn set(&self, sha: &str, check: &Check) -> Result<(), ForgeError> {
        let mut body = status_body(check, &format!("{}/commits/{sha}", self.web));
        if let Some(branch) = self.source_branch(sha).await {
            body["refname"] = json!(branch);
        }
        let url = self.url(&format!("commit/{}/statuses/build", segment(sha)), &[])?;
        self.api
            .send(Method::POST, url, Some(&body), "setting the build status")
            .await?;
        Ok(())
    }

    async fn upsert(
        &self,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentOutcome, ForgeError> {
        let path = format!("pullrequests/{number}/comments");
        let list = self.url(&path, &[("pagelen", PAGE_LEN)])?;
        let comments: Vec<Comment> = self
            .pages(list, "reading the pull request's comments")
            .await?;
        let account = self.account().await;
        let content = json!({ "content": { "raw": body } });
        match comments.iter().rev().find(|c| ours(c, marker, account)) {
            Some(c) if c.content.as_ref().and_then(|c| c.raw.as_deref()) == Some(body) => {
                Ok(CommentOutcome::Unchanged)
            }
            Some(c) => {
                let url = self.url(&format!("{path}/{}", c.id), &[])?;
                self.api
                    .send(
                        Method::PUT,
                        url,
                        Some(&content),
                        "updating the plan comment",
                    )
                    .await?;
                Ok(CommentOutcome::Updated)
            }
            None => {
                let url = self.url(&path, &[])?;
                self.api
                    .send(Method::POST, url, Some(&content), "commenting the plan")
                    .await?;
                Ok(CommentOutcome::Created)
            }
        }
    }

    async fn insights(
        &self,
        sha: &str,
        report: &PlanReport,
        link: Option<&str>,
    ) -> Result<(), ForgeError> {
        let base = format!("commit/{}/reports/{REPORT_ID}", segment(sha));
        let url = self.url(&base, &[])?;
        self.api
            .send(
                Method::PUT,
                url,
                Some(&report_body(report, link)),
                "publishing the Code Insights report",
            )
            .await?;
        let annotations = annotations(report);
        for chunk in annotations.chunks(ANNOTATIONS_PER_CALL) {
            let url = self.url(&format!("{base}/annotations"), &[])?;
            self.api
                .send(
                    Method::POST,
                    url,
                    Some(&Value::Array(chunk.to_vec())),
                    "annotating the Code Insights report",
                )
                .await?;
        }
        Ok(())
    }
}

/// `Authorization` for `token`: Basic for `user:password`, Bearer for an access token.
fn authorization(token: &str) -> String {
    if token.contains(':') {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(token)
        )
    } else {
        format!("Bearer {token}")
    }
}

/// Whether a comment is the plan comment gitward wrote: a live, top-level, general comment
/// starting with `marker`, by the token's account when known, else by a bot account (an
/// access token's) — never a person's.
fn ours(comment: &Comment, marker: &str, account: Option<&str>) -> bool {
    let Some(user) = &comment.user else {
        return false;
    };
    let by_us = match account {
        Some(uuid) => user.uuid.as_deref() == Some(uuid),
        None => user.type_ == "app_user",
    };
    by_us
        && !comment.deleted
        && comment.inline.is_none()
        && comment.parent.is_none()
        && comment
            .content
            .as_ref()
            .and_then(|c| c.raw.as_deref())
            .is_some_and(|raw| raw.starts_with(marker))
}

/// A status's `key`: its context with what is not a letter, digit, `-`, `_` or `.` made `-`
/// (`gitward/plan` → `gitward-plan`); the same key replaces the status.
fn status_key(context: &str) -> String {
    context
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn status_state(state: CheckState) -> &'static str {
    match state {
        CheckState::Pending => "INPROGRESS",
        CheckState::Success => "SUCCESSFUL",
        CheckState::Failure | CheckState::Error => "FAILED",
    }
}

/// The build status for `check`; `fallback_url` when the check links nowhere (Bitbucket
/// wants a `url`).
fn status_body(check: &Check, fallback_url: &str) -> Value {
    json!({
        "key": status_key(&check.context),
        "state": status_state(check.state),
        "name": check.context,
        "description": check.description,
        "url": check.url.as_deref().unwrap_or(fallback_url),
    })
}

/// The pull request as gates see it; `sha`'s full id stands for the short head it names.
fn pull_request(p: Pull, sha: &str) -> PullRequest {
    let head = p.head().map(|h| {
        if same_commit(h, sha) {
            sha.to_owned()
        } else {
            h.to_owned()
        }
    });
    let merge = p.merge_commit.as_ref().map(|m| {
        if same_commit(&m.hash, sha) {
            sha.to_owned()
        } else {
            m.hash.clone()
        }
    });
    PullRequest {
        number: p.id,
        author: p.author.as_ref().map(Account::login).unwrap_or_default(),
        head_sha: head.unwrap_or_default(),
        base: p
            .destination
            .as_ref()
            .and_then(|d| d.branch.as_ref())
            .map(|b| b.name.clone())
            .unwrap_or_default(),
        merged: p.state == "MERGED",
        merge_sha: merge,
        url: p
            .links
            .and_then(|l| l.html)
            .map(|h| h.href)
            .unwrap_or_default(),
    }
}

/// Participants' reviews. Bitbucket records no commit with an approval: an approval in the
/// list is one in force (the repository's "reset approvals on change" setting decides
/// whether a push withdraws it), so each counts as given on the pull request's head.
fn reviews_of(participants: Vec<Participant>, pull: &PullRequest) -> Vec<Review> {
    participants
        .into_iter()
        .filter(|p| p.approved || p.state.is_some())
        .filter_map(|p| {
            let state = p
                .state
                .clone()
                .unwrap_or_else(|| if p.approved { "approved" } else { "" }.to_owned());
            Some(Review {
                reviewer: p.user?.login(),
                approved: p.approved,
                state,
                at: p.participated_on,
                commit: Some(pull.head_sha.clone()),
                url: pull.url.clone(),
                writer: None,
            })
        })
        .collect()
}

/// The Code Insights report for `report`.
fn report_body(report: &PlanReport, link: Option<&str>) -> Value {
    let (_, line) = headline(report);
    let counts = report.finding_counts();
    let s = &report.summary;
    let number =
        |title: &str, value: usize| json!({"title": title, "type": "NUMBER", "value": value});
    let passed = matches!(report.verdict, Verdict::Apply | Verdict::Pending { .. });
    let mut body = json!({
        "title": "gitward plan",
        "details": one_line(&line, DETAILS_CHARS),
        "report_type": "SECURITY",
        "reporter": "gitward",
        "result": if passed { "PASSED" } else { "FAILED" },
        "data": [
            {"title": "Safe to merge?", "type": "BOOLEAN", "value": passed},
            number("To issue", s.issue),
            number("To reissue", s.reissue),
            number("To remove", s.remove),
            number("New findings", counts.new),
            number("Blocking findings", counts.blocking),
            number("Errors", report.errors().count()),
            number("Warnings", report.warnings().count()),
        ],
    });
    if let Some(link) = link {
        body["link"] = json!(link);
    }
    body
}

/// `file` (relative to the configuration's directory `root`) as a path in the repository.
fn repository_path(root: &str, file: &str) -> String {
    if root.is_empty() {
        file.to_owned()
    } else {
        format!("{}/{file}", root.trim_end_matches('/'))
    }
}

fn severity(severity: FindingSeverity) -> &'static str {
    match severity {
        FindingSeverity::Critical => "CRITICAL",
        FindingSeverity::High => "HIGH",
        FindingSeverity::Medium => "MEDIUM",
        FindingSeverity::Low | FindingSeverity::Info => "LOW",
    }
}

/// An id for an annotation that stays the same for the same problem at the same place, so
/// publishing the same commit's report again replaces its annotations.
fn external_id(parts: &[&str], taken: &mut HashSet<String>) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let base = format!("gitward-{}", &hex::encode(hash.finalize())[..16]);
    let mut id = base.clone();
    let mut n = 1;
    while !taken.insert(id.clone()) {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

fn diagnostic_annotation(root: &str, d: &Diagnostic, taken: &mut HashSet<String>) -> Value {
    let (title, kind, severity) = if d.is_error() {
        ("Invalid configuration", "BUG", "HIGH")
    } else {
        ("Configuration warning", "CODE_SMELL", "LOW")
    };
    let path = repository_path(root, &d.file);
    let line = d.line.to_string();
    json!({
        "external_id": external_id(&["diagnostic", &path, &line, &d.message], taken),
        "title": title,
        "annotation_type": kind,
        "summary": one_line(&d.message, SUMMARY_CHARS),
        "severity": severity,
        "result": "FAILED",
        "path": path,
        "line": d.line.max(1),
    })
}

/// `link`: the policy's documentation, when it has one.
fn finding_annotation(
    root: &str,
    f: &Finding,
    link: Option<&str>,
    taken: &mut HashSet<String>,
) -> Value {
    let path = repository_path(root, &f.file);
    let line = f.line.to_string();
    let resource = f.resource_id();
    let status = match f.status {
        FindingStatus::New => "new in this change",
        FindingStatus::Existing => "already there before this change",
        FindingStatus::Resolved => "resolved by this change",
    };
    let effect = if f.blocks() {
        "; it blocks the change"
    } else if f.exception.is_some() {
        "; an exception excuses it"
    } else {
        ""
    };
    let mut annotation = json!({
        "external_id": external_id(&["finding", &f.policy, &resource, &path, &line, &f.message], taken),
        "title": one_line(&format!("{}: {resource}", f.policy), TITLE_CHARS),
        "annotation_type": "VULNERABILITY",
        "summary": one_line(&f.message, SUMMARY_CHARS),
        "details": one_line(
            &format!("Policy {} ({}) on {resource}: {status}{effect}. {}", f.policy, f.enforcement, f.message),
            DETAILS_CHARS,
        ),
        "severity": severity(f.severity),
        "result": if f.exception.is_some() { "IGNORED" } else { "FAILED" },
        "path": path,
        "line": f.line.max(1),
    });
    if let Some(link) = link.filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
        annotation["link"] = json!(link);
    }
    annotation
}

/// One annotation per problem in the head and per finding in it (resolved findings are
/// in the base, not here), errors and the most severe first, at most what a report takes.
fn annotations(report: &PlanReport) -> Vec<Value> {
    let mut taken = HashSet::new();
    let mut diagnostics: Vec<&Diagnostic> = report.diagnostics.iter().collect();
    diagnostics.sort_by_key(|d| !d.is_error());
    let problems = diagnostics
        .into_iter()
        .map(|d| diagnostic_annotation(&report.root, d, &mut taken))
        .collect::<Vec<_>>();
    let findings = crate::report::findings_in_order(report)
        .into_iter()
        .filter(|f| f.status != FindingStatus::Resolved)
        .map(|f| {
            let link = report
                .policies
                .iter()
                .find(|p| p.name == f.policy)
                .and_then(|p| p.url.as_deref());
            finding_annotation(&report.root, f, link, &mut taken)
        })
        .collect::<Vec<_>>();
    problems
        .into_iter()
        .chain(findings)
        .take(ANNOTATIONS_PER_REPORT)
        .collect()
}

impl Forge for Bitbucket {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Bitbucket
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
            let pulls = self.pulls(sha).await?;
            Ok(pulls.into_iter().map(|p| pull_request(p, sha)).collect())
        })
    }

    fn reviews<'a>(&'a self, pull: &'a PullRequest) -> Call<'a, Vec<Review>> {
        Box::pin(async move {
            let url = self.url(&format!("pullrequests/{}", pull.number), &[])?;
            let full: Pull = self
                .api
                .json(
                    Method::GET,
                    url,
                    None,
                    "reading the pull request's participants",
                )
                .await?;
            Ok(reviews_of(full.participants, pull))
        })
    }

    fn comment_limit(&self) -> usize {
        COMMENT_CHARS
    }

    fn publish_insights<'a>(
        &'a self,
        sha: &'a str,
        report: &'a PlanReport,
        link: Option<&'a str>,
    ) -> Call<'a, ()> {
        Box::pin(self.insights(sha, report, link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Severity;
    use crate::model::{Enforcement, Kind};

    fn account(type_: &str, uuid: &str) -> Account {
        Account {
            uuid: Some(uuid.to_owned()),
            nickname: None,
            account_id: None,
            display_name: Some("someone".to_owned()),
            type_: type_.to_owned(),
        }
    }

    fn comment(user: Account, raw: &str) -> Comment {
        Comment {
            id: 1,
            content: Some(Content {
                raw: Some(raw.to_owned()),
            }),
            user: Some(user),
            deleted: false,
            inline: None,
            parent: None,
        }
    }

    fn finding(status: FindingStatus) -> Finding {
        Finding {
            policy: "short-lived".to_owned(),
            enforcement: Enforcement::Deny,
            severity: FindingSeverity::High,
            kind: Kind::Certificate,
            name: "api".to_owned(),
            file: "certificates/api.yaml".to_owned(),
            line: 9,
            column: 3,
            field: None,
            id: None,
            message: "valid for 90d;\nprefer 30d".to_owned(),
            compliance: Vec::new(),
            status,
            exception: None,
        }
    }

    #[test]
    fn statuses_are_keyed_by_their_context_and_say_bitbuckets_states() {
        assert_eq!(status_key("gitward/plan"), "gitward-plan");
        assert_eq!(status_key("a b/ç.d_e"), "a-b--.d_e");
        let check = Check {
            context: "gitward/plan".to_owned(),
            state: CheckState::Failure,
            description: "blocked".to_owned(),
            url: None,
        };
        assert_eq!(
            status_body(&check, "https://bitbucket.org/a/b/commits/c"),
            json!({
                "key": "gitward-plan",
                "state": "FAILED",
                "name": "gitward/plan",
                "description": "blocked",
                "url": "https://bitbucket.org/a/b/commits/c",
            })
        );
        assert_eq!(status_state(CheckState::Pending), "INPROGRESS");
        assert_eq!(status_state(CheckState::Success), "SUCCESSFUL");
        assert_eq!(status_state(CheckState::Error), "FAILED");
    }

    #[test]
    fn app_passwords_go_as_basic_and_access_tokens_as_bearer() {
        assert_eq!(authorization("ATCTT3x"), "Bearer ATCTT3x");
        assert_eq!(authorization("ci:pw"), "Basic Y2k6cHc=");
    }

    #[test]
    fn short_hashes_name_their_commit() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert!(same_commit("0123456789ab", sha));
        assert!(same_commit("0123456789AB", sha));
        assert!(same_commit(sha, sha));
        assert!(!same_commit("012345", sha), "too short to tell");
        assert!(!same_commit("0123456789ac", sha));
        assert!(!same_commit(&format!("{sha}0"), sha));
    }

    #[test]
    fn only_the_tokens_own_top_level_comment_is_ours() {
        let marker = "<!-- gitward:plan -->";
        let body = format!("{marker}\nplan");
        let bot = comment(account("app_user", "{bot}"), &body);
        let person = comment(account("user", "{mallory}"), &body);
        // The token may not say who it is: an access token's bot.
        assert!(ours(&bot, marker, None));
        assert!(!ours(&person, marker, None));
        // It may: exactly that account.
        assert!(ours(&person, marker, Some("{mallory}")));
        assert!(!ours(&bot, marker, Some("{mallory}")));
        assert!(!ours(
            &comment(account("app_user", "{bot}"), "plan"),
            marker,
            None
        ));
        for change in [
            |c: &mut Comment| c.deleted = true,
            |c: &mut Comment| c.inline = Some(json!({"path": "a"})),
            |c: &mut Comment| c.parent = Some(json!({"id": 1})),
        ] {
            let mut c = comment(account("app_user", "{bot}"), &body);
            change(&mut c);
            assert!(!ours(&c, marker, None));
        }
    }

    #[test]
    fn pull_requests_and_approvals_map_with_the_full_head() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let pull: Pull = serde_json::from_value(json!({
            "id": 4,
            "state": "OPEN",
            "author": {"type": "user", "nickname": "ann", "uuid": "{a}"},
            "source": {"branch": {"name": "change"}, "commit": {"hash": "0123456789ab"}},
            "destination": {"branch": {"name": "main"}},
            "links": {"html": {"href": "https://bitbucket.org/acme/pki/pull-requests/4"}},
        }))
        .unwrap();
        let pr = pull_request(pull, sha);
        assert_eq!(
            (
                pr.number,
                pr.author.as_str(),
                pr.head_sha.as_str(),
                pr.merged
            ),
            (4, "ann", sha, false)
        );
        assert_eq!(pr.url, "https://bitbucket.org/acme/pki/pull-requests/4");
        let participants: Vec<Participant> = serde_json::from_value(json!([
            {"user": {"nickname": "bob"}, "role": "REVIEWER", "approved": true, "state": "approved",
             "participated_on": "2026-11-30T10:00:00+00:00"},
            {"user": {"nickname": "eve"}, "role": "REVIEWER", "approved": false, "state": "changes_requested"},
            {"user": {"nickname": "chatty"}, "role": "PARTICIPANT", "approved": false, "state": null},
        ]))
        .unwrap();
        let reviews = reviews_of(participants, &pr);
        assert_eq!(reviews.len(), 2);
        assert_eq!(
            (
                reviews[0].reviewer.as_str(),
                reviews[0].approved,
                reviews[0].commit.as_deref()
            ),
            ("bob", true, Some(sha))
        );
        assert!(reviews[0].at.is_some());
        assert_eq!(
            (reviews[1].approved, reviews[1].state.as_str()),
            (false, "changes_requested")
        );
    }

    #[test]
    fn annotations_sit_at_repository_paths_with_bitbuckets_words() {
        let mut taken = HashSet::new();
        let a = finding_annotation(
            "infra/pki",
            &finding(FindingStatus::New),
            Some("https://policies.example.com/short-lived"),
            &mut taken,
        );
        assert_eq!(a["path"], "infra/pki/certificates/api.yaml");
        assert_eq!(
            (a["line"].clone(), a["severity"].clone()),
            (json!(9), json!("HIGH"))
        );
        assert_eq!(a["annotation_type"], "VULNERABILITY");
        assert_eq!(a["result"], "FAILED");
        assert_eq!(a["summary"], "valid for 90d; prefer 30d");
        assert!(
            a["details"]
                .as_str()
                .unwrap()
                .contains("it blocks the change")
        );
        assert_eq!(a["link"], "https://policies.example.com/short-lived");
        // The same problem again gets another id: ids are unique in a report.
        let again = finding_annotation(
            "infra/pki",
            &finding(FindingStatus::New),
            Some("javascript:x"),
            &mut taken,
        );
        assert_ne!(again["external_id"], a["external_id"]);
        assert!(again.get("link").is_none());
        let d = diagnostic_annotation(
            "",
            &Diagnostic {
                file: "certificates/api.yaml".to_owned(),
                line: 0,
                column: 1,
                severity: Severity::Warning,
                message: "x".repeat(1000),
            },
            &mut taken,
        );
        assert_eq!(d["path"], "certificates/api.yaml");
        assert_eq!(
            (d["line"].clone(), d["severity"].clone()),
            (json!(1), json!("LOW"))
        );
        assert_eq!(d["annotation_type"], "CODE_SMELL");
        assert_eq!(
            d["summary"].as_str().unwrap().chars().count(),
            SUMMARY_CHARS
        );
        assert_eq!(severity(FindingSeverity::Info), "LOW");
        assert_eq!(severity(FindingSeverity::Critical), "CRITICAL");
    }

    #[test]
    fn ids_stay_the_same_for_the_same_problem() {
        let id = |parts: &[&str]| external_id(parts, &mut HashSet::new());
        assert_eq!(id(&["a", "b"]), id(&["a", "b"]));
        assert_ne!(id(&["a", "b"]), id(&["ab", ""]));
        assert!(id(&["a"]).starts_with("gitward-"));
        assert_eq!(repository_path("", "a.yaml"), "a.yaml");
        assert_eq!(repository_path("pki/", "a.yaml"), "pki/a.yaml");
    }
}
