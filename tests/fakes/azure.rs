//! A stand-in for Azure DevOps Services' `git` area on loopback, as the collection
//! `/{ORG}`: pull request and commit statuses, pull request threads (a system thread on
//! every pull request, create, update a comment by its author only), active pull requests
//! (paged with `$top`/`$skip`), the pull request query, reviewers and `connectionData`.
//!
//! Requests are checked against the documented examples of
//! `tests/fixtures/forges/azure-devops/` (a key the example does not have, a state or enum
//! outside `GitInterfaces`, a context without `name` and `genre`, a comment over 150,000
//! characters, a call without `api-version=7.1`) and answered 400 in Azure DevOps' error
//! shape, kept in `violations`. Answers are the documented examples with the fake's values
//! put in; a pull request, a reviewer and `connectionData` have no stored example and carry
//! the `GitInterfaces` field names (`pullRequestId`, `lastMergeSourceCommit`, `vote`...).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Server;

pub const ORG: &str = "acme";
pub const PROJECT: &str = "ops";
pub const REPO_ID: &str = "3411ebc1-d5aa-464f-9615-0b527bc66719";
pub const REPO_NAME: &str = "pki";
/// Pipelines' `System.AccessToken`: a JSON Web Token, sent as Bearer.
pub const SYSTEM_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJuYW1laWQiOiJidWlsZC1zZXJ2aWNlIn0.ZmFrZS1zaWduYXR1cmUtMDEyMzQ1Njc4OQ";
/// A personal access token, sent as Basic with an empty user name.
pub const PAT: &str = "fakepat0123456789abcdefghijklmnopqrstuvwxyz0123456";
/// Who each token is.
pub const BUILD_SERVICE_ID: &str = "0c3a1b2d-0000-4000-8000-00000000b11d";
pub const PAT_OWNER_ID: &str = "0c3a1b2d-0000-4000-8000-0000000000ca";
/// Azure DevOps refuses longer discussion comments.
pub const COMMENT_CHARS: usize = 150_000;

const PR_STATUS_REQUEST: &str =
    include_str!("../fixtures/forges/azure-devops/create-pr-status.request.json");
const PR_STATUS_ANSWER: &str =
    include_str!("../fixtures/forges/azure-devops/create-pr-status.response-200.json");
const COMMIT_STATUS_ANSWER: &str =
    include_str!("../fixtures/forges/azure-devops/create-commit-status.response-201.json");
const THREAD_REQUEST: &str =
    include_str!("../fixtures/forges/azure-devops/create-thread.request.json");
const THREAD_ANSWER: &str =
    include_str!("../fixtures/forges/azure-devops/create-thread.response-200.json");
const COMMENT_ANSWER: &str =
    include_str!("../fixtures/forges/azure-devops/create-thread-comment.response-200.json");
const THREADS_ANSWER: &str =
    include_str!("../fixtures/forges/azure-devops/list-threads.response-200.extract.json");

/// `GitStatusState`, `CommentType` and `CommentThreadStatus` (number ↔ name).
const STATUS_STATES: [&str; 7] = [
    "notSet",
    "pending",
    "succeeded",
    "failed",
    "error",
    "notApplicable",
    "partiallySucceeded",
];
const COMMENT_TYPES: [&str; 4] = ["unknown", "text", "codeChange", "system"];
const THREAD_STATUSES: [&str; 7] = [
    "unknown", "active", "fixed", "wontFix", "closed", "byDesign", "pending",
];

/// An identity as Azure DevOps shows one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub name: String,
}

impl Identity {
    pub fn person(name: &str) -> Identity {
        Identity {
            id: format!("{name}-0000-4000-8000-000000000000"),
            name: format!("{name}@example.com"),
        }
    }

    pub fn build_service() -> Identity {
        Identity {
            id: BUILD_SERVICE_ID.to_owned(),
            name: format!("Build\\{BUILD_SERVICE_ID}"),
        }
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "displayName": self.name,
            "uniqueName": self.name,
            "url": format!("https://dev.azure.com/{ORG}/_apis/Identities/{}", self.id),
            "imageUrl": format!("https://dev.azure.com/{ORG}/_api/_common/identityImage?id={}", self.id),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ThreadComment {
    pub id: u64,
    pub parent: u64,
    pub author: Identity,
    pub content: String,
    pub kind: String,
    pub edits: u32,
}

#[derive(Debug, Clone)]
pub struct Thread {
    pub id: u64,
    pub pull: u64,
    pub status: String,
    pub comments: Vec<ThreadComment>,
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub id: u64,
    pub author: Identity,
    pub head: String,
    /// `active` or `completed`.
    pub status: String,
    pub merge: Option<String>,
    /// (reviewer, vote, is a group).
    pub reviewers: Vec<(Identity, i32, bool)>,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
}

#[derive(Default)]
pub struct Forge {
    /// (pull request, status) in the order posted.
    pub pr_statuses: Vec<(u64, Value)>,
    /// (commit, status) in the order posted.
    pub commit_statuses: Vec<(String, Value)>,
    pub threads: Vec<Thread>,
    pub pulls: Vec<Pull>,
    pub requests: Vec<Logged>,
    pub violations: Vec<String>,
    /// Answers (status, body) given instead of the next ones.
    pub tricks: VecDeque<(u16, String)>,
    next_id: u64,
}

impl Forge {
    pub fn statuses_of(&self, pull: u64) -> Vec<&Value> {
        self.pr_statuses
            .iter()
            .filter(|(p, _)| *p == pull)
            .map(|(_, v)| v)
            .collect()
    }

    /// The threads people wrote on `pull` (not the system's).
    pub fn threads_on(&self, pull: u64) -> Vec<&Thread> {
        self.threads
            .iter()
            .filter(|t| t.pull == pull && t.comments.first().is_some_and(|c| c.kind != "system"))
            .collect()
    }

    pub fn add_thread(&mut self, pull: u64, author: Identity, kind: &str, content: &str) -> u64 {
        self.next_id += 1;
        self.threads.push(Thread {
            id: self.next_id,
            pull,
            status: "active".to_owned(),
            comments: vec![ThreadComment {
                id: 1,
                parent: 0,
                author,
                content: content.to_owned(),
                kind: kind.to_owned(),
                edits: 0,
            }],
        });
        self.next_id
    }

    /// Pull request `id`, active, at `head`, with the system thread Azure DevOps adds.
    pub fn open_pull(&mut self, id: u64, head: &str) {
        self.pulls.push(Pull {
            id,
            author: Identity::person("ann"),
            head: head.to_owned(),
            status: "active".to_owned(),
            merge: None,
            reviewers: Vec::new(),
        });
        let system = Identity {
            id: "41113706-4320-4083-9150-925feb93fc22".to_owned(),
            name: "[DefaultCollection]\\Project Collection Service Accounts".to_owned(),
        };
        self.add_thread(id, system, "system", "The pull request is mergable.");
    }
}

pub struct Azure {
    pub server: Server,
    pub forge: Arc<Mutex<Forge>>,
}

impl Azure {
    pub async fn start() -> Azure {
        let forge = Arc::new(Mutex::new(Forge {
            next_id: 140,
            ..Forge::default()
        }));
        let router = axum::Router::new()
            .fallback(serve)
            .with_state(forge.clone());
        Azure {
            server: Server::start(router).await,
            forge,
        }
    }

    /// `SYSTEM_COLLECTIONURI` for this fake (with its trailing slash).
    pub fn collection_url(&self) -> String {
        format!("{}/{ORG}/", self.server.url())
    }

    pub fn state(&self) -> MutexGuard<'_, Forge> {
        self.forge.lock().expect("the fake's state")
    }
}

fn answer(status: u16, body: Value) -> Response {
    super::json_answer(status, "application/json; charset=utf-8", &body)
}

/// Azure DevOps' error shape.
fn error(status: u16, message: &str) -> Response {
    answer(
        status,
        json!({"$id": "1", "innerException": null, "message": message,
               "typeName": "Microsoft.TeamFoundation.SourceControl.WebServer.InvalidArgumentValueException",
               "typeKey": "InvalidArgumentValueException", "errorCode": 0, "eventId": 3000}),
    )
}

fn refused(forge: &mut Forge, what: String) -> Response {
    forge.violations.push(what.clone());
    error(400, &what)
}

fn not_found() -> Response {
    error(
        404,
        "TF401019: The Git repository or pull request does not exist.",
    )
}

fn example(text: &str) -> Value {
    serde_json::from_str(text).expect("a documented example")
}

fn unknown_keys(body: &Value, example: &Value) -> Vec<String> {
    match body.as_object() {
        Some(object) => object
            .keys()
            .filter(|k| example.get(k.as_str()).is_none())
            .cloned()
            .collect(),
        None => vec!["<not an object>".to_owned()],
    }
}

/// An enum value as a name or its number.
fn enum_value(value: &Value, names: &[&str]) -> Option<String> {
    match value {
        Value::String(name) => names.contains(&name.as_str()).then(|| name.clone()),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| names.get(n as usize))
            .map(|n| (*n).to_owned()),
        _ => None,
    }
}

/// Who the request's credentials are.
fn caller(headers: &HeaderMap) -> Option<Identity> {
    let given = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if given == format!("Bearer {SYSTEM_TOKEN}") {
        Some(Identity::build_service())
    } else if given == super::basic("", PAT) {
        Some(Identity {
            id: PAT_OWNER_ID.to_owned(),
            name: "ci@example.com".to_owned(),
        })
    } else {
        None
    }
}

async fn serve(
    State(forge): State<Arc<Mutex<Forge>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut forge = forge.lock().expect("the fake's state");
    let forge = &mut *forge;
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let query = super::query(&uri);
    forge.requests.push(Logged {
        path: uri.path().to_owned(),
        query: query.clone(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let Some(who) = caller(&headers) else {
        return error(
            401,
            "TF400813: The user is not authorized to access this resource.",
        );
    };
    if let Some((status, text)) = forge.tricks.pop_front() {
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text,
        )
            .into_response();
    }
    let version = query
        .iter()
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    // Route segments are case-insensitive on Azure DevOps, and arrive percent-encoded.
    let lower = percent_encoding::percent_decode_str(uri.path())
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    let parts: Vec<&str> = lower.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [org, "_apis", "connectiondata"] if *org == ORG => {
            if !version.ends_with("-preview") && !version.contains("-preview.") {
                return refused(forge, format!("connectionData at api-version `{version}`"));
            }
            answer(
                200,
                json!({
                    "authenticatedUser": {"id": who.id, "providerDisplayName": who.name, "isActive": true},
                    "authorizedUser": {"id": who.id, "providerDisplayName": who.name, "isActive": true},
                    "instanceId": "00000000-0000-4000-8000-00000000c011",
                }),
            )
        }
        [
            org,
            project,
            "_apis",
            "git",
            "repositories",
            repo,
            rest @ ..,
        ] if *org == ORG && *project == PROJECT && [REPO_ID, REPO_NAME].contains(repo) => {
            if version != "7.1" {
                return refused(
                    forge,
                    format!("{method} {} at api-version `{version}`", uri.path()),
                );
            }
            let request = Request {
                method: &method,
                query: &query,
                body: parsed.as_ref(),
                who: &who,
            };
            repository(forge, &request, rest)
        }
        _ => not_found(),
    }
}

struct Request<'a> {
    method: &'a Method,
    query: &'a [(String, String)],
    body: Option<&'a Value>,
    who: &'a Identity,
}

fn repository(forge: &mut Forge, request: &Request<'_>, rest: &[&str]) -> Response {
    let number = |text: &str| text.parse::<u64>().ok();
    let known =
        |forge: &Forge, id: Option<u64>| id.filter(|id| forge.pulls.iter().any(|p| p.id == *id));
    match (request.method.as_str(), rest) {
        ("GET", ["pullrequests"]) => active_pulls(forge, request),
        ("POST", ["pullrequests", id, "statuses"]) => match known(forge, number(id)) {
            Some(id) => create_status(forge, Some(id), None, request),
            None => not_found(),
        },
        ("POST", ["commits", sha, "statuses"]) => create_status(forge, None, Some(sha), request),
        ("GET", ["pullrequests", id, "threads"]) => match known(forge, number(id)) {
            Some(id) => {
                let threads: Vec<Value> = forge
                    .threads
                    .iter()
                    .filter(|t| t.pull == id)
                    .map(thread_json)
                    .collect();
                let count = threads.len();
                answer(200, json!({"value": threads, "count": count}))
            }
            None => not_found(),
        },
        ("POST", ["pullrequests", id, "threads"]) => match known(forge, number(id)) {
            Some(id) => create_thread(forge, id, request),
            None => not_found(),
        },
        ("PATCH", ["pullrequests", id, "threads", thread, "comments", comment]) => {
            match (known(forge, number(id)), number(thread), number(comment)) {
                (Some(_), Some(thread), Some(comment)) => {
                    update_comment(forge, thread, comment, request)
                }
                _ => not_found(),
            }
        }
        ("POST", ["pullrequestquery"]) => query_pulls(forge, request.body),
        ("GET", ["pullrequests", id, "reviewers"]) => {
            match forge.pulls.iter().find(|p| Some(p.id) == number(id)) {
                Some(p) => {
                    let reviewers: Vec<Value> = p
                        .reviewers
                        .iter()
                        .map(|(who, vote, group)| {
                            let mut value = who.json();
                            value["vote"] = json!(vote);
                            value["isContainer"] = json!(group);
                            value["hasDeclined"] = json!(false);
                            value["isFlagged"] = json!(false);
                            value
                        })
                        .collect();
                    let count = reviewers.len();
                    answer(200, json!({"value": reviewers, "count": count}))
                }
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn pull_json(p: &Pull) -> Value {
    json!({
        "pullRequestId": p.id,
        "codeReviewId": p.id,
        "status": p.status,
        "createdBy": p.author.json(),
        "creationDate": "2026-11-30T10:00:00Z",
        "title": "A change",
        "sourceRefName": "refs/heads/change",
        "targetRefName": "refs/heads/main",
        "mergeStatus": "succeeded",
        "lastMergeSourceCommit": {"commitId": p.head},
        "lastMergeTargetCommit": {"commitId": "0".repeat(40)},
        "lastMergeCommit": p.merge.as_ref().map(|m| json!({"commitId": m})),
        "repository": {"id": REPO_ID, "name": REPO_NAME},
        "url": format!("https://dev.azure.com/{ORG}/_apis/git/repositories/{REPO_ID}/pullRequests/{}", p.id),
    })
}

fn active_pulls(forge: &mut Forge, request: &Request<'_>) -> Response {
    let get = |name: &str| {
        request
            .query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let top = get("$top")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(101);
    let skip = get("$skip")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let status = get("searchCriteria.status").unwrap_or_else(|| "active".to_owned());
    let pulls: Vec<Value> = forge
        .pulls
        .iter()
        .filter(|p| status == "all" || p.status == status)
        .skip(skip)
        .take(top)
        .map(pull_json)
        .collect();
    let count = pulls.len();
    answer(200, json!({"value": pulls, "count": count}))
}

fn create_status(
    forge: &mut Forge,
    pull: Option<u64>,
    sha: Option<&str>,
    request: &Request<'_>,
) -> Response {
    let Some(body) = request.body else {
        return refused(forge, "a status that is not JSON".to_owned());
    };
    let mut documented = example(PR_STATUS_REQUEST);
    documented["iterationId"] = json!(1);
    let unknown = unknown_keys(body, &documented);
    if !unknown.is_empty() {
        return refused(forge, format!("status keys not documented: {unknown:?}"));
    }
    let Some(state) = enum_value(&body["state"], &STATUS_STATES) else {
        return refused(forge, format!("status state {}", body["state"]));
    };
    let context = &body["context"];
    let context_keys = unknown_keys(context, &documented["context"]);
    if !context_keys.is_empty()
        || context["name"].as_str().is_none_or(str::is_empty)
        || context["genre"].as_str().is_none()
    {
        return refused(forge, format!("status context {context}"));
    }
    if sha.is_some_and(|s| s.len() != 40 || !s.bytes().all(|b| b.is_ascii_hexdigit())) {
        return not_found();
    }
    let mut status = example(if pull.is_some() {
        PR_STATUS_ANSWER
    } else {
        COMMIT_STATUS_ANSWER
    });
    if let Some(object) = status.as_object_mut() {
        object.remove("properties");
        object.remove("_links");
    }
    status["state"] = json!(state);
    status["description"] = body.get("description").cloned().unwrap_or(Value::Null);
    status["context"] = context.clone();
    status["targetUrl"] = body.get("targetUrl").cloned().unwrap_or(Value::Null);
    status["createdBy"] = request.who.json();
    match (pull, sha) {
        (Some(pull), _) => {
            status["id"] = json!(forge.statuses_of(pull).len() + 1);
            forge.pr_statuses.push((pull, status.clone()));
            answer(200, status)
        }
        (None, Some(sha)) => {
            forge.commit_statuses.push((sha.to_owned(), status.clone()));
            answer(201, status)
        }
        (None, None) => not_found(),
    }
}

fn thread_json(t: &Thread) -> Value {
    let system = t.comments.first().is_some_and(|c| c.kind == "system");
    let listed = example(THREADS_ANSWER);
    let mut value = listed["value"][if system { 0 } else { 1 }].clone();
    value["id"] = json!(t.id);
    value["status"] = json!(t.status);
    if system && let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    let template = value["comments"][0].clone();
    value["comments"] = t
        .comments
        .iter()
        .map(|c| {
            let mut comment = template.clone();
            comment["id"] = json!(c.id);
            comment["parentCommentId"] = json!(c.parent);
            comment["author"] = c.author.json();
            comment["content"] = json!(c.content);
            comment["commentType"] = json!(c.kind);
            comment
        })
        .collect();
    value
}

/// A comment's text, or why Azure DevOps refuses it.
fn checked_content(content: &Value) -> Result<String, String> {
    let Some(text) = content.as_str() else {
        return Err(format!("comment content {content}"));
    };
    if text.chars().count() > COMMENT_CHARS {
        return Err(format!(
            "A discussion comment cannot be longer than {COMMENT_CHARS} characters.\r\nParameter name: comment.Content"
        ));
    }
    Ok(text.to_owned())
}

fn create_thread(forge: &mut Forge, pull: u64, request: &Request<'_>) -> Response {
    let Some(body) = request.body else {
        return refused(forge, "a thread that is not JSON".to_owned());
    };
    let documented = example(THREAD_REQUEST);
    let unknown = unknown_keys(body, &documented);
    if !unknown.is_empty() {
        return refused(forge, format!("thread keys not documented: {unknown:?}"));
    }
    let Some(status) = enum_value(&body["status"], &THREAD_STATUSES) else {
        return refused(forge, format!("thread status {}", body["status"]));
    };
    let comments = body["comments"].as_array().cloned().unwrap_or_default();
    if comments.is_empty() {
        return refused(forge, "a thread without comments".to_owned());
    }
    let mut made = Vec::new();
    for (n, comment) in comments.iter().enumerate() {
        let unknown = unknown_keys(comment, &documented["comments"][0]);
        let kind = enum_value(&comment["commentType"], &COMMENT_TYPES);
        if !unknown.is_empty() || kind.is_none() {
            return refused(forge, format!("thread comment {comment}"));
        }
        let content = match checked_content(&comment["content"]) {
            Ok(content) => content,
            Err(what) => return refused(forge, what),
        };
        made.push(ThreadComment {
            id: n as u64 + 1,
            parent: comment["parentCommentId"].as_u64().unwrap_or(0),
            author: request.who.clone(),
            content,
            kind: kind.unwrap_or_default(),
            edits: 0,
        });
    }
    forge.next_id += 1;
    let thread = Thread {
        id: forge.next_id,
        pull,
        status,
        comments: made,
    };
    let mut value = example(THREAD_ANSWER);
    let shown = thread_json(&thread);
    for key in ["id", "status", "comments"] {
        value[key] = shown[key].clone();
    }
    forge.threads.push(thread);
    answer(200, value)
}

fn update_comment(forge: &mut Forge, thread: u64, comment: u64, request: &Request<'_>) -> Response {
    let Some(body) = request.body else {
        return refused(forge, "a comment that is not JSON".to_owned());
    };
    // No stored example: the REST reference's body for an edit is the content alone.
    let unknown = unknown_keys(body, &json!({"content": ""}));
    if !unknown.is_empty() {
        return refused(forge, format!("comment edit keys: {unknown:?}"));
    }
    let content = match checked_content(&body["content"]) {
        Ok(content) => content,
        Err(what) => return refused(forge, what),
    };
    let who = request.who.clone();
    let Some(found) = forge
        .threads
        .iter_mut()
        .find(|t| t.id == thread)
        .and_then(|t| t.comments.iter_mut().find(|c| c.id == comment))
    else {
        return not_found();
    };
    // Only a comment's author may edit it.
    if found.author != who {
        let what = format!("edited comment {thread}/{comment} of {}", found.author.name);
        forge.violations.push(what);
        return error(
            403,
            "TF401181: The comment can only be edited by its author.",
        );
    }
    found.content = content;
    found.edits += 1;
    let mut value = example(COMMENT_ANSWER);
    value["id"] = json!(found.id);
    value["parentCommentId"] = json!(found.parent);
    value["author"] = found.author.json();
    value["content"] = json!(found.content);
    answer(200, value)
}

fn query_pulls(forge: &mut Forge, body: Option<&Value>) -> Response {
    let Some(queries) = body.and_then(|b| b["queries"].as_array()).cloned() else {
        return refused(forge, "a pull request query without `queries`".to_owned());
    };
    let mut results = Vec::new();
    for query in &queries {
        let kind = enum_value(&query["type"], &["notSet", "lastMergeCommit", "commit"]);
        let items: Vec<String> = query["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect();
        if kind.is_none() || items.is_empty() {
            return refused(forge, format!("pull request query {query}"));
        }
        let mut by_commit = BTreeMap::new();
        for sha in items {
            let pulls: Vec<Value> = forge
                .pulls
                .iter()
                .filter(|p| match kind.as_deref() {
                    Some("lastMergeCommit") => p.merge.as_deref() == Some(sha.as_str()),
                    _ => p.status == "completed" && p.head == sha,
                })
                .map(pull_json)
                .collect();
            if !pulls.is_empty() {
                by_commit.insert(sha, pulls);
            }
        }
        results.push(by_commit);
    }
    answer(200, json!({"queries": queries, "results": results}))
}
