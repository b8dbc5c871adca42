//! A stand-in for GitLab's REST API v4 on loopback: commit statuses (with GitLab's refusal
//! of a transition to the state a status is in), merge request notes (list with `Link`
//! pagination, create, update), the merge requests of a commit, approvals and `GET /user`.
//!
//! Answers are the documented examples of `tests/fixtures/forges/gitlab/` with the fake's
//! values put in. A request with a parameter the documentation does not list, a state
//! outside the enum, a description over 255 characters or a note over 1,000,000 is answered
//! 400 and kept in `violations`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::Server;

pub const PROJECT_ID: u64 = 1234;
pub const PROJECT_PATH: &str = "ops/pki";
pub const TOKEN: &str = "glpat-fake-token-0123456789";
/// The project access token's bot user.
pub const BOT: &str = "project_1234_bot_0a1b";

const STATUS_ANSWER: &str =
    include_str!("../fixtures/forges/gitlab/set-commit-status.response-201.json");
const NOTE_ANSWER: &str = include_str!("../fixtures/forges/gitlab/get-mr-note.response-200.json");
const MRS_ANSWER: &str =
    include_str!("../fixtures/forges/gitlab/list-mrs-for-commit.response-200.json");
const APPROVALS_ANSWER: &str =
    include_str!("../fixtures/forges/gitlab/get-mr-approvals.response-200.json");

/// The parameters `POST /projects/:id/statuses/:sha` documents.
const STATUS_PARAMETERS: [&str; 9] = [
    "state",
    "ref",
    "name",
    "context",
    "target_url",
    "description",
    "coverage",
    "pipeline_id",
    "id",
];
const STATES: [&str; 6] = [
    "pending", "running", "success", "failed", "canceled", "skipped",
];

#[derive(Debug, Clone)]
pub struct Note {
    pub id: u64,
    pub iid: u64,
    pub body: String,
    pub username: String,
    pub bot: bool,
    pub system: bool,
    pub edits: u32,
}

#[derive(Debug, Clone)]
pub struct MergeRequest {
    pub iid: u64,
    pub author: String,
    pub head: String,
    pub merged_as: Option<String>,
    /// Usernames of the approvals in force, with when.
    pub approved_by: Vec<(String, String)>,
}

#[derive(Default)]
pub struct Forge {
    /// The token's username for `GET /user`; `None` answers 403.
    pub username: Option<String>,
    /// (sha, name) → the status.
    pub statuses: BTreeMap<(String, String), Value>,
    pub notes: Vec<Note>,
    pub merge_requests: Vec<MergeRequest>,
    pub requests: Vec<(String, String)>,
    pub violations: Vec<String>,
    next_id: u64,
}

impl Forge {
    pub fn status_of(&self, sha: &str, name: &str) -> Option<&Value> {
        self.statuses.get(&(sha.to_owned(), name.to_owned()))
    }

    pub fn notes_on(&self, iid: u64) -> Vec<&Note> {
        self.notes
            .iter()
            .filter(|n| n.iid == iid && !n.system)
            .collect()
    }

    pub fn add_note(&mut self, iid: u64, username: &str, bot: bool, body: &str) -> u64 {
        self.next_id += 1;
        self.notes.push(Note {
            id: self.next_id,
            iid,
            body: body.to_owned(),
            username: username.to_owned(),
            bot,
            system: false,
            edits: 0,
        });
        self.next_id
    }
}

pub struct GitLab {
    pub server: Server,
    pub forge: Arc<Mutex<Forge>>,
}

impl GitLab {
    pub async fn start() -> GitLab {
        let forge = Arc::new(Mutex::new(Forge {
            username: Some(BOT.to_owned()),
            next_id: 300,
            ..Forge::default()
        }));
        let router = axum::Router::new()
            .fallback(serve)
            .with_state(forge.clone());
        GitLab {
            server: Server::start(router).await,
            forge,
        }
    }

    /// `CI_API_V4_URL` for this fake.
    pub fn api_url(&self) -> String {
        format!("{}/api/v4", self.server.url())
    }

    pub fn state(&self) -> MutexGuard<'_, Forge> {
        self.forge.lock().expect("the fake's state")
    }
}

fn answer(status: u16, body: Value) -> Response {
    super::json_answer(status, "application/json", &body)
}

fn refused(forge: &mut Forge, what: String) -> Response {
    forge.violations.push(what.clone());
    answer(400, json!({"message": what}))
}

fn example(text: &str) -> Value {
    serde_json::from_str(text).expect("a documented example")
}

/// The request's parameters: the query's and a JSON or form body's, as Grape merges them.
fn parameters(uri: &Uri, body: &[u8]) -> Map<String, Value> {
    let mut all: Map<String, Value> = super::query(uri)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => all.extend(object),
        _ => all.extend(
            super::form(body)
                .into_iter()
                .map(|(k, v)| (k, Value::String(v))),
        ),
    }
    all
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
    forge.requests.push((method.to_string(), uri.to_string()));
    if headers.get("private-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return answer(401, json!({"message": "401 Unauthorized"}));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let Some(path) = uri.path().strip_prefix("/api/v4/") else {
        return answer(404, json!({"message": "404 Not Found"}));
    };
    let params = parameters(&uri, &body);
    let parts: Vec<&str> = path.split('/').collect();
    let project = |id: &str| {
        id == PROJECT_ID.to_string()
            || percent_encoding::percent_decode_str(id).decode_utf8_lossy() == PROJECT_PATH
    };
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["user"]) => match &forge.username {
            Some(username) => answer(200, json!({"id": 99, "username": username, "bot": true})),
            None => answer(403, json!({"message": "403 Forbidden"})),
        },
        (_, ["projects", id, rest @ ..]) if project(id) => {
            in_project(forge, &method, rest, &params, &uri, &host)
        }
        _ => answer(404, json!({"message": "404 Project Not Found"})),
    }
}

fn in_project(
    forge: &mut Forge,
    method: &Method,
    rest: &[&str],
    params: &Map<String, Value>,
    uri: &Uri,
    host: &str,
) -> Response {
    let number = |text: &str| text.parse::<u64>().ok();
    match (method.as_str(), rest) {
        ("POST", ["statuses", sha]) => set_status(forge, sha, params),
        ("GET", ["merge_requests", iid, "notes"]) => match number(iid) {
            Some(iid) => list_notes(forge, iid, uri, host),
            None => answer(404, json!({"message": "404 Not found"})),
        },
        ("POST", ["merge_requests", iid, "notes"]) => match number(iid) {
            Some(iid) => create_note(forge, iid, params),
            None => answer(404, json!({"message": "404 Not found"})),
        },
        ("PUT", ["merge_requests", iid, "notes", id]) => match (number(iid), number(id)) {
            (Some(iid), Some(id)) => update_note(forge, iid, id, params),
            _ => answer(404, json!({"message": "404 Not found"})),
        },
        ("GET", ["repository", "commits", sha, "merge_requests"]) => merge_requests_of(forge, sha),
        ("GET", ["merge_requests", iid, "approvals"]) => match number(iid) {
            Some(iid) => approvals_of(forge, iid),
            None => answer(404, json!({"message": "404 Not found"})),
        },
        _ => answer(404, json!({"message": "404 Not found"})),
    }
}

fn set_status(forge: &mut Forge, sha: &str, params: &Map<String, Value>) -> Response {
    let unknown: Vec<&String> = params
        .keys()
        .filter(|k| !STATUS_PARAMETERS.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        return refused(
            forge,
            format!("status parameters not documented: {unknown:?}"),
        );
    }
    let state = params
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !STATES.contains(&state.as_str()) {
        return refused(forge, format!("status state `{state}`"));
    }
    for key in ["description", "target_url", "name"] {
        if params
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|v| v.chars().count() > 255)
        {
            return refused(
                forge,
                format!("{key} is too long (maximum is 255 characters)"),
            );
        }
    }
    let name = params
        .get("name")
        .or(params.get("context"))
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    let key = (sha.to_owned(), name.clone());
    if forge
        .statuses
        .get(&key)
        .is_some_and(|s| s["status"] == state.as_str())
    {
        // GitLab's state machine has no transition from a state to itself; not a violation.
        let event = match state.as_str() {
            "pending" => "enqueue",
            "running" => "run",
            "success" => "succeed",
            "failed" => "drop",
            _ => "cancel",
        };
        return answer(
            400,
            json!({"message": format!("Cannot transition status via :{event} from :{state} (Reason(s): Status cannot transition via \"{event}\")")}),
        );
    }
    let mut status = example(STATUS_ANSWER);
    status["sha"] = json!(sha);
    status["status"] = json!(state);
    status["name"] = json!(name);
    status["description"] = params.get("description").cloned().unwrap_or(Value::Null);
    status["target_url"] = params.get("target_url").cloned().unwrap_or(Value::Null);
    forge.statuses.insert(key, status.clone());
    answer(201, status)
}

fn note_json(note: &Note) -> Value {
    let mut value = example(NOTE_ANSWER);
    value["id"] = json!(note.id);
    value["body"] = json!(note.body);
    value["author"]["username"] = json!(note.username);
    value["author"]["bot"] = json!(note.bot);
    value["system"] = json!(note.system);
    value["noteable_iid"] = json!(note.iid);
    value
}

fn list_notes(forge: &mut Forge, iid: u64, uri: &Uri, host: &str) -> Response {
    let query = super::query(uri);
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let per_page = get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let page = get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let mut all: Vec<&Note> = forge.notes.iter().filter(|n| n.iid == iid).collect();
    // GitLab's default order is newest first.
    if get("sort").as_deref() != Some("asc") {
        all.reverse();
    }
    let shown: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|n| note_json(n))
        .collect();
    let mut response = answer(200, Value::Array(shown));
    if page * per_page < all.len() {
        let link = format!(
            "<http://{host}/api/v4/projects/{PROJECT_ID}/merge_requests/{iid}/notes?per_page={per_page}&page={}&sort=asc>; rel=\"next\"",
            page + 1
        );
        response
            .headers_mut()
            .insert(header::LINK, link.parse().expect("a header value"));
    }
    response
}

fn checked_body(params: &Map<String, Value>) -> Result<String, String> {
    let unknown: Vec<&String> = params
        .keys()
        .filter(|k| !["body", "internal", "merge_request_diff_head_sha"].contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(format!("note parameters not documented: {unknown:?}"));
    }
    let body = params
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if body.is_empty() || body.chars().count() > 1_000_000 {
        return Err("body is missing or too long".to_owned());
    }
    Ok(body.to_owned())
}

fn create_note(forge: &mut Forge, iid: u64, params: &Map<String, Value>) -> Response {
    let body = match checked_body(params) {
        Ok(body) => body,
        Err(what) => return refused(forge, what),
    };
    let id = forge.add_note(iid, BOT, true, &body);
    let note = forge.notes.iter().find(|n| n.id == id).cloned();
    answer(201, note.map(|n| note_json(&n)).unwrap_or_default())
}

fn update_note(forge: &mut Forge, iid: u64, id: u64, params: &Map<String, Value>) -> Response {
    let body = match checked_body(params) {
        Ok(body) => body,
        Err(what) => return refused(forge, what),
    };
    let Some(note) = forge.notes.iter_mut().find(|n| n.id == id && n.iid == iid) else {
        return answer(404, json!({"message": "404 Note Not Found"}));
    };
    if note.username != BOT {
        let who = note.username.clone();
        forge.violations.push(format!("edited note {id} of {who}"));
        return answer(403, json!({"message": "403 Forbidden"}));
    }
    note.body = body;
    note.edits += 1;
    let note = note.clone();
    answer(200, note_json(&note))
}

fn merge_requests_of(forge: &mut Forge, sha: &str) -> Response {
    let found: Vec<Value> = forge
        .merge_requests
        .iter()
        .filter(|m| m.head == sha || m.merged_as.as_deref() == Some(sha))
        .map(|m| {
            let mut value = example(MRS_ANSWER)[0].clone();
            value["iid"] = json!(m.iid);
            value["author"]["username"] = json!(m.author);
            value["sha"] = json!(m.head);
            value["target_branch"] = json!("main");
            value["state"] = json!(if m.merged_as.is_some() {
                "merged"
            } else {
                "opened"
            });
            value["merge_commit_sha"] = json!(m.merged_as);
            value["web_url"] = json!(format!(
                "https://gitlab.example.com/{PROJECT_PATH}/-/merge_requests/{}",
                m.iid
            ));
            value
        })
        .collect();
    answer(200, Value::Array(found))
}

fn approvals_of(forge: &mut Forge, iid: u64) -> Response {
    let Some(request) = forge.merge_requests.iter().find(|m| m.iid == iid) else {
        return answer(404, json!({"message": "404 Not found"}));
    };
    let mut value = example(APPROVALS_ANSWER);
    let template = value["approved_by"][0].clone();
    value["iid"] = json!(iid);
    value["approved_by"] = Value::Array(
        request
            .approved_by
            .iter()
            .map(|(username, at)| {
                let mut approver = template.clone();
                approver["user"]["username"] = json!(username);
                approver["approved_at"] = json!(at);
                approver
            })
            .collect(),
    );
    answer(200, value)
}
