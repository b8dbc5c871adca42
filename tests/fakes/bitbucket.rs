//! A stand-in for Bitbucket Cloud's API 2.0 on loopback below `/2.0`: build statuses (the
//! same key replaces a status), pull request comments (paged with `next` links, create,
//! update by their author only), a commit's pull requests (404 until the "Pull Request
//! Commit Links" app is installed, as Bitbucket does), open pull requests, a pull request's
//! participants, Code Insights reports and annotations, and `GET /user` (refused to access
//! tokens, as BCLOUD-23528 reports).
//!
//! Requests are checked against the documented examples of
//! `tests/fixtures/forges/bitbucket/` and the field lists of `../API.md` (a key neither
//! has, a value outside an enum, more than 10 data items, more than 100 annotations in a
//! request or 1000 on a report, a missing `key`/`state`/`url`): such a request is answered
//! 400 in Bitbucket's error shape and kept in `violations`. Bitbucket documents no response
//! examples for these; answers carry the schema's fields named in `../API.md`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Server;

pub const BASE_PATH: &str = "/2.0";
pub const WORKSPACE: &str = "acme";
pub const SLUG: &str = "pki";
/// A repository access token: Bearer, acting as its own bot account.
pub const TOKEN: &str = "ATCTT3xFfGN0-fake-bitbucket-access-token";
pub const BOT_UUID: &str = "{b0b0b0b0-0000-4000-8000-0000000000b0}";
/// An app password: Basic with its user's name, acting as that user.
pub const APP_USER: &str = "ci-user";
pub const APP_PASSWORD: &str = "fake-app-password-0123456789";
pub const APP_USER_UUID: &str = "{c1c1c1c1-0000-4000-8000-0000000000c1}";
/// Bitbucket's most items per page used here.
pub const MAX_PAGELEN: usize = 100;
/// Comments Bitbucket refuses: this many characters or more (public reports).
pub const COMMENT_REFUSED_AT: usize = 32_768;

const STATUS_REQUEST: &str =
    include_str!("../fixtures/forges/bitbucket/create-build-status.request.json");
const STATUS_PR_REQUEST: &str =
    include_str!("../fixtures/forges/bitbucket/create-build-status.pr-refname.request.json");
const REPORT_REQUEST: &str =
    include_str!("../fixtures/forges/bitbucket/create-or-update-report.request.json");
const ANNOTATIONS_REQUEST: &str =
    include_str!("../fixtures/forges/bitbucket/bulk-create-annotations.request.json");

/// Keys `../API.md` lists from the schema beyond the examples.
const STATUS_SCHEMA_KEYS: [&str; 1] = ["name"];
const REPORT_SCHEMA_KEYS: [&str; 2] = ["logo_url", "remote_link_enabled"];
const ANNOTATION_SCHEMA_KEYS: [&str; 3] = ["details", "link", "result"];
const STATUS_STATES: [&str; 4] = ["SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED"];
const REPORT_TYPES: [&str; 4] = ["SECURITY", "COVERAGE", "TEST", "BUG"];
const REPORT_RESULTS: [&str; 3] = ["PASSED", "FAILED", "PENDING"];
const DATA_TYPES: [&str; 7] = [
    "BOOLEAN",
    "DATE",
    "DURATION",
    "LINK",
    "NUMBER",
    "PERCENTAGE",
    "TEXT",
];
const ANNOTATION_TYPES: [&str; 3] = ["VULNERABILITY", "CODE_SMELL", "BUG"];
const SEVERITIES: [&str; 4] = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
const ANNOTATION_RESULTS: [&str; 4] = ["PASSED", "FAILED", "IGNORED", "SKIPPED"];

/// An account: a person (`user`) or a bot (`app_user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uuid: String,
    pub nickname: String,
    pub type_: String,
}

impl Account {
    pub fn person(nickname: &str) -> Account {
        Account {
            uuid: format!("{{{nickname}-uuid}}"),
            nickname: nickname.to_owned(),
            type_: "user".to_owned(),
        }
    }

    pub fn bot() -> Account {
        Account {
            uuid: BOT_UUID.to_owned(),
            nickname: "gitward-plan-token".to_owned(),
            type_: "app_user".to_owned(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "type": self.type_,
            "uuid": self.uuid,
            "display_name": self.nickname,
            "nickname": self.nickname,
            "account_id": format!("5f:{}", self.nickname),
            "links": {"avatar": {"href": "https://bitbucket.org/account/avatar"}},
        })
    }
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub pull: u64,
    pub raw: String,
    pub user: Account,
    pub edits: u32,
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub id: u64,
    pub author: Account,
    pub branch: String,
    pub head: String,
    pub merged_as: Option<String>,
    /// (account, approved, state) of each participant.
    pub participants: Vec<(Account, bool, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub body: Option<Value>,
}

#[derive(Default)]
pub struct Forge {
    /// (sha, key) → the status in force.
    pub statuses: BTreeMap<(String, String), Value>,
    pub comments: Vec<Comment>,
    pub pulls: Vec<Pull>,
    /// Whether `GET /commit/{sha}/pullrequests` answers (else 404).
    pub commit_links_app: bool,
    /// (sha, report id) → the report.
    pub reports: BTreeMap<(String, String), Value>,
    /// (sha, report id) → external id → the annotation.
    pub annotations: BTreeMap<(String, String), BTreeMap<String, Value>>,
    pub requests: Vec<Logged>,
    pub violations: Vec<String>,
    /// Answers (status, body) given instead of the next ones.
    pub tricks: VecDeque<(u16, String)>,
    next_id: u64,
}

impl Forge {
    pub fn status(&self, sha: &str, key: &str) -> Option<&Value> {
        self.statuses.get(&(sha.to_owned(), key.to_owned()))
    }

    pub fn comments_on(&self, pull: u64) -> Vec<&Comment> {
        self.comments.iter().filter(|c| c.pull == pull).collect()
    }

    pub fn add_comment(&mut self, pull: u64, user: Account, raw: &str) -> u64 {
        self.next_id += 1;
        self.comments.push(Comment {
            id: self.next_id,
            pull,
            raw: raw.to_owned(),
            user,
            edits: 0,
        });
        self.next_id
    }

    pub fn report(&self, sha: &str, id: &str) -> Option<&Value> {
        self.reports.get(&(sha.to_owned(), id.to_owned()))
    }

    pub fn annotations_of(&self, sha: &str, id: &str) -> Vec<&Value> {
        self.annotations
            .get(&(sha.to_owned(), id.to_owned()))
            .into_iter()
            .flat_map(|a| a.values())
            .collect()
    }
}

pub struct Bitbucket {
    pub server: Server,
    pub forge: Arc<Mutex<Forge>>,
}

impl Bitbucket {
    pub async fn start() -> Bitbucket {
        let forge = Arc::new(Mutex::new(Forge {
            next_id: 500,
            ..Forge::default()
        }));
        let router = axum::Router::new()
            .fallback(serve)
            .with_state(forge.clone());
        Bitbucket {
            server: Server::start(router).await,
            forge,
        }
    }

    /// The API's base URL for this fake (Bitbucket Cloud's is `https://api.bitbucket.org/2.0`).
    pub fn api_url(&self) -> String {
        format!("{}{BASE_PATH}", self.server.url())
    }

    pub fn state(&self) -> MutexGuard<'_, Forge> {
        self.forge.lock().expect("the fake's state")
    }
}

fn answer(status: u16, body: Value) -> Response {
    super::json_answer(status, "application/json", &body)
}

fn error(status: u16, message: &str) -> Response {
    answer(
        status,
        json!({"type": "error", "error": {"message": message}}),
    )
}

fn not_found() -> Response {
    error(404, "Resource not found")
}

fn refused(forge: &mut Forge, what: String) -> Response {
    forge.violations.push(what.clone());
    error(400, &what)
}

fn example(text: &str) -> Value {
    serde_json::from_str(text).expect("a documented example")
}

/// Keys of `body` that neither the examples nor the schema's `extra` keys have.
fn unknown_keys(body: &Value, examples: &[&Value], extra: &[&str]) -> Vec<String> {
    match body.as_object() {
        Some(object) => object
            .keys()
            .filter(|k| {
                !extra.contains(&k.as_str()) && examples.iter().all(|e| e.get(k.as_str()).is_none())
            })
            .cloned()
            .collect(),
        None => vec!["<not an object>".to_owned()],
    }
}

/// Who the request's credentials are.
fn caller(headers: &HeaderMap) -> Option<Account> {
    let given = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if given == format!("Bearer {TOKEN}") {
        Some(Account::bot())
    } else if given == super::basic(APP_USER, APP_PASSWORD) {
        Some(Account {
            uuid: APP_USER_UUID.to_owned(),
            nickname: APP_USER.to_owned(),
            type_: "user".to_owned(),
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
    forge.requests.push(Logged {
        method: method.to_string(),
        path: uri.path().to_owned(),
        body: parsed.clone(),
    });
    let Some(who) = caller(&headers) else {
        return error(401, "Access token expired or invalid");
    };
    if let Some((status, text)) = forge.tricks.pop_front() {
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text,
        )
            .into_response();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let Some(path) = uri.path().strip_prefix(BASE_PATH) else {
        return not_found();
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["user"]) if who.type_ == "app_user" => {
            error(401, "Token is invalid or not supported for this endpoint.")
        }
        ("GET", ["user"]) => answer(200, who.json()),
        (_, ["repositories", ws, slug, rest @ ..]) if [*ws, *slug] == [WORKSPACE, SLUG] => {
            let request = Request {
                method: &method,
                uri: &uri,
                host: &host,
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
    uri: &'a Uri,
    host: &'a str,
    body: Option<&'a Value>,
    who: &'a Account,
}

fn repository(forge: &mut Forge, request: &Request<'_>, rest: &[&str]) -> Response {
    let number = |text: &str| text.parse::<u64>().ok();
    match (request.method.as_str(), rest) {
        ("POST", ["commit", sha, "statuses", "build"]) => create_status(forge, sha, request.body),
        ("GET", ["commit", sha, "pullrequests"]) => {
            if !forge.commit_links_app {
                return error(404, "The Pull Request Commit Links app is not installed");
            }
            let pulls: Vec<Value> = forge
                .pulls
                .iter()
                .filter(|p| p.head == *sha || p.merged_as.as_deref() == Some(*sha))
                .map(|p| pull_json(p, false))
                .collect();
            paged(forge, request, pulls)
        }
        ("GET", ["pullrequests"]) => {
            let query = super::query(request.uri);
            let open = query.iter().any(|(k, v)| k == "state" && v == "OPEN");
            let pulls: Vec<Value> = forge
                .pulls
                .iter()
                .filter(|p| !open || p.merged_as.is_none())
                .map(|p| pull_json(p, false))
                .collect();
            paged(forge, request, pulls)
        }
        ("GET", ["pullrequests", id]) => {
            match forge.pulls.iter().find(|p| Some(p.id) == number(id)) {
                Some(p) => answer(200, pull_json(p, true)),
                None => not_found(),
            }
        }
        ("GET", ["pullrequests", id, "comments"]) => match number(id) {
            Some(id) => {
                let comments: Vec<Value> = forge
                    .comments_on(id)
                    .into_iter()
                    .map(comment_json)
                    .collect();
                paged(forge, request, comments)
            }
            None => not_found(),
        },
        ("POST", ["pullrequests", id, "comments"]) => match number(id) {
            Some(id) => create_comment(forge, id, request),
            None => not_found(),
        },
        ("PUT", ["pullrequests", id, "comments", comment]) => match (number(id), number(comment)) {
            (Some(_), Some(comment)) => update_comment(forge, comment, request),
            _ => not_found(),
        },
        ("PUT", ["commit", sha, "reports", id]) => put_report(forge, sha, id, request.body),
        ("POST", ["commit", sha, "reports", id, "annotations"]) => {
            add_annotations(forge, sha, id, request.body)
        }
        _ => not_found(),
    }
}

/// One page of `items` in Bitbucket's envelope, with an absolute `next` while more remain.
fn paged(forge: &mut Forge, request: &Request<'_>, items: Vec<Value>) -> Response {
    let query = super::query(request.uri);
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let pagelen = get("pagelen").unwrap_or(10);
    if pagelen > MAX_PAGELEN {
        return refused(forge, format!("pagelen {pagelen} over {MAX_PAGELEN}"));
    }
    let page = get("page").unwrap_or(1).max(1);
    let shown: Vec<Value> = items
        .iter()
        .skip((page - 1) * pagelen)
        .take(pagelen)
        .cloned()
        .collect();
    let mut body = json!({
        "pagelen": pagelen,
        "page": page,
        "size": items.len(),
        "values": shown,
    });
    if page * pagelen < items.len() {
        let mut next: Vec<(String, String)> =
            query.into_iter().filter(|(k, _)| k != "page").collect();
        next.push(("page".to_owned(), (page + 1).to_string()));
        let next: Vec<String> = next.iter().map(|(k, v)| format!("{k}={v}")).collect();
        body["next"] = json!(format!(
            "http://{}{}?{}",
            request.host,
            request.uri.path(),
            next.join("&")
        ));
    }
    answer(200, body)
}

fn create_status(forge: &mut Forge, sha: &str, body: Option<&Value>) -> Response {
    let Some(body) = body else {
        return refused(forge, "a status that is not JSON".to_owned());
    };
    let examples = [&example(STATUS_REQUEST), &example(STATUS_PR_REQUEST)];
    let unknown = unknown_keys(body, &examples, &STATUS_SCHEMA_KEYS);
    if !unknown.is_empty() {
        return refused(forge, format!("status keys not documented: {unknown:?}"));
    }
    for required in ["key", "state", "url"] {
        if body
            .get(required)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return refused(forge, format!("a status without `{required}`"));
        }
    }
    let state = body["state"].as_str().unwrap_or_default();
    if !STATUS_STATES.contains(&state) {
        return refused(forge, format!("status state `{state}`"));
    }
    let key = body["key"].as_str().unwrap_or_default().to_owned();
    let mut status = body.clone();
    status["type"] = json!("build");
    status["created_on"] = json!("2026-12-01T10:00:00.000000+00:00");
    status["updated_on"] = json!("2026-12-01T10:00:00.000000+00:00");
    forge.statuses.insert((sha.to_owned(), key), status.clone());
    answer(201, status)
}

fn comment_json(c: &Comment) -> Value {
    json!({
        "type": "pullrequest_comment",
        "id": c.id,
        "content": {"raw": c.raw, "markup": "markdown", "html": "<p>…</p>", "type": "rendered"},
        "user": c.user.json(),
        "created_on": "2026-12-01T10:00:00.000000+00:00",
        "updated_on": "2026-12-01T10:00:00.000000+00:00",
        "deleted": false,
        "pending": false,
        "pullrequest": {"type": "pullrequest", "id": c.pull},
        "links": {"html": {"href": format!("https://bitbucket.org/{WORKSPACE}/{SLUG}/pull-requests/{}#comment-{}", c.pull, c.id)}},
    })
}

/// A comment's text, or why Bitbucket refuses it.
fn comment_text(body: Option<&Value>) -> Result<String, String> {
    let Some(body) = body else {
        return Err("a comment that is not JSON".to_owned());
    };
    let documented = json!({"content": {"raw": ""}});
    let mut unknown = unknown_keys(body, &[&documented], &[]);
    unknown.extend(unknown_keys(
        &body["content"],
        &[&documented["content"]],
        &[],
    ));
    if !unknown.is_empty() {
        return Err(format!("comment keys not documented: {unknown:?}"));
    }
    let raw = body["content"]["raw"].as_str().unwrap_or_default();
    if raw.is_empty() || raw.chars().count() >= COMMENT_REFUSED_AT {
        return Err(format!(
            "Please enter a non-empty value less than {COMMENT_REFUSED_AT} characters"
        ));
    }
    Ok(raw.to_owned())
}

fn create_comment(forge: &mut Forge, pull: u64, request: &Request<'_>) -> Response {
    let raw = match comment_text(request.body) {
        Ok(raw) => raw,
        Err(what) => return refused(forge, what),
    };
    let id = forge.add_comment(pull, request.who.clone(), &raw);
    let comment = forge.comments.iter().find(|c| c.id == id).cloned();
    answer(201, comment.map(|c| comment_json(&c)).unwrap_or_default())
}

fn update_comment(forge: &mut Forge, id: u64, request: &Request<'_>) -> Response {
    let raw = match comment_text(request.body) {
        Ok(raw) => raw,
        Err(what) => return refused(forge, what),
    };
    let Some(comment) = forge.comments.iter_mut().find(|c| c.id == id) else {
        return not_found();
    };
    // Only a comment's author may edit it.
    if comment.user != *request.who {
        let what = format!("edited comment {id} of {}", comment.user.nickname);
        forge.violations.push(what);
        return error(403, "You can only edit your own comments.");
    }
    comment.raw = raw;
    comment.edits += 1;
    let comment = comment.clone();
    answer(200, comment_json(&comment))
}

fn pull_json(p: &Pull, full: bool) -> Value {
    let short = |sha: &str| sha.get(..12).unwrap_or(sha).to_owned();
    let mut value = json!({
        "type": "pullrequest",
        "id": p.id,
        "title": "A change",
        "state": if p.merged_as.is_some() { "MERGED" } else { "OPEN" },
        "author": p.author.json(),
        "source": {"branch": {"name": p.branch}, "commit": {"type": "commit", "hash": short(&p.head)}},
        "destination": {"branch": {"name": "main"}, "commit": {"type": "commit", "hash": "000000000000"}},
        "merge_commit": p.merged_as.as_deref().map(|m| json!({"type": "commit", "hash": short(m)})),
        "links": {"html": {"href": format!("https://bitbucket.org/{WORKSPACE}/{SLUG}/pull-requests/{}", p.id)}},
    });
    if full {
        value["participants"] = p
            .participants
            .iter()
            .map(|(account, approved, state)| {
                json!({
                    "type": "participant",
                    "user": account.json(),
                    "role": "REVIEWER",
                    "approved": approved,
                    "state": state,
                    "participated_on": "2026-11-30T10:00:00.000000+00:00",
                })
            })
            .collect();
    }
    value
}

fn put_report(forge: &mut Forge, sha: &str, id: &str, body: Option<&Value>) -> Response {
    let Some(body) = body else {
        return refused(forge, "a report that is not JSON".to_owned());
    };
    let unknown = unknown_keys(body, &[&example(REPORT_REQUEST)], &REPORT_SCHEMA_KEYS);
    if !unknown.is_empty() {
        return refused(forge, format!("report keys not documented: {unknown:?}"));
    }
    for (key, allowed) in [
        ("report_type", &REPORT_TYPES[..]),
        ("result", &REPORT_RESULTS[..]),
    ] {
        if let Some(value) = body.get(key)
            && !value.as_str().is_some_and(|v| allowed.contains(&v))
        {
            return refused(forge, format!("report {key} {value}"));
        }
    }
    let data = body["data"].as_array().cloned().unwrap_or_default();
    if data.len() > 10 {
        return refused(forge, format!("{} data items, over 10", data.len()));
    }
    for item in &data {
        let unknown = unknown_keys(item, &[&example(REPORT_REQUEST)["data"][0]], &[]);
        let kind = item["type"].as_str().unwrap_or_default();
        let fits = match kind {
            "BOOLEAN" => item["value"].is_boolean(),
            "NUMBER" | "PERCENTAGE" | "DATE" | "DURATION" => item["value"].is_number(),
            "TEXT" => item["value"].is_string(),
            "LINK" => item["value"].get("href").is_some(),
            _ => false,
        };
        if !unknown.is_empty() || !DATA_TYPES.contains(&kind) || !fits {
            return refused(forge, format!("report data item {item}"));
        }
    }
    let key = (sha.to_owned(), id.to_owned());
    let mut report = body.clone();
    report["uuid"] = json!("{5e1f0000-0000-4000-8000-000000000001}");
    report["external_id"] = json!(id);
    forge.reports.insert(key, report.clone());
    answer(200, report)
}

fn add_annotations(forge: &mut Forge, sha: &str, id: &str, body: Option<&Value>) -> Response {
    let key = (sha.to_owned(), id.to_owned());
    if !forge.reports.contains_key(&key) {
        return not_found();
    }
    let Some(Value::Array(items)) = body else {
        return refused(forge, "annotations that are not a JSON array".to_owned());
    };
    if items.len() > 100 {
        return refused(
            forge,
            format!("{} annotations in one request, over 100", items.len()),
        );
    }
    let example = example(ANNOTATIONS_REQUEST);
    let examples: Vec<&Value> = example.as_array().into_iter().flatten().collect();
    for item in items {
        let unknown = unknown_keys(item, &examples, &ANNOTATION_SCHEMA_KEYS);
        if !unknown.is_empty() {
            return refused(
                forge,
                format!("annotation keys not documented: {unknown:?}"),
            );
        }
        if item["external_id"].as_str().is_none_or(str::is_empty) {
            return refused(forge, "an annotation without external_id".to_owned());
        }
        for (field, allowed) in [
            ("annotation_type", &ANNOTATION_TYPES[..]),
            ("severity", &SEVERITIES[..]),
            ("result", &ANNOTATION_RESULTS[..]),
        ] {
            if let Some(value) = item.get(field)
                && !value.as_str().is_some_and(|v| allowed.contains(&v))
            {
                return refused(forge, format!("annotation {field} {value}"));
            }
        }
        if item.get("line").is_some_and(|l| l.as_u64().is_none()) {
            return refused(forge, format!("annotation line {}", item["line"]));
        }
    }
    let stored = forge.annotations.entry(key).or_default();
    for item in items {
        let external = item["external_id"].as_str().unwrap_or_default().to_owned();
        stored.insert(external, item.clone());
    }
    if stored.len() > 1000 {
        let count = stored.len();
        return refused(
            forge,
            format!("{count} annotations on one report, over 1000"),
        );
    }
    answer(200, Value::Array(items.clone()))
}
