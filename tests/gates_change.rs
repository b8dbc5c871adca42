//! Change requests as gate input, through the binary with real Git repositories. A gate that
//! requires `change:` judges the `Change-Request:` trailer of the applied commit against a
//! stand-in for ServiceNow's Table API (`change_request` and `sysapproval_approver`) or for
//! Jira's issue GET, on loopback: no ServiceNow or Jira runs here. The stand-ins answer in
//! the documented shapes of `tests/fixtures/change/`, check the credential, record every
//! request for the tests to compare with the documented ones, and — like a ServiceNow
//! instance by default — ignore a query condition on a field they do not know, answering
//! every row. They can be told to fail, hang, or answer garbage.

use crate::common;
use crate::fakes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use common::host::{Host, ISSUERS, certificate};
use common::peers::Daemon;
use common::{Run, project_dir};
use fakes::{Server, query};

/// Inside the planned window of the change request (09:00 to 17:00 UTC).
const DURING: &str = "2026-12-01T10:00:00Z";
const BEFORE: &str = "2026-12-01T08:00:00Z";
const AFTER: &str = "2026-12-01T18:00:00Z";
/// When the hosts of these tests apply what comes before the gated change.
const SETUP: &str = "2026-11-30T10:00:00Z";
const NUMBER: &str = "CHG0012345";
const SYS_ID: &str = "a9e9c33dc61122760072455df62663d2";
const SNOW_USER: &str = "gitward";
const SNOW_TOKEN: &str = "snow-secret-token";
const JIRA_USER: &str = "bot@example.com";
const JIRA_TOKEN: &str = "jira-secret-token";

fn fixture(name: &str) -> Value {
    let path = project_dir().join("tests/fixtures/change").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("a fixture")).expect("JSON")
}

fn basic(user: &str, secret: &str) -> String {
    fakes::basic(user, secret)
}

// ---------------------------------------------------------------------------------------
// The stand-ins

/// A request as a stand-in received it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    accept: Option<String>,
}

impl Received {
    fn of(uri: &Uri, headers: &HeaderMap) -> Received {
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Received {
            path: uri.path().to_owned(),
            query: query(uri),
            authorization: text(header::AUTHORIZATION),
            accept: text(header::ACCEPT),
        }
    }

    fn query(&self) -> Vec<(&str, &str)> {
        self.query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// What a stand-in does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    Fail,
    Hang,
    Garbage,
    /// A megabyte of JSON.
    Huge,
    /// A 403 that repeats the credential it was sent, as a careless server might.
    Echo,
}

/// A stand-in on a runtime of its own, so that the tests stay synchronous.
struct Fake<S> {
    server: Server,
    state: Arc<Mutex<S>>,
    // Last: the server's task is aborted before its runtime goes.
    _runtime: tokio::runtime::Runtime,
}

impl<S: Send + 'static> Fake<S> {
    fn start(state: S, router: impl FnOnce(Arc<Mutex<S>>) -> axum::Router) -> Fake<S> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let state = Arc::new(Mutex::new(state));
        let server = runtime.block_on(Server::start(router(state.clone())));
        Fake {
            server,
            state,
            _runtime: runtime,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut S) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// What answers instead of serving, for the modes that do not serve.
async fn misbehave(mode: Mode) -> Option<Response> {
    match mode {
        Mode::Serve | Mode::Echo => None,
        Mode::Fail => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": {"message": "Internal Server Error", "detail": null}, "status": "failure"})),
            )
                .into_response(),
        ),
        Mode::Hang => {
            std::future::pending::<()>().await;
            None
        }
        Mode::Garbage => Some((StatusCode::OK, "<html><body>Maintenance</body></html>").into_response()),
        Mode::Huge => Some(
            (
                StatusCode::OK,
                format!("{{\"result\": [\"{}\"]}}", "x".repeat(1 << 20)),
            )
                .into_response(),
        ),
    }
}

struct Snow {
    /// `change_request` rows as `sysparm_display_value=all` shows them.
    changes: Vec<Value>,
    /// `sysapproval_approver` rows, the same way.
    approvals: Vec<Value>,
    /// Fields each table knows in a query; a condition on another is ignored.
    known: BTreeMap<&'static str, Vec<&'static str>>,
    mode: Mode,
    received: Vec<Received>,
}

impl Snow {
    fn new() -> Snow {
        let change = fixture("servicenow-change_request.json")["result"][0].clone();
        let approval = fixture("servicenow-sysapproval_approver.json")["result"][0].clone();
        Snow {
            changes: vec![change],
            approvals: vec![approval],
            known: BTreeMap::from([
                (
                    "change_request",
                    vec![
                        "sys_id",
                        "number",
                        "state",
                        "approval",
                        "start_date",
                        "end_date",
                    ],
                ),
                (
                    "sysapproval_approver",
                    vec!["sysapproval", "state", "approver"],
                ),
            ]),
            mode: Mode::Serve,
            received: Vec::new(),
        }
    }

    fn change(&mut self, number: &str) -> &mut Value {
        self.changes
            .iter_mut()
            .find(|c| c["number"]["value"] == number)
            .expect("a change request of the stand-in")
    }

    /// Sets a field of change request `number`: its value and what people see.
    fn set(&mut self, number: &str, field: &str, shown: &str, value: &str) {
        self.change(number)[field] = json!({"display_value": shown, "value": value});
    }

    fn rows(&self, table: &str, params: &[(String, String)]) -> Option<Vec<Value>> {
        let rows = match table {
            "change_request" => &self.changes,
            "sysapproval_approver" => &self.approvals,
            _ => return None,
        };
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let known = &self.known[table];
        // Conditions on a field the table does not know are dropped, as an instance without
        // glide.invalid_query.returns_no_rows does.
        let conditions: Vec<(&str, &str)> = param("sysparm_query")
            .unwrap_or_default()
            .split('^')
            .filter_map(|c| c.split_once('='))
            .filter(|(field, _)| known.contains(field))
            .collect();
        let limit: usize = param("sysparm_limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(10_000);
        let fields: Option<Vec<&str>> = param("sysparm_fields").map(|f| f.split(',').collect());
        let display = param("sysparm_display_value").unwrap_or("false");
        Some(
            rows.iter()
                .filter(|row| {
                    conditions
                        .iter()
                        .all(|(field, value)| row[*field]["value"] == *value)
                })
                .take(limit)
                .map(|row| {
                    let mut out = serde_json::Map::new();
                    for (name, both) in row.as_object().expect("a row") {
                        if fields.as_ref().is_some_and(|f| !f.contains(&name.as_str())) {
                            continue;
                        }
                        let shown = match display {
                            "all" => both.clone(),
                            "true" => both["display_value"].clone(),
                            _ => both["value"].clone(),
                        };
                        out.insert(name.clone(), shown);
                    }
                    Value::Object(out)
                })
                .collect(),
        )
    }
}

async fn snow_table(
    State(state): State<Arc<Mutex<Snow>>>,
    UrlPath(table): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let received = Received::of(&uri, &headers);
    let mode = {
        let mut snow = state.lock().unwrap_or_else(PoisonError::into_inner);
        snow.received.push(received.clone());
        snow.mode
    };
    if let Some(answer) = misbehave(mode).await {
        return answer;
    }
    if mode == Mode::Echo {
        let sent = received.authorization.clone().unwrap_or_default();
        let said = format!("{sent} ({SNOW_USER}:{SNOW_TOKEN}) may not read {table}");
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": {"message": said, "detail": SNOW_TOKEN}, "status": "failure"})),
        )
            .into_response();
    }
    if received.authorization.as_deref() != Some(basic(SNOW_USER, SNOW_TOKEN).as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(fixture("servicenow-error-401.json")),
        )
            .into_response();
    }
    let snow = state.lock().unwrap_or_else(PoisonError::into_inner);
    match snow.rows(&table, &received.query) {
        Some(rows) => Json(json!({ "result": rows })).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"message": "Invalid table", "detail": null}, "status": "failure"}),
            ),
        )
            .into_response(),
    }
}

fn servicenow() -> Fake<Snow> {
    Fake::start(Snow::new(), |state| {
        axum::Router::new()
            .route("/api/now/table/{table}", get(snow_table))
            .with_state(state)
    })
}

struct Jira {
    /// Each issue's fields besides its status, and its status.
    issues: BTreeMap<String, (String, serde_json::Map<String, Value>)>,
    mode: Mode,
    received: Vec<Received>,
}

async fn jira_issue(
    State(state): State<Arc<Mutex<Jira>>>,
    UrlPath(key): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let received = Received::of(&uri, &headers);
    let mode = {
        let mut jira = state.lock().unwrap_or_else(PoisonError::into_inner);
        jira.received.push(received.clone());
        jira.mode
    };
    if let Some(answer) = misbehave(mode).await {
        return answer;
    }
    if received.authorization.as_deref() != Some(basic(JIRA_USER, JIRA_TOKEN).as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let jira = state.lock().unwrap_or_else(PoisonError::into_inner);
    let Some((status, extra)) = jira.issues.get(&key) else {
        return (StatusCode::NOT_FOUND, Json(fixture("jira-error-404.json"))).into_response();
    };
    let mut issue = fixture("jira-issue.json");
    issue["key"] = json!(key);
    issue["fields"]["status"]["name"] = json!(status);
    for (name, value) in extra {
        issue["fields"][name] = value.clone();
    }
    // Only the fields asked for, as Jira answers.
    let asked: Vec<String> = received
        .query
        .iter()
        .find(|(k, _)| k == "fields")
        .map(|(_, v)| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(fields) = issue["fields"].as_object_mut() {
        fields.retain(|name, _| asked.contains(name));
    }
    Json(issue).into_response()
}

fn jira(issues: &[(&str, &str)]) -> Fake<Jira> {
    let jira = Jira {
        issues: issues
            .iter()
            .map(|(key, status)| {
                (
                    (*key).to_owned(),
                    ((*status).to_owned(), Default::default()),
                )
            })
            .collect(),
        mode: Mode::Serve,
        received: Vec::new(),
    };
    Fake::start(jira, |state| {
        axum::Router::new()
            .route("/rest/api/3/issue/{key}", get(jira_issue))
            .with_state(state)
    })
}

// ---------------------------------------------------------------------------------------
// Hosts and gates

/// A gate on prod certificates requiring the change request `change` describes (YAML lines
/// under `change:`, indented six spaces).
fn gate(name: &str, change: &str) -> String {
    format!(
        "apiVersion: gitward/v1\nkind: Gate\nmetadata: {{name: {name}}}\nspec:\n  appliesTo: {{kinds: [Certificate], selector: {{env: prod}}}}\n  require:\n    change:\n{change}"
    )
}

const SNOW_GATE: &str =
    "      system: servicenow\n      endpoint: snow-prod\n      states: [Scheduled, Implement]\n";
const JIRA_GATE: &str = "      system: jira\n      endpoint: jira-cloud\n      states: [Approved, In Progress]\n      projects: [OPS]\n";

/// The host config's endpoints for the stand-ins at `snow` and `jira`.
fn endpoints(snow: &str, jira: &str) -> String {
    format!(
        "endpoints:\n  snow-prod: {{url: \"{snow}\", user: {SNOW_USER}, tokenFile: snow-token, timeout: 2s}}\n  jira-cloud: {{url: \"{jira}/\", user: {JIRA_USER}, tokenFile: jira-token, timeout: 2s}}\n"
    )
}

/// A host whose commit in force (tagged `gated`) holds certificate `a` and `gates`, the host
/// config naming the stand-ins' endpoints.
fn gated_host(gates: &[(&str, String)], snow: &str, jira: &str) -> Host {
    gated_host_at(gates, snow, jira, &["--now", SETUP])
}

/// [`gated_host`] set up by reconciles with `setup` as their options.
fn gated_host_at(gates: &[(&str, String)], snow: &str, jira: &str, setup: &[&str]) -> Host {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    host.config(&endpoints(snow, jira));
    std::fs::write(
        host.dir.path().join("snow-token"),
        format!("{SNOW_TOKEN}\n"),
    )
    .expect("token");
    std::fs::write(
        host.dir.path().join("jira-token"),
        format!("{JIRA_TOKEN}\n"),
    )
    .expect("token");
    host.reconcile(setup).expect(0);
    for (file, text) in gates {
        host.repo.write(file, text);
    }
    host.repo.commit("Gate prod changes on change requests");
    host.repo.git(&["tag", "gated"]);
    host.reconcile(setup).expect(0);
    host
}

fn snow_host(snow: &Fake<Snow>) -> Host {
    gated_host(
        &[("gate.yaml", gate("change-approved", SNOW_GATE))],
        &snow.server.url(),
        "http://127.0.0.1:9",
    )
}

/// Adds certificate `b` in a commit with `message`; returns its sha.
fn add_b(host: &Host, message: &str) -> String {
    host.repo
        .write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    host.repo.commit(message)
}

fn with_trailer(value: &str) -> String {
    format!("Add b\n\nChange-Request: {value}\n")
}

fn plan_run(host: &Host, now: &str, format: &str, config: bool) -> Run {
    let config_path = host.dir.path().join("gitward.yaml");
    let config_path = config_path.to_string_lossy();
    let mut args = vec![
        "plan", "--base", "gated", "--head", "HEAD", "--now", now, "--format", format,
    ];
    if config {
        args.extend(["--config", &config_path]);
    }
    host.repo.gitward(&args)
}

/// The `change` requirements of the JSON plan, of gate `gate`.
fn change_requirement(plan: &str, gate: &str) -> Value {
    let plan: Value = serde_json::from_str(plan).expect("a JSON plan");
    common::assert_matches_schema("schemas/plan.schema.json", &plan);
    let gate = plan["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["name"] == gate)
        .unwrap_or_else(|| panic!("gate {gate} in {plan}"))
        .clone();
    gate["requirements"]
        .as_array()
        .expect("requirements")
        .iter()
        .find(|r| r["requirement"] == "change")
        .expect("a change requirement")
        .clone()
}

/// The change requirement of the JSON plan of HEAD at `now`, with the exit code expected.
fn judged(host: &Host, now: &str, code: i32) -> Value {
    change_requirement(
        &plan_run(host, now, "json", true).expect(code).stdout,
        "change-approved",
    )
}

fn summary(host: &Host) -> String {
    host.repo.git(&["show", "gitward/status:summary.yaml"])
}

fn applied_b(host: &Host) -> bool {
    host.out("b").join("cert.pem").exists()
}

fn assert_change_request_query(received: &Received, number: &str) {
    assert_eq!(received.path, "/api/now/table/change_request");
    assert_eq!(
        received.query(),
        [
            ("sysparm_query", format!("number={number}").as_str()),
            (
                "sysparm_fields",
                "sys_id,number,state,approval,start_date,end_date"
            ),
            ("sysparm_display_value", "all"),
            ("sysparm_exclude_reference_link", "true"),
            ("sysparm_limit", "1"),
        ]
    );
    assert_eq!(
        received.authorization.as_deref(),
        Some(basic(SNOW_USER, SNOW_TOKEN).as_str())
    );
    assert_eq!(received.accept.as_deref(), Some("application/json"));
}

fn assert_approvals_query(received: &Received) {
    assert_eq!(received.path, "/api/now/table/sysapproval_approver");
    assert_eq!(
        received.query(),
        [
            (
                "sysparm_query",
                format!("sysapproval={SYS_ID}^state=approved").as_str()
            ),
            (
                "sysparm_fields",
                "approver,state,sysapproval,sys_updated_on"
            ),
            ("sysparm_display_value", "all"),
            ("sysparm_exclude_reference_link", "true"),
            ("sysparm_limit", "20"),
        ]
    );
    assert_eq!(
        received.authorization.as_deref(),
        Some(basic(SNOW_USER, SNOW_TOKEN).as_str())
    );
}

// ---------------------------------------------------------------------------------------
// ServiceNow

#[test]
fn an_approved_change_request_in_its_window_passes_and_its_evidence_is_shown() {
    let snow = servicenow();
    let host = snow_host(&snow);
    let head = add_b(&host, &with_trailer(NUMBER));
    let requirement = judged(&host, DURING, 0);
    assert_eq!(
        requirement,
        json!({
            "met": "yes",
            "summary": "CHG0012345 approved, Scheduled, planned until 2026-12-01 17:00 UTC",
            "requirement": "change",
            "system": "servicenow",
            "number": NUMBER,
            "state": "Scheduled",
            "approval": "approved",
            "approvers": ["Alice Approver"],
            "start": "2026-12-01T09:00:00Z",
            "end": "2026-12-01T17:00:00Z",
            "url": format!("{}/change_request.do?sys_id={SYS_ID}", snow.server.url()),
        })
    );
    let received = snow.with(|s| std::mem::take(&mut s.received));
    assert_eq!(received.len(), 2, "{received:?}");
    assert_change_request_query(&received[0], NUMBER);
    assert_approvals_query(&received[1]);

    let markdown = plan_run(&host, DURING, "markdown", true).expect(0).stdout;
    assert!(
        markdown.contains(
            "✅ change: CHG0012345 approved, Scheduled, planned until 2026-12-01 17:00 UTC"
        ),
        "{markdown}"
    );
    assert!(
        markdown.contains("CHG0012345 in ServiceNow: Scheduled, approval approved<br>approved by Alice Approver<br>planned 2026-12-01 09:00 UTC to 2026-12-01 17:00 UTC<br>`http"),
        "{markdown}"
    );
    let text = plan_run(&host, DURING, "text", true).expect(0).stdout;
    assert!(
        text.contains("    ✓ change: CHG0012345 approved, Scheduled, planned until 2026-12-01 17:00 UTC\n        CHG0012345 in ServiceNow: Scheduled, approval approved\n        approved by Alice Approver\n        planned 2026-12-01 09:00 UTC to 2026-12-01 17:00 UTC\n"),
        "{text}"
    );

    // The daemon's decision is the same, and the note and `explain` keep the evidence.
    host.reconcile(&["--now", DURING]).expect(0);
    assert!(applied_b(&host));
    assert!(summary(&host).contains(&format!("applied: {head}")));
    let explained = host.repo.gitward(&["explain", &head]).expect(0).stdout;
    assert!(explained.contains("Applied"), "{explained}");
    assert!(
        explained.contains("✓ change: CHG0012345 approved, Scheduled, planned until 2026-12-01 17:00 UTC\n        CHG0012345 in ServiceNow: Scheduled, approval approved\n        approved by Alice Approver\n"),
        "{explained}"
    );
}

#[test]
fn a_change_request_not_approved_or_in_another_state_blocks_the_change() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    snow.with(|s| s.set(NUMBER, "approval", "Requested", "requested"));
    let requirement = judged(&host, DURING, 1);
    assert_eq!(requirement["met"], "no");
    assert_eq!(
        requirement["summary"],
        "CHG0012345 is not approved (approval: requested)"
    );
    assert_eq!(requirement["approval"], "requested");
    let sarif = plan_run(&host, DURING, "sarif", true).expect(1).stdout;
    assert!(
        sarif.contains("CHG0012345 is not approved (approval: requested)"),
        "{sarif}"
    );
    let junit = plan_run(&host, DURING, "junit", true).expect(1).stdout;
    assert!(
        junit.contains("CHG0012345 in ServiceNow: Scheduled, approval requested"),
        "{junit}"
    );

    snow.with(|s| {
        s.set(NUMBER, "approval", "Approved", "approved");
        s.set(NUMBER, "state", "Assess", "-4");
    });
    let requirement = judged(&host, DURING, 1);
    assert_eq!(
        requirement["summary"],
        "CHG0012345 is Assess, not Scheduled or Implement"
    );
    // States compare with the display value, without case.
    snow.with(|s| s.set(NUMBER, "state", "IMPLEMENT", "-1"));
    assert_eq!(judged(&host, DURING, 0)["met"], "yes");

    snow.with(|s| s.set(NUMBER, "state", "Assess", "-4"));
    let run = host.reconcile(&["--now", DURING]).expect(1);
    assert!(run.stdout.contains("blocked"), "{}", run.stdout);
    assert!(!applied_b(&host));
    assert!(summary(&host).contains("result: blocked"));
}

#[test]
fn before_its_window_the_change_waits_and_is_applied_when_it_opens_without_a_new_commit() {
    let snow = servicenow();
    let host = snow_host(&snow);
    let head = add_b(&host, &with_trailer(NUMBER));
    let requirement = judged(&host, BEFORE, 0);
    assert_eq!(requirement["met"], "waiting");
    assert_eq!(
        requirement["summary"],
        "CHG0012345 approved, Scheduled; its planned start is 2026-12-01 09:00 UTC"
    );
    let run = host.reconcile(&["--now", BEFORE]).expect(1);
    assert!(run.stdout.contains("pending"), "{}", run.stdout);
    assert!(!applied_b(&host));
    let status = summary(&host);
    assert!(status.contains("result: pending"), "{status}");
    assert!(status.contains("opensAt: 2026-12-01T09:00:00Z"), "{status}");
    let explained = host.repo.gitward(&["explain", &head]).expect(0).stdout;
    assert!(explained.contains("Pending"), "{explained}");
    assert!(explained.contains("at 2026-12-01 09:00 UTC"), "{explained}");

    host.reconcile(&["--now", "2026-12-01T08:59:59Z"]).expect(1);
    assert!(!applied_b(&host));
    host.reconcile(&["--now", "2026-12-01T09:00:00Z"]).expect(0);
    assert!(applied_b(&host));
    assert_eq!(host.repo.git(&["rev-parse", "HEAD"]), head);
    assert!(summary(&host).contains(&format!("applied: {head}")));
}

#[test]
fn after_its_window_the_change_is_blocked() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    let requirement = judged(&host, AFTER, 1);
    assert_eq!(requirement["met"], "no");
    assert_eq!(
        requirement["summary"],
        "CHG0012345 approved, Scheduled, but its planned end 2026-12-01 17:00 UTC has passed"
    );
    // The end itself is outside.
    assert_eq!(judged(&host, "2026-12-01T17:00:00Z", 1)["met"], "no");
    // A change request without a planned window never passes.
    snow.with(|s| s.set(NUMBER, "end_date", "", ""));
    assert_eq!(
        judged(&host, DURING, 1)["summary"],
        "CHG0012345 approved, Scheduled, but it has no planned start and end"
    );
    host.reconcile(&["--now", AFTER]).expect(1);
    assert!(!applied_b(&host));
}

#[test]
fn a_change_request_that_cannot_be_read_fails_the_gate() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    let unread = |why: &str| {
        let requirement = judged(&host, DURING, 1);
        assert_eq!(requirement["met"], "no", "{why}: {requirement}");
        let summary = requirement["summary"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            summary.starts_with("CHG0012345 could not be read: "),
            "{why}: {summary}"
        );
        assert_eq!(
            requirement["problem"].as_str(),
            summary.strip_prefix("CHG0012345 could not be read: "),
            "{why}"
        );
        summary
    };

    // Without the host's endpoints, plan cannot ask.
    let requirement = change_requirement(
        &plan_run(&host, DURING, "json", false).expect(1).stdout,
        "change-approved",
    );
    assert_eq!(
        requirement["summary"],
        "CHG0012345 could not be read: change requests cannot be read without the host's endpoints (--config)"
    );
    assert!(snow.with(|s| s.received.is_empty()));

    snow.with(|s| s.mode = Mode::Fail);
    let said = unread("500");
    assert!(
        said.contains("ServiceNow: HTTP 500: ") && said.contains("Internal Server Error"),
        "{said}"
    );
    snow.with(|s| s.mode = Mode::Garbage);
    assert!(unread("garbage").contains("the answer is not JSON"));
    snow.with(|s| s.mode = Mode::Huge);
    assert!(unread("huge").contains("the answer is not JSON"));
    snow.with(|s| s.mode = Mode::Hang);
    unread("hanging");
    snow.with(|s| s.mode = Mode::Echo);
    let said = unread("echo");
    assert!(
        said.contains("HTTP 403: ") && said.contains("may not read change_request"),
        "{said}"
    );
    let encoded = basic(SNOW_USER, SNOW_TOKEN);
    let encoded = encoded.trim_start_matches("Basic ");
    for secret in [SNOW_TOKEN, encoded] {
        assert!(!said.contains(secret), "{said}");
    }
    snow.with(|s| s.mode = Mode::Serve);

    // An instance that does not apply the query answers every row: the first is another's.
    snow.with(|s| {
        let mut other = s.changes[0].clone();
        other["number"] = json!({"display_value": "CHG0099999", "value": "CHG0099999"});
        other["sys_id"] = json!({"display_value": "b".repeat(32), "value": "b".repeat(32)});
        s.changes.insert(0, other);
        s.known.insert("change_request", vec!["sys_id", "state"]);
    });
    assert_eq!(
        unread("another row"),
        "CHG0012345 could not be read: ServiceNow answered change request `CHG0099999` when asked for CHG0012345: its query was not applied"
    );
    // The same for the approvals: another change request's approval is not this one's.
    snow.with(|s| {
        s.known.insert(
            "change_request",
            vec!["sys_id", "number", "state", "approval"],
        );
        let mut other = s.approvals[0].clone();
        other["sysapproval"] = json!({"display_value": "CHG0099999", "value": "b".repeat(32)});
        s.approvals.insert(0, other);
        s.known.insert("sysapproval_approver", vec!["state"]);
    });
    assert!(unread("another approval").contains("approvals that are not approvals of CHG0012345"));
    snow.with(|s| {
        s.known
            .insert("sysapproval_approver", vec!["sysapproval", "state"]);
    });
    assert_eq!(judged(&host, DURING, 0)["met"], "yes");

    // A wrong credential; the token is never shown.
    std::fs::write(host.dir.path().join("snow-token"), "wrong\n").expect("token");
    let said = unread("401");
    assert!(
        said.contains("HTTP 401: ") && said.contains("User Not Authenticated"),
        "{said}"
    );
    assert!(!said.contains("wrong"));
    // No credential file: told without the host's path.
    std::fs::remove_file(host.dir.path().join("snow-token")).expect("remove");
    let said = unread("no credential");
    assert!(
        said.contains(
            "endpoint `snow-prod`: its credential cannot be read (the host's log says why)"
        ),
        "{said}"
    );
    assert!(
        !said.contains(&*host.dir.path().to_string_lossy()),
        "{said}"
    );
    std::fs::write(
        host.dir.path().join("snow-token"),
        format!("{SNOW_TOKEN}\n"),
    )
    .expect("token");

    // The daemon blocks on it the same way.
    snow.with(|s| s.mode = Mode::Fail);
    host.reconcile(&["--now", DURING]).expect(1);
    assert!(!applied_b(&host));
    assert!(summary(&host).contains("result: blocked"));
}

#[test]
fn an_endpoint_the_host_does_not_define_fails_the_gate_without_a_request() {
    let snow = servicenow();
    let other = SNOW_GATE.replace("snow-prod", "snow-elsewhere");
    let host = gated_host(
        &[("gate.yaml", gate("change-approved", &other))],
        &snow.server.url(),
        "http://127.0.0.1:9",
    );
    add_b(&host, &with_trailer(NUMBER));
    assert_eq!(
        judged(&host, DURING, 1)["summary"],
        "CHG0012345 could not be read: endpoint `snow-elsewhere` is not defined in this host's config"
    );
    host.reconcile(&["--now", DURING]).expect(1);
    assert!(!applied_b(&host));
    assert!(snow.with(|s| s.received.is_empty()));
}

#[test]
fn a_commit_without_one_well_formed_change_request_fails_without_a_request() {
    let snow = servicenow();
    let host = snow_host(&snow);
    let refused = |message: &str| {
        add_b(&host, message);
        let requirement = judged(&host, DURING, 1);
        assert_eq!(requirement["met"], "no", "{message:?}");
        assert!(
            snow.with(|s| s.received.is_empty()),
            "{message:?} was asked about"
        );
        requirement
    };
    assert_eq!(
        refused("Add b")["summary"],
        "the applied commit has no `Change-Request:` trailer"
    );
    assert_eq!(
        refused("Add b\n\nChange-Request: CHG0012345\nChange-Request: CHG0099999\n")["summary"],
        "the applied commit names 2 change requests (CHG0012345, CHG0099999): one is needed"
    );
    // The same value twice is one change request.
    add_b(
        &host,
        "Add b\n\nChange-Request: CHG0012345\nChange-Request: CHG0012345\n",
    );
    assert_eq!(judged(&host, DURING, 0)["met"], "yes");
    snow.with(|s| s.received.clear());

    let hostile = refused(&with_trailer("CHG1^ORnumber!=x"));
    assert_eq!(
        hostile["summary"],
        "`Change-Request: CHG1^ORnumber!=x` is not a ServiceNow change request number like CHG0012345"
    );
    assert_eq!(hostile["number"], "CHG1^ORnumber!=x");
    for value in [
        "CHG0012345^ORnumberISNOTEMPTY",
        "CHG0012345 OR number=CHG0099999",
        "chg0012345",
        "CHG0012345\n ^ORnumber!=x",
        "CHG0012345%5EORnumber!=x",
    ] {
        let summary = refused(&with_trailer(value))["summary"].to_string();
        assert!(
            summary.contains("is not a ServiceNow change request number"),
            "{value:?}: {summary}"
        );
    }
    let long = format!("CHG{}", "0".repeat(10_000));
    let summary = refused(&with_trailer(&long))["summary"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        summary.contains("is not a ServiceNow change request number"),
        "{summary}"
    );
    assert!(summary.len() < 400, "{summary}");
    host.reconcile(&["--now", DURING]).expect(1);
    assert!(!applied_b(&host));
    assert!(snow.with(|s| s.received.is_empty()));
}

#[test]
fn a_change_request_approved_later_is_applied_at_the_next_reconcile_without_a_new_commit() {
    let snow = servicenow();
    let host = snow_host(&snow);
    let head = add_b(&host, &with_trailer(NUMBER));
    snow.with(|s| {
        s.set(NUMBER, "approval", "Requested", "requested");
        s.approvals.clear();
    });
    host.reconcile(&["--now", DURING]).expect(1);
    assert!(!applied_b(&host));
    assert!(summary(&host).contains("result: blocked"));
    // Approved in ServiceNow; nothing new in Git.
    snow.with(|s| {
        s.set(NUMBER, "approval", "Approved", "approved");
        s.approvals = fixture("servicenow-sysapproval_approver.json")["result"]
            .as_array()
            .expect("rows")
            .clone();
    });
    host.reconcile(&["--now", "2026-12-01T10:01:00Z"]).expect(0);
    assert!(applied_b(&host));
    assert_eq!(host.repo.git(&["rev-parse", "HEAD"]), head);
    assert!(summary(&host).contains(&format!("applied: {head}")));
}

#[test]
fn the_daemon_applies_a_change_request_approved_later_at_its_next_poll() {
    let snow = servicenow();
    let now = Utc::now();
    let at = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    snow.with(|s| {
        s.set(NUMBER, "start_date", "", &at(now - Duration::hours(1)));
        s.set(NUMBER, "end_date", "", &at(now + Duration::hours(1)));
        s.set(NUMBER, "approval", "Requested", "requested");
    });
    let host = gated_host_at(
        &[("gate.yaml", gate("change-approved", SNOW_GATE))],
        &snow.server.url(),
        "http://127.0.0.1:9",
        &[],
    );
    let head = add_b(&host, &with_trailer(NUMBER));
    let config = host.dir.path().join("gitward.yaml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("pollInterval: 1h", "pollInterval: 1s"),
    )
    .expect("config");
    let daemon = Daemon::gitward(host.dir.path());
    let lookups = || {
        snow.with(|s| {
            s.received
                .iter()
                .filter(|r| r.path == "/api/now/table/change_request")
                .count()
        })
    };
    daemon.wait_until("the commit is blocked", || {
        summary(&host).contains("result: blocked")
    });
    // Blocked on a change request, the head is decided again at each poll.
    daemon.wait_until("asked again", || lookups() >= 3);
    assert!(!applied_b(&host));
    snow.with(|s| s.set(NUMBER, "approval", "Approved", "approved"));
    daemon.wait_until("applied without a new commit", || applied_b(&host));
    daemon.wait_until("the status records it", || {
        summary(&host).contains(&format!("applied: {head}"))
    });
    // Each blocked reconcile was to be tried again within the poll interval, not after the
    // backoff of a failing commit.
    let log = daemon.log();
    let blocked: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["result"] == "blocked" && l["fields"]["message"] == "reconciled")
        .collect();
    assert!(blocked.len() >= 2, "{log}");
    for line in &blocked {
        let time = |v: &Value| {
            v.as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .unwrap_or_else(|| panic!("a time in {line}"))
        };
        let retry = time(&line["fields"]["retry_at"]);
        let logged = time(&line["timestamp"]);
        assert!(retry - logged <= Duration::seconds(1), "{line}");
    }
}

#[test]
fn gates_asking_about_the_same_change_request_read_it_once() {
    let snow = servicenow();
    let host = gated_host(
        &[
            ("gate.yaml", gate("change-approved", SNOW_GATE)),
            (
                "gate-2.yaml",
                gate("change-implemented", &SNOW_GATE.replace("Scheduled, ", "")),
            ),
        ],
        &snow.server.url(),
        "http://127.0.0.1:9",
    );
    add_b(&host, &with_trailer(NUMBER));
    let plan = plan_run(&host, DURING, "json", true).expect(1).stdout;
    assert_eq!(change_requirement(&plan, "change-approved")["met"], "yes");
    assert_eq!(
        change_requirement(&plan, "change-implemented")["summary"],
        "CHG0012345 is Scheduled, not Implement"
    );
    let received = snow.with(|s| s.received.clone());
    assert_eq!(received.len(), 2, "{received:?}");
    assert_change_request_query(&received[0], NUMBER);
    assert_approvals_query(&received[1]);
}

// ---------------------------------------------------------------------------------------
// Jira

#[test]
fn a_jira_issue_passes_by_its_status() {
    let jira = jira(&[("OPS-42", "Approved")]);
    let host = gated_host(
        &[("gate.yaml", gate("change-approved", JIRA_GATE))],
        "http://127.0.0.1:9",
        &jira.server.url(),
    );
    let head = add_b(&host, &with_trailer("OPS-42"));
    let requirement = judged(&host, DURING, 0);
    assert_eq!(
        requirement,
        json!({
            "met": "yes",
            "summary": "OPS-42 is Approved",
            "requirement": "change",
            "system": "jira",
            "number": "OPS-42",
            "state": "Approved",
            "url": format!("{}/browse/OPS-42", jira.server.url()),
        })
    );
    let received = jira.with(|j| std::mem::take(&mut j.received));
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/rest/api/3/issue/OPS-42");
    assert_eq!(received[0].query(), [("fields", "status,summary,assignee")]);
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(basic(JIRA_USER, JIRA_TOKEN).as_str())
    );
    assert_eq!(received[0].accept.as_deref(), Some("application/json"));

    jira.with(|j| j.issues.get_mut("OPS-42").expect("issue").0 = "Waiting for approval".into());
    assert_eq!(
        judged(&host, DURING, 1)["summary"],
        "OPS-42 is Waiting for approval, not Approved or In Progress"
    );
    host.reconcile(&["--now", DURING]).expect(1);
    assert!(!applied_b(&host));
    jira.with(|j| j.issues.get_mut("OPS-42").expect("issue").0 = "in progress".into());
    host.reconcile(&["--now", DURING]).expect(0);
    assert!(applied_b(&host));
    assert!(summary(&host).contains(&format!("applied: {head}")));
}

#[test]
fn a_jira_issue_that_cannot_be_read_or_is_not_a_key_fails() {
    let jira = jira(&[("OPS-42", "Approved")]);
    let host = gated_host(
        &[("gate.yaml", gate("change-approved", JIRA_GATE))],
        "http://127.0.0.1:9",
        &jira.server.url(),
    );
    add_b(&host, &with_trailer("OPS-43"));
    let said = judged(&host, DURING, 1)["summary"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        said.starts_with("OPS-43 could not be read: Jira: HTTP 404: ")
            && said.contains("Issue does not exist"),
        "{said}"
    );
    jira.with(|j| j.mode = Mode::Garbage);
    add_b(&host, &with_trailer("OPS-42"));
    assert!(
        judged(&host, DURING, 1)["summary"]
            .to_string()
            .contains("the answer is not JSON")
    );
    jira.with(|j| {
        j.mode = Mode::Serve;
        j.received.clear();
    });
    for value in [
        "OPS-42 OR project = SECRET",
        "ops-42",
        "OPS-42/../../myself",
        "CHG0012345",
    ] {
        add_b(&host, &with_trailer(value));
        let summary = judged(&host, DURING, 1)["summary"].to_string();
        assert!(
            summary.contains("is not a Jira issue key like OPS-123"),
            "{value}: {summary}"
        );
    }
    assert!(jira.with(|j| j.received.is_empty()));
}

#[test]
fn a_jira_issue_with_planned_start_and_end_fields_waits_for_its_start() {
    let jira = jira(&[("OPS-42", "Approved")]);
    jira.with(|j| {
        let fields = &mut j.issues.get_mut("OPS-42").expect("issue").1;
        fields.insert(
            "customfield_10050".into(),
            json!("2026-12-01T10:00:00.000+0100"),
        );
        fields.insert("customfield_10051".into(), json!("2026-12-01"));
    });
    let windowed =
        format!("{JIRA_GATE}      window: {{start: customfield_10050, end: customfield_10051}}\n");
    let host = gated_host(
        &[("gate.yaml", gate("change-approved", &windowed))],
        "http://127.0.0.1:9",
        &jira.server.url(),
    );
    add_b(&host, &with_trailer("OPS-42"));
    let requirement = judged(&host, BEFORE, 0);
    assert_eq!(requirement["met"], "waiting");
    assert_eq!(requirement["start"], "2026-12-01T09:00:00Z");
    // A date as the end is the end of that day.
    assert_eq!(requirement["end"], "2026-12-02T00:00:00Z");
    assert_eq!(judged(&host, DURING, 0)["met"], "yes");
    assert_eq!(judged(&host, "2026-12-02T00:00:00Z", 1)["met"], "no");
    let received = jira.with(|j| j.received.clone());
    assert_eq!(
        received[0].query(),
        [(
            "fields",
            "status,summary,assignee,customfield_10050,customfield_10051"
        )]
    );
    host.reconcile(&["--now", BEFORE]).expect(1);
    assert!(summary(&host).contains("opensAt: 2026-12-01T09:00:00Z"));
    host.reconcile(&["--now", DURING]).expect(0);
    assert!(applied_b(&host));
}

#[test]
fn a_window_on_a_servicenow_requirement_is_refused() {
    let repo = common::TestRepo::new();
    repo.write(
        "gate.yaml",
        gate(
            "change-approved",
            &format!("{SNOW_GATE}      window: {{start: start_date, end: end_date}}\n"),
        ),
    );
    repo.commit("A gate");
    let run = repo.gitward(&["validate", "--allow-empty"]).expect(1);
    assert!(
        run.stdout.contains("`window` is for Jira"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
}
