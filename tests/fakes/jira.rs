//! A stand-in for Jira on loopback (no Jira runs here): Cloud's REST API v3 or Data Center's
//! v2, as API.md §6 and the OpenAPI examples in `tests/fixtures/jira/` document them.
//!
//! It keeps issues in memory (`SEC-1`, `SEC-2`... with their fields, status, resolution,
//! assignee, labels and comments), serves the create screen of its issue types (fields that
//! may be required), a workflow — To Do → In Progress → Done through transitions named
//! `Start`, `Done` (whose screen asks for a resolution), `Stop progress`, `Reopen` and `Back
//! to progress` — and JQL search in exactly the forms gitward sends. Every request is logged;
//! one whose shape is not the documented one (keys not in the examples, a description that
//! is not a document, a field not on the screen, a required field missing...) is answered
//! 400 as Jira does, and its errors are kept, so a test expecting success fails on it.
//! Tricks make the next request answer otherwise: a status, an answer cut off after the
//! issue was made, a rewritten answer, an endless one.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Server;

pub const PROJECT: &str = "SEC";
pub const PROJECT_ID: &str = "10000";
pub const BUG: &str = "10004";
pub const PRIORITIES: [&str; 5] = ["Highest", "High", "Medium", "Low", "Lowest"];
pub const RESOLUTIONS: [&str; 3] = ["Done", "Won't Fix", "Duplicate"];

const CREATE_EXAMPLE: &str = include_str!("../fixtures/jira/create-issue.request.json");
const TRANSITION_EXAMPLE: &str = include_str!("../fixtures/jira/do-transition.request.json");

/// Where an issue stands in the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    ToDo,
    InProgress,
    Done,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::ToDo => "To Do",
            Status::InProgress => "In Progress",
            Status::Done => "Done",
        }
    }

    fn json(self, base: &str) -> Value {
        let (id, category, category_id, color) = match self {
            Status::ToDo => ("10000", "new", 2, "blue-gray"),
            Status::InProgress => ("3", "indeterminate", 4, "yellow"),
            Status::Done => ("10001", "done", 3, "green"),
        };
        json!({
            "self": format!("{base}/rest/api/3/status/{id}"),
            "description": "",
            "iconUrl": format!("{base}/images/icons/statuses/generic.png"),
            "name": self.name(),
            "id": id,
            "statusCategory": {
                "self": format!("{base}/rest/api/3/statuscategory/{category_id}"),
                "id": category_id,
                "key": category,
                "colorName": color,
                "name": match self { Status::ToDo => "To Do", Status::InProgress => "In Progress", Status::Done => "Done" },
            },
        })
    }

    /// The transitions out of it: (id, name, target).
    pub fn transitions(self) -> Vec<(&'static str, &'static str, Status)> {
        match self {
            Status::ToDo => vec![
                ("21", "Start", Status::InProgress),
                ("31", "Done", Status::Done),
            ],
            Status::InProgress => vec![
                ("11", "Stop progress", Status::ToDo),
                ("31", "Done", Status::Done),
            ],
            Status::Done => vec![
                ("51", "Back to progress", Status::InProgress),
                ("41", "Reopen", Status::ToDo),
            ],
        }
    }
}

/// A field of the create (and edit) screen.
#[derive(Debug, Clone)]
pub struct Field {
    pub id: String,
    pub name: String,
    pub required: bool,
    pub has_default: bool,
}

fn field(id: &str, name: &str, required: bool) -> Field {
    Field {
        id: id.to_owned(),
        name: name.to_owned(),
        required,
        has_default: false,
    }
}

#[derive(Debug, Clone)]
pub struct Issue {
    pub id: u64,
    pub key: String,
    /// The fields it was created with, as sent.
    pub fields: Map<String, Value>,
    pub status: Status,
    pub resolution: Option<String>,
    pub assignee: Option<String>,
    pub labels: Vec<String>,
    pub priority: Option<String>,
    /// Comment bodies, as sent.
    pub comments: Vec<Value>,
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Without the site's context path.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The body, parsed (`Null` when empty, a string when not JSON).
    pub body: Value,
}

/// What the next request gets instead of the usual answer.
pub enum Trick {
    /// This answer, without processing the request.
    Answer {
        status: u16,
        body: String,
        retry_after: Option<u64>,
    },
    /// Processed, then the answer is cut off after a few bytes (the connection drops).
    Cut,
    /// Processed, then the JSON answer is rewritten.
    Rewrite(fn(Value) -> Value),
    /// `prefix`, `unit` `count` times, `suffix`: an endless answer, made as it is read.
    Endless {
        prefix: String,
        unit: String,
        count: usize,
        suffix: String,
    },
    /// An error answer that quotes the request's `Authorization` header.
    EchoAuthorization(u16),
}

pub struct JiraState {
    /// `"3"` (Cloud) or `"2"` (Data Center).
    pub version: &'static str,
    /// The site's context path (`/jira`), or empty.
    pub prefix: String,
    pub base: String,
    pub authorization: String,
    pub issue_types: Vec<(String, String)>,
    pub fields: Vec<Field>,
    /// Most items of a create-screen page, and of a search page.
    pub meta_page: usize,
    pub search_page: usize,
    pub issues: Vec<Issue>,
    pub log: Vec<Request>,
    /// Errors of requests answered 400 for their shape.
    pub invalid: Vec<String>,
    pub tricks: VecDeque<Trick>,
    /// Search answers carry these issues too, whatever the query.
    pub foreign: Vec<Issue>,
}

pub type Shared = Arc<Mutex<JiraState>>;

pub struct FakeJira {
    /// Held for its drop, which stops the server.
    _server: Server,
    pub state: Shared,
}

impl FakeJira {
    /// Jira Cloud, answering requests carrying `authorization`.
    pub async fn cloud(authorization: &str) -> FakeJira {
        FakeJira::start("3", "", authorization).await
    }

    /// Jira Data Center under the context path `prefix`.
    pub async fn data_center(prefix: &str, authorization: &str) -> FakeJira {
        FakeJira::start("2", prefix, authorization).await
    }

    async fn start(version: &'static str, prefix: &str, authorization: &str) -> FakeJira {
        let state = Arc::new(Mutex::new(JiraState {
            version,
            prefix: prefix.to_owned(),
            base: String::new(),
            authorization: authorization.to_owned(),
            issue_types: vec![
                ("10001".into(), "Task".into()),
                (BUG.into(), "Bug".into()),
                ("10002".into(), "Story".into()),
            ],
            fields: vec![
                field("summary", "Summary", true),
                field("issuetype", "Issue Type", true),
                field("project", "Project", true),
                field("description", "Description", false),
                field("labels", "Labels", false),
                field("priority", "Priority", false),
                field("duedate", "Due date", false),
                Field {
                    has_default: true,
                    ..field("reporter", "Reporter", true)
                },
                field("customfield_10010", "Resource", false),
                field("components", "Components", false),
            ],
            meta_page: 3,
            search_page: 100,
            issues: Vec::new(),
            log: Vec::new(),
            invalid: Vec::new(),
            tricks: VecDeque::new(),
            foreign: Vec::new(),
        }));
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let server = Server::start(router).await;
        state.lock().unwrap().base = format!("{}{prefix}", server.url());
        FakeJira {
            _server: server,
            state,
        }
    }

    /// The site's URL, as the endpoint names it.
    pub fn url(&self) -> String {
        self.state().base.clone()
    }

    pub fn state(&self) -> MutexGuard<'_, JiraState> {
        self.state.lock().unwrap()
    }

    pub fn then(&self, trick: Trick) {
        self.state().tricks.push_back(trick);
    }

    pub fn log(&self) -> Vec<Request> {
        self.state().log.clone()
    }

    /// `METHOD path` of each request.
    pub fn calls(&self) -> Vec<String> {
        self.log()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    pub fn invalid(&self) -> Vec<String> {
        self.state().invalid.clone()
    }

    pub fn issues(&self) -> Vec<Issue> {
        self.state().issues.clone()
    }

    pub fn issue(&self, key: &str) -> Issue {
        self.issues()
            .into_iter()
            .find(|i| i.key == key)
            .expect("the issue")
    }

    /// The project's admin makes a field of the create screen required, or adds one.
    pub fn require(&self, id: &str, name: &str, has_default: bool) {
        let mut state = self.state();
        state.fields.retain(|f| f.id != id);
        state.fields.push(Field {
            has_default,
            ..field(id, name, true)
        });
    }

    /// The project's admin takes a field off the create screen.
    pub fn remove_field(&self, id: &str) {
        self.state().fields.retain(|f| f.id != id);
    }

    /// Issues made directly (not through the API), like `create` would.
    pub fn seed(&self, count: usize, labels: &[&str]) -> Vec<Issue> {
        let mut state = self.state();
        (0..count)
            .map(|_| {
                let issue = state.new_issue(
                    Map::new(),
                    labels.iter().map(|l| l.to_string()).collect(),
                    None,
                );
                state.issues.push(issue.clone());
                issue
            })
            .collect()
    }

    /// A person moves the issue to Done with `resolution`.
    pub fn person_closes(&self, key: &str, resolution: &str) {
        self.with_issue(key, |issue| {
            issue.status = Status::Done;
            issue.resolution = Some(resolution.to_owned());
        });
    }

    pub fn person_moves(&self, key: &str, status: Status) {
        self.with_issue(key, |issue| {
            issue.status = status;
            if status != Status::Done {
                issue.resolution = None;
            }
        });
    }

    pub fn assign(&self, key: &str, name: &str) {
        self.with_issue(key, |issue| issue.assignee = Some(name.to_owned()));
    }

    pub fn delete(&self, key: &str) {
        self.state().issues.retain(|i| i.key != key);
    }

    fn with_issue(&self, key: &str, change: impl FnOnce(&mut Issue)) {
        let mut state = self.state();
        let issue = state
            .issues
            .iter_mut()
            .find(|i| i.key == key)
            .expect("the issue");
        change(issue);
    }
}

impl JiraState {
    fn new_issue(
        &self,
        fields: Map<String, Value>,
        labels: Vec<String>,
        priority: Option<String>,
    ) -> Issue {
        let n = self.issues.len() as u64 + 1;
        Issue {
            id: 10_000 + n,
            key: format!("{PROJECT}-{n}"),
            fields,
            status: Status::ToDo,
            resolution: None,
            assignee: None,
            labels,
            priority,
            comments: Vec::new(),
        }
    }

    fn find_issue(&mut self, id_or_key: &str) -> Option<&mut Issue> {
        self.issues
            .iter_mut()
            .find(|i| i.id.to_string() == id_or_key || i.key == id_or_key)
    }

    fn refuse(&mut self, errors: Vec<String>, by_field: Map<String, Value>) -> Response {
        self.invalid.extend(errors.iter().cloned());
        self.invalid
            .extend(by_field.iter().map(|(k, v)| format!("{k}: {v}")));
        answer(
            StatusCode::BAD_REQUEST,
            json!({"errorMessages": errors, "errors": by_field}),
        )
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn not_found(what: &str) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        json!({"errorMessages": [format!("{what} does not exist or you do not have permission to see it.")], "errors": {}}),
    )
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let (response, trick) = {
        let mut state = state.lock().unwrap();
        respond(&mut state, &method, &uri, &headers, parsed)
    };
    match trick {
        Some(Trick::Cut) => {
            let status = response.status();
            let cut = Cut {
                first: Some(Bytes::from_static(b"{\"id\":\"100")),
            };
            (status, Body::new(cut)).into_response()
        }
        Some(Trick::Rewrite(rewrite)) => {
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let value: Value = serde_json::from_slice(&bytes).unwrap();
            answer(status, rewrite(value))
        }
        _ => response,
    }
}

/// The answer to a request, and the trick still to play on it.
fn respond(
    state: &mut JiraState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    parsed: Value,
) -> (Response, Option<Trick>) {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let path = uri
        .path()
        .strip_prefix(state.prefix.as_str())
        .unwrap_or("/unprefixed")
        .to_owned();
    let request = Request {
        method: method.to_string(),
        path,
        query: super::query(uri),
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        body: parsed,
    };
    state.log.push(request.clone());
    let trick = state.tricks.pop_front();
    match trick {
        Some(Trick::Answer {
            status,
            body,
            retry_after,
        }) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            return (response, None);
        }
        Some(Trick::Endless {
            prefix,
            unit,
            count,
            suffix,
        }) => {
            let body = Repeated {
                prefix: Some(Bytes::from(prefix)),
                unit: Bytes::from(unit),
                left: count,
                suffix: Some(Bytes::from(suffix)),
            };
            return ((StatusCode::OK, Body::new(body)).into_response(), None);
        }
        Some(Trick::EchoAuthorization(status)) => {
            let echoed = request.authorization.clone().unwrap_or_default();
            return (
                answer(
                    StatusCode::from_u16(status).unwrap(),
                    json!({"errorMessages": [format!("bad credential: {echoed}")], "errors": {}}),
                ),
                None,
            );
        }
        _ => {}
    }
    (route(state, &request), trick)
}

fn route(state: &mut JiraState, request: &Request) -> Response {
    if request.authorization.as_deref() != Some(state.authorization.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            "Client must be authenticated to access this resource.",
        )
            .into_response();
    }
    let version = state.version;
    let Some(rest) = request
        .path
        .strip_prefix("/rest/api/")
        .and_then(|r| r.strip_prefix(version))
        .and_then(|r| r.strip_prefix('/'))
    else {
        return not_found("The resource");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match (request.method.as_str(), parts.as_slice()) {
        ("GET", ["issue", "createmeta", project, "issuetypes"]) => {
            issue_types(state, project, &request.query)
        }
        ("GET", ["issue", "createmeta", project, "issuetypes", id]) => {
            screen_fields(state, project, id, &request.query)
        }
        ("POST", ["issue"]) => create(state, &request.body),
        ("PUT", ["issue", id]) => edit(state, id, &request.body),
        ("GET", ["issue", id, "transitions"]) => transitions(state, id, &request.query),
        ("POST", ["issue", id, "transitions"]) => transition(state, id, &request.body),
        ("POST", ["search", "jql"]) if version == "3" => search(state, &request.body),
        ("POST", ["search"]) if version == "2" => search(state, &request.body),
        (_, ["search"]) => answer(
            StatusCode::GONE,
            json!({"errorMessages": ["The requested API has been removed. Please migrate to the /rest/api/3/search/jql API."], "errors": {}}),
        ),
        _ => not_found("The resource"),
    }
}

/// `startAt` and `maxResults` of a create-screen listing, capped by the fake's page.
fn page_of(state: &JiraState, query: &[(String, String)]) -> (usize, usize) {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    (
        get("startAt").unwrap_or(0),
        get("maxResults").unwrap_or(50).min(state.meta_page),
    )
}

/// A page of `items`: Cloud's shape (`key`), or Data Center's (`values`).
fn meta_page(
    state: &JiraState,
    key: &str,
    items: Vec<Value>,
    query: &[(String, String)],
) -> Response {
    let (start, size) = page_of(state, query);
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    let mut body = json!({"maxResults": size, "startAt": start, "total": total});
    if state.version == "2" {
        body["values"] = json!(page);
        body["isLast"] = json!(start + size >= total);
    } else {
        body[key] = json!(page);
    }
    answer(StatusCode::OK, body)
}

fn issue_types(state: &mut JiraState, project: &str, query: &[(String, String)]) -> Response {
    if project != PROJECT {
        return not_found(&format!("Project '{project}'"));
    }
    let base = state.base.clone();
    let items = state
        .issue_types
        .iter()
        .map(|(id, name)| {
            json!({
                "self": format!("{base}/rest/api/3/issuetype/{id}"),
                "id": id,
                "description": "",
                "iconUrl": format!("{base}/images/icons/issuetypes/generic.png"),
                "name": name,
                "subtask": false,
            })
        })
        .collect();
    meta_page(state, "issueTypes", items, query)
}

fn screen_fields(
    state: &mut JiraState,
    project: &str,
    id: &str,
    query: &[(String, String)],
) -> Response {
    if project != PROJECT || !state.issue_types.iter().any(|(i, _)| i == id) {
        return not_found("The issue type");
    }
    let items = state
        .fields
        .iter()
        .map(|f| {
            let mut meta = json!({
                "fieldId": f.id,
                "key": f.id,
                "name": f.name,
                "required": f.required,
                "hasDefaultValue": f.has_default,
                "operations": ["set"],
                "schema": {"type": "string"},
            });
            if f.id == "priority" {
                meta["allowedValues"] = json!(
                    PRIORITIES
                        .iter()
                        .enumerate()
                        .map(|(n, p)| json!({"id": (n + 1).to_string(), "name": p}))
                        .collect::<Vec<_>>()
                );
            }
            meta
        })
        .collect();
    meta_page(state, "fields", items, query)
}

/// The keys of `value` that `example` (an object) does not have.
fn unknown_keys(value: &Map<String, Value>, example: &Value) -> Vec<String> {
    value
        .keys()
        .filter(|k| example.get(k.as_str()).is_none())
        .cloned()
        .collect()
}

fn create(state: &mut JiraState, body: &Value) -> Response {
    let example: Value = serde_json::from_str(CREATE_EXAMPLE).unwrap();
    let Some(request) = body.as_object() else {
        return state.refuse(
            vec!["The request body is not a JSON object.".into()],
            Map::new(),
        );
    };
    let mut errors: Vec<String> = unknown_keys(request, &example)
        .into_iter()
        .map(|k| format!("Unrecognized field \"{k}\""))
        .collect();
    let empty = Map::new();
    let fields = request
        .get("fields")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if let Some(update) = request.get("update")
        && update.as_object().is_none_or(|u| !u.is_empty())
    {
        errors.push("update: only an empty object is expected on create".into());
    }
    let mut by_field = Map::new();
    for key in fields.keys() {
        let documented = example["fields"].get(key).is_some() || key.starts_with("customfield_");
        if !documented || !state.fields.iter().any(|f| &f.id == key) {
            by_field.insert(
                key.clone(),
                json!(format!(
                    "Field '{key}' cannot be set. It is not on the appropriate screen, or unknown."
                )),
            );
        }
    }
    check_fields(state, fields, &mut errors, &mut by_field);
    for f in state.fields.iter().filter(|f| f.required && !f.has_default) {
        if !fields.contains_key(&f.id) {
            if f.id == "priority" {
                // The documented answer (create-issue.response-400.json).
                errors.push("Field 'priority' is required".into());
            } else {
                by_field.insert(f.id.clone(), json!(format!("{} is required.", f.name)));
            }
        }
    }
    if !errors.is_empty() || !by_field.is_empty() {
        return state.refuse(errors, by_field);
    }
    let labels = fields["labels"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let priority = fields
        .get("priority")
        .and_then(|p| p["name"].as_str())
        .map(str::to_owned);
    let issue = state.new_issue(fields.clone(), labels, priority);
    let created = json!({
        "id": issue.id.to_string(),
        "key": issue.key,
        "self": format!("{}/rest/api/{}/issue/{}", state.base, state.version, issue.id),
    });
    state.issues.push(issue);
    answer(StatusCode::CREATED, created)
}

/// The values of documented fields, as Jira checks them.
fn check_fields(
    state: &JiraState,
    fields: &Map<String, Value>,
    errors: &mut Vec<String>,
    by_field: &mut Map<String, Value>,
) {
    let mut bad = |key: &str, message: &str| {
        by_field.insert(key.to_owned(), json!(message));
    };
    if let Some(project) = fields.get("project")
        && project != &json!({"key": PROJECT})
        && project != &json!({"id": PROJECT_ID})
    {
        bad("project", "valid project is required");
    }
    if let Some(issuetype) = fields.get("issuetype") {
        let known = state.issue_types.iter().any(|(id, name)| {
            issuetype == &json!({"id": id}) || issuetype == &json!({"name": name})
        });
        if !known {
            bad("issuetype", "valid issue type is required");
        }
    }
    if let Some(summary) = fields.get("summary") {
        match summary.as_str() {
            Some(s) if !s.trim().is_empty() && s.chars().count() <= 255 && !s.contains('\n') => {}
            _ => bad(
                "summary",
                "Summary must be one line of at most 255 characters.",
            ),
        }
    }
    if let Some(description) = fields.get("description") {
        let problems = if state.version == "3" {
            adf_errors(description)
        } else if description.is_string() {
            Vec::new()
        } else {
            vec!["a string is expected".to_owned()]
        };
        if !problems.is_empty() {
            bad(
                "description",
                &format!(
                    "Operation value must be an Atlassian Document: {}",
                    problems.join("; ")
                ),
            );
        }
    }
    if let Some(labels) = fields.get("labels") {
        let fine = labels.as_array().is_some_and(|l| {
            l.iter().all(|v| {
                v.as_str()
                    .is_some_and(|s| !s.is_empty() && !s.contains(char::is_whitespace))
            })
        });
        if !fine {
            bad("labels", "The label 'x' contains spaces which is invalid.");
        }
    }
    if let Some(priority) = fields.get("priority")
        && !priority["name"]
            .as_str()
            .is_some_and(|p| PRIORITIES.contains(&p))
    {
        bad(
            "priority",
            "Specify the Priority (name) in the string format",
        );
    }
    if let Some(due) = fields.get("duedate") {
        let fine = due.as_str().is_some_and(|d| {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok() && d.len() == 10
        });
        if !fine {
            bad("duedate", "Error parsing date string");
        }
    }
    if fields.values().any(Value::is_null) {
        errors.push("a field's value is null".into());
    }
}

/// What is wrong with `doc` as an Atlassian Document Format document (the nodes gitward uses).
pub fn adf_errors(doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    if doc["type"] != "doc" || doc["version"] != 1 {
        errors.push("not {\"type\":\"doc\",\"version\":1}".to_owned());
    }
    match doc["content"].as_array() {
        Some(blocks) => {
            for block in blocks {
                adf_node(block, &["paragraph", "heading", "bulletList"], &mut errors);
            }
        }
        None => errors.push("a doc has content".to_owned()),
    }
    if doc.as_object().is_some_and(|d| {
        d.keys()
            .any(|k| !["type", "version", "content"].contains(&k.as_str()))
    }) {
        errors.push("unknown key in doc".to_owned());
    }
    errors
}

fn adf_node(node: &Value, allowed: &[&str], errors: &mut Vec<String>) {
    let kind = node["type"].as_str().unwrap_or("");
    if !allowed.contains(&kind) {
        errors.push(format!("node `{kind}` is not allowed here"));
        return;
    }
    if let Some(map) = node.as_object() {
        for key in map.keys() {
            if !["type", "content", "text", "marks", "attrs"].contains(&key.as_str()) {
                errors.push(format!("node `{kind}` has key `{key}`"));
            }
        }
    }
    let inline = ["text", "hardBreak"];
    let children = |allowed: &[&str], errors: &mut Vec<String>| match node["content"].as_array() {
        Some(nodes) => nodes.iter().for_each(|n| adf_node(n, allowed, errors)),
        None => errors.push(format!("node `{kind}` has no content")),
    };
    match kind {
        "paragraph" => children(&inline, errors),
        "heading" => {
            if !node["attrs"]["level"]
                .as_u64()
                .is_some_and(|l| (1..=6).contains(&l))
            {
                errors.push("a heading has a level of 1 to 6".to_owned());
            }
            children(&inline, errors);
        }
        "bulletList" => children(&["listItem"], errors),
        "listItem" => children(&["paragraph"], errors),
        "text" => {
            if node["text"].as_str().is_none_or(|t| t.is_empty()) {
                errors.push("a text node has non-empty text".to_owned());
            }
            if let Some(marks) = node.get("marks") {
                let fine = marks.as_array().is_some_and(|m| {
                    m.iter().all(|mark| {
                        mark["type"] == "link"
                            && mark["attrs"]["href"]
                                .as_str()
                                .is_some_and(|h| h.starts_with("http"))
                    })
                });
                if !fine {
                    errors.push("a mark is a link with an href".to_owned());
                }
            }
        }
        _ => {}
    }
}

/// What is wrong with the `update.comment` of a request.
fn comment_errors(version: &str, update: &Value) -> Vec<String> {
    let Some(update) = update.as_object() else {
        return vec!["update is an object".into()];
    };
    let mut errors = Vec::new();
    for (key, operations) in update {
        if key != "comment" {
            errors.push(format!("update of `{key}` is not expected"));
            continue;
        }
        let Some(operations) = operations.as_array() else {
            errors.push("update.comment is a list".into());
            continue;
        };
        for operation in operations {
            let body = &operation["add"]["body"];
            if operation.as_object().is_none_or(|o| o.len() != 1) {
                errors.push("a comment operation is {\"add\": {...}}".into());
            } else if version == "3" {
                errors.extend(adf_errors(body));
            } else if body.as_str().is_none_or(|b| b.is_empty()) {
                errors.push("a comment body is a string".into());
            }
        }
    }
    errors
}

fn comments_of(update: &Value) -> Vec<Value> {
    update["comment"]
        .as_array()
        .map(|ops| ops.iter().map(|op| op["add"]["body"].clone()).collect())
        .unwrap_or_default()
}

fn edit(state: &mut JiraState, id: &str, body: &Value) -> Response {
    let version = state.version;
    if state.find_issue(id).is_none() {
        return not_found("Issue");
    }
    let Some(request) = body.as_object() else {
        return state.refuse(
            vec!["The request body is not a JSON object.".into()],
            Map::new(),
        );
    };
    let mut errors: Vec<String> = request
        .keys()
        .filter(|k| !["fields", "update", "historyMetadata", "properties"].contains(&k.as_str()))
        .map(|k| format!("Unrecognized field \"{k}\""))
        .collect();
    errors.extend(comment_errors(
        version,
        &request.get("update").cloned().unwrap_or(json!({})),
    ));
    let mut by_field = Map::new();
    let empty = Map::new();
    let fields = request
        .get("fields")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for key in fields.keys() {
        if !state.fields.iter().any(|f| &f.id == key) {
            by_field.insert(
                key.clone(),
                json!(format!(
                    "Field '{key}' cannot be set. It is not on the appropriate screen, or unknown."
                )),
            );
        }
    }
    check_fields(state, fields, &mut errors, &mut by_field);
    if !errors.is_empty() || !by_field.is_empty() {
        return state.refuse(errors, by_field);
    }
    let issue = state.find_issue(id).unwrap();
    if let Some(priority) = fields.get("priority").and_then(|p| p["name"].as_str()) {
        issue.priority = Some(priority.to_owned());
    }
    issue.comments.extend(comments_of(&body["update"]));
    StatusCode::NO_CONTENT.into_response()
}

fn transition_json(base: &str, (id, name, to): (&str, &str, Status), with_fields: bool) -> Value {
    let mut transition = json!({
        "id": id,
        "name": name,
        "to": to.json(base),
        "hasScreen": to == Status::Done,
        "isGlobal": false,
        "isInitial": false,
        "isAvailable": true,
        "isConditional": false,
    });
    if with_fields {
        transition["fields"] = if to == Status::Done {
            json!({"resolution": {
                "required": true,
                "schema": {"type": "resolution", "system": "resolution"},
                "name": "Resolution",
                "key": "resolution",
                "hasDefaultValue": false,
                "operations": ["set"],
                "allowedValues": RESOLUTIONS.iter().enumerate().map(|(n, r)| json!({
                    "self": format!("{base}/rest/api/3/resolution/{}", 10_000 + n),
                    "id": (10_000 + n).to_string(),
                    "name": r,
                })).collect::<Vec<_>>(),
            }})
        } else {
            json!({})
        };
    }
    transition
}

fn transitions(state: &mut JiraState, id: &str, query: &[(String, String)]) -> Response {
    let base = state.base.clone();
    let Some(issue) = state.find_issue(id) else {
        return not_found("Issue");
    };
    let with_fields = query
        .iter()
        .any(|(k, v)| k == "expand" && v.split(',').any(|e| e == "transitions.fields"));
    let list: Vec<Value> = issue
        .status
        .transitions()
        .into_iter()
        .map(|t| transition_json(&base, t, with_fields))
        .collect();
    answer(
        StatusCode::OK,
        json!({"expand": "transitions", "transitions": list}),
    )
}

fn transition(state: &mut JiraState, id: &str, body: &Value) -> Response {
    let version = state.version;
    let example: Value = serde_json::from_str(TRANSITION_EXAMPLE).unwrap();
    let Some(status) = state.find_issue(id).map(|i| i.status) else {
        return not_found("Issue");
    };
    let Some(request) = body.as_object() else {
        return state.refuse(
            vec!["The request body is not a JSON object.".into()],
            Map::new(),
        );
    };
    let mut errors: Vec<String> = unknown_keys(request, &example)
        .into_iter()
        .map(|k| format!("Unrecognized field \"{k}\""))
        .collect();
    if request["transition"]
        .as_object()
        .is_none_or(|t| t.len() != 1)
    {
        errors.push("transition is {\"id\": ...}".into());
    }
    let wanted = request["transition"]["id"].as_str().unwrap_or("");
    let Some((_, name, to)) = status
        .transitions()
        .into_iter()
        .find(|(i, _, _)| *i == wanted)
    else {
        return state.refuse(
            vec![format!(
                "Transition id '{wanted}' is not valid for this issue."
            )],
            Map::new(),
        );
    };
    errors.extend(comment_errors(
        version,
        &request.get("update").cloned().unwrap_or(json!({})),
    ));
    let mut by_field = Map::new();
    let empty = Map::new();
    let fields = request
        .get("fields")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for key in fields.keys() {
        if !(to == Status::Done && key == "resolution") {
            by_field.insert(
                key.clone(),
                json!(format!(
                    "Field '{key}' cannot be set. It is not on the appropriate screen, or unknown."
                )),
            );
        }
    }
    let resolution = fields
        .get("resolution")
        .map(|r| r["name"].as_str().unwrap_or(""));
    if to == Status::Done && !resolution.is_some_and(|r| RESOLUTIONS.contains(&r)) {
        by_field.insert("resolution".into(), json!("Resolution is required."));
    }
    if !errors.is_empty() || !by_field.is_empty() {
        return state.refuse(errors, by_field);
    }
    let _ = name;
    let issue = state.find_issue(id).unwrap();
    issue.status = to;
    issue.resolution = resolution.filter(|_| to == Status::Done).map(str::to_owned);
    issue.comments.extend(comments_of(&body["update"]));
    StatusCode::NO_CONTENT.into_response()
}

// ---------------------------------------------------------------------------------------
// JQL, in exactly the forms gitward sends.

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Eq,
    Ne,
    Open,
    Close,
    Comma,
}

fn tokens(jql: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = jql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {}
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            ',' => tokens.push(Token::Comma),
            '=' => tokens.push(Token::Eq),
            '!' if chars.peek() == Some(&'=') => {
                chars.next();
                tokens.push(Token::Ne);
            }
            '"' => {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => text.push('\n'),
                            Some('t') => text.push('\t'),
                            Some('r') => text.push('\r'),
                            Some(c @ ('"' | '\\' | '\'')) => text.push(c),
                            other => return Err(format!("bad escape {other:?}")),
                        },
                        Some(c) => text.push(c),
                        None => return Err("an unterminated string".into()),
                    }
                }
                tokens.push(Token::Text(text));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => {
                let mut word = c.to_string();
                while let Some(&next) = chars.peek() {
                    if next.is_ascii_alphanumeric() || next == '_' || next == '-' {
                        word.push(next);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(format!("the character '{other}'")),
        }
    }
    Ok(tokens)
}

/// What a query asks: issues of a project with a label and not done, or issues by id.
#[derive(Debug, Clone, PartialEq)]
enum Query {
    Tagged { project: String, label: String },
    Ids(Vec<u64>),
}

fn parse_jql(jql: &str) -> Result<Query, String> {
    use Token::*;
    let tokens = tokens(jql)?;
    let word = |t: &Token, w: &str| matches!(t, Word(x) if x.eq_ignore_ascii_case(w));
    let value = |t: &Token| match t {
        Text(x) | Word(x) => Some(x.clone()),
        _ => None,
    };
    if tokens.len() == 15
        && word(&tokens[0], "project")
        && tokens[1] == Eq
        && word(&tokens[3], "AND")
        && word(&tokens[4], "labels")
        && tokens[5] == Eq
        && word(&tokens[7], "AND")
        && word(&tokens[8], "statusCategory")
        && tokens[9] == Ne
        && word(&tokens[10], "Done")
        && word(&tokens[11], "ORDER")
        && word(&tokens[12], "BY")
        && word(&tokens[13], "created")
        && word(&tokens[14], "ASC")
        && let (Some(project), Some(label)) = (value(&tokens[2]), value(&tokens[6]))
    {
        return Ok(Query::Tagged { project, label });
    }
    if tokens.len() >= 5 && word(&tokens[0], "id") && word(&tokens[1], "in") && tokens[2] == Open {
        let mut ids = Vec::new();
        let mut rest = &tokens[3..];
        loop {
            match rest {
                [Word(n), Comma, more @ ..] => {
                    ids.push(n.parse().map_err(|_| format!("id {n}"))?);
                    rest = more;
                }
                [Word(n), Close] => {
                    ids.push(n.parse().map_err(|_| format!("id {n}"))?);
                    return Ok(Query::Ids(ids));
                }
                _ => break,
            }
        }
    }
    Err(format!("not a query this fake knows: {jql}"))
}

fn issue_json(base: &str, version: &str, issue: &Issue, fields: &[String]) -> Value {
    let mut shown = Map::new();
    for field in fields {
        let value = match field.as_str() {
            "status" => issue.status.json(base),
            "resolution" => issue.resolution.as_ref().map_or(Value::Null, |r| {
                json!({"self": format!("{base}/rest/api/3/resolution/1"), "id": "1", "description": "", "name": r})
            }),
            "assignee" => issue.assignee.as_ref().map_or(Value::Null, |name| {
                json!({
                    "self": format!("{base}/rest/api/3/user?accountId=5b10a2844c20165700ede21g"),
                    "accountId": "5b10a2844c20165700ede21g",
                    "displayName": name,
                    "active": true,
                    "avatarUrls": {"48x48": "https://avatar.example/48.png", "24x24": "https://avatar.example/24.png"},
                    "timeZone": "Europe/Berlin",
                })
            }),
            "labels" => json!(issue.labels),
            "priority" => issue.priority.as_ref().map_or(Value::Null, |p| json!({"name": p})),
            _ => continue,
        };
        shown.insert(field.clone(), value);
    }
    json!({
        "expand": "",
        "id": issue.id.to_string(),
        "key": issue.key,
        "self": format!("{base}/rest/api/{version}/issue/{}", issue.id),
        "fields": shown,
    })
}

fn search(state: &mut JiraState, body: &Value) -> Response {
    let Some(request) = body.as_object() else {
        return state.refuse(
            vec!["The request body is not a JSON object.".into()],
            Map::new(),
        );
    };
    let allowed: &[&str] = if state.version == "3" {
        &[
            "jql",
            "maxResults",
            "fields",
            "nextPageToken",
            "expand",
            "properties",
            "fieldsByKeys",
            "reconcileIssues",
        ]
    } else {
        &[
            "jql",
            "startAt",
            "maxResults",
            "fields",
            "expand",
            "validateQuery",
            "properties",
            "fieldsByKeys",
        ]
    };
    let mut errors: Vec<String> = request
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("Unrecognized field \"{k}\""))
        .collect();
    let fields: Vec<String> = match body["fields"].as_array() {
        Some(f) if f.iter().all(Value::is_string) => f
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => {
            errors.push("fields is a list of field names".into());
            Vec::new()
        }
    };
    let max = body["maxResults"].as_u64().unwrap_or(50) as usize;
    let query = match parse_jql(body["jql"].as_str().unwrap_or("")) {
        Ok(query) => Some(query),
        Err(error) => {
            errors.push(format!("Error in the JQL Query: {error}"));
            None
        }
    };
    if !errors.is_empty() {
        return state.refuse(errors, Map::new());
    }
    let mut matching: Vec<&Issue> = state
        .issues
        .iter()
        .filter(|issue| match query.as_ref() {
            Some(Query::Tagged { project, label }) => {
                issue.key.starts_with(&format!("{project}-"))
                    && issue.labels.contains(label)
                    && issue.status != Status::Done
            }
            Some(Query::Ids(ids)) => ids.contains(&issue.id),
            None => false,
        })
        .collect();
    matching.sort_by_key(|i| i.id);
    let start = if state.version == "3" {
        body["nextPageToken"]
            .as_str()
            .and_then(|t| t.strip_prefix("page-"))
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    } else {
        body["startAt"].as_u64().unwrap_or(0) as usize
    };
    let size = max.min(state.search_page);
    let total = matching.len();
    let mut issues: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(size)
        .map(|i| issue_json(&state.base, state.version, i, &fields))
        .collect();
    issues.extend(
        state
            .foreign
            .iter()
            .map(|i| issue_json(&state.base, state.version, i, &fields)),
    );
    let answer_body = if state.version == "3" {
        let last = start + size >= total;
        let mut page = json!({"isLast": last, "issues": issues});
        if !last {
            page["nextPageToken"] = json!(format!("page-{}", start + size));
        }
        page
    } else {
        json!({"expand": "schema,names", "startAt": start, "maxResults": size, "total": total, "issues": issues})
    };
    answer(StatusCode::OK, answer_body)
}

// ---------------------------------------------------------------------------------------
// Answers made as they are read.

/// `prefix`, then `unit` `left` times (a thousand a chunk), then `suffix`.
struct Repeated {
    prefix: Option<Bytes>,
    unit: Bytes,
    left: usize,
    suffix: Option<Bytes>,
}

impl hyper::body::Body for Repeated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let data = if let Some(prefix) = this.prefix.take() {
            prefix
        } else if this.left > 0 {
            let n = this.left.min(1000);
            this.left -= n;
            Bytes::from(this.unit.repeat(n))
        } else if let Some(suffix) = this.suffix.take() {
            suffix
        } else {
            return Poll::Ready(None);
        };
        Poll::Ready(Some(Ok(hyper::body::Frame::data(data))))
    }
}

/// A few bytes, then the connection drops.
struct Cut {
    first: Option<Bytes>,
}

impl hyper::body::Body for Cut {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        Poll::Ready(Some(match this.first.take() {
            Some(first) => Ok(hyper::body::Frame::data(first)),
            None => Err(std::io::Error::other("the connection drops")),
        }))
    }
}

#[test]
fn the_fake_reads_the_jql_gitward_sends() {
    assert_eq!(
        parse_jql(
            r#"project = "SEC" AND labels = "gitward-0a\"b" AND statusCategory != Done ORDER BY created ASC"#
        ),
        Ok(Query::Tagged {
            project: "SEC".into(),
            label: "gitward-0a\"b".into()
        })
    );
    assert_eq!(
        parse_jql("id in (10001,10002)"),
        Ok(Query::Ids(vec![10001, 10002]))
    );
    assert!(parse_jql("id in (10001,)").is_err());
    assert!(parse_jql("project = SEC OR labels = x").is_err());
}
