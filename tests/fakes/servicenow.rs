//! A stand-in for a ServiceNow instance's Table API on loopback (no ServiceNow runs here),
//! keeping records in memory as the documentation describes them (API.md §7,
//! `fixtures/servicenow/`): every value a string, reference fields shown as `{link, value}`
//! (or their `sys_id` with `sysparm_exclude_reference_link=true`), `sysparm_display_value`
//! `true` and `all`, `sysparm_fields`, `sysparm_limit`, and `sysparm_query` with `=`, `IN`,
//! `ORDERBY`, `ORDERBYDESC` joined by `^` — where, like the real one, a part it does not
//! understand (a field the table does not have) makes the query match every row. A new
//! incident starts as the documentation's example record, so an answer has its keys.
//!
//! It checks the credential (401 with ServiceNow's body otherwise), the request's headers and
//! body, and notes each departure from the documented shape in [`FakeServiceNow::invalid`].
//! A person can cancel, close, resolve and reassign records; tricks make it answer 429 with
//! `Retry-After` and the documented body, any status, nothing, or a connection broken after
//! the request was carried out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Server;

/// The documentation's answer to a create: the keys and kinds of a new incident.
pub const CREATED_EXAMPLE: &str =
    include_str!("../fixtures/servicenow/table-post-incident.response-201.json");
/// The documentation's body of a 429.
pub const RATE_LIMITED_EXAMPLE: &str =
    include_str!("../fixtures/servicenow/rate-limit.response-429.json");

/// Reference fields of task tables (the example shows some as `{link, value}`).
const REFERENCES: &[&str] = &[
    "assignment_group",
    "assigned_to",
    "caller_id",
    "opened_by",
    "sys_domain",
    "company",
    "cmdb_ci",
    "parent",
    "parent_incident",
    "problem_id",
    "business_service",
    "closed_by",
    "resolved_by",
    "location",
    "rfc",
    "caused_by",
];

/// The user the fake's credential belongs to.
pub const BOT_ID: &str = "6816f79cc0a8016401c5a33be04be441";
/// A group records may be assigned to, by name or sys_id.
pub const GROUP_ID: &str = "287ebd7da9fe198100f92cc8d1d2154e";
pub const GROUP_NAME: &str = "Security Operations";

/// What the fake does with the next request instead of (or besides) answering it as
/// ServiceNow would.
#[derive(Debug, Clone)]
pub enum Trick {
    /// 429 with the documented body, and `Retry-After` when given.
    TooMany { retry_after: Option<u64> },
    /// This status and body, carrying nothing out.
    Answer(u16, String),
    /// Never answers.
    Hang,
    /// Carries the request out, then breaks the connection instead of answering.
    ActThenDrop,
    /// Carries the request out matching every row, as with a field the table lacks.
    IgnoreQuery,
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

impl Logged {
    /// The value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A table: its columns and rows, every value a string.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<BTreeMap<String, String>>,
}

#[derive(Default)]
pub struct Instance {
    base: String,
    authorization: String,
    tables: BTreeMap<String, Table>,
    tricks: VecDeque<Trick>,
    log: Vec<Logged>,
    invalid: Vec<String>,
    /// Names of users and groups, by sys_id: references' display values.
    names: HashMap<String, String>,
    /// Work notes and comments added, per record: `(field, text)`.
    journal: HashMap<String, Vec<(String, String)>>,
    created: u64,
    /// Records numbered so far.
    numbered: u64,
}

pub struct FakeServiceNow {
    pub server: Server,
    state: Arc<Mutex<Instance>>,
}

impl FakeServiceNow {
    /// An instance taking `authorization` (an `Authorization` header value), with an
    /// `incident` table shaped as the documentation's example and the base system's close
    /// codes.
    pub async fn start(authorization: &str) -> FakeServiceNow {
        let state = Arc::new(Mutex::new(Instance {
            authorization: authorization.to_owned(),
            ..Instance::default()
        }));
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let server = Server::start(router).await;
        let fake = FakeServiceNow { server, state };
        {
            let mut instance = fake.lock();
            instance.base = fake.server.url();
            let example: Value = serde_json::from_str(CREATED_EXAMPLE).expect("the example");
            let columns = example["result"]
                .as_object()
                .expect("a record")
                .keys()
                .cloned()
                .collect();
            instance.tables.insert(
                "incident".into(),
                Table {
                    columns,
                    rows: Vec::new(),
                },
            );
            let choice_columns = [
                "sys_id", "name", "element", "value", "label", "language", "inactive", "sequence",
            ];
            instance.tables.insert(
                "sys_choice".into(),
                Table {
                    columns: choice_columns.iter().map(|c| (*c).to_owned()).collect(),
                    rows: Vec::new(),
                },
            );
            instance.names.insert(BOT_ID.into(), "Gitward Bot".into());
            instance.names.insert(GROUP_ID.into(), GROUP_NAME.into());
        }
        fake.add_choices(
            "incident",
            &[
                "Duplicate",
                "Known error",
                "No resolution provided",
                "Resolved by caller",
                "Resolved by change",
                "Resolved by problem",
                "Resolved by request",
                "Solution provided",
                "Workaround provided",
                "User error",
            ],
        );
        fake
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn lock(&self) -> MutexGuard<'_, Instance> {
        self.state.lock().expect("the fake's state")
    }

    pub fn then(&self, trick: Trick) {
        self.lock().tricks.push_back(trick);
    }

    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    pub fn invalid(&self) -> Vec<String> {
        self.lock().invalid.clone()
    }

    /// Close-code choices of `table`, in this order (the English list; inactive ones are
    /// added with `inactive=true` by [`FakeServiceNow::add_choice`]).
    pub fn add_choices(&self, table: &str, values: &[&str]) {
        for value in values {
            self.add_choice(table, "close_code", value, false);
        }
    }

    pub fn add_choice(&self, table: &str, element: &str, value: &str, inactive: bool) {
        let mut instance = self.lock();
        let sequence = instance.tables["sys_choice"].rows.len().to_string();
        let row = BTreeMap::from_iter(
            [
                ("name", table),
                ("element", element),
                ("value", value),
                ("label", value),
                ("language", "en"),
                ("inactive", if inactive { "true" } else { "false" }),
                ("sequence", sequence.as_str()),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        instance.insert("sys_choice", row);
    }

    /// Adds table `name` with `columns` (sys_id, number, state, active are added).
    pub fn add_table(&self, name: &str, columns: &[&str]) {
        let mut all: Vec<String> = ["sys_id", "number", "state", "active", "sys_created_on"]
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        all.extend(columns.iter().map(|c| (*c).to_owned()));
        self.lock().tables.insert(
            name.to_owned(),
            Table {
                columns: all,
                rows: Vec::new(),
            },
        );
    }

    /// Adds a column to `table` (a custom field, `u_...`).
    pub fn add_column(&self, table: &str, column: &str) {
        if let Some(t) = self.lock().tables.get_mut(table) {
            t.columns.push(column.to_owned());
        }
    }

    /// Inserts a record into `table` as if made there, with `fields`; its sys_id.
    pub fn seed(&self, table: &str, fields: &[(&str, &str)]) -> String {
        let mut instance = self.lock();
        let mut row = instance.new_record(table);
        for (name, value) in fields {
            row.insert((*name).to_owned(), (*value).to_owned());
        }
        instance.insert(table, row)
    }

    /// The record with `sys_id`, in any table.
    pub fn record(&self, sys_id: &str) -> Option<BTreeMap<String, String>> {
        self.lock().find(sys_id).map(|(_, row)| row.clone())
    }

    pub fn records(&self, table: &str) -> Vec<BTreeMap<String, String>> {
        self.lock()
            .tables
            .get(table)
            .map(|t| t.rows.clone())
            .unwrap_or_default()
    }

    /// Work notes and comments added to record `sys_id`.
    pub fn journal(&self, sys_id: &str) -> Vec<(String, String)> {
        self.lock().journal.get(sys_id).cloned().unwrap_or_default()
    }

    /// A person changes record `sys_id`.
    pub fn person_sets(&self, sys_id: &str, fields: &[(&str, &str)]) {
        let mut instance = self.lock();
        if let Some((_, row)) = instance.find_mut(sys_id) {
            for (name, value) in fields {
                row.insert((*name).to_owned(), (*value).to_owned());
            }
        }
    }

    /// A person cancels record `sys_id`.
    pub fn person_cancels(&self, sys_id: &str) {
        self.person_sets(sys_id, &[("state", "8"), ("active", "false")]);
    }

    /// A person closes record `sys_id` with `close_code`.
    pub fn person_closes(&self, sys_id: &str, close_code: &str) {
        self.person_sets(
            sys_id,
            &[
                ("state", "7"),
                ("incident_state", "7"),
                ("active", "false"),
                ("close_code", close_code),
                ("close_notes", "closed by hand"),
            ],
        );
    }

    /// A person assigns record `sys_id` to a user called `name`.
    pub fn person_assigns(&self, sys_id: &str, name: &str) -> String {
        let user = {
            let mut instance = self.lock();
            let user = format!("{:0>32x}", instance.names.len() + 0xbe7);
            instance.names.insert(user.clone(), name.to_owned());
            user
        };
        self.person_sets(sys_id, &[("assigned_to", &user)]);
        user
    }
}

impl Instance {
    fn next_id(&mut self) -> String {
        self.created += 1;
        format!("5137{:028x}", self.created)
    }

    /// A new record of `table`: the example's values for an incident, blanks otherwise.
    fn new_record(&mut self, table: &str) -> BTreeMap<String, String> {
        let sys_id = self.next_id();
        self.numbered += 1;
        let created = format!(
            "2026-01-02 {:02}:{:02}:{:02}",
            (self.created / 3600) % 24,
            (self.created / 60) % 60,
            self.created % 60
        );
        let mut row = BTreeMap::new();
        if table == "incident" {
            let example: Value = serde_json::from_str(CREATED_EXAMPLE).expect("the example");
            for (name, value) in example["result"].as_object().expect("a record") {
                let value = match value {
                    Value::Object(reference) => reference["value"].as_str().unwrap_or_default(),
                    other => other.as_str().unwrap_or_default(),
                };
                row.insert(name.clone(), value.to_owned());
            }
            for blank in [
                "short_description",
                "description",
                "assignment_group",
                "category",
                "contact_type",
            ] {
                row.insert(blank.to_owned(), String::new());
            }
            row.insert("impact".into(), "3".into());
            row.insert("urgency".into(), "3".into());
            row.insert("opened_by".into(), BOT_ID.into());
            row.insert("number".into(), format!("INC00100{:02}", self.numbered));
        } else if let Some(t) = self.tables.get(table) {
            for column in &t.columns {
                row.insert(column.clone(), String::new());
            }
            row.insert("number".into(), format!("REC00100{:02}", self.numbered));
        }
        row.insert("sys_id".into(), sys_id);
        row.insert("state".into(), "1".into());
        row.insert("active".into(), "true".into());
        for stamp in ["sys_created_on", "sys_updated_on", "opened_at"] {
            if row.contains_key(stamp) || stamp == "sys_created_on" {
                row.insert(stamp.into(), created.clone());
            }
        }
        row
    }

    fn insert(&mut self, table: &str, mut row: BTreeMap<String, String>) -> String {
        if !row.contains_key("sys_id") {
            let id = self.next_id();
            row.insert("sys_id".into(), id);
        }
        let id = row["sys_id"].clone();
        if let Some(t) = self.tables.get_mut(table) {
            t.rows.push(row);
        }
        id
    }

    fn find(&self, sys_id: &str) -> Option<(&str, &BTreeMap<String, String>)> {
        self.tables.iter().find_map(|(name, t)| {
            t.rows
                .iter()
                .find(|r| r.get("sys_id").map(String::as_str) == Some(sys_id))
                .map(|r| (name.as_str(), r))
        })
    }

    fn find_mut(&mut self, sys_id: &str) -> Option<(String, &mut BTreeMap<String, String>)> {
        self.tables.iter_mut().find_map(|(name, t)| {
            t.rows
                .iter_mut()
                .find(|r| r.get("sys_id").map(String::as_str) == Some(sys_id))
                .map(|r| (name.clone(), r))
        })
    }

    /// The display value of `field` = `value`.
    fn display(&self, field: &str, value: &str) -> String {
        let label = match (field, value) {
            ("state" | "incident_state", "1") => "New",
            ("state" | "incident_state", "2") => "In Progress",
            ("state" | "incident_state", "3") => "On Hold",
            ("state" | "incident_state", "6") => "Resolved",
            ("state" | "incident_state", "7") => "Closed",
            ("state" | "incident_state", "8") => "Canceled",
            ("impact" | "urgency" | "severity", "1") => "1 - High",
            ("impact" | "urgency" | "severity", "2") => "2 - Medium",
            ("impact" | "urgency" | "severity", "3") => "3 - Low",
            _ if REFERENCES.contains(&field) => {
                return self.names.get(value).cloned().unwrap_or_default();
            }
            _ => value,
        };
        label.to_owned()
    }

    /// `row` as an answer shows it.
    fn render(&self, row: &BTreeMap<String, String>, shown: &Shown) -> Value {
        let mut out = Map::new();
        for (name, value) in row {
            if shown.fields.as_ref().is_some_and(|f| !f.contains(name)) {
                continue;
            }
            let reference = REFERENCES.contains(&name.as_str()) && !value.is_empty();
            let link = format!("{}/api/now/table/{}/{value}", self.base, referred(name));
            let rendered = match shown.display.as_str() {
                "true" => json!(self.display(name, value)),
                "all" => {
                    let mut both =
                        json!({"display_value": self.display(name, value), "value": value});
                    if reference && !shown.exclude_links {
                        both["link"] = json!(link);
                    }
                    both
                }
                _ if reference && !shown.exclude_links => json!({"link": link, "value": value}),
                _ => json!(value),
            };
            out.insert(name.clone(), rendered);
        }
        Value::Object(out)
    }
}

/// The table a reference field points into.
fn referred(field: &str) -> &'static str {
    match field {
        "assignment_group" => "sys_user_group",
        "sys_domain" => "sys_user_group",
        "assigned_to" | "caller_id" | "opened_by" | "closed_by" | "resolved_by" => "sys_user",
        _ => "sys_metadata",
    }
}

/// How an answer shows records.
struct Shown {
    fields: Option<Vec<String>>,
    display: String,
    exclude_links: bool,
}

/// A parsed `sysparm_query`.
#[derive(Debug, Default)]
struct Query {
    equals: Vec<(String, String)>,
    within: Vec<(String, Vec<String>)>,
    order: Vec<(String, bool)>,
    /// A part was not understood: every row matches.
    ignored: bool,
}

fn parse_query(text: &str, columns: &[String]) -> Query {
    let mut query = Query::default();
    let known = |field: &str| columns.iter().any(|c| c == field);
    for part in text.split('^').filter(|p| !p.is_empty()) {
        if let Some(field) = part.strip_prefix("ORDERBYDESC") {
            query.order.push((field.to_owned(), true));
            continue;
        }
        if let Some(field) = part.strip_prefix("ORDERBY") {
            query.order.push((field.to_owned(), false));
            continue;
        }
        let end = part
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(part.len());
        let (field, rest) = part.split_at(end);
        if !known(field) {
            query.ignored = true;
        } else if let Some(value) = rest.strip_prefix('=') {
            query.equals.push((field.to_owned(), value.to_owned()));
        } else if let Some(values) = rest.strip_prefix("IN") {
            query.within.push((
                field.to_owned(),
                values.split(',').map(str::to_owned).collect(),
            ));
        } else {
            query.ignored = true;
        }
    }
    query
}

impl Query {
    fn matches(&self, row: &BTreeMap<String, String>) -> bool {
        if self.ignored {
            return true;
        }
        let value = |field: &str| row.get(field).map(String::as_str).unwrap_or_default();
        self.equals.iter().all(|(f, v)| value(f) == v)
            && self
                .within
                .iter()
                .all(|(f, vs)| vs.iter().any(|v| v == value(f)))
    }
}

/// ServiceNow's error body.
fn failure(status: u16, message: &str, detail: &str) -> Response {
    (
        StatusCode::from_u16(status).expect("a status"),
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message, "detail": detail}, "status": "failure"}).to_string(),
    )
        .into_response()
}

fn answer(status: StatusCode, body: Value, headers: &[(&str, String)]) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A body that breaks the connection instead of ending.
struct Broken;

impl hyper::body::Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::other("connection dropped"))))
    }
}

fn dropped(status: StatusCode) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::new(Broken))
        .expect("a response")
}

async fn handle(
    State(state): State<Arc<Mutex<Instance>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let logged = Logged {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: super::query(&uri),
        authorization: text(header::AUTHORIZATION),
        accept: text(header::ACCEPT),
        content_type: text(header::CONTENT_TYPE),
        body: serde_json::from_slice(&body).ok(),
    };
    let trick = {
        let mut instance = state.lock().expect("the fake's state");
        instance.log.push(logged.clone());
        instance.tricks.pop_front()
    };
    match trick {
        Some(Trick::TooMany { retry_after }) => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::CONTENT_TYPE, "application/json")],
                RATE_LIMITED_EXAMPLE,
            )
                .into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            return response;
        }
        Some(Trick::Answer(status, body)) => {
            return (StatusCode::from_u16(status).expect("a status"), body).into_response();
        }
        Some(Trick::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        _ => {}
    }
    let ignore_query = matches!(trick, Some(Trick::IgnoreQuery));
    let response = {
        let mut instance = state.lock().expect("the fake's state");
        instance.serve(&logged, ignore_query)
    };
    if matches!(trick, Some(Trick::ActThenDrop)) {
        return dropped(response.status());
    }
    response
}

impl Instance {
    fn serve(&mut self, request: &Logged, ignore_query: bool) -> Response {
        if request.authorization.as_deref() != Some(self.authorization.as_str()) {
            return failure(
                401,
                "User Not Authenticated",
                "Required to provide Auth information",
            );
        }
        if request.accept.as_deref() != Some("application/json") {
            self.invalid.push(format!(
                "{} {} without Accept: application/json",
                request.method, request.path
            ));
        }
        for (name, _) in &request.query {
            if !matches!(
                name.as_str(),
                "sysparm_query"
                    | "sysparm_fields"
                    | "sysparm_limit"
                    | "sysparm_offset"
                    | "sysparm_display_value"
                    | "sysparm_exclude_reference_link"
            ) {
                self.invalid.push(format!("unknown parameter {name}"));
            }
        }
        let parts: Vec<&str> = request.path.split('/').collect();
        let shown = Shown {
            fields: request
                .param("sysparm_fields")
                .map(|f| f.split(',').map(str::to_owned).collect()),
            display: request
                .param("sysparm_display_value")
                .unwrap_or("false")
                .to_owned(),
            exclude_links: request.param("sysparm_exclude_reference_link") == Some("true"),
        };
        match (request.method.as_str(), parts.as_slice()) {
            ("GET", ["", "api", "now", "table", table]) => {
                self.list(table, request, &shown, ignore_query)
            }
            ("POST", ["", "api", "now", "table", table]) => self.create(table, request, &shown),
            ("PATCH" | "PUT", ["", "api", "now", "table", table, id]) => {
                self.update(table, id, request, &shown)
            }
            _ => failure(
                400,
                "Requested URI does not represent any resource",
                &request.path,
            ),
        }
    }

    fn list(&mut self, table: &str, request: &Logged, shown: &Shown, ignore: bool) -> Response {
        let Some(t) = self.tables.get(table) else {
            return failure(400, "Invalid table", table);
        };
        let mut query = parse_query(
            request.param("sysparm_query").unwrap_or_default(),
            &t.columns,
        );
        query.ignored |= ignore;
        let limit = match request.param("sysparm_limit").map(str::parse::<usize>) {
            None => 10_000,
            Some(Ok(limit)) => limit,
            Some(Err(_)) => {
                self.invalid.push("sysparm_limit is not a number".into());
                10_000
            }
        };
        let mut rows: Vec<&BTreeMap<String, String>> =
            t.rows.iter().filter(|r| query.matches(r)).collect();
        for (field, descending) in query.order.iter().rev() {
            rows.sort_by(|a, b| {
                let order = a.get(field).cmp(&b.get(field));
                if *descending { order.reverse() } else { order }
            });
        }
        let total = rows.len();
        let result: Vec<Value> = rows
            .into_iter()
            .take(limit)
            .map(|row| self.render(row, shown))
            .collect();
        answer(
            StatusCode::OK,
            json!({ "result": result }),
            &[("X-Total-Count", total.to_string())],
        )
    }

    /// The fields of a POST or PATCH body, noting departures from the documented shape.
    fn fields_of(&mut self, table: &str, request: &Logged) -> Option<Vec<(String, String)>> {
        if request.content_type.as_deref() != Some("application/json") {
            self.invalid.push(format!(
                "{} {} without Content-Type: application/json",
                request.method, request.path
            ));
        }
        let Some(Value::Object(body)) = &request.body else {
            self.invalid.push(format!(
                "{} {}: the body is not a JSON object",
                request.method, request.path
            ));
            return None;
        };
        let columns = self
            .tables
            .get(table)
            .map(|t| t.columns.clone())
            .unwrap_or_default();
        let mut fields = Vec::new();
        for (name, value) in body {
            if !columns.contains(name) && name != "work_notes" && name != "comments" {
                // ServiceNow drops it silently: the sink would lose it unseen.
                self.invalid.push(format!("{table} has no field {name}"));
                continue;
            }
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(_) | Value::Bool(_) => {
                    self.invalid.push(format!("{name} is not sent as a string"));
                    value.to_string()
                }
                other => {
                    self.invalid
                        .push(format!("{name} is {other}, not a string"));
                    continue;
                }
            };
            fields.push((name.clone(), text));
        }
        Some(fields)
    }

    /// Sets `fields` on the record `sys_id` of `table`, as business rules would.
    fn apply(&mut self, sys_id: &str, fields: Vec<(String, String)>) {
        let names = self.names.clone();
        let choices: Vec<String> = self.tables["sys_choice"]
            .rows
            .iter()
            .filter(|r| r["element"] == "close_code" && r["inactive"] == "false")
            .map(|r| r["value"].clone())
            .collect();
        let mut notes = Vec::new();
        let mut invalid = Vec::new();
        let Some((_, row)) = self.find_mut(sys_id) else {
            return;
        };
        for (name, value) in fields {
            if name == "work_notes" || name == "comments" {
                notes.push((name, value));
                continue;
            }
            if name == "close_code" && !choices.contains(&value) {
                invalid.push(format!("close_code {value} is not a choice"));
            }
            // A reference given by a display value is stored as the sys_id it names.
            let value = if REFERENCES.contains(&name.as_str()) {
                names
                    .iter()
                    .find(|(_, n)| **n == value)
                    .map(|(id, _)| id.clone())
                    .unwrap_or(value)
            } else {
                value
            };
            row.insert(name, value);
        }
        let state = row.get("state").cloned().unwrap_or_default();
        if row.contains_key("incident_state") {
            row.insert("incident_state".into(), state.clone());
        }
        let inactive = state == "7" || state == "8";
        row.insert("active".into(), (!inactive).to_string());
        if let (Some(impact), Some(urgency)) = (row.get("impact"), row.get("urgency")) {
            let sum = impact.parse::<u32>().unwrap_or(3) + urgency.parse::<u32>().unwrap_or(3);
            row.insert("priority".into(), (sum - 1).min(5).to_string());
        }
        self.invalid.extend(invalid);
        self.journal
            .entry(sys_id.to_owned())
            .or_default()
            .extend(notes);
    }

    fn create(&mut self, table: &str, request: &Logged, shown: &Shown) -> Response {
        if !self.tables.contains_key(table) {
            return failure(400, "Invalid table", table);
        }
        let Some(fields) = self.fields_of(table, request) else {
            return failure(
                400,
                "Exception while reading request",
                "The payload is not valid JSON.",
            );
        };
        let row = self.new_record(table);
        let id = self.insert(table, row);
        self.apply(&id, fields);
        let row = self.find(&id).map(|(_, r)| r.clone()).unwrap_or_default();
        let location = format!("{}/api/now/table/{table}/{id}", self.base);
        answer(
            StatusCode::CREATED,
            json!({ "result": self.render(&row, shown) }),
            &[("Location", location)],
        )
    }

    fn update(&mut self, table: &str, id: &str, request: &Logged, shown: &Shown) -> Response {
        let found = self.find(id).map(|(t, r)| (t.to_owned(), r.clone()));
        let Some((in_table, before)) = found.filter(|(t, _)| t == table) else {
            return failure(
                404,
                "No Record found",
                "Record doesn't exist or ACL restricts the record retrieval",
            );
        };
        let Some(fields) = self.fields_of(&in_table, request) else {
            return failure(
                400,
                "Exception while reading request",
                "The payload is not valid JSON.",
            );
        };
        if before.get("state").map(String::as_str) == Some("7") {
            // Closed incidents are read-only.
            return failure(
                403,
                "Operation Failed",
                "ACL Exception Update Failed due to security constraints",
            );
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if table == "incident"
            && field("state") == Some("6")
            && (field("close_code").unwrap_or_default().is_empty()
                || field("close_notes").unwrap_or_default().is_empty())
        {
            return failure(
                403,
                "Operation Failed",
                "Data Policy Exception: \n The following fields are mandatory: Resolution code, Resolution notes\n",
            );
        }
        self.apply(id, fields);
        let row = self.find(id).map(|(_, r)| r.clone()).unwrap_or_default();
        answer(
            StatusCode::OK,
            json!({ "result": self.render(&row, shown) }),
            &[],
        )
    }
}
