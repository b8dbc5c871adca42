//! The `sentinel` sink against a fake Entra ID token endpoint and a fake Logs Ingestion
//! endpoint on a loopback port. The fakes do what Microsoft documents (API.md §2): the token
//! endpoint checks the client-credentials form and issues tokens that really expire; the
//! ingestion endpoint checks the path, `api-version`, bearer token (401 when expired or
//! unknown), content type, size (413 over 1 MiB) and that the body is a JSON array of
//! records with the columns the data collection rule users paste declares
//! (`fixtures/sentinel/gitward.dcr.json`), of their types, and nothing else.

use crate::common;
use crate::fakes;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use fakes::guard;
use gitward::sinks::sentinel::{COLUMNS, MAX_REQUEST_BYTES, Sentinel};
use gitward::sinks::{Answer, Sink};

const TENANT: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
const CLIENT: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
const SECRET: &str = "Zx8Q~not-a-real-secret.but-long-enough";
const DCR: &str = "dcr-000a00a000a00000a000000aa000a0aa";
const STREAM: &str = "Custom-GitwardEvents";
const LIMIT: usize = 1024 * 1024;

fn dcr() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sentinel/gitward.dcr.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The columns the rule declares, with their types.
fn declared() -> HashMap<String, String> {
    dcr()["properties"]["streamDeclarations"][STREAM]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A way the fake answers a request instead of as Azure would.
enum Trick {
    /// As Azure would.
    Pass,
    Answer(u16, String),
    /// 429 with `Retry-After`.
    Throttle(u64),
    /// Takes the records, then never answers.
    TakeAndHang,
}

struct Azure {
    /// Seconds a token lives (and what `expires_in` says).
    lifetime: u64,
    columns: HashMap<String, String>,
    tokens: HashMap<String, Instant>,
    token_tricks: VecDeque<Trick>,
    /// Echo the form in token errors (a hostile endpoint).
    echo: bool,
    tricks: VecDeque<Trick>,
    token_requests: usize,
    /// Ingestion requests refused with 401.
    unauthorized: usize,
    /// Ingestion requests: body size, status.
    requests: Vec<(usize, u16)>,
    rows: Vec<Value>,
    /// Requests the fake found malformed, and why.
    refusals: Vec<String>,
}

impl Azure {
    fn new() -> Azure {
        Azure {
            lifetime: 3599,
            columns: declared(),
            tokens: HashMap::new(),
            token_tricks: VecDeque::new(),
            echo: false,
            tricks: VecDeque::new(),
            token_requests: 0,
            unauthorized: 0,
            requests: Vec::new(),
            rows: Vec::new(),
            refusals: Vec::new(),
        }
    }

    fn row_ids(&self) -> Vec<String> {
        self.rows
            .iter()
            .map(|r| r["EventId"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

type Fake = Arc<Mutex<Azure>>;

fn lock(fake: &Fake) -> MutexGuard<'_, Azure> {
    fake.lock().unwrap_or_else(|e| e.into_inner())
}

fn response(status: u16, body: String, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, [("content-type", "application/json")], body).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", seconds.to_string().parse().unwrap());
    }
    response
}

/// An Entra ID error.
fn entra(error: &str, description: &str) -> String {
    json!({"error": error, "error_description": description, "error_codes": [0]}).to_string()
}

/// What the token endpoint answers.
fn grant(azure: &mut Azure, headers: &HeaderMap, body: &[u8]) -> (u16, String) {
    azure.token_requests += 1;
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        azure
            .refusals
            .push("token request is not a form".to_owned());
        return (
            400,
            entra(
                "invalid_request",
                "AADSTS900144: The request body must contain the following parameter: 'grant_type'.",
            ),
        );
    }
    let form: HashMap<String, String> = fakes::form(body).into_iter().collect();
    let field = |name: &str| form.get(name).map(String::as_str);
    if form.len() != 4 || field("grant_type") != Some("client_credentials") {
        azure
            .refusals
            .push(format!("token form: {:?}", form.keys()));
        return (
            400,
            entra(
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            ),
        );
    }
    if field("client_id") != Some(CLIENT) {
        return (
            400,
            entra(
                "unauthorized_client",
                "AADSTS700016: Application was not found in the directory.",
            ),
        );
    }
    if field("client_secret") != Some(SECRET) {
        let mut description = "AADSTS7000215: Invalid client secret provided.".to_owned();
        if azure.echo {
            description.push_str(&format!(
                " You sent {}.",
                field("client_secret").unwrap_or_default()
            ));
        }
        return (401, entra("invalid_client", &description));
    }
    if field("scope") != Some("https://monitor.azure.com/.default") {
        azure.refusals.push(format!("scope {:?}", field("scope")));
        return (
            400,
            entra(
                "invalid_scope",
                "AADSTS1002012: The provided value for scope is not valid.",
            ),
        );
    }
    let token = format!("eyJ0eXAi.{}", uuid::Uuid::new_v4().simple());
    azure.tokens.insert(
        token.clone(),
        Instant::now() + Duration::from_secs(azure.lifetime),
    );
    let granted = json!({
        "token_type": "Bearer",
        "expires_in": azure.lifetime,
        "ext_expires_in": azure.lifetime,
        "access_token": token,
    });
    (200, granted.to_string())
}

async fn token(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let trick = lock(&fake).token_tricks.pop_front();
    match trick {
        Some(Trick::Answer(status, body)) => {
            lock(&fake).token_requests += 1;
            return response(status, body, None);
        }
        Some(Trick::TakeAndHang) => {
            lock(&fake).token_requests += 1;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        _ => {}
    }
    let (status, body) = grant(&mut lock(&fake), &headers, &body);
    response(status, body, None)
}

/// An Azure Monitor error.
fn monitor(code: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message}}).to_string()
}

/// Whether `value` is of the column type `kind`.
fn typed(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "datetime" => value
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
        "dynamic" => true,
        _ => false,
    }
}

/// The records of a body, checked against the declared columns.
fn records(columns: &HashMap<String, String>, body: &[u8]) -> Result<Vec<Value>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Array(records) = value else {
        return Err("not a JSON array".to_owned());
    };
    if records.is_empty() {
        return Err("no records".to_owned());
    }
    for (n, record) in records.iter().enumerate() {
        let record = record
            .as_object()
            .ok_or(format!("record {n} is not an object"))?;
        for (column, value) in record {
            match columns.get(column) {
                Some(kind) if typed(kind, value) => {}
                Some(kind) => return Err(format!("record {n}: {column} is not a {kind}")),
                None => return Err(format!("record {n}: {column} is not declared")),
            }
        }
        for required in ["TimeGenerated", "EventId"] {
            if !record.contains_key(required) {
                return Err(format!("record {n} has no {required}"));
            }
        }
    }
    Ok(records)
}

fn authorized(azure: &mut Azure, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = bearer
        .and_then(|token| azure.tokens.get(token))
        .is_some_and(|expiry| Instant::now() < *expiry);
    if !valid {
        azure.unauthorized += 1;
    }
    valid
}

/// What the ingestion endpoint does with a request.
enum Outcome {
    Reply(u16, String, Option<u64>),
    Hang,
}

fn ingest_records(azure: &mut Azure, headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Outcome {
    let reply = |status, body| Outcome::Reply(status, body, None);
    if fakes::query(uri) != [("api-version".to_owned(), "2023-01-01".to_owned())] {
        azure.refusals.push(format!("query {:?}", uri.query()));
        return reply(
            400,
            monitor("InvalidApiVersionParameter", "The api-version is invalid."),
        );
    }
    if !authorized(azure, headers) {
        return reply(
            401,
            monitor("InvalidToken", "The token is expired or invalid."),
        );
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        azure.refusals.push("content type".to_owned());
        return reply(
            415,
            monitor(
                "UnsupportedMediaType",
                "Content-Type must be application/json.",
            ),
        );
    }
    if body.len() > LIMIT {
        return reply(
            413,
            monitor(
                "ContentLengthLimitExceeded",
                &format!(
                    "Maximum allowed content length: {LIMIT} bytes (1 MB). Provided content length: {} bytes.",
                    body.len()
                ),
            ),
        );
    }
    let records = match records(&azure.columns, body) {
        Ok(records) => records,
        Err(why) => {
            azure.refusals.push(why.clone());
            return reply(400, monitor("InvalidContent", &why));
        }
    };
    match azure.tricks.pop_front() {
        Some(Trick::Answer(status, body)) => return reply(status, body),
        Some(Trick::Throttle(seconds)) => {
            return Outcome::Reply(
                429,
                monitor("TooManyRequests", "Rate limit exceeded."),
                Some(seconds),
            );
        }
        Some(Trick::TakeAndHang) => {
            azure.rows.extend(records);
            return Outcome::Hang;
        }
        Some(Trick::Pass) | None => {}
    }
    azure.rows.extend(records);
    reply(204, String::new())
}

async fn ingest(State(fake): State<Fake>, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    let outcome = {
        let mut azure = lock(&fake);
        let outcome = ingest_records(&mut azure, &headers, &uri, &body);
        let status = match &outcome {
            Outcome::Reply(status, ..) => *status,
            Outcome::Hang => 0,
        };
        azure.requests.push((body.len(), status));
        outcome
    };
    match outcome {
        Outcome::Reply(204, ..) => StatusCode::NO_CONTENT.into_response(),
        Outcome::Reply(status, body, after) => response(status, body, after),
        Outcome::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            response(500, String::new(), None)
        }
    }
}

async fn azure(setup: Azure) -> (fakes::Server, Fake) {
    let fake = Arc::new(Mutex::new(setup));
    let router = Router::new()
        .route(&format!("/{TENANT}/oauth2/v2.0/token"), post(token))
        .route(
            &format!("/dataCollectionRules/{DCR}/streams/{STREAM}"),
            post(ingest),
        )
        .fallback(|| async { response(404, monitor("NotFound", "Not found."), None) })
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(fake.clone());
    (fakes::Server::start(router).await, fake)
}

/// The host's endpoint for the fake, the client secret written to a file.
fn endpoint(dir: &tempfile::TempDir, url: &str, secret: &str) -> gitward::config::Endpoint {
    let file = dir.path().join("sentinel-secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    fakes::endpoint(json!({
        "url": url,
        "tenantId": TENANT,
        "clientId": CLIENT,
        "clientSecretFile": file,
        "tokenUrl": format!("{url}/{TENANT}/oauth2/v2.0/token"),
        "timeout": "2s",
    }))
}

fn spec() -> gitward::model::SinkSpec {
    fakes::spec(json!({
        "type": "sentinel",
        "endpoint": "sentinel-prod",
        "sentinel": {"dcrImmutableId": DCR, "stream": STREAM},
    }))
}

fn sink(dir: &tempfile::TempDir, url: &str, secret: &str) -> Sentinel {
    Sentinel::new(&spec(), &endpoint(dir, url, secret)).expect("a sentinel sink")
}

fn retry_error(answer: Answer) -> String {
    match answer {
        Answer::Retry { error, after: None } => error,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[tokio::test]
async fn events_arrive_as_records_of_the_declared_columns_in_order() {
    let (server, fake) = azure(Azure::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    let events = fakes::events(3, 40);
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let azure = lock(&fake);
    assert_eq!(azure.refusals, Vec::<String>::new());
    assert_eq!((azure.token_requests, azure.requests.len()), (1, 1));
    assert_eq!(azure.row_ids(), fakes::ids(&events));
    let stored: Value = serde_json::from_str(&events[0].json).unwrap();
    assert_eq!(
        azure.rows[0],
        json!({
            "TimeGenerated": "2026-01-02T03:04:05.678Z",
            "EventId": events[0].event.id,
            "EventType": "policy.violation",
            "Subject": "Certificate/web-0",
            "Severity": "high",
            "Source": "https://git.example.com/ops/pki.git",
            "Message": events[0].event.data.message,
            "Fingerprint": "fingerprint-0",
            "Resource": "Certificate/web-0",
            "CommitSha": "0123456789abcdef0123456789abcdef01234567",
            "Data": stored["data"],
        })
    );
}

#[tokio::test]
async fn a_batch_over_a_megabyte_goes_in_several_requests_in_order() {
    let (server, fake) = azure(Azure::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    assert!(sink.batch_size() >= 1000);
    let events = fakes::events(1000, 3000);
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let azure = lock(&fake);
    assert!(azure.requests.len() >= 3, "{:?}", azure.requests);
    assert!(
        azure
            .requests
            .iter()
            .all(|(size, status)| *size <= MAX_REQUEST_BYTES && *status == 204)
    );
    assert_eq!(azure.row_ids(), fakes::ids(&events));
    assert_eq!(azure.token_requests, 1);
}

#[tokio::test]
async fn a_record_larger_than_a_request_is_refused_before_anything_is_sent() {
    let (server, fake) = azure(Azure::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    let huge = fakes::event(7, &"x".repeat(MAX_REQUEST_BYTES));
    let Answer::Rejected { answer } = guard(sink.send(std::slice::from_ref(&huge))).await else {
        panic!("an event too large for a request is refused");
    };
    assert!(
        answer.starts_with(&format!("event {} is ", huge.event.id))
            && answer.contains("bytes as a record"),
        "{answer}"
    );
    assert!(lock(&fake).requests.is_empty());
}

#[tokio::test]
async fn the_worker_dead_letters_only_the_oversized_event_and_keeps_order() {
    use gitward::events::outbox;
    use gitward::sinks::worker::{self, Outbox, Unobserved};

    let (server, fake) = azure(Azure::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut events = fakes::events(3, 10);
    events[1] = fakes::event(1, &"y".repeat(MAX_REQUEST_BYTES));
    let state = dir.path().join("state");
    let store = gitward::store::Store::open(&state).unwrap();
    let db = rusqlite::Connection::open(state.join("gitward.db")).unwrap();
    let spec = spec();
    // As a reconcile does: the sink declared and the events held, then released.
    let held: Vec<_> = events.iter().map(|stored| stored.event.clone()).collect();
    let sinks = [outbox::Declared {
        name: "sentinel",
        spec: &spec,
        problem: None,
    }];
    outbox::hold(&db, &held, &sinks, "status-tip", "source-commit").unwrap();
    outbox::release(&db, chrono::Utc::now()).unwrap();
    let endpoints = BTreeMap::from([(
        serde_json::from_value(json!("sentinel-prod")).unwrap(),
        endpoint(&dir, &server.url(), SECRET),
    )]);
    let drained = guard(worker::drain(
        &Outbox::new(store),
        &endpoints,
        Arc::new(Unobserved),
        worker::DRAIN_BUDGET,
    ))
    .await
    .unwrap();
    assert_eq!(drained[0].stopped, None);
    let state = &outbox::states(&db).unwrap()[0];
    assert_eq!(
        (state.delivered, state.dead_letters, state.backlog),
        (2, 1, 0)
    );
    let azure = lock(&fake);
    assert_eq!(
        azure.row_ids(),
        [events[0].event.id.clone(), events[2].event.id.clone()]
    );
    // The oversized event was never sent.
    assert!(azure.requests.iter().all(|(size, _)| *size < LIMIT));
}

#[tokio::test]
async fn a_token_is_kept_for_the_next_batch_while_it_lives() {
    let (server, fake) = azure(Azure::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    for n in 0..2 {
        let events = vec![fakes::event(n, "kept")];
        assert_eq!(
            guard(sink.send(&events)).await,
            Answer::Delivered { duplicates: 0 }
        );
    }
    let azure = lock(&fake);
    assert_eq!((azure.token_requests, azure.unauthorized), (1, 0));
    assert_eq!(azure.rows.len(), 2);
}

#[tokio::test]
async fn a_batch_after_the_token_expired_fetches_a_new_one() {
    // A token that lives less than the renewal margin serves one batch.
    let (server, fake) = azure(Azure {
        lifetime: 60,
        ..Azure::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    let first = vec![fakes::event(0, "first")];
    assert_eq!(
        guard(sink.send(&first)).await,
        Answer::Delivered { duplicates: 0 }
    );
    // Its life is over: the fake refuses it from now on.
    for expiry in lock(&fake).tokens.values_mut() {
        *expiry = Instant::now();
    }
    let second = vec![fakes::event(1, "second")];
    assert_eq!(
        guard(sink.send(&second)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let azure = lock(&fake);
    assert_eq!((azure.token_requests, azure.unauthorized), (2, 0));
    assert_eq!(
        azure.row_ids(),
        [fakes::ids(&first), fakes::ids(&second)].concat()
    );
}

#[tokio::test]
async fn a_token_refused_by_ingestion_is_dropped_and_a_new_one_used() {
    let (server, fake) = azure(Azure::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    let first = fakes::events(2, 10);
    assert_eq!(
        guard(sink.send(&first)).await,
        Answer::Delivered { duplicates: 0 }
    );
    // Revoked (or expired early): ingestion answers 401.
    lock(&fake).tokens.clear();
    let second = vec![fakes::event(5, "after revocation")];
    assert_eq!(
        guard(sink.send(&second)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let azure = lock(&fake);
    assert_eq!((azure.token_requests, azure.unauthorized), (2, 1));
    assert_eq!(
        azure.row_ids(),
        [fakes::ids(&first), fakes::ids(&second)].concat()
    );
}

#[tokio::test]
async fn a_token_endpoint_refusal_is_retried_and_never_shows_the_secret() {
    let (server, fake) = azure(Azure {
        echo: true,
        ..Azure::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "Qq8Q~wrong-secret-value-0123456789";
    let mut sink = sink(&dir, &server.url(), wrong);
    let error = retry_error(guard(sink.send(&fakes::events(1, 10))).await);
    assert!(
        error.starts_with("token endpoint: HTTP 401: invalid_client: AADSTS7000215"),
        "{error}"
    );
    assert!(!error.contains(wrong), "{error}");
    assert!(lock(&fake).requests.is_empty());
}

#[tokio::test]
async fn hostile_token_endpoints_are_retried() {
    let (server, fake) = azure(Azure {
        token_tricks: VecDeque::from([
            Trick::Answer(200, "<html>sign in</html>".to_owned()),
            Trick::Answer(503, "z".repeat(4 << 20)),
            Trick::TakeAndHang,
        ]),
        ..Azure::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    let events = fakes::events(1, 10);
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(
        error.starts_with("token endpoint: HTTP 200: no access_token"),
        "{error}"
    );
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(error.starts_with("token endpoint: HTTP 503: zzz") && error.len() < 1000);
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(
        error.starts_with("token endpoint: ") && error.contains("timed out"),
        "{error}"
    );
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(lock(&fake).row_ids(), fakes::ids(&events));
}

#[tokio::test]
async fn throttling_waits_as_told_and_server_errors_are_retried() {
    let (server, fake) = azure(Azure {
        tricks: VecDeque::from([
            Trick::Throttle(17),
            Trick::Answer(503, monitor("ServiceUnavailable", "Try later.")),
        ]),
        ..Azure::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    let events = fakes::events(3, 10);
    let Answer::Retry { error, after } = guard(sink.send(&events)).await else {
        panic!("a 429 is retried");
    };
    assert!(error.starts_with("HTTP 429: "), "{error}");
    assert_eq!(after, Some(Duration::from_secs(17)));
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(error.starts_with("HTTP 503: "), "{error}");
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(lock(&fake).row_ids(), fakes::ids(&events));
}

#[tokio::test]
async fn after_a_partial_failure_only_the_rest_of_the_batch_is_sent_again() {
    let (server, fake) = azure(Azure {
        tricks: VecDeque::from([
            Trick::Pass,
            Trick::Answer(500, monitor("InternalServerError", "Oops.")),
        ]),
        ..Azure::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    let events = fakes::events(1000, 3000);
    retry_error(guard(sink.send(&events)).await);
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let azure = lock(&fake);
    assert_eq!(
        azure.row_ids(),
        fakes::ids(&events),
        "each event once, in order"
    );
}

#[tokio::test]
async fn records_taken_by_an_endpoint_that_then_hangs_are_reported_as_duplicates() {
    let (server, fake) = azure(Azure {
        tricks: VecDeque::from([Trick::TakeAndHang]),
        ..Azure::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    let events = fakes::events(3, 10);
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 3 }
    );
    assert_eq!(
        lock(&fake).row_ids(),
        [fakes::ids(&events), fakes::ids(&events)].concat()
    );
}

#[tokio::test]
async fn refusals_name_what_to_fix() {
    let (server, _fake) = azure(Azure {
        tricks: VecDeque::from([
            Trick::Answer(
                403,
                monitor("Forbidden", "The client does not have authorization."),
            ),
            Trick::Answer(413, monitor("ContentLengthLimitExceeded", "Too large.")),
            Trick::Answer(500, "x".repeat(8 << 20)),
        ]),
        ..Azure::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    let events = fakes::events(1, 10);
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(
        error.starts_with("HTTP 403: ") && error.contains("Monitoring Metrics Publisher"),
        "{error}"
    );
    let Answer::Rejected { answer } = guard(sink.send(&events)).await else {
        panic!("413 is refused");
    };
    assert!(answer.starts_with("HTTP 413: "), "{answer}");
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(error.starts_with("HTTP 500: xxx") && error.len() < 1000);
}

#[tokio::test]
async fn a_wrong_rule_or_stream_is_refused_with_what_to_check() {
    let (server, _fake) = azure(Azure::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = fakes::spec(json!({
        "type": "sentinel",
        "endpoint": "sentinel-prod",
        "sentinel": {"dcrImmutableId": DCR, "stream": "Custom-Other"},
    }));
    let mut sink = Sentinel::new(&spec, &endpoint(&dir, &server.url(), SECRET)).unwrap();
    let Answer::Rejected { answer } = guard(sink.send(&fakes::events(1, 10))).await else {
        panic!("404 is refused");
    };
    assert!(
        answer.starts_with("HTTP 404: ") && answer.contains("sentinel.stream"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_connection_closed_mid_request_is_retried() {
    let server = fakes::hang_up().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), SECRET);
    let error = retry_error(guard(sink.send(&fakes::events(1, 10))).await);
    assert!(error.starts_with("token endpoint: "), "{error}");
}

#[test]
fn the_rule_users_paste_declares_the_columns_sent_in_the_documented_shape() {
    let ours = dcr();
    let documented: Value = serde_json::from_str(include_str!(
        "fixtures/sentinel/logs-ingestion.dcr.example.json"
    ))
    .unwrap();
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert!(keys(&ours).iter().all(|k| keys(&documented).contains(k)));
    assert_eq!(keys(&ours["properties"]), keys(&documented["properties"]));
    assert_eq!(
        keys(&ours["properties"]["dataFlows"][0]),
        keys(&documented["properties"]["dataFlows"][0])
    );
    let flow = &ours["properties"]["dataFlows"][0];
    assert_eq!(flow["streams"], json!([STREAM]));
    assert_eq!(flow["outputStream"], "Custom-GitwardEvents_CL");
    assert_eq!(flow["transformKql"], "source");
    let columns: Vec<(String, String)> =
        ours["properties"]["streamDeclarations"][STREAM]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    let sent: Vec<(String, String)> = COLUMNS
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    assert_eq!(columns, sent);
}

#[test]
fn the_fake_refuses_the_documented_invalid_body_and_undeclared_columns() {
    let columns = declared();
    let invalid =
        include_bytes!("fixtures/sentinel/logs-ingestion.request-body.docs-verbatim.INVALID.txt");
    assert!(
        records(&columns, invalid)
            .unwrap_err()
            .starts_with("not JSON")
    );
    let with_type = br#"[{"TimeGenerated":"2026-01-02T03:04:05Z","EventId":"x","Type":"y"}]"#;
    assert_eq!(
        records(&columns, with_type).unwrap_err(),
        "record 0: Type is not declared"
    );
    assert!(records(&columns, br#"{"EventId":"x"}"#).is_err());
    assert!(
        records(
            &columns,
            br#"[{"TimeGenerated":"yesterday","EventId":"x"}]"#
        )
        .is_err()
    );
}

#[test]
fn reconcile_once_delivers_to_sentinel_and_sinks_status_shows_it() {
    use common::host::{Host, ISSUERS, certificate};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, fake) = runtime.block_on(azure(Azure::new()));
    let sink = format!(
        "apiVersion: gitward/v1\nkind: Sink\nmetadata: {{name: sentinel}}\nspec:\n  \
         type: sentinel\n  endpoint: sentinel-prod\n  minSeverity: info\n  \
         sentinel: {{dcrImmutableId: {DCR}, stream: {STREAM}}}\n"
    );
    let web = certificate("web", "  dnsNames: [web.example.com]\n");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web),
        ("sinks.yaml", &sink),
    ]);
    let secret = host.dir.path().join("entra-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let url = server.url();
    host.config(&format!(
        "endpoints:\n  sentinel-prod: {{url: \"{url}\", tenantId: {TENANT}, clientId: {CLIENT}, \
         clientSecretFile: {}, tokenUrl: \"{url}/{TENANT}/oauth2/v2.0/token\"}}\n",
        secret.display()
    ));
    host.reconcile(&[]).expect(0);
    {
        let azure = lock(&fake);
        assert_eq!(azure.refusals, Vec::<String>::new());
        let mut kinds: Vec<String> = azure
            .rows
            .iter()
            .map(|r| format!("{} {}", r["EventType"], r["Subject"]))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                r#""certificate.issued" "Certificate/web""#,
                r#""certificate.issued" "Issuer/issuing""#,
                r#""certificate.issued" "Issuer/root""#,
            ]
        );
    }
    let state = &common::sink_state(host.dir.path(), "sentinel");
    assert_eq!(
        (
            &state["delivered"],
            &state["backlog"],
            &state["deadLetters"]
        ),
        (&json!(3), &json!(0), &json!(0)),
        "{state}"
    );
    assert!(
        !state.to_string().contains(SECRET),
        "the secret stays out of the status"
    );
}
