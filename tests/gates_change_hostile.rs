//! Attacks on the `change:` gate requirement, through the binary with real Git repositories.
//! The repository is hostile (its gates, commit messages and trailers), and so are the answers
//! of ServiceNow and Jira (a compromised instance, or a man in the middle on http); the host
//! and its config are trusted. Each test is one attack: it passes while the attack fails. An
//! attack that still succeeds is `//!
//! The stand-ins for ServiceNow's Table API and Jira's issue GET answer in the documented
//! shapes of `tests/fixtures/change/`, on loopback; a test can make them answer anything.

use crate::common;
use crate::fakes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use common::host::{Host, ISSUERS, certificate};
use common::{Run, project_dir};
use fakes::{Server, query};

/// Inside the planned window of the change request (09:00 to 17:00 UTC).
const DURING: &str = "2026-12-01T10:00:00Z";
const BEFORE: &str = "2026-12-01T08:00:00Z";
const SETUP: &str = "2026-11-30T10:00:00Z";
const NUMBER: &str = "CHG0012345";
const OTHER: &str = "CHG0099999";
const SYS_ID: &str = "a9e9c33dc61122760072455df62663d2";
const SNOW_USER: &str = "gitward";
const SNOW_TOKEN: &str = "snow/secret+token";
const JIRA_USER: &str = "bot@example.com";
const JIRA_TOKEN: &str = "jira-secret-token";
const SPLUNK_TOKEN: &str = "splunk-hec-token-0123456789";

fn fixture(name: &str) -> Value {
    let path = project_dir().join("tests/fixtures/change").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("a fixture")).expect("JSON")
}

fn basic(user: &str, secret: &str) -> String {
    fakes::basic(user, secret)
}

// ---------------------------------------------------------------------------------------
// The stand-ins

#[derive(Debug, Clone)]
struct Received {
    path: String,
    query: Vec<(String, String)>,
    authorization: Option<String>,
}

impl Received {
    fn of(uri: &Uri, headers: &HeaderMap) -> Received {
        Received {
            path: uri.path().to_owned(),
            query: query(uri),
            authorization: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

/// An answer given whatever was asked: status, headers, body.
#[derive(Debug, Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Canned {
    fn json(body: Value) -> Canned {
        Canned::raw(200, &body.to_string())
    }

    fn raw(status: u16, body: &str) -> Canned {
        Canned {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: body.to_owned(),
        }
    }

    fn response(&self) -> Response {
        let mut response = (
            StatusCode::from_u16(self.status).expect("a status"),
            self.body.clone(),
        )
            .into_response();
        for (name, value) in &self.headers {
            response.headers_mut().insert(
                header::HeaderName::from_static(name),
                value.parse().expect("a header value"),
            );
        }
        response
    }
}

/// A stand-in on a runtime of its own, so that the tests stay synchronous.
struct Fake<S> {
    server: Server,
    state: Arc<Mutex<S>>,
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

struct Snow {
    changes: Vec<Value>,
    approvals: Vec<Value>,
    /// Answers instead of the rows, by table.
    canned: BTreeMap<String, Canned>,
    hang: bool,
    received: Vec<Received>,
}

impl Snow {
    fn change(&mut self, number: &str) -> &mut Value {
        self.changes
            .iter_mut()
            .find(|c| c["number"]["value"] == number)
            .expect("a change request of the stand-in")
    }

    fn set(&mut self, number: &str, field: &str, shown: &str, value: &str) {
        self.change(number)[field] = json!({"display_value": shown, "value": value});
    }

    /// The rows of `table` the query's `field=value` conditions select.
    fn rows(&self, table: &str, params: &[(String, String)]) -> Vec<Value> {
        let rows = if table == "change_request" {
            &self.changes
        } else {
            &self.approvals
        };
        let conditions: Vec<(String, String)> = params
            .iter()
            .find(|(k, _)| k == "sysparm_query")
            .map(|(_, q)| {
                q.split('^')
                    .filter_map(|c| c.split_once('='))
                    .map(|(f, v)| (f.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        rows.iter()
            .filter(|row| {
                conditions
                    .iter()
                    .all(|(field, value)| row[field.as_str()]["value"] == value.as_str())
            })
            .cloned()
            .collect()
    }
}

async fn snow_table(
    State(state): State<Arc<Mutex<Snow>>>,
    UrlPath(table): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let received = Received::of(&uri, &headers);
    let hang = {
        let mut snow = state.lock().unwrap_or_else(PoisonError::into_inner);
        snow.received.push(received.clone());
        snow.hang
    };
    if hang {
        std::future::pending::<()>().await;
    }
    let snow = state.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(canned) = snow.canned.get(&table) {
        return canned.response();
    }
    if received.authorization.as_deref() != Some(basic(SNOW_USER, SNOW_TOKEN).as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(fixture("servicenow-error-401.json")),
        )
            .into_response();
    }
    Json(json!({ "result": snow.rows(&table, &received.query) })).into_response()
}

fn servicenow() -> Fake<Snow> {
    let snow = Snow {
        changes: vec![fixture("servicenow-change_request.json")["result"][0].clone()],
        approvals: vec![fixture("servicenow-sysapproval_approver.json")["result"][0].clone()],
        canned: BTreeMap::new(),
        hang: false,
        received: Vec::new(),
    };
    Fake::start(snow, |state| {
        axum::Router::new()
            .route("/api/now/table/{table}", get(snow_table))
            .with_state(state)
    })
}

struct Jira {
    /// Each issue's status and other fields.
    issues: BTreeMap<String, (String, serde_json::Map<String, Value>)>,
    /// The key answered instead of the one asked for.
    answered_key: Option<String>,
    received: Vec<Received>,
}

async fn jira_issue(
    State(state): State<Arc<Mutex<Jira>>>,
    UrlPath(key): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let received = Received::of(&uri, &headers);
    let mut jira = state.lock().unwrap_or_else(PoisonError::into_inner);
    jira.received.push(received.clone());
    if received.authorization.as_deref() != Some(basic(JIRA_USER, JIRA_TOKEN).as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some((status, extra)) = jira.issues.get(&key) else {
        return (StatusCode::NOT_FOUND, Json(fixture("jira-error-404.json"))).into_response();
    };
    let mut issue = fixture("jira-issue.json");
    issue["key"] = json!(jira.answered_key.clone().unwrap_or(key));
    issue["fields"]["status"]["name"] = json!(status);
    for (name, value) in extra {
        issue["fields"][name] = value.clone();
    }
    Json(issue).into_response()
}

fn jira(issues: &[(&str, &str)]) -> Fake<Jira> {
    let jira = Jira {
        issues: issues
            .iter()
            .map(|(k, s)| ((*k).to_owned(), ((*s).to_owned(), Default::default())))
            .collect(),
        answered_key: None,
        received: Vec::new(),
    };
    Fake::start(jira, |state| {
        axum::Router::new()
            .route("/rest/api/3/issue/{key}", get(jira_issue))
            .with_state(state)
    })
}

/// A server that is neither: it records whatever reaches it and answers `canned`.
struct Elsewhere {
    canned: Canned,
    received: Vec<Received>,
}

async fn elsewhere_any(
    State(state): State<Arc<Mutex<Elsewhere>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut elsewhere = state.lock().unwrap_or_else(PoisonError::into_inner);
    elsewhere.received.push(Received::of(&uri, &headers));
    elsewhere.canned.response()
}

fn elsewhere(canned: Canned) -> Fake<Elsewhere> {
    let state = Elsewhere {
        canned,
        received: Vec::new(),
    };
    Fake::start(state, |state| {
        axum::Router::new()
            .fallback(elsewhere_any)
            .with_state(state)
    })
}

// ---------------------------------------------------------------------------------------
// Hosts and gates

fn gate(name: &str, change: &str) -> String {
    format!(
        "apiVersion: gitward/v1\nkind: Gate\nmetadata: {{name: {name}}}\nspec:\n  appliesTo: {{kinds: [Certificate], selector: {{env: prod}}}}\n  require:\n    change:\n{change}"
    )
}

const SNOW_GATE: &str =
    "      system: servicenow\n      endpoint: snow-prod\n      states: [Scheduled, Implement]\n";
const JIRA_GATE: &str = "      system: jira\n      endpoint: jira-cloud\n      states: [Approved, In Progress]\n      projects: [OPS]\n";

/// The host config's endpoints: the two systems, and a Splunk HEC endpoint at `splunk`.
fn endpoints(snow: &str, jira: &str, splunk: &str, timeout: &str) -> String {
    format!(
        "endpoints:\n  snow-prod: {{url: \"{snow}\", user: {SNOW_USER}, tokenFile: snow-token, timeout: {timeout}}}\n  jira-cloud: {{url: \"{jira}/\", user: {JIRA_USER}, tokenFile: jira-token, timeout: {timeout}}}\n  splunk-prod: {{url: \"{splunk}\", tokenFile: splunk-token, timeout: {timeout}}}\n"
    )
}

const NOWHERE: &str = "http://127.0.0.1:9";

struct Urls<'a> {
    snow: &'a str,
    jira: &'a str,
    splunk: &'a str,
    timeout: &'a str,
}

impl Default for Urls<'_> {
    fn default() -> Self {
        Urls {
            snow: NOWHERE,
            jira: NOWHERE,
            splunk: NOWHERE,
            timeout: "2s",
        }
    }
}

/// A host whose commit in force (tagged `gated`) holds certificate `a` and `gates`.
fn gated_host(gates: &[(&str, String)], urls: Urls<'_>) -> Host {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    host.config(&endpoints(urls.snow, urls.jira, urls.splunk, urls.timeout));
    for (file, token) in [
        ("snow-token", SNOW_TOKEN),
        ("jira-token", JIRA_TOKEN),
        ("splunk-token", SPLUNK_TOKEN),
    ] {
        std::fs::write(host.dir.path().join(file), format!("{token}\n")).expect("token");
    }
    host.reconcile(&["--now", SETUP]).expect(0);
    for (file, text) in gates {
        host.repo.write(file, text);
    }
    host.repo.commit("Gate prod changes on change requests");
    host.repo.git(&["tag", "gated"]);
    host.reconcile(&["--now", SETUP]).expect(0);
    host
}

fn snow_host(snow: &Fake<Snow>) -> Host {
    gated_host(
        &[("gate.yaml", gate("change-approved", SNOW_GATE))],
        Urls {
            snow: &snow.server.url(),
            ..Urls::default()
        },
    )
}

fn add_b(host: &Host, message: &str) -> String {
    host.repo
        .write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    host.repo.commit(message)
}

fn with_trailer(value: &str) -> String {
    format!("Add b\n\nChange-Request: {value}\n")
}

fn plan_run(host: &Host, now: &str, format: &str) -> Run {
    let config = host.dir.path().join("gitward.yaml");
    let config = config.to_string_lossy();
    host.repo.gitward(&[
        "plan", "--base", "gated", "--head", "HEAD", "--now", now, "--format", format, "--config",
        &config,
    ])
}

fn gate_of(plan: &Value, gate: &str) -> Value {
    plan["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["name"] == gate)
        .unwrap_or_else(|| panic!("gate {gate} in {plan}"))
        .clone()
}

/// The `change` requirement of gate `gate` in a JSON plan.
fn change_of(plan: &str, gate: &str) -> Value {
    let plan: Value = serde_json::from_str(plan).expect("a JSON plan");
    gate_of(&plan, gate)["requirements"]
        .as_array()
        .expect("requirements")
        .iter()
        .find(|r| r["requirement"] == "change")
        .expect("a change requirement")
        .clone()
}

/// The change requirement of gate `change-approved` in the plan of HEAD at `now`, whatever
/// the exit code (a crash is not one of the plan's codes).
fn judged(host: &Host, now: &str) -> Value {
    let run = plan_run(host, now, "json");
    assert!(
        run.code == 0 || run.code == 1,
        "plan ended with {}\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    change_of(&run.stdout, "change-approved")
}

fn summary(host: &Host) -> String {
    host.repo.git(&["show", "gitward/status:summary.yaml"])
}

fn applied_b(host: &Host) -> bool {
    host.out("b").join("cert.pem").exists()
}

// ---------------------------------------------------------------------------------------
// The trailer: only the applied commit's, in its trailer block

#[test]
fn a_trailer_on_a_merged_in_commit_or_outside_the_trailer_block_does_not_count() {
    let snow = servicenow();
    let host = snow_host(&snow);
    // A side branch commit names the change request; the merge that is applied does not.
    host.repo.git(&["checkout", "-q", "-b", "side"]);
    add_b(&host, &with_trailer(NUMBER));
    host.repo.git(&["checkout", "-q", "main"]);
    host.repo
        .write("c.yaml", certificate("c", "  dnsNames: [c.example.com]\n"));
    host.repo.commit("Add c");
    host.repo
        .git(&["merge", "-q", "--no-ff", "-m", "Merge side", "side"]);
    let requirement = judged(&host, DURING);
    assert_eq!(requirement["met"], "no", "{requirement}");
    assert_eq!(
        requirement["summary"],
        "the applied commit has no `Change-Request:` trailer"
    );
    // In the body, followed by another paragraph: not a trailer, as git reads it.
    add_b(
        &host,
        &format!("Add b\n\nChange-Request: {NUMBER}\n\nAnd some words after it.\n"),
    );
    assert_eq!(
        judged(&host, DURING)["summary"],
        "the applied commit has no `Change-Request:` trailer"
    );
    // An earlier commit of the change names it, the applied one does not.
    add_b(&host, &with_trailer(NUMBER));
    host.repo
        .write("d.yaml", certificate("d", "  dnsNames: [d.example.com]\n"));
    host.repo.commit("Add d");
    assert_eq!(judged(&host, DURING)["met"], "no");
    assert!(snow.with(|s| s.received.is_empty()));
    host.reconcile(&["--now", DURING]).expect(1);
    assert!(!host.out("d").join("cert.pem").exists());
}

#[test]
fn values_that_only_look_like_a_change_request_number_are_never_asked_about() {
    let snow = servicenow();
    let host = snow_host(&snow);
    for value in [
        "ＣＨＧ００１２３４５", // full-width
        "CHG٠٠١٢٣٤٥",           // Arabic-Indic digits
        "CHG0012345\u{200b}",   // a zero-width space after it
        "CHG\u{200b}0012345",
        "CΗG0012345", // a Greek Eta
        "CHG0012345,CHG0099999",
        "CHG0012345;CHG0099999",
        "CHG0012345&sysparm_query=number=CHG0099999",
        "CHG0012345#",
    ] {
        add_b(&host, &with_trailer(value));
        let requirement = judged(&host, DURING);
        assert_eq!(requirement["met"], "no", "{value:?}: {requirement}");
        assert!(
            requirement["summary"]
                .as_str()
                .is_some_and(|s| s.contains("is not a ServiceNow change request number")),
            "{value:?}: {requirement}"
        );
    }
    // Two spellings of the key are one trailer, as in git: two values, one is needed.
    add_b(
        &host,
        &format!("Add b\n\nChange-Request: {NUMBER}\nchange-request: {OTHER}\n"),
    );
    assert!(
        judged(&host, DURING)["summary"]
            .as_str()
            .is_some_and(|s| s.contains("names 2 change requests"))
    );
    assert!(snow.with(|s| s.received.is_empty()));
}

// ---------------------------------------------------------------------------------------
// The repository weakening the gate it must pass

#[test]
fn a_commit_that_weakens_the_gate_is_judged_by_the_gate_in_force() {
    let snow = servicenow();
    let host = snow_host(&snow);
    snow.with(|s| s.set(NUMBER, "approval", "Requested", "requested"));
    for weakened in [
        // The states of the change request as it is.
        SNOW_GATE.replace("[Scheduled, Implement]", "[Scheduled, Assess, New]"),
        // Another trailer, another endpoint, another system.
        format!("{SNOW_GATE}      trailer: Some-Other\n"),
        SNOW_GATE.replace("snow-prod", "splunk-prod"),
        JIRA_GATE.to_owned(),
    ] {
        host.repo
            .write("gate.yaml", gate("change-approved", &weakened));
        add_b(&host, &with_trailer(NUMBER));
        let requirement = judged(&host, DURING);
        assert_eq!(requirement["met"], "no", "{weakened}: {requirement}");
        assert_eq!(
            requirement["summary"], "CHG0012345 is not approved (approval: requested)",
            "{weakened}"
        );
        host.reconcile(&["--now", DURING]).expect(1);
        assert!(!applied_b(&host));
        host.repo.git(&["reset", "-q", "--hard", "gated"]);
    }
    // Deleting the gate, or everything it applies to, with the change.
    host.repo.remove("gate.yaml");
    add_b(&host, "Add b, drop the gate");
    let plan: Value =
        serde_json::from_str(&plan_run(&host, DURING, "json").expect(1).stdout).expect("JSON");
    assert_eq!(gate_of(&plan, "change-approved")["outcome"], "fail");
    host.reconcile(&["--now", DURING]).expect(1);
    assert!(!applied_b(&host));
}

#[test]
fn relabelling_a_gated_certificate_out_of_the_selector_with_the_change_does_not_escape_the_gate() {
    let snow = servicenow();
    let host = snow_host(&snow);
    // Certificate `a` (env: prod, target web) gets another name and leaves `env: prod` in the
    // same commit, which names no change request.
    host.repo.write(
        "a.yaml",
        "apiVersion: gitward/v1\nkind: Certificate\nmetadata: {name: a, labels: {env: dev, owner: web}}\nspec:\n  issuerRef: issuing\n  target: web\n  dnsNames: [a.example.com, evil.example.com]\n",
    );
    host.repo.commit("Tidy labels");
    let run = host.reconcile(&["--now", DURING]);
    let pem = host.out("a").join("cert.pem");
    assert!(
        !host.text(&pem).contains("evil.example.com"),
        "the certificate for the prod target was reissued without a change request: {}",
        run.stdout
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    let run = plan_run(&host, DURING, "json");
    let plan: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(
        gate_of(&plan, "change-approved")["outcome"],
        "fail",
        "{plan}"
    );
}

// ---------------------------------------------------------------------------------------
// Jira: an issue anyone can make

#[test]
fn a_jira_issue_of_a_project_the_gate_is_not_about_does_not_pass() {
    // OPS is where changes are approved; PLAY is a project any developer can create, with
    // whatever workflow statuses they like.
    let jira = jira(&[("OPS-42", "Waiting for approval"), ("PLAY-7", "Approved")]);
    let jira_url = jira.server.url();
    let host = gated_host(
        &[("gate.yaml", gate("change-approved", JIRA_GATE))],
        Urls {
            jira: &jira_url,
            ..Urls::default()
        },
    );
    add_b(&host, &with_trailer("PLAY-7"));
    let requirement = judged(&host, DURING);
    assert_eq!(
        requirement["met"], "no",
        "an issue of another project passed: {requirement}"
    );
    host.reconcile(&["--now", DURING]).expect(1);
    assert!(!applied_b(&host));
}

#[test]
fn a_jira_answer_about_another_key_or_a_key_in_another_spelling_does_not_pass() {
    let jira = jira(&[("OPS-42", "Approved")]);
    let jira_url = jira.server.url();
    let host = gated_host(
        &[("gate.yaml", gate("change-approved", JIRA_GATE))],
        Urls {
            jira: &jira_url,
            ..Urls::default()
        },
    );
    add_b(&host, &with_trailer("OPS-42"));
    // A moved issue answers with its new key; a hostile one in another case or padded.
    for answered in [
        "NEW-42",
        "ops-42",
        "OPS-42 ",
        "OPS-042",
        "OPS-42\u{200b}",
        "",
    ] {
        jira.with(|j| j.answered_key = Some(answered.to_owned()));
        let requirement = judged(&host, DURING);
        assert_eq!(requirement["met"], "no", "{answered:?}: {requirement}");
        assert!(
            requirement["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("OPS-42 could not be read: Jira answered issue")),
            "{answered:?}: {requirement}"
        );
    }
    jira.with(|j| j.answered_key = None);
    assert_eq!(judged(&host, DURING)["met"], "yes");
    // Statuses are compared as names: a look-alike is another status.
    for status in [
        "Approved\u{200b}",
        "Аpproved", // a Cyrillic A
        "Approved (by nobody)",
        "Not Approved",
        "In\u{a0}Progress",
    ] {
        jira.with(|j| j.issues.get_mut("OPS-42").expect("issue").0 = status.to_owned());
        assert_eq!(judged(&host, DURING)["met"], "no", "{status:?}");
    }
}

#[test]
fn jira_window_fields_of_a_gate_cannot_reach_the_query_beyond_the_fields_parameter() {
    let repo = common::TestRepo::new();
    for field in ["a,b", "a&jql=project=SECRET", "../myself", "a b", "*all"] {
        let windowed =
            format!("{JIRA_GATE}      window: {{start: \"{field}\", end: customfield_2}}\n");
        repo.write("gate.yaml", gate("change-approved", &windowed));
        repo.commit("A gate");
        let run = repo.gitward(&["validate", "--allow-empty"]);
        assert_eq!(run.code, 1, "{field:?} was accepted\n{}", run.stdout);
        assert!(
            run.stdout.contains("spec.require.change.window.start: `"),
            "{field:?}: {}",
            run.stdout
        );
    }
}

// ---------------------------------------------------------------------------------------
// ServiceNow answering about something else

#[test]
fn a_servicenow_answer_about_another_or_a_differently_spelled_number_does_not_pass() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    let row = snow.with(|s| s.changes[0].clone());
    let with_number = |number: Value| {
        let mut row = row.clone();
        row["number"] = number;
        row
    };
    for (what, rows) in [
        (
            "lowercase",
            vec![with_number(
                json!({"display_value": NUMBER, "value": "chg0012345"}),
            )],
        ),
        (
            "padded",
            vec![with_number(
                json!({"display_value": NUMBER, "value": "CHG0012345 "}),
            )],
        ),
        (
            "only the display value is the number",
            vec![with_number(
                json!({"display_value": NUMBER, "value": OTHER}),
            )],
        ),
        (
            "no value",
            vec![with_number(json!({"display_value": NUMBER}))],
        ),
        ("a number that is not text", vec![with_number(json!(12345))]),
        (
            "the right row, then another",
            vec![
                row.clone(),
                with_number(json!({"display_value": OTHER, "value": OTHER})),
            ],
        ),
        (
            "another row, then the right one",
            vec![
                with_number(json!({"display_value": OTHER, "value": OTHER})),
                row.clone(),
            ],
        ),
    ] {
        snow.with(|s| {
            s.canned.insert(
                "change_request".into(),
                Canned::json(json!({ "result": rows })),
            )
        });
        let requirement = judged(&host, DURING);
        assert_eq!(requirement["met"], "no", "{what}: {requirement}");
        assert!(
            requirement["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("CHG0012345 could not be read: ")),
            "{what}: {requirement}"
        );
    }
    // A result that is not a list, or no rows at all.
    for body in [
        json!({"result": row}),
        json!({"result": []}),
        json!({"records": [row]}),
        json!([row]),
    ] {
        snow.with(|s| {
            s.canned
                .insert("change_request".into(), Canned::json(body.clone()))
        });
        assert_eq!(judged(&host, DURING)["met"], "no", "{body}");
    }
    // A sys_id that is not one never reaches the approvals query.
    snow.with(|s| {
        s.canned.clear();
        s.received.clear();
        s.set(NUMBER, "sys_id", "x", "x^ORstate!=approved");
    });
    assert_eq!(judged(&host, DURING)["met"], "no");
    let received = snow.with(|s| s.received.clone());
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].path, "/api/now/table/change_request");
}

#[test]
fn a_change_request_marked_approved_without_any_approval_record_does_not_pass() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    // The requester set `approval` through the Table API; nobody approved it.
    snow.with(|s| s.approvals.clear());
    let requirement = judged(&host, DURING);
    assert_eq!(requirement["approvers"], json!(null), "{requirement}");
    assert_eq!(requirement["met"], "no", "{requirement}");
    host.reconcile(&["--now", DURING]).expect(1);
    assert!(!applied_b(&host));
}

#[test]
fn approval_and_state_are_compared_strictly() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    assert_eq!(judged(&host, DURING)["met"], "yes");
    // The approval's value is what counts, not what people see.
    for (shown, value) in [
        ("Approved", "requested"),
        ("Approved", "not approved"),
        ("Approved", "rejected"),
        ("Approved", "approved\u{200b}"),
        ("Approved", ""),
        ("approved", "not_yet_requested"),
    ] {
        snow.with(|s| s.set(NUMBER, "approval", shown, value));
        let requirement = judged(&host, DURING);
        assert_eq!(requirement["met"], "no", "{value:?}: {requirement}");
    }
    snow.with(|s| s.set(NUMBER, "approval", "Approved", "approved"));
    for shown in [
        "Scheduled\u{200b}",
        "Ѕcheduled", // a Cyrillic Dze
        "Scheduled, not",
        "Implementation",
        "ＳＣＨＥＤＵＬＥＤ",
        "",
    ] {
        snow.with(|s| s.set(NUMBER, "state", shown, "-2"));
        let requirement = judged(&host, DURING);
        assert_eq!(requirement["met"], "no", "{shown:?}: {requirement}");
    }
}

#[test]
fn the_planned_window_is_its_utc_values_and_a_date_in_another_form_is_refused() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    // What people see (their time zone) says it is still open; the UTC value says it ended.
    snow.with(|s| {
        s.set(
            NUMBER,
            "end_date",
            "2026-12-01 23:00:00",
            "2026-12-01 17:00:00",
        );
    });
    assert_eq!(judged(&host, "2026-12-01T17:30:00Z")["met"], "no");
    // Times in other forms, with a zone or none at all, are refused rather than guessed.
    for end in [
        "2026-12-01T23:00:00+14:00",
        "2026-12-01 23:00:00 +1400",
        "2026-12-01 23:00:00Z",
        "2026-12-01",
        "01/12/2026 23:00:00",
        "2026-12-01 23:00",
        "2026-12-01 24:00:00",
        "2026-12-01 23:00:00.999999",
    ] {
        snow.with(|s| s.set(NUMBER, "end_date", end, end));
        let requirement = judged(&host, DURING);
        assert_eq!(requirement["met"], "no", "{end:?}: {requirement}");
    }
    // Without an end, or with the dates not as text, the window is not open.
    for end in [
        json!(null),
        json!(1_797_000_000),
        json!({"value": null}),
        json!([]),
    ] {
        snow.with(|s| s.change(NUMBER)["end_date"] = end.clone());
        assert_eq!(judged(&host, DURING)["met"], "no", "{end}");
    }
}

#[test]
fn a_window_that_ends_before_it_starts_never_waits() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    snow.with(|s| s.set(NUMBER, "end_date", "", "2026-12-01 08:00:00"));
    // Never passes either way; before its start it must not be announced as pending.
    assert_eq!(judged(&host, DURING)["met"], "no");
    let requirement = judged(&host, BEFORE);
    assert_eq!(requirement["met"], "no", "{requirement}");
    let run = host.reconcile(&["--now", BEFORE]).expect(1);
    assert!(!run.stdout.contains("pending"), "{}", run.stdout);
    assert!(!summary(&host).contains("opensAt"));
}

#[test]
fn a_jira_window_with_a_time_without_a_zone_is_refused() {
    let jira = jira(&[("OPS-42", "Approved")]);
    let jira_url = jira.server.url();
    let windowed =
        format!("{JIRA_GATE}      window: {{start: customfield_10050, end: customfield_10051}}\n");
    let host = gated_host(
        &[("gate.yaml", gate("change-approved", &windowed))],
        Urls {
            jira: &jira_url,
            ..Urls::default()
        },
    );
    add_b(&host, &with_trailer("OPS-42"));
    for (start, end) in [
        (json!("2026-12-01T09:00:00"), json!("2026-12-01T17:00:00")),
        (json!("2026-12-01T09:00:00.000+0000"), json!("tomorrow")),
        (json!("2026-12-01T09:00:00.000+0000"), json!(null)),
        (json!(null), json!("2026-12-01T17:00:00.000+0000")),
        (json!({"value": "2026-12-01"}), json!("2026-12-02")),
    ] {
        jira.with(|j| {
            let fields = &mut j.issues.get_mut("OPS-42").expect("issue").1;
            fields.insert("customfield_10050".into(), start.clone());
            fields.insert("customfield_10051".into(), end.clone());
        });
        let requirement = judged(&host, DURING);
        assert_eq!(requirement["met"], "no", "{start} {end}: {requirement}");
    }
}

// ---------------------------------------------------------------------------------------
// Time: pending is decided again at the start

#[test]
fn a_change_request_revoked_while_the_change_waits_for_its_start_is_not_applied() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    let run = host.reconcile(&["--now", BEFORE]).expect(1);
    assert!(run.stdout.contains("pending"), "{}", run.stdout);
    // Rejected, or moved to another window, while waiting.
    snow.with(|s| s.set(NUMBER, "approval", "Rejected", "rejected"));
    host.reconcile(&["--now", "2026-12-01T09:00:00Z"]).expect(1);
    assert!(!applied_b(&host));
    assert!(summary(&host).contains("result: blocked"));
    snow.with(|s| {
        s.set(NUMBER, "approval", "Approved", "approved");
        s.set(NUMBER, "start_date", "", "2026-12-02 09:00:00");
        s.set(NUMBER, "end_date", "", "2026-12-02 17:00:00");
    });
    host.reconcile(&["--now", "2026-12-01T09:30:00Z"]).expect(1);
    assert!(!applied_b(&host));
    assert!(summary(&host).contains("opensAt: 2026-12-02T09:00:00Z"));
}

// ---------------------------------------------------------------------------------------
// Where requests and credentials go

#[test]
fn a_redirect_from_the_system_is_not_followed() {
    let other = elsewhere(Canned::json(json!({"result": []})));
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    let mut redirect = Canned::raw(302, "");
    redirect.headers.push((
        "location",
        format!("{}/api/now/table/change_request", other.server.url()),
    ));
    snow.with(|s| s.canned.insert("change_request".into(), redirect.clone()));
    let requirement = judged(&host, DURING);
    assert_eq!(requirement["met"], "no", "{requirement}");
    assert!(
        requirement["summary"]
            .as_str()
            .is_some_and(|s| s.contains("HTTP 302")),
        "{requirement}"
    );
    assert!(other.with(|o| o.received.is_empty()));
}

#[test]
fn a_gate_naming_an_endpoint_meant_for_something_else_sends_its_credential_nowhere_else() {
    // The Splunk endpoint's server echoes what it was sent, as a careless one might.
    let splunk = elsewhere(Canned::raw(
        403,
        &format!("{{\"text\":\"Invalid token Bearer {SPLUNK_TOKEN}\",\"code\":4}}"),
    ));
    let snow = servicenow();
    let jira = jira(&[("OPS-42", "Approved")]);
    let (snow_url, jira_url, splunk_url) =
        (snow.server.url(), jira.server.url(), splunk.server.url());
    let host = gated_host(
        &[
            (
                "gate.yaml",
                gate(
                    "change-approved",
                    &SNOW_GATE.replace("snow-prod", "splunk-prod"),
                ),
            ),
            (
                "gate-2.yaml",
                gate(
                    "jira-through-snow",
                    &JIRA_GATE.replace("jira-cloud", "snow-prod"),
                ),
            ),
        ],
        Urls {
            snow: &snow_url,
            jira: &jira_url,
            splunk: &splunk_url,
            ..Urls::default()
        },
    );
    add_b(&host, &with_trailer(NUMBER));
    let run = plan_run(&host, DURING, "json").expect(1);
    assert_eq!(change_of(&run.stdout, "change-approved")["met"], "no");
    // Each credential went to its own endpoint's URL only.
    let received = splunk.with(|s| s.received.clone());
    assert!(!received.is_empty());
    for r in &received {
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {SPLUNK_TOKEN}").as_str())
        );
    }
    assert!(snow.with(|s| s.received.is_empty()));
    assert!(jira.with(|j| j.received.is_empty()));
    // What the other endpoint echoed is not shown with its credential.
    for format in ["json", "text", "markdown", "sarif", "junit"] {
        let out = plan_run(&host, DURING, format).stdout;
        assert!(!out.contains(SPLUNK_TOKEN), "{format}: {out}");
    }
    host.reconcile(&["--now", DURING]).expect(1);
    let head = host.repo.git(&["rev-parse", "HEAD"]);
    let note = host.repo.gitward(&["explain", &head]).stdout;
    assert!(!note.contains(SPLUNK_TOKEN), "{note}");
    assert!(!summary(&host).contains(SPLUNK_TOKEN));
}

#[test]
fn the_credential_echoed_json_escaped_is_not_shown() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    let escaped_slash = SNOW_TOKEN.replace('/', "\\/");
    let as_unicode = SNOW_TOKEN.replace('/', "\\u002f");
    let encoded = basic(SNOW_USER, SNOW_TOKEN);
    let encoded = encoded.trim_start_matches("Basic ").replace('/', "\\/");
    // An error whose JSON escapes `/`, as many encoders do; then a row whose number is the
    // token, as a hostile instance may answer.
    let cases = [
        Canned::raw(
            403,
            &format!(
                "{{\"error\":{{\"message\":\"{SNOW_USER}:{escaped_slash} may not read\",\"detail\":\"{encoded}\"}},\"status\":\"failure\"}}"
            ),
        ),
        Canned::raw(
            200,
            &format!(
                "{{\"result\":[{{\"number\":{{\"value\":\"{as_unicode}\"}},\"sys_id\":\"{SYS_ID}\"}}]}}"
            ),
        ),
        Canned::raw(
            200,
            &format!("{{\"result\":[{{\"number\":\"{NUMBER}\",\"sys_id\":\"{as_unicode}\"}}]}}"),
        ),
    ];
    let plain = SNOW_TOKEN.replace('/', "");
    let tail = "secret+token";
    let mut leaked = Vec::new();
    for canned in cases {
        snow.with(|s| s.canned.insert("change_request".into(), canned.clone()));
        let requirement = judged(&host, DURING);
        assert_eq!(requirement["met"], "no");
        let out = plan_run(&host, DURING, "text").stdout + &requirement.to_string();
        if [SNOW_TOKEN, &plain, tail, &encoded]
            .iter()
            .any(|secret| out.contains(secret))
        {
            leaked.push(format!("{}\n => {}", canned.body, requirement["summary"]));
        }
    }
    // And from there to the commit's note and the status branch.
    host.reconcile(&["--now", DURING]).expect(1);
    let head = host.repo.git(&["rev-parse", "HEAD"]);
    let kept = summary(&host) + &host.repo.gitward(&["explain", &head]).stdout;
    if kept.contains(SNOW_TOKEN) {
        leaked.push(format!("the note or the status branch: {kept}"));
    }
    assert!(leaked.is_empty(), "{}", leaked.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Bounds: time, memory, crashes

#[test]
fn many_gates_and_trailers_against_a_hanging_system_end_within_the_lookup_budget() {
    let snow = servicenow();
    snow.with(|s| s.hang = true);
    // Twelve gates, each reading its own trailer, each endpoint allowed a minute.
    let gates: Vec<(String, String)> = (0..12)
        .map(|n| {
            (
                format!("gate-{n}.yaml"),
                gate(
                    &format!("change-{n}"),
                    &format!("{SNOW_GATE}      trailer: Change-{n}\n"),
                ),
            )
        })
        .collect();
    let gates: Vec<(&str, String)> = gates.iter().map(|(f, g)| (f.as_str(), g.clone())).collect();
    let snow_url = snow.server.url();
    let host = gated_host(
        &gates,
        Urls {
            snow: &snow_url,
            timeout: "60s",
            ..Urls::default()
        },
    );
    let trailers: String = (0..12)
        .map(|n| format!("Change-{n}: CHG{:07}\n", 1000 + n))
        .collect();
    add_b(&host, &format!("Add b\n\n{trailers}"));
    // Hang guard only: the plan ends on its own once the budget is spent.
    let (done, ended) = std::sync::mpsc::channel();
    let dir = host.repo.path().to_owned();
    let config = host.dir.path().join("gitward.yaml");
    std::thread::spawn(move || {
        let config = config.to_string_lossy().into_owned();
        let run = common::gitward_in(
            &dir,
            &[
                "plan", "--base", "gated", "--head", "HEAD", "--now", DURING, "--format", "json",
                "--config", &config,
            ],
        );
        let _ = done.send(run);
    });
    let run = ended
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("the plan ends within the hang guard")
        .expect(1);
    for n in 0..12 {
        let requirement = change_of(&run.stdout, &format!("change-{n}"));
        assert_eq!(requirement["met"], "no");
        assert!(
            requirement["summary"].as_str().is_some_and(|s| s
                .contains("no answer within 30 seconds")
                || s.contains("timed out")),
            "{requirement}"
        );
    }
}

#[test]
fn hostile_answers_neither_crash_nor_pass() {
    let snow = servicenow();
    let host = snow_host(&snow);
    add_b(&host, &with_trailer(NUMBER));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let many_approvers = json!({"result": (0..100).map(|n| json!({
        "approver": {"display_value": format!("approver {n}"), "value": "u"},
        "state": {"value": "approved"},
        "sysapproval": {"value": SYS_ID},
    })).collect::<Vec<_>>()});
    for (table, canned) in [
        ("change_request", Canned::raw(200, &deep)),
        ("change_request", Canned::raw(200, "{\"result\": [")),
        (
            "change_request",
            Canned::raw(200, "\u{feff}{\"result\": []}"),
        ),
        ("change_request", Canned::raw(200, "null")),
        ("change_request", Canned::raw(200, &"\"".repeat(1 << 20))),
        ("sysapproval_approver", Canned::raw(200, &deep)),
        (
            "sysapproval_approver",
            Canned::json(json!({"result": "all"})),
        ),
    ] {
        snow.with(|s| {
            s.canned.clear();
            s.canned.insert(table.into(), canned.clone());
        });
        let requirement = judged(&host, DURING);
        assert_eq!(requirement["met"], "no", "{table}: {requirement}");
    }
    // More approvers than are listed: bounded, and the change still passes on its approval.
    snow.with(|s| {
        s.canned.clear();
        s.canned
            .insert("sysapproval_approver".into(), Canned::json(many_approvers));
    });
    let requirement = judged(&host, DURING);
    assert!(
        requirement["approvers"]
            .as_array()
            .is_some_and(|a| a.len() <= 20),
        "{requirement}"
    );
    // Dates at the ends of what can be written: no crash; far off, the change waits or fails.
    snow.with(|s| s.canned.clear());
    for (start, end) in [
        ("9999-12-31 23:59:58", "9999-12-31 23:59:59"),
        ("+262142-12-31 23:59:59", "+262143-01-01 00:00:00"),
        ("0000-01-01 00:00:00", "0001-01-01 00:00:00"),
        ("-0001-01-01 00:00:00", "0001-01-01 00:00:00"),
    ] {
        snow.with(|s| {
            s.set(NUMBER, "start_date", "", start);
            s.set(NUMBER, "end_date", "", end);
        });
        let requirement = judged(&host, DURING);
        assert_ne!(requirement["met"], "yes", "{start} {end}: {requirement}");
        let run = host.reconcile(&["--now", DURING]);
        assert_eq!(run.code, 1, "{start}: {}\n{}", run.stdout, run.stderr);
        assert!(!applied_b(&host));
    }
}
