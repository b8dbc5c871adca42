//! The `pagerduty` sink against a stand-in for PagerDuty's Events API v2 on loopback (no
//! PagerDuty runs here): it checks every request against the documented shape, answering the
//! documented 400 otherwise, keeps alerts by `dedup_key` as PagerDuty does (a trigger opens
//! one or lands on the open one, a resolve closes it, a resolve without an open alert is
//! dropped), and can be told to answer 429, 500, garbage or nothing at all. Library tests
//! first, then `gitward reconcile --once` and `gitward sinks test` through the binary.

use crate::common;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use gitward::config::Endpoint;
use gitward::events::outbox::Stored;
use gitward::events::{ConditionChange, Draft, EventData, ResourceRef};
use gitward::model::{EventType, FindingSeverity};
use gitward::sinks::pagerduty::PagerDuty;
use gitward::sinks::{Answer, Sink};

const SOURCE: &str = "https://git.example.com/ops/pki.git";

/// Longest any one exchange may take before the test counts it as hung.
const HANG_GUARD: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The stand-in

/// What the stand-in does with the next request instead of processing it.
#[derive(Debug, Clone)]
enum Scripted {
    /// Processes the request as PagerDuty would.
    Pass,
    TooMany {
        retry_after: Option<u64>,
    },
    Status(u16, Vec<u8>),
    /// Never answers.
    Hang,
    /// Answers with the request's routing key in its text, as a careless receiver might.
    EchoKey(u16),
}

#[derive(Debug, Clone, PartialEq)]
struct Alert {
    dedup_key: String,
    open: bool,
    triggers: usize,
    summary: String,
    severity: String,
    source: String,
}

#[derive(Default)]
struct PdState {
    routing_key: String,
    script: VecDeque<Scripted>,
    /// Every request body, parsed when it is JSON, in the order they came.
    received: Vec<Value>,
    /// Requests answered 400 for their shape, with the errors.
    invalid: Vec<Vec<String>>,
    alerts: Vec<Alert>,
    dropped_resolves: usize,
    /// Change events taken: they open no alert.
    changes: Vec<Value>,
}

struct FakePagerDuty {
    url: String,
    state: Arc<Mutex<PdState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakePagerDuty {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakePagerDuty {
    async fn start(routing_key: &str) -> FakePagerDuty {
        let state = Arc::new(Mutex::new(PdState {
            routing_key: routing_key.to_owned(),
            ..PdState::default()
        }));
        let app = axum::Router::new()
            .route("/v2/enqueue", axum::routing::post(enqueue))
            .route("/v2/change/enqueue", axum::routing::post(change_enqueue))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePagerDuty { url, state, server }
    }

    fn then(&self, scripted: Scripted) {
        self.state.lock().unwrap().script.push_back(scripted);
    }

    fn alerts(&self) -> Vec<Alert> {
        self.state.lock().unwrap().alerts.clone()
    }

    fn received(&self) -> Vec<Value> {
        self.state.lock().unwrap().received.clone()
    }

    fn invalid(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().invalid.clone()
    }

    /// `(event_action, dedup_key)` of each request received.
    fn actions(&self) -> Vec<(String, String)> {
        self.received()
            .iter()
            .map(|r| {
                (
                    r["event_action"].as_str().unwrap_or("?").to_owned(),
                    r["dedup_key"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect()
    }
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// PagerDuty's documented answer to an event it cannot take.
fn invalid_event(errors: Vec<String>) -> Response {
    json_answer(
        StatusCode::BAD_REQUEST,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
    )
}

async fn enqueue(State(state): State<Arc<Mutex<PdState>>>, body: Bytes) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let scripted = {
        let mut state = state.lock().unwrap();
        state.received.push(
            parsed
                .clone()
                .unwrap_or_else(|| json!(String::from_utf8_lossy(&body))),
        );
        state.script.pop_front()
    };
    match scripted {
        Some(Scripted::TooMany { retry_after }) => {
            let mut answer = json_answer(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly.  Please retry later."}),
            );
            if let Some(seconds) = retry_after {
                answer
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            return answer;
        }
        Some(Scripted::Status(code, body)) => {
            return (StatusCode::from_u16(code).unwrap(), body).into_response();
        }
        Some(Scripted::Hang) => std::future::pending().await,
        Some(Scripted::EchoKey(code)) => {
            let key = parsed
                .as_ref()
                .and_then(|p| p["routing_key"].as_str())
                .unwrap_or_default()
                .to_owned();
            return json_answer(
                StatusCode::from_u16(code).unwrap(),
                json!({"status": "invalid event", "message": format!("Event object is invalid for {key}"), "errors": [format!("Invalid routing key {key}")]}),
            );
        }
        Some(Scripted::Pass) | None => {}
    }
    let Some(Value::Object(request)) = parsed else {
        // The documented example of an error answer.
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({"status": "Unrecognized object", "message": "Event object format is unrecognized", "errors": ["JSON parse error"]}),
        );
    };
    let mut state = state.lock().unwrap();
    let errors = shape_errors(&request, &state.routing_key, body.len());
    if !errors.is_empty() {
        state.invalid.push(errors.clone());
        return invalid_event(errors);
    }
    let dedup_key = request["dedup_key"].as_str().unwrap_or_default().to_owned();
    apply(&mut state, &request, &dedup_key);
    json_answer(
        StatusCode::ACCEPTED,
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
    )
}

/// Change events (`POST /v2/change/enqueue`): `routing_key` and a `payload` with a
/// `summary`; context on the service's timeline, never an alert.
async fn change_enqueue(State(state): State<Arc<Mutex<PdState>>>, body: Bytes) -> Response {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({"status": "Unrecognized object", "message": "Event object format is unrecognized", "errors": ["JSON parse error"]}),
        );
    };
    let mut state = state.lock().unwrap();
    let mut errors = Vec::new();
    for key in request
        .keys()
        .filter(|k| !["routing_key", "payload", "links", "images"].contains(&k.as_str()))
    {
        errors.push(format!("'{key}' is not a known field"));
    }
    if request.get("routing_key").and_then(Value::as_str) != Some(state.routing_key.as_str()) {
        errors.push("Invalid routing key".into());
    }
    match request.get("payload") {
        Some(Value::Object(payload)) => {
            const KNOWN: &[&str] = &["summary", "source", "timestamp", "custom_details"];
            for key in payload.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
                errors.push(format!("'payload.{key}' is not a known field"));
            }
            let summary = payload.get("summary").and_then(Value::as_str);
            if summary.is_none_or(|s| s.trim().is_empty() || s.chars().count() > 1024) {
                errors.push("'payload.summary' is missing, blank or longer than 1024".into());
            }
        }
        _ => errors.push("'payload' is missing or not an object".into()),
    }
    if !errors.is_empty() {
        state.invalid.push(errors.clone());
        return invalid_event(errors);
    }
    state.changes.push(Value::Object(request));
    json_answer(
        StatusCode::ACCEPTED,
        json!({"status": "success", "message": "Change event processed"}),
    )
}

/// What PagerDuty does with a valid event.
fn apply(state: &mut PdState, request: &serde_json::Map<String, Value>, dedup_key: &str) {
    let open = state
        .alerts
        .iter_mut()
        .find(|a| a.open && a.dedup_key == dedup_key);
    match (request["event_action"].as_str(), open) {
        (Some("trigger"), Some(alert)) => alert.triggers += 1,
        (Some("trigger"), None) => {
            let payload = &request["payload"];
            state.alerts.push(Alert {
                dedup_key: dedup_key.to_owned(),
                open: true,
                triggers: 1,
                summary: payload["summary"].as_str().unwrap_or_default().to_owned(),
                severity: payload["severity"].as_str().unwrap_or_default().to_owned(),
                source: payload["source"].as_str().unwrap_or_default().to_owned(),
            });
        }
        (Some("resolve"), Some(alert)) => alert.open = false,
        (Some("resolve"), None) => state.dropped_resolves += 1,
        _ => {}
    }
}

/// The Events API v2 request shape (PagerDuty's OpenAPI description and trigger-event docs),
/// with the messages PagerDuty answers.
fn shape_errors(
    request: &serde_json::Map<String, Value>,
    routing_key: &str,
    size: usize,
) -> Vec<String> {
    let mut errors = Vec::new();
    const TOP: &[&str] = &[
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "client",
        "client_url",
        "links",
        "images",
    ];
    for key in request.keys().filter(|k| !TOP.contains(&k.as_str())) {
        errors.push(format!("'{key}' is not a known field"));
    }
    if size > 512 * 1024 {
        errors.push("Event object is larger than 512 KB".into());
    }
    match request.get("routing_key").and_then(Value::as_str) {
        None => errors.push("'routing_key' is missing or blank".into()),
        Some(key) if key.chars().count() != 32 => {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".into())
        }
        Some(key) if !key.chars().all(|c| c.is_ascii_alphanumeric()) => {
            errors.push("'routing_key' cannot contain non-alphanumeric characters.".into())
        }
        Some(key) if key != routing_key => errors.push("Invalid routing key".into()),
        Some(_) => {}
    }
    let action = request.get("event_action").and_then(Value::as_str);
    if !matches!(action, Some("trigger" | "acknowledge" | "resolve")) {
        errors.push("'event_action' is missing or invalid".into());
    }
    match request.get("dedup_key") {
        None if action != Some("trigger") => errors.push("'dedup_key' is missing or blank".into()),
        None => {}
        Some(Value::String(key)) if key.is_empty() || key.chars().count() > 255 => {
            errors.push("'dedup_key' must be 1 to 255 characters".into())
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push("'dedup_key' must be a string".into()),
    }
    if action == Some("trigger") {
        match request.get("payload") {
            Some(Value::Object(payload)) => errors.extend(payload_errors(payload)),
            _ => errors.push("'payload' is missing or not an object".into()),
        }
    }
    errors
}

fn payload_errors(payload: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut errors = Vec::new();
    const KNOWN: &[&str] = &[
        "summary",
        "source",
        "severity",
        "timestamp",
        "component",
        "group",
        "class",
        "custom_details",
    ];
    for key in payload.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        errors.push(format!("'payload.{key}' is not a known field"));
    }
    let text = |name: &str| payload.get(name).and_then(Value::as_str);
    match text("summary") {
        Some(summary) if !summary.trim().is_empty() && summary.chars().count() <= 1024 => {}
        _ => errors.push("'payload.summary' is missing, blank or longer than 1024".into()),
    }
    if text("source").is_none_or(|s| s.trim().is_empty()) {
        errors.push("'payload.source' is missing or blank".into());
    }
    if !matches!(
        text("severity"),
        Some("critical" | "error" | "warning" | "info")
    ) {
        errors.push("'payload.severity' is missing or invalid".into());
    }
    if let Some(timestamp) = payload.get("timestamp") {
        let valid = timestamp.as_str().is_some_and(|t| {
            chrono::DateTime::parse_from_rfc3339(t).is_ok()
                || chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z").is_ok()
        });
        if !valid {
            errors.push("'payload.timestamp' is not an ISO 8601 time".into());
        }
    }
    for name in ["component", "group", "class"] {
        if payload.get(name).is_some_and(|v| !v.is_string()) {
            errors.push(format!("'payload.{name}' must be a string"));
        }
    }
    if payload
        .get("custom_details")
        .is_some_and(|v| !v.is_object())
    {
        errors.push("'payload.custom_details' must be an object".into());
    }
    errors
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A routing key of its own for each test: PagerDuty's pace is kept per key.
fn routing_key(tag: &str) -> String {
    let mut key = format!("R0{tag}");
    while key.len() < 32 {
        key.push('x');
    }
    key.truncate(32);
    assert!(key.chars().all(|c| c.is_ascii_alphanumeric()));
    key
}

struct Setup {
    _dir: tempfile::TempDir,
    sink: PagerDuty,
}

fn sink_for(url: &str, key: &str, timeout: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("pd-key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let sink = PagerDuty::new(&endpoint(url, &key_file, timeout)).unwrap();
    Setup { _dir: dir, sink }
}

fn endpoint(url: &str, key_file: &Path, timeout: &str) -> Endpoint {
    serde_json::from_value(json!({
        "url": url,
        "routingKeyFile": key_file,
        "timeout": timeout,
    }))
    .unwrap()
}

/// An event of `kind` about `Certificate/<name>`, made at commit `anchor`, opening
/// (`Some(true)`) or clearing (`Some(false)`) the certificate's problem, or neither.
fn event(
    seq: i64,
    kind: EventType,
    name: &str,
    anchor: &str,
    severity: FindingSeverity,
    open: Option<bool>,
) -> Stored {
    let subject = format!("Certificate/{name}");
    let draft = Draft {
        kind,
        anchor: anchor.to_owned(),
        subject: subject.clone(),
        data: EventData {
            severity,
            resource: Some(ResourceRef {
                kind: "Certificate".into(),
                name: name.into(),
                file: Some("certificates/web.yaml".into()),
                line: Some(3),
            }),
            commit: None,
            message: format!("{} {name} at {anchor}", kind.as_str()),
            details: serde_json::Map::new(),
            compliance: vec!["PCI-DSS 4.2.1".into()],
            fingerprint: subject.clone(),
            condition: open.map(|open| ConditionChange {
                key: subject.clone(),
                open,
            }),
        },
    };
    let event = draft.seal(
        SOURCE,
        chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap(),
    );
    let json = serde_json::to_string(&event).unwrap();
    Stored { seq, event, json }
}

fn failed(seq: i64, name: &str, anchor: &str) -> Stored {
    event(
        seq,
        EventType::CertificateFailed,
        name,
        anchor,
        FindingSeverity::High,
        Some(true),
    )
}

fn renewed(seq: i64, name: &str, anchor: &str) -> Stored {
    event(
        seq,
        EventType::CertificateRenewed,
        name,
        anchor,
        FindingSeverity::Info,
        Some(false),
    )
}

fn dedup(name: &str) -> String {
    format!("{SOURCE}#Certificate/{name}")
}

async fn send(sink: &mut PagerDuty, events: &[Stored]) -> Answer {
    tokio::time::timeout(HANG_GUARD, sink.send(events))
        .await
        .expect("the sink answers within the hang guard")
}

// ---------------------------------------------------------------------------------------
// The stand-in itself

#[tokio::test]
async fn the_stand_in_takes_the_documented_example_and_refuses_a_broken_one() {
    let key = "e93facc04764012d7bfb002500d5d1a6";
    let pd = FakePagerDuty::start(key).await;
    // PagerDuty's own example trigger (its Events API v2 documentation).
    let example = json!({
        "payload": {
            "summary": "DISK at 99% on machine prod-datapipe03.example.com",
            "timestamp": "2015-07-17T08:42:58.315+0000",
            "severity": "critical",
            "source": "prod-datapipe03.example.com",
            "component": "mysql",
            "group": "prod-datapipe",
            "class": "disk",
            "custom_details": {"free space": "1%", "ping time": "1500ms", "load avg": 0.75}
        },
        "routing_key": key,
        "dedup_key": "srv01/mysql",
        "event_action": "trigger",
        "client": "Sample Monitoring Service",
        "client_url": "https://monitoring.service.com",
        "links": [{"href": "http://pagerduty.example.com", "text": "An example link."}]
    });
    let client = reqwest::Client::new();
    let post = |body: String| client.post(&pd.url).body(body).send();
    let answer = post(example.to_string()).await.unwrap();
    assert_eq!(answer.status(), 202);
    let said: Value = answer.json().await.unwrap();
    assert_eq!(said["dedup_key"], "srv01/mysql");

    let mut broken = example.clone();
    broken["payload"]["severity"] = json!("high");
    broken["routing_key"] = json!("short");
    let answer = post(broken.to_string()).await.unwrap();
    assert_eq!(answer.status(), 400);
    let said: Value = answer.json().await.unwrap();
    assert_eq!(said["message"], "Event object is invalid");
    let errors = said["errors"].to_string();
    assert!(errors.contains("'payload.severity'"), "{errors}");
    assert!(errors.contains("Length of 'routing_key'"), "{errors}");

    let answer = post("{not json".into()).await.unwrap();
    assert_eq!(answer.status(), 400);
    let said: Value = answer.json().await.unwrap();
    assert_eq!(said["errors"], json!(["JSON parse error"]));
    assert_eq!(pd.alerts().len(), 1);
}

// ---------------------------------------------------------------------------------------
// The sink

#[tokio::test]
async fn a_trigger_opens_an_alert_and_its_resolve_closes_it() {
    let key = routing_key("open");
    let pd = FakePagerDuty::start(&key).await;
    let mut setup = sink_for(&pd.url, &key, "10s");

    let answer = send(&mut setup.sink, &[failed(1, "web", "c1")]).await;
    assert_eq!(answer, Answer::Delivered { duplicates: 0 });
    let alerts = pd.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].dedup_key, dedup("web"));
    assert!(alerts[0].open);
    assert_eq!(alerts[0].severity, "error");
    assert_eq!(alerts[0].summary, "certificate.failed web at c1");
    assert_eq!(alerts[0].source, SOURCE);

    let trigger = &pd.received()[0];
    assert_eq!(trigger["payload"]["component"], "Certificate/web");
    assert_eq!(trigger["payload"]["group"], "Certificate");
    assert_eq!(trigger["payload"]["class"], "certificate.failed");
    assert_eq!(trigger["payload"]["timestamp"], "2025-06-15T15:06:40.000Z");
    let details = &trigger["payload"]["custom_details"];
    assert_eq!(details["severity"], "high");
    assert_eq!(details["compliance"], json!(["PCI-DSS 4.2.1"]));
    assert_eq!(details["resource"]["file"], "certificates/web.yaml");

    let answer = send(&mut setup.sink, &[renewed(2, "web", "c2")]).await;
    assert_eq!(answer, Answer::Delivered { duplicates: 0 });
    let alerts = pd.alerts();
    assert_eq!(alerts.len(), 1);
    assert!(!alerts[0].open, "the resolve closes the alert");
    let resolve = pd.received()[1].clone();
    assert_eq!(
        resolve,
        json!({"routing_key": key, "event_action": "resolve", "dedup_key": dedup("web")})
    );

    // The problem coming back opens a new alert.
    send(&mut setup.sink, &[failed(3, "web", "c3")]).await;
    let alerts = pd.alerts();
    assert_eq!(alerts.len(), 2);
    assert!(!alerts[0].open && alerts[1].open);
    assert_eq!(pd.state.lock().unwrap().dropped_resolves, 0);
    assert!(pd.invalid().is_empty(), "{:?}", pd.invalid());
}

#[tokio::test]
async fn the_same_trigger_sent_twice_is_one_alert() {
    let key = routing_key("twice");
    let pd = FakePagerDuty::start(&key).await;
    let first = sink_for(&pd.url, &key, "10s");
    let mut sink = first.sink;
    let web = failed(1, "web", "c1");
    assert_eq!(
        send(&mut sink, std::slice::from_ref(&web)).await,
        Answer::Delivered { duplicates: 0 }
    );
    // After a restart, the event is sent again (its delivery was not recorded)...
    let mut again = sink_for(&pd.url, &key, "10s").sink;
    assert_eq!(
        send(&mut again, std::slice::from_ref(&web)).await,
        Answer::Delivered { duplicates: 0 }
    );
    // ... and the same failure seen at a later commit is another event about it.
    assert_eq!(
        send(&mut again, &[failed(2, "web", "c2")]).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(pd.received().len(), 3);
    let alerts = pd.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].triggers, 3);
    assert!(alerts[0].open);
}

#[tokio::test]
async fn events_go_in_order_and_those_without_a_problem_are_passed_over() {
    let key = routing_key("order");
    let pd = FakePagerDuty::start(&key).await;
    let mut setup = sink_for(&pd.url, &key, "10s");
    let issued = event(
        3,
        EventType::CertificateIssued,
        "api",
        "c1",
        FindingSeverity::Info,
        None,
    );
    let batch = [
        failed(1, "a", "c1"),
        failed(2, "b", "c1"),
        issued,
        renewed(4, "a", "c2"),
        failed(5, "c", "c2"),
        renewed(6, "b", "c3"),
    ];
    assert_eq!(
        send(&mut setup.sink, &batch).await,
        Answer::Delivered { duplicates: 0 }
    );
    let expected: Vec<(String, String)> = [
        ("trigger", "a"),
        ("trigger", "b"),
        ("resolve", "a"),
        ("trigger", "c"),
        ("resolve", "b"),
    ]
    .iter()
    .map(|(action, name)| (action.to_string(), dedup(name)))
    .collect();
    assert_eq!(pd.actions(), expected);
    let open: Vec<String> = pd
        .alerts()
        .into_iter()
        .filter(|a| a.open)
        .map(|a| a.dedup_key)
        .collect();
    assert_eq!(open, [dedup("c")]);

    // A batch of events PagerDuty does not take is delivered without a request.
    let quiet = event(
        7,
        EventType::CertificateIssued,
        "api",
        "c4",
        FindingSeverity::Info,
        None,
    );
    assert_eq!(
        send(&mut setup.sink, &[quiet]).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(pd.received().len(), 5);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_then_delivers_each_event_once() {
    let key = routing_key("throttled");
    let pd = FakePagerDuty::start(&key).await;
    let mut setup = sink_for(&pd.url, &key, "10s");
    let batch = [failed(1, "a", "c1"), failed(2, "b", "c1")];

    // The first event goes through, the second is throttled.
    pd.then(Scripted::Pass);
    pd.then(Scripted::TooMany {
        retry_after: Some(7),
    });
    let answer = send(&mut setup.sink, &batch).await;
    let Answer::Retry { error, after } = answer else {
        panic!("a 429 is retried: {answer:?}");
    };
    assert_eq!(after, Some(Duration::from_secs(7)));
    assert!(error.starts_with("HTTP 429"), "{error}");
    assert_eq!(
        pd.alerts().len(),
        1,
        "PagerDuty does not take a throttled event"
    );

    // The worker sends the same batch again: the event PagerDuty has is not sent twice.
    let answer = send(&mut setup.sink, &batch).await;
    assert_eq!(answer, Answer::Delivered { duplicates: 0 });
    assert_eq!(
        pd.actions(),
        [
            ("trigger".to_owned(), dedup("a")),
            ("trigger".to_owned(), dedup("b")),
            ("trigger".to_owned(), dedup("b")),
        ]
    );
    let alerts = pd.alerts();
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().all(|a| a.triggers == 1), "{alerts:?}");

    // Without a Retry-After, the pause is tens of seconds, not the worker's first second.
    pd.then(Scripted::TooMany { retry_after: None });
    let answer = send(&mut setup.sink, &[failed(3, "c", "c1")]).await;
    assert!(
        matches!(answer, Answer::Retry { after: Some(after), .. } if after >= Duration::from_secs(10)),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_500_is_retried_and_then_delivered() {
    let key = routing_key("fivehundred");
    let pd = FakePagerDuty::start(&key).await;
    let mut setup = sink_for(&pd.url, &key, "10s");
    pd.then(Scripted::Status(500, b"internal error".to_vec()));
    let web = [failed(1, "web", "c1")];
    let answer = send(&mut setup.sink, &web).await;
    assert_eq!(
        answer,
        Answer::Retry {
            error: "HTTP 500: internal error".into(),
            after: None
        }
    );
    assert!(pd.alerts().is_empty());
    assert_eq!(
        send(&mut setup.sink, &web).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(pd.alerts().len(), 1);
}

#[tokio::test]
async fn a_pagerduty_that_does_not_answer_is_retried_after_the_timeout() {
    let key = routing_key("hang");
    let pd = FakePagerDuty::start(&key).await;
    let mut setup = sink_for(&pd.url, &key, "1s");
    pd.then(Scripted::Hang);
    let web = [failed(1, "web", "c1")];
    let answer = send(&mut setup.sink, &web).await;
    let Answer::Retry { error, after: None } = answer else {
        panic!("no answer in time is retried: {answer:?}");
    };
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(
        send(&mut setup.sink, &web).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(pd.alerts().len(), 1);
    assert_eq!(pd.alerts()[0].triggers, 1);
}

#[tokio::test]
async fn an_event_pagerduty_refuses_is_rejected_with_its_errors() {
    let key = routing_key("refused");
    let pd = FakePagerDuty::start(&key).await;
    let mut setup = sink_for(&pd.url, &key, "10s");
    pd.then(Scripted::Status(
        400,
        br#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.summary' is missing or blank"]}"#.to_vec(),
    ));
    let answer = send(&mut setup.sink, &[failed(1, "web", "c1")]).await;
    assert_eq!(
        answer,
        Answer::Rejected {
            answer: "HTTP 400: Event object is invalid: 'payload.summary' is missing or blank"
                .into()
        }
    );
}

#[tokio::test]
async fn huge_and_garbage_answers_are_cut_to_one_bounded_line() {
    let key = routing_key("garbage");
    let pd = FakePagerDuty::start(&key).await;
    let mut setup = sink_for(&pd.url, &key, "10s");
    let web = [failed(1, "web", "c1")];
    pd.then(Scripted::Status(400, vec![b'x'; 4 * 1024 * 1024]));
    let Answer::Rejected { answer } = send(&mut setup.sink, &web).await else {
        panic!("a 400 is refused");
    };
    assert!(answer.starts_with("HTTP 400: xxx"), "{answer}");
    assert!(answer.chars().count() < 1000, "{}", answer.len());

    let mut garbage: Vec<u8> = (0u8..=255).cycle().take(200_000).collect();
    garbage.extend_from_slice(b"\x1b[2J\r\n");
    pd.then(Scripted::Status(503, garbage.clone()));
    let Answer::Retry { error, .. } = send(&mut setup.sink, &web).await else {
        panic!("a 503 is retried");
    };
    assert!(error.starts_with("HTTP 503: "), "{error}");
    assert!(error.chars().count() < 1000);
    assert!(!error.chars().any(char::is_control), "{error:?}");

    // A 202 with garbage is PagerDuty having the event, whatever it says besides.
    pd.then(Scripted::Status(202, garbage));
    assert_eq!(
        send(&mut setup.sink, &web).await,
        Answer::Delivered { duplicates: 0 }
    );
}

/// A peer on loopback that reads a request's head and then does `then` with the socket.
async fn raw_peer<F, Fut>(then: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            then(socket).await;
        }
    });
    url
}

#[tokio::test]
async fn hostile_peers_on_the_wire_are_retried_or_bounded() {
    let key = routing_key("wire");
    let web = [failed(1, "web", "c1")];

    // Closes the connection in the middle of the request.
    let url = raw_peer(|socket| async move { drop(socket) }).await;
    let mut sink = sink_for(&url, &key, "5s");
    let answer = send(&mut sink.sink, &web).await;
    assert!(matches!(answer, Answer::Retry { .. }), "{answer:?}");

    // Answers something that is not HTTP.
    let url = raw_peer(|mut socket| async move {
        let _ = socket.write_all(b"\x00\x01garbage\r\n\r\n").await;
    })
    .await;
    let mut sink = sink_for(&url, &key, "5s");
    let answer = send(&mut sink.sink, &web).await;
    assert!(matches!(answer, Answer::Retry { .. }), "{answer:?}");

    // A 400 whose body never ends: the sink reads a bounded part and stops.
    let url = raw_peer(|mut socket| async move {
        let head = b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n";
        if socket.write_all(head).await.is_err() {
            return;
        }
        let chunk = format!("1000\r\n{}\r\n", "y".repeat(4096));
        while socket.write_all(chunk.as_bytes()).await.is_ok() {}
    })
    .await;
    let mut sink = sink_for(&url, &key, "30s");
    let Answer::Rejected { answer } = send(&mut sink.sink, &web).await else {
        panic!("a 400 is refused");
    };
    assert!(answer.starts_with("HTTP 400: yyy"), "{answer}");
    assert!(answer.chars().count() < 1000);
}

#[tokio::test]
async fn the_routing_key_never_appears_in_what_the_sink_says() {
    let key = routing_key("secret");
    let pd = FakePagerDuty::start(&key).await;
    let mut setup = sink_for(&pd.url, &key, "10s");
    let web = [failed(1, "web", "c1")];
    let mut texts = Vec::new();
    for code in [400, 422, 500, 429] {
        pd.then(Scripted::EchoKey(code));
        let answer = send(&mut setup.sink, &web).await;
        let text = match &answer {
            Answer::Retry { error, .. } => error.clone(),
            Answer::Rejected { answer } => answer.clone(),
            Answer::Delivered { .. } => panic!("{code} is not a delivery"),
        };
        assert!(text.contains("[routing key]"), "{code}: {text}");
        texts.push((code, answer));
    }
    // A refused routing key is the host's to fix: retried, not the event's fault.
    assert!(matches!(texts[0].1, Answer::Retry { .. }), "{texts:?}");
    assert!(matches!(texts[1].1, Answer::Rejected { .. }), "{texts:?}");

    // A well-formed key PagerDuty does not know.
    let other = routing_key("unknown");
    let mut stranger = sink_for(&pd.url, &other, "10s");
    let answer = send(&mut stranger.sink, &web).await;
    let Answer::Retry { error, .. } = &answer else {
        panic!("an unknown routing key is retried: {answer:?}");
    };
    assert!(error.contains("Invalid routing key"), "{error}");
    texts.push((400, answer));

    // A file that does not hold a key is the host's problem, told without its content.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pd-key");
    let wrong = format!("{key}-and-more");
    std::fs::write(&file, &wrong).unwrap();
    let problem = match PagerDuty::new(&endpoint(&pd.url, &file, "10s")) {
        Err(problem) => problem.0,
        Ok(_) => panic!("a key of the wrong length is refused"),
    };
    assert!(problem.contains("32 letters and digits"), "{problem}");

    for text in texts.iter().map(|(_, a)| format!("{a:?}")).chain([problem]) {
        assert!(!text.contains(&key), "{text}");
        assert!(!text.contains(&other), "{text}");
        assert!(!text.contains(&key[..16]), "{text}");
    }
}

#[tokio::test]
async fn a_sink_test_is_a_change_event_that_pages_no_one() {
    let key = routing_key("sinktest");
    let pd = FakePagerDuty::start(&key).await;
    let mut setup = sink_for(&pd.url, &key, "10s");
    let mut test = event(
        1,
        EventType::SinkTest,
        "ignored",
        "now",
        FindingSeverity::Info,
        None,
    );
    test.event.subject = "Sink/pager".into();
    test.event.data.message = "a test event from `gitward sinks test pager`".into();
    assert_eq!(
        send(&mut setup.sink, std::slice::from_ref(&test)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let changes = pd.state.lock().unwrap().changes.clone();
    assert_eq!(changes.len(), 1, "{:?}", pd.invalid());
    assert_eq!(
        changes[0]["payload"]["summary"],
        "a test event from `gitward sinks test pager`"
    );
    assert_eq!(
        changes[0]["payload"]["custom_details"]["subject"],
        "Sink/pager"
    );
    assert!(pd.alerts().is_empty());
    assert!(pd.received().is_empty(), "no alert event is sent");

    // With a routing key PagerDuty does not know, the test says so.
    let mut stranger = sink_for(&pd.url, &routing_key("stranger"), "10s");
    let answer = send(&mut stranger.sink, &[test]).await;
    assert!(
        matches!(&answer, Answer::Retry { error, .. } if error.contains("Invalid routing key")),
        "{answer:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Through the binary

async fn gitward(dir: &Path, args: &[&str]) -> common::Run {
    common::gitward_beside(dir, args, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_certificate_pages_once_and_a_sink_test_pages_no_one() {
    use common::host::{Host, ISSUERS, certificate};
    let key = routing_key("endtoend");
    let pd = FakePagerDuty::start(&key).await;
    let sink = "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: pager}\nspec:\n  type: pagerduty\n  endpoint: pd-pki\n  events: [certificate.failed]\n  minSeverity: high\n";
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "web.yaml",
            &certificate("web", "  dnsNames: [web.example.com]\n"),
        ),
        ("sinks.yaml", sink),
    ]);
    let key_file = host.dir.path().join("pd-key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    host.config(&format!(
        "endpoints:\n  pd-pki: {{url: \"{}\", routingKeyFile: {}}}\n",
        pd.url,
        key_file.display()
    ));
    let dir = host.dir.path();
    let reconcile = ["reconcile", "--once", "--config", "gitward.yaml"];
    gitward(dir, &reconcile).await.expect(0);
    assert!(pd.received().is_empty(), "nothing to page about");

    // A certificate for a target the host does not grant cannot be written.
    let broken = certificate("broken", "  dnsNames: [broken.example.com]\n");
    host.repo.write(
        "broken.yaml",
        broken.replace("target: web", "target: elsewhere"),
    );
    host.repo
        .commit("A certificate for a target the host lacks");
    gitward(dir, &reconcile).await.expect(1);
    let dedup_key = format!("file://{}#Certificate/broken", host.repo.path().display());
    assert_eq!(pd.actions(), [("trigger".to_owned(), dedup_key.clone())]);
    let alerts = pd.alerts();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].open);
    assert_eq!(alerts[0].severity, "error");
    assert!(
        alerts[0].summary.starts_with("Certificate broken failed"),
        "{}",
        alerts[0].summary
    );
    // The same commit again: nothing new to tell.
    gitward(dir, &reconcile).await.expect(1);
    assert_eq!(pd.received().len(), 1);

    let test = gitward(dir, &["sinks", "test", "pager", "--config", "gitward.yaml"]).await;
    let test = test.expect(0);
    assert!(test.stdout.contains("delivered"), "{}", test.stdout);
    assert_eq!(pd.state.lock().unwrap().changes.len(), 1);
    assert_eq!(pd.received().len(), 1, "a test pages no one");
    assert!(pd.invalid().is_empty(), "{:?}", pd.invalid());
    let status = gitward(dir, &["sinks", "status", "--config", "gitward.yaml"]).await;
    assert!(!status.stdout.contains(&key) && !status.stderr.contains(&key));
}
