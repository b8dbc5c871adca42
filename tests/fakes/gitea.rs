//! A stand-in for Gitea's API on loopback below `/api/v1`: commit statuses, issue comments
//! (list, create, edit), the merged pull request of a commit, open pull requests (paged
//! with `page` and `limit`), reviews and `GET /user`.
//!
//! Gitea's swagger has schemas, not examples: requests are checked against the schemas of
//! `tests/fixtures/forges/gitea/` (a key a schema does not have, a state outside the
//! enum, a missing required body) and answered 422 as Gitea's binding does, kept in
//! `violations`; answers carry exactly the keys of the response schemas (the fake panics
//! should it make one that does not), with the status's state under `status` as Gitea's.
//! The pull request and review objects follow Gitea's Go structs (no schema stored here).
//!
//! Gitea lets anyone who may write to a repository's pull requests edit any comment on
//! them, as it does here: that gitward leaves a person's comment alone is the client's
//! doing, which the tests check by `edits`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Server;

pub const BASE_PATH: &str = "/api/v1";
pub const OWNER: &str = "acme";
pub const REPO: &str = "pki";
pub const TOKEN: &str = "gitea-fake-token-0123456789abcdef";
/// The user Gitea Actions' token acts as.
pub const ACTIONS_LOGIN: &str = "gitea-actions";
pub const ACTIONS_ID: i64 = -2;
/// Gitea's default most items per page (`MAX_RESPONSE_ITEMS`).
pub const MAX_LIMIT: usize = 50;

const CREATE_STATUS: &str =
    include_str!("../fixtures/forges/gitea/definitions.CreateStatusOption.json");
const COMMIT_STATUS: &str = include_str!("../fixtures/forges/gitea/definitions.CommitStatus.json");
const CREATE_COMMENT: &str =
    include_str!("../fixtures/forges/gitea/definitions.CreateIssueCommentOption.json");
const COMMENT: &str = include_str!("../fixtures/forges/gitea/definitions.Comment.json");
/// `CommitStatusState` across Gitea's versions (`skipped` in newer ones).
const STATES: [&str; 6] = [
    "pending", "success", "error", "failure", "warning", "skipped",
];

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    pub login: String,
    pub user_id: i64,
    pub edits: u32,
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub number: u64,
    pub author: String,
    pub head: String,
    /// The merge commit, when merged.
    pub merged_as: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GivenReview {
    pub login: String,
    pub state: String,
    pub commit: String,
    pub dismissed: bool,
}

#[derive(Default)]
pub struct Forge {
    /// Who `GET /user` says the token is; `None` answers 403.
    pub user: Option<(String, i64)>,
    /// Who comments with the token.
    pub commenter: (String, i64),
    pub statuses: Vec<(String, Value)>,
    pub comments: Vec<Comment>,
    pub pulls: Vec<Pull>,
    pub reviews: BTreeMap<u64, Vec<GivenReview>>,
    pub violations: Vec<String>,
    /// Answers (status, body) given instead of the next ones.
    pub tricks: VecDeque<(u16, String)>,
    next_id: u64,
}

impl Forge {
    pub fn statuses_of(&self, sha: &str, context: &str) -> Vec<&Value> {
        self.statuses
            .iter()
            .filter(|(s, v)| s == sha && v["context"] == context)
            .map(|(_, v)| v)
            .collect()
    }

    pub fn comments_on(&self, issue: u64) -> Vec<&Comment> {
        self.comments.iter().filter(|c| c.issue == issue).collect()
    }

    /// A comment already on the pull request, as if `login` (user `user_id`) wrote it.
    pub fn add_comment(&mut self, issue: u64, login: &str, user_id: i64, body: &str) -> u64 {
        self.next_id += 1;
        self.comments.push(Comment {
            id: self.next_id,
            issue,
            body: body.to_owned(),
            login: login.to_owned(),
            user_id,
            edits: 0,
        });
        self.next_id
    }
}

pub struct Gitea {
    pub server: Server,
    pub forge: Arc<Mutex<Forge>>,
}

impl Gitea {
    /// A fake whose token is Gitea Actions' (it may not read `/user`).
    pub async fn start() -> Gitea {
        let forge = Arc::new(Mutex::new(Forge {
            commenter: (ACTIONS_LOGIN.to_owned(), ACTIONS_ID),
            next_id: 2000,
            ..Forge::default()
        }));
        let router = axum::Router::new()
            .fallback(serve)
            .with_state(forge.clone());
        Gitea {
            server: Server::start(router).await,
            forge,
        }
    }

    /// The server's web URL (`GITHUB_SERVER_URL` in Gitea Actions).
    pub fn web_url(&self) -> String {
        self.server.url()
    }

    /// `GITHUB_API_URL` in Gitea Actions.
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

fn not_found() -> Response {
    answer(
        404,
        json!({"message": "The target couldn't be found.", "errors": []}),
    )
}

/// Gitea's binding failure.
fn invalid(forge: &mut Forge, what: String) -> Response {
    forge.violations.push(what.clone());
    answer(
        422,
        json!({"message": what, "url": "https://gitea.example.com/api/swagger"}),
    )
}

fn schema(text: &str) -> Value {
    serde_json::from_str(text).expect("a schema extract")
}

/// What is wrong with `body` by `schema`: not an object, keys it does not have, required
/// keys missing.
fn against(body: Option<&Value>, schema_text: &str) -> Result<Map<String, Value>, String> {
    let schema = schema(schema_text);
    let Some(Value::Object(body)) = body else {
        return Err("a body that is not a JSON object".to_owned());
    };
    let properties = &schema["properties"];
    let unknown: Vec<&String> = body
        .keys()
        .filter(|k| properties.get(k.as_str()).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(format!("keys the schema does not have: {unknown:?}"));
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap_or_default();
        if body
            .get(name)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!("[{name}]: Required"));
        }
    }
    Ok(body.clone())
}

/// `values` as an object of the response schema: every key the schema has, no other.
fn shaped(schema_text: &str, values: Value) -> Value {
    let schema = schema(schema_text);
    let properties = schema["properties"].as_object().expect("properties");
    let values = values.as_object().cloned().unwrap_or_default();
    for key in values.keys() {
        assert!(
            properties.contains_key(key),
            "the fake answers `{key}`, which the schema lacks"
        );
    }
    properties
        .keys()
        .map(|k| (k.clone(), values.get(k).cloned().unwrap_or(Value::Null)))
        .collect::<Map<_, _>>()
        .into()
}

fn user_json(login: &str, id: i64) -> Value {
    json!({"id": id, "login": login, "login_name": "", "full_name": "", "email": format!("{login}@noreply.gitea.example.com"), "username": login})
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
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if authorization.as_deref() != Some(&format!("token {TOKEN}")) {
        return answer(401, json!({"message": "user does not exist", "url": ""}));
    }
    if let Some((status, text)) = forge.tricks.pop_front() {
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text,
        )
            .into_response();
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let Some(path) = uri.path().strip_prefix(BASE_PATH) else {
        return not_found();
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["user"]) => match &forge.user {
            Some((login, id)) => answer(200, user_json(login, *id)),
            None => answer(
                403,
                json!({"message": "token does not have at least one of required scope(s): [read:user]", "url": ""}),
            ),
        },
        (_, ["repos", owner, name, rest @ ..]) if [*owner, *name] == [OWNER, REPO] => {
            repository(forge, &method, rest, parsed.as_ref(), &uri)
        }
        _ => not_found(),
    }
}

fn repository(
    forge: &mut Forge,
    method: &Method,
    rest: &[&str],
    body: Option<&Value>,
    uri: &Uri,
) -> Response {
    let number = |text: &str| text.parse::<u64>().ok();
    match (method.as_str(), rest) {
        ("POST", ["statuses", sha]) => create_status(forge, sha, body),
        ("GET", ["issues", n, "comments"]) => match number(n) {
            Some(n) => {
                let all: Vec<Value> = forge.comments_on(n).into_iter().map(comment_json).collect();
                answer(200, Value::Array(all))
            }
            None => not_found(),
        },
        ("POST", ["issues", n, "comments"]) => match number(n) {
            Some(n) => create_comment(forge, n, body),
            None => not_found(),
        },
        ("PATCH", ["issues", "comments", id]) => match number(id) {
            Some(id) => edit_comment(forge, id, body),
            None => not_found(),
        },
        ("GET", ["commits", sha, "pull"]) => {
            match forge
                .pulls
                .iter()
                .find(|p| p.merged_as.as_deref() == Some(*sha))
            {
                Some(p) => answer(200, pull_json(p)),
                None => not_found(),
            }
        }
        ("GET", ["pulls"]) => open_pulls(forge, uri),
        ("GET", ["pulls", n, "reviews"]) => match number(n) {
            Some(n) => reviews_of(forge, n, uri),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn create_status(forge: &mut Forge, sha: &str, body: Option<&Value>) -> Response {
    let body = match against(body, CREATE_STATUS) {
        Ok(body) => body,
        Err(what) => return invalid(forge, format!("status: {what}")),
    };
    let state = body
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !STATES.contains(&state) {
        return invalid(forge, format!("status state `{state}`"));
    }
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return not_found();
    }
    forge
        .statuses
        .push((sha.to_owned(), Value::Object(body.clone())));
    let id = forge.statuses.len();
    let (login, user_id) = forge.commenter.clone();
    answer(
        201,
        shaped(
            COMMIT_STATUS,
            json!({
                "id": id,
                "status": state,
                "target_url": body.get("target_url").cloned().unwrap_or(json!("")),
                "description": body.get("description").cloned().unwrap_or(json!("")),
                "url": format!("https://gitea.example.com/api/v1/repos/{OWNER}/{REPO}/statuses/{sha}"),
                "context": body.get("context").cloned().unwrap_or(json!("default")),
                "creator": user_json(&login, user_id),
                "created_at": "2026-12-01T10:00:00Z",
                "updated_at": "2026-12-01T10:00:00Z",
            }),
        ),
    )
}

fn comment_json(c: &Comment) -> Value {
    shaped(
        COMMENT,
        json!({
            "id": c.id,
            "html_url": format!("https://gitea.example.com/{OWNER}/{REPO}/pulls/{}#issuecomment-{}", c.issue, c.id),
            "pull_request_url": format!("https://gitea.example.com/{OWNER}/{REPO}/pulls/{}", c.issue),
            "issue_url": "",
            "user": user_json(&c.login, c.user_id),
            "original_author": "",
            "original_author_id": 0,
            "body": c.body,
            "assets": [],
            "created_at": "2026-12-01T10:00:00Z",
            "updated_at": "2026-12-01T10:00:00Z",
        }),
    )
}

fn create_comment(forge: &mut Forge, issue: u64, body: Option<&Value>) -> Response {
    let body = match against(body, CREATE_COMMENT) {
        Ok(body) => body,
        Err(what) => return invalid(forge, format!("comment: {what}")),
    };
    let text = body["body"].as_str().unwrap_or_default().to_owned();
    let (login, user_id) = forge.commenter.clone();
    let id = forge.add_comment(issue, &login, user_id, &text);
    let comment = forge.comments.iter().find(|c| c.id == id).cloned();
    answer(201, comment.map(|c| comment_json(&c)).unwrap_or_default())
}

fn edit_comment(forge: &mut Forge, id: u64, body: Option<&Value>) -> Response {
    // `EditIssueCommentOption` is `CreateIssueCommentOption`'s shape: `body`, required.
    let body = match against(body, CREATE_COMMENT) {
        Ok(body) => body,
        Err(what) => return invalid(forge, format!("comment edit: {what}")),
    };
    let Some(comment) = forge.comments.iter_mut().find(|c| c.id == id) else {
        return not_found();
    };
    comment.body = body["body"].as_str().unwrap_or_default().to_owned();
    comment.edits += 1;
    let comment = comment.clone();
    answer(200, comment_json(&comment))
}

fn pull_json(p: &Pull) -> Value {
    json!({
        "id": 9000 + p.number,
        "number": p.number,
        "user": user_json(&p.author, 7),
        "state": if p.merged_as.is_some() { "closed" } else { "open" },
        "head": {"ref": "change", "sha": p.head},
        "base": {"ref": "main", "sha": "0".repeat(40)},
        "merged": p.merged_as.is_some(),
        "merged_at": p.merged_as.as_ref().map(|_| "2026-11-27T10:00:00Z"),
        "merge_commit_sha": p.merged_as,
        "html_url": format!("https://gitea.example.com/{OWNER}/{REPO}/pulls/{}", p.number),
    })
}

/// `page` (from 1) and `limit` (at most [`MAX_LIMIT`]) of a listing's query.
fn paging(forge: &mut Forge, uri: &Uri) -> Option<(usize, usize)> {
    let query = super::query(uri);
    if let Some((name, _)) = query.iter().find(|(k, _)| k == "per_page") {
        forge
            .violations
            .push(format!("`{name}` is GitHub's; Gitea pages with `limit`"));
        return None;
    }
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    Some((
        get("page").unwrap_or(1).max(1),
        get("limit").unwrap_or(30).clamp(1, MAX_LIMIT),
    ))
}

fn open_pulls(forge: &mut Forge, uri: &Uri) -> Response {
    let Some((page, limit)) = paging(forge, uri) else {
        return answer(422, json!({"message": "bad paging"}));
    };
    let shown: Vec<Value> = forge
        .pulls
        .iter()
        .filter(|p| p.merged_as.is_none())
        .skip((page - 1) * limit)
        .take(limit)
        .map(pull_json)
        .collect();
    answer(200, Value::Array(shown))
}

fn reviews_of(forge: &mut Forge, number: u64, uri: &Uri) -> Response {
    let Some((page, limit)) = paging(forge, uri) else {
        return answer(422, json!({"message": "bad paging"}));
    };
    let reviews: Vec<Value> = forge
        .reviews
        .get(&number)
        .into_iter()
        .flatten()
        .enumerate()
        .skip((page - 1) * limit)
        .take(limit)
        .map(|(n, r)| {
            json!({
                "id": 80 + n,
                "user": user_json(&r.login, 100 + n as i64),
                "team": null,
                "state": r.state,
                "body": "",
                "commit_id": r.commit,
                "stale": false,
                "official": true,
                "dismissed": r.dismissed,
                "comments_count": 0,
                "submitted_at": "2026-11-30T10:00:00Z",
                "updated_at": "2026-11-30T10:00:00Z",
                "html_url": format!("https://gitea.example.com/{OWNER}/{REPO}/pulls/{number}#issuecomment-{}", 80 + n),
                "pull_request_url": format!("https://gitea.example.com/{OWNER}/{REPO}/pulls/{number}"),
            })
        })
        .collect();
    answer(200, Value::Array(reviews))
}
