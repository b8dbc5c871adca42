//! The `splunk-hec` sink against a fake HTTP Event Collector on a loopback port. The fake
//! does what Splunk documents (API.md §1, `fixtures/hec/`): it checks the token, the channel
//! (required when the token has acknowledgement on), the body (envelopes concatenated, each
//! with a non-blank `event` and flat `fields`, the index allowed, at most its
//! `max_content_length`), answers with HEC's codes, issues ackIds that answer false, then
//! true once, then are forgotten — and it also checks each envelope is gitward's, refusing
//! anything else, so a test that expects delivery fails on a malformed request.

use crate::common;
use crate::fakes;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use fakes::guard;
use gitward::sinks::splunk_hec::{MAX_REQUEST_BYTES, SplunkHec};
use gitward::sinks::{Answer, Sink};

const TOKEN: &str = "5d2b1a2e-0c5e-4d8e-9a1b-0c7f3c2b9e11";

/// A way the fake answers a request of events instead of taking it as Splunk would.
enum Trick {
    /// This status and body.
    Answer(u16, String),
    /// 429 with `Retry-After`.
    Throttle(u64),
    /// Takes the events, then never answers.
    TakeAndHang,
    /// Takes the events and answers 200 with this body.
    TakeAndSay(String),
}

/// An ackId's state.
enum Ack {
    /// Answers false this many more times, then true (once: then it is forgotten).
    Waiting(u32),
    /// Forgotten by the server: false forever.
    Lost,
}

struct Collector {
    /// The token has indexer acknowledgement enabled.
    ack: bool,
    /// Indexes the token may write to (its default index only, when empty).
    indexes: Vec<String>,
    max_content_length: usize,
    tricks: VecDeque<Trick>,
    /// Polls an ackId answers false before it is true.
    ack_after: u32,
    /// This many next ackIds are lost.
    lose: u32,
    /// Acknowledgements held false until released.
    hold: bool,
    /// This many next polls are answered with garbage.
    garbage_polls: u32,
    /// An event whose presence makes its request a data error.
    poison: Option<String>,
    /// Channels the server no longer knows (code 11).
    forgotten: Vec<String>,
    /// Echo the Authorization header in error answers (a hostile receiver).
    echo: bool,
    keep_bodies: bool,
    next_ack: HashMap<String, u64>,
    acks: HashMap<(String, u64), Ack>,
    /// Envelopes taken, in order, as often as they were taken (Splunk would index them),
    /// kept with `keep_bodies`; their ids always.
    taken: Vec<Value>,
    taken_ids: Vec<String>,
    /// Requests of events: channel, body size, status answered.
    requests: Vec<(Option<String>, usize, u16)>,
    bodies: Vec<Vec<u8>>,
    polls: usize,
    /// Requests of gitward's the fake found malformed, and why.
    refusals: Vec<String>,
}

impl Collector {
    fn new() -> Collector {
        Collector {
            ack: false,
            indexes: Vec::new(),
            max_content_length: 1024 * 1024,
            tricks: VecDeque::new(),
            ack_after: 0,
            lose: 0,
            hold: false,
            garbage_polls: 0,
            poison: None,
            forgotten: Vec::new(),
            echo: false,
            keep_bodies: true,
            next_ack: HashMap::new(),
            acks: HashMap::new(),
            taken: Vec::new(),
            taken_ids: Vec::new(),
            requests: Vec::new(),
            bodies: Vec::new(),
            polls: 0,
            refusals: Vec::new(),
        }
    }

    fn acknowledging() -> Collector {
        Collector {
            ack: true,
            ..Collector::new()
        }
    }

    /// The event ids taken, in order.
    fn taken_ids(&self) -> Vec<String> {
        self.taken_ids.clone()
    }
}

type Fake = Arc<Mutex<Collector>>;

fn lock(fake: &Fake) -> MutexGuard<'_, Collector> {
    fake.lock().unwrap_or_else(|e| e.into_inner())
}

/// A HEC answer.
fn hec(code: i64, text: &str) -> Value {
    json!({"text": text, "code": code})
}

type Refusal = (u16, Value);

fn authorized(collector: &Collector, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err((401, hec(2, "Token is required")));
    };
    let Some(token) = value.strip_prefix("Splunk ") else {
        return Err((401, hec(3, "Invalid authorization")));
    };
    if token != TOKEN {
        let text = if collector.echo {
            format!("Invalid token: {value}")
        } else {
            "Invalid token".to_owned()
        };
        return Err((403, hec(4, &text)));
    }
    Ok(())
}

/// The request's channel: its header, or its `channel` query parameter.
fn channel(
    collector: &Collector,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<String>, Refusal> {
    let channel = headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            fakes::query(uri)
                .into_iter()
                .find(|(name, _)| name == "channel")
                .map(|(_, value)| value)
        });
    match channel {
        None if collector.ack => Err((400, hec(10, "Data channel is missing"))),
        Some(channel)
            if uuid::Uuid::parse_str(&channel).is_err()
                || collector.forgotten.contains(&channel) =>
        {
            Err((400, hec(11, "Invalid data channel")))
        }
        channel => Ok(channel),
    }
}

/// The envelopes of a HEC body: JSON objects one after the other, no array, no commas;
/// `Err` with the number of the first that is not. Each object is found here and parsed by
/// serde_json's own `FromStr`, which is built optimised: measuring throughput measures the
/// sink more than this fake.
fn envelopes(body: &[u8]) -> Result<Vec<Value>, usize> {
    let text = std::str::from_utf8(body).map_err(|_| 0usize)?;
    let bytes = text.as_bytes();
    let mut envelopes = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at].is_ascii_whitespace() {
            at += 1;
            continue;
        }
        let start = at;
        let end = object_end(bytes, start).ok_or(envelopes.len())?;
        let envelope = text[start..end].parse().map_err(|_| envelopes.len())?;
        envelopes.push(envelope);
        at = end;
    }
    Ok(envelopes)
}

/// Where the JSON object starting at `start` ends (just past its `}`). Strings are skipped
/// with a regex, which runs optimised: they are most of a body.
fn object_end(bytes: &[u8], start: usize) -> Option<usize> {
    static STRING_END: std::sync::LazyLock<regex::bytes::Regex> =
        std::sync::LazyLock::new(|| regex::bytes::Regex::new(r#"["\\]"#).unwrap());
    if bytes.get(start) != Some(&b'{') {
        return None;
    }
    let mut depth = 0u32;
    let mut at = start;
    while let Some(&byte) = bytes.get(at) {
        at += 1;
        match byte {
            b'"' => loop {
                let found = STRING_END.find_at(bytes, at)?;
                at = found.end();
                if bytes[found.start()] == b'"' {
                    break;
                }
                at += 1;
            },
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => {}
        }
    }
    None
}

/// What Splunk checks of an envelope: the HEC code it refuses it with.
fn splunk_checks(collector: &Collector, envelope: &Value) -> Option<(i64, &'static str)> {
    match envelope.get("event") {
        None => return Some((12, "Event field is required")),
        Some(Value::Null) => return Some((13, "Event field cannot be blank")),
        Some(Value::String(text)) if text.trim().is_empty() => {
            return Some((13, "Event field cannot be blank"));
        }
        _ => {}
    }
    if let Some(fields) = envelope.get("fields") {
        let flat = fields.as_object().is_some_and(|fields| {
            fields.values().all(|v| {
                v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            })
        });
        if !flat {
            return Some((15, "Error in handling indexed fields"));
        }
    }
    if let Some(index) = envelope.get("index")
        && !collector.indexes.iter().any(|i| index == i)
    {
        return Some((7, "Incorrect index"));
    }
    None
}

/// What gitward's envelopes are: the fake refuses anything else.
fn gitward_checks(envelope: &Value) -> Result<(), String> {
    let object = envelope.as_object().ok_or("not an object")?;
    for key in object.keys() {
        if ![
            "time",
            "host",
            "source",
            "sourcetype",
            "index",
            "event",
            "fields",
        ]
        .contains(&key.as_str())
        {
            return Err(format!("unexpected key {key}"));
        }
    }
    let event = &envelope["event"];
    let id = event["id"].as_str().ok_or("event without id")?;
    let checks = [
        (
            envelope["time"].is_f64(),
            "time is not a number with a fraction",
        ),
        (
            envelope["host"].as_str().is_some_and(|h| !h.is_empty()),
            "host",
        ),
        (envelope["source"] == "gitward", "source"),
        (envelope["sourcetype"].is_string(), "sourcetype"),
        (event["specversion"] == "1.0", "event is not a CloudEvent"),
        (
            event["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("dev.gitward.")),
            "event type",
        ),
        (envelope["fields"] == json!({"event_id": id}), "fields"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, what)) => Err((*what).to_owned()),
        None => Ok(()),
    }
}

/// What the fake does with a request of events.
enum Outcome {
    Reply(u16, String, Option<u64>),
    Hang,
}

fn take_events(collector: &mut Collector, headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Outcome {
    let reply = |(status, body): Refusal| Outcome::Reply(status, body.to_string(), None);
    if let Err(refusal) = authorized(collector, headers) {
        return reply(refusal);
    }
    let channel = match channel(collector, headers, uri) {
        Ok(channel) => channel,
        Err(refusal) => return reply(refusal),
    };
    if body.is_empty() {
        return reply((400, hec(5, "No data")));
    }
    if body.len() > collector.max_content_length {
        return reply((413, json!({"text": "Content too large"})));
    }
    let invalid = |n: usize, code: i64, text: &str| {
        let mut answer = hec(code, text);
        answer["invalid-event-number"] = json!(n);
        reply((400, answer))
    };
    let envelopes = match envelopes(body) {
        Ok(envelopes) => envelopes,
        Err(n) => {
            collector
                .refusals
                .push(format!("event {n} is not a JSON object"));
            return invalid(n, 6, "Invalid data format");
        }
    };
    for (n, envelope) in envelopes.iter().enumerate() {
        if let Some((code, text)) = splunk_checks(collector, envelope) {
            collector.refusals.push(format!("event {n}: {text}"));
            return invalid(n, code, text);
        }
        if let Err(why) = gitward_checks(envelope) {
            collector.refusals.push(format!("event {n}: {why}"));
            return invalid(n, 6, "Invalid data format");
        }
        if collector.poison.is_some()
            && envelope["fields"]["event_id"].as_str() == collector.poison.as_deref()
        {
            return invalid(n, 6, "Invalid data format");
        }
    }
    let take = |collector: &mut Collector| {
        for envelope in envelopes {
            let id = envelope["fields"]["event_id"].as_str().unwrap_or_default();
            collector.taken_ids.push(id.to_owned());
            if collector.keep_bodies {
                collector.taken.push(envelope);
            }
        }
    };
    match collector.tricks.pop_front() {
        Some(Trick::Answer(status, body)) => return Outcome::Reply(status, body, None),
        Some(Trick::Throttle(seconds)) => {
            return Outcome::Reply(429, hec(9, "Server is busy").to_string(), Some(seconds));
        }
        Some(Trick::TakeAndHang) => {
            take(collector);
            return Outcome::Hang;
        }
        Some(Trick::TakeAndSay(body)) => {
            take(collector);
            return Outcome::Reply(200, body, None);
        }
        None => {}
    }
    take(collector);
    let mut answer = hec(0, "Success");
    if collector.ack {
        let channel = channel.unwrap_or_default();
        let next = collector.next_ack.entry(channel.clone()).or_default();
        let id = *next;
        *next += 1;
        let state = if collector.lose > 0 {
            collector.lose -= 1;
            Ack::Lost
        } else {
            Ack::Waiting(collector.ack_after)
        };
        collector.acks.insert((channel, id), state);
        answer["ackId"] = json!(id);
    }
    Outcome::Reply(200, answer.to_string(), None)
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

async fn events(State(fake): State<Fake>, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    let outcome = {
        let mut collector = lock(&fake);
        let outcome = take_events(&mut collector, &headers, &uri, &body);
        let channel = headers
            .get("x-splunk-request-channel")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = match &outcome {
            Outcome::Reply(status, ..) => *status,
            Outcome::Hang => 0,
        };
        collector.requests.push((channel, body.len(), status));
        if collector.keep_bodies {
            collector.bodies.push(body.to_vec());
        }
        outcome
    };
    match outcome {
        Outcome::Reply(status, body, after) => response(status, body, after),
        Outcome::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            response(500, String::new(), None)
        }
    }
}

fn answer_acks(collector: &mut Collector, headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Refusal {
    if let Err(refusal) = authorized(collector, headers) {
        return refusal;
    }
    // Acknowledgements are asked for with the channel in the query.
    let channel = fakes::query(uri)
        .into_iter()
        .find(|(name, _)| name == "channel")
        .map(|(_, value)| value);
    let Some(channel) = channel else {
        return (400, hec(10, "Data channel is missing"));
    };
    if uuid::Uuid::parse_str(&channel).is_err() || collector.forgotten.contains(&channel) {
        return (400, hec(11, "Invalid data channel"));
    }
    if !collector.ack {
        return (400, hec(14, "ACK is disabled"));
    }
    let asked: Option<Vec<u64>> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("acks")?.clone()).ok());
    let Some(asked) = asked else {
        return (400, hec(6, "Invalid data format"));
    };
    collector.polls += 1;
    let mut acks = serde_json::Map::new();
    for id in asked {
        let key = (channel.clone(), id);
        let done = match collector.acks.get_mut(&key) {
            Some(Ack::Waiting(0)) if !collector.hold => true,
            Some(Ack::Waiting(left)) => {
                *left = left.saturating_sub(1);
                false
            }
            Some(Ack::Lost) | None => false,
        };
        if done {
            // Said true once, then forgotten.
            collector.acks.remove(&key);
        }
        acks.insert(id.to_string(), json!(done));
    }
    (200, json!({ "acks": acks }))
}

async fn acks(State(fake): State<Fake>, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    let mut collector = lock(&fake);
    if collector.garbage_polls > 0 {
        collector.garbage_polls -= 1;
        collector.polls += 1;
        return response(200, "<html>gateway</html>".to_owned(), None);
    }
    let (status, answer) = answer_acks(&mut collector, &headers, &uri, &body);
    response(status, answer.to_string(), None)
}

async fn collector(setup: Collector) -> (fakes::Server, Fake) {
    let fake = Arc::new(Mutex::new(setup));
    let router = Router::new()
        .route("/services/collector/event", post(events))
        .route("/services/collector/ack", post(acks))
        .fallback(|| async {
            response(
                404,
                hec(404, "The requested URL was not found on this server.").to_string(),
                None,
            )
        })
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(fake.clone());
    (fakes::Server::start(router).await, fake)
}

/// A sink sending to `url` with `token`, as the repository's `splunk` block and the host's
/// endpoint (timeout 2s) have it.
fn sink(dir: &tempfile::TempDir, url: &str, token: &str, splunk: Value) -> SplunkHec {
    let file = dir.path().join("splunk-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let endpoint = fakes::endpoint(json!({"url": url, "tokenFile": file, "timeout": "2s"}));
    let spec =
        fakes::spec(json!({"type": "splunk-hec", "endpoint": "splunk-prod", "splunk": splunk}));
    SplunkHec::new("splunk", &spec, &endpoint).expect("a splunk-hec sink")
}

fn retry_error(answer: Answer) -> String {
    match answer {
        Answer::Retry { error, after: None } => error,
        other => panic!("expected a retry, got {other:?}"),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn events_arrive_as_concatenated_envelopes_in_order_with_the_cloudevent_as_stored() {
    let (server, fake) = collector(Collector {
        indexes: vec!["security".to_owned()],
        ..Collector::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(
        &dir,
        &server.url(),
        TOKEN,
        json!({"index": "security", "sourcetype": "gitward:test"}),
    );
    let events = fakes::events(3, 80);
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );

    let collector = lock(&fake);
    assert_eq!(collector.refusals, Vec::<String>::new());
    assert_eq!(collector.requests.len(), 1);
    assert_eq!(collector.taken_ids(), fakes::ids(&events));
    let body = &collector.bodies[0];
    assert!(body.starts_with(b"{\"time\":") && body.ends_with(b"}}"));
    for (envelope, stored) in collector.taken.iter().zip(&events) {
        let keys: Vec<&str> = envelope
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "time",
                "host",
                "source",
                "sourcetype",
                "index",
                "event",
                "fields"
            ]
        );
        assert_eq!(
            (envelope["time"].as_f64().unwrap() * 1000.0).round() as i64,
            stored.event.time.timestamp_millis()
        );
        assert_eq!(envelope["host"], host_name());
        assert_eq!(envelope["source"], "gitward");
        assert_eq!(envelope["sourcetype"], "gitward:test");
        assert_eq!(envelope["index"], "security");
        assert_eq!(
            envelope["event"],
            serde_json::from_str::<Value>(&stored.json).unwrap()
        );
        assert_eq!(envelope["fields"], json!({"event_id": stored.event.id}));
    }
    // Every request names a channel (a v4 GUID), harmless when acknowledgement is off.
    let channel = collector.requests[0].0.clone().expect("a channel");
    assert_eq!(
        uuid::Uuid::parse_str(&channel).unwrap().get_version_num(),
        4
    );
}

#[tokio::test]
async fn without_settings_the_sourcetype_is_gitwards_and_the_index_the_tokens() {
    let (server, fake) = collector(Collector::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, Value::Null);
    let events = fakes::events(2, 10);
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let collector = lock(&fake);
    assert_eq!(collector.taken_ids(), fakes::ids(&events));
    for envelope in &collector.taken {
        assert_eq!(envelope["sourcetype"], "gitward:event");
        assert!(envelope.get("index").is_none(), "{envelope}");
    }
}

#[tokio::test]
async fn large_batches_go_in_requests_under_a_mebibyte_and_an_event_is_never_split() {
    let (server, fake) = collector(Collector {
        max_content_length: 8 << 20,
        ..Collector::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, Value::Null);
    assert!(sink.batch_size() >= 1000);
    let events = fakes::events(1000, 3000);
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    {
        let collector = lock(&fake);
        assert!(collector.requests.len() >= 3, "{:?}", collector.requests);
        assert!(
            collector
                .requests
                .iter()
                .all(|(_, size, status)| *size <= MAX_REQUEST_BYTES && *status == 200)
        );
        assert_eq!(collector.taken_ids(), fakes::ids(&events));
    }

    // An event larger than a request goes alone, whole.
    let mut big = fakes::events(3, 10);
    big[1] = fakes::event(1, &"x".repeat(MAX_REQUEST_BYTES + 1000));
    lock(&fake).requests.clear();
    lock(&fake).taken_ids.clear();
    assert_eq!(
        guard(sink.send(&big)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let collector = lock(&fake);
    let sizes: Vec<usize> = collector.requests.iter().map(|r| r.1).collect();
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    assert!(sizes[1] > MAX_REQUEST_BYTES);
    assert_eq!(collector.taken_ids(), fakes::ids(&big));
}

#[tokio::test]
async fn with_acknowledgement_a_batch_is_delivered_once_every_ack_id_is_true() {
    let (server, fake) = collector(Collector {
        ack_after: 2,
        ..Collector::acknowledging()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, json!({"ack": true}));
    let events = fakes::events(1000, 3000);
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let collector = lock(&fake);
    assert_eq!(collector.refusals, Vec::<String>::new());
    assert!(collector.requests.len() >= 3);
    // All on the sink's one channel; all ackIds asked together: false, false, true.
    assert!(
        collector
            .requests
            .iter()
            .all(|(channel, _, _)| channel.as_deref() == Some(sink.channel()))
    );
    assert_eq!(collector.polls, 3);
    assert!(collector.acks.is_empty(), "every ackId said true");
    assert_eq!(collector.taken_ids(), fakes::ids(&events));
}

#[tokio::test]
async fn a_lost_acknowledgement_is_retried_and_the_resent_events_reported_as_duplicates() {
    let (server, fake) = collector(Collector {
        lose: 1,
        ..Collector::acknowledging()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, json!({"ack": true}))
        .with_ack_timeout(Duration::from_secs(1));
    let events = fakes::events(3, 10);

    let error = retry_error(guard(sink.send(&events)).await);
    assert!(
        error.starts_with("no indexer acknowledgement from Splunk for 3 event(s) within 1 s"),
        "{error}"
    );
    // The worker resends the same batch: Splunk may now index it twice, and says so.
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 3 }
    );
    let collector = lock(&fake);
    assert_eq!(collector.requests.len(), 2);
    assert_eq!(
        collector.taken_ids(),
        [fakes::ids(&events), fakes::ids(&events)].concat()
    );
}

#[tokio::test]
async fn a_late_acknowledgement_is_asked_again_before_the_batch_is_resent() {
    let (server, fake) = collector(Collector {
        hold: true,
        ..Collector::acknowledging()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, json!({"ack": true}))
        .with_ack_timeout(Duration::from_secs(1));
    let events = fakes::events(3, 10);
    retry_error(guard(sink.send(&events)).await);
    lock(&fake).hold = false;
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let collector = lock(&fake);
    assert_eq!(collector.requests.len(), 1, "nothing was sent twice");
    assert_eq!(collector.taken_ids(), fakes::ids(&events));
}

#[tokio::test]
async fn garbage_acknowledgement_answers_are_asked_again() {
    let (server, fake) = collector(Collector {
        garbage_polls: 2,
        ..Collector::acknowledging()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, json!({"ack": true}));
    let events = fakes::events(2, 10);
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(lock(&fake).polls, 3);
}

#[tokio::test]
async fn a_busy_or_failing_collector_is_retried_and_takes_the_batch_once() {
    let (server, fake) = collector(Collector {
        tricks: VecDeque::from([
            Trick::Answer(503, hec(9, "Server is busy").to_string()),
            Trick::Answer(500, hec(8, "Internal server error").to_string()),
            Trick::Throttle(7),
        ]),
        ..Collector::acknowledging()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, json!({"ack": true}));
    let events = fakes::events(3, 10);
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(
        error.starts_with("HTTP 503: ") && error.contains("Server is busy"),
        "{error}"
    );
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(error.starts_with("HTTP 500: "), "{error}");
    let Answer::Retry { after, .. } = guard(sink.send(&events)).await else {
        panic!("a 429 is retried");
    };
    assert_eq!(after, Some(Duration::from_secs(7)));
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(lock(&fake).taken_ids(), fakes::ids(&events));
}

#[tokio::test]
async fn a_channel_splunk_no_longer_knows_is_replaced_and_the_batch_retried() {
    let (server, fake) = collector(Collector::acknowledging()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, json!({"ack": true}));
    let old = sink.channel().to_owned();
    lock(&fake).forgotten.push(old.clone());
    let events = fakes::events(2, 10);
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(
        error.contains("Invalid data channel") && error.contains("new channel"),
        "{error}"
    );
    assert_ne!(sink.channel(), old);
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    let collector = lock(&fake);
    let channels: Vec<_> = collector.requests.iter().map(|r| r.0.clone()).collect();
    assert_eq!(channels, [Some(old), Some(sink.channel().to_owned())]);
    assert_eq!(collector.taken_ids(), fakes::ids(&events));
}

#[tokio::test]
async fn a_refused_token_is_retried_without_showing_it() {
    let (server, fake) = collector(Collector {
        echo: true,
        ..Collector::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0000aaaa-1111-2222-3333-444455556666";
    let mut sink = sink(&dir, &server.url(), wrong, Value::Null);
    let Answer::Retry { error, .. } = guard(sink.send(&fakes::events(1, 10))).await else {
        panic!("a refused token is the host's to fix: retried");
    };
    assert!(
        error.starts_with("HTTP 403: ") && error.contains("Invalid token"),
        "{error}"
    );
    assert!(!error.contains(wrong), "{error}");
    assert!(lock(&fake).taken_ids.is_empty());
}

#[tokio::test]
async fn a_data_error_refuses_the_batch() {
    let events = fakes::events(3, 10);
    let (server, _fake) = collector(Collector {
        poison: Some(events[1].event.id.clone()),
        ..Collector::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, Value::Null);
    let Answer::Rejected { answer } = guard(sink.send(&events)).await else {
        panic!("a data error is refused");
    };
    assert!(
        answer.starts_with("HTTP 400: ") && answer.contains("\"invalid-event-number\":1"),
        "{answer}"
    );
}

#[tokio::test]
async fn the_worker_keeps_order_and_dead_letters_only_the_event_splunk_refuses() {
    use gitward::events::outbox;
    use gitward::sinks::worker::{self, Outbox, Unobserved};

    let events = fakes::events(3, 10);
    let (server, fake) = collector(Collector {
        poison: Some(events[1].event.id.clone()),
        ..Collector::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("splunk-token");
    std::fs::write(&file, TOKEN).unwrap();
    let state = dir.path().join("state");
    let store = gitward::store::Store::open(&state).unwrap();
    let db = rusqlite::Connection::open(state.join("gitward.db")).unwrap();
    let spec = fakes::spec(json!({"type": "splunk-hec", "endpoint": "splunk-prod"}));
    // As a reconcile does: the sink declared and the events held, then released.
    let held: Vec<_> = events.iter().map(|stored| stored.event.clone()).collect();
    let sinks = [outbox::Declared {
        name: "splunk",
        spec: &spec,
        problem: None,
    }];
    outbox::hold(&db, &held, &sinks, "status-tip", "source-commit").unwrap();
    outbox::release(&db, chrono::Utc::now()).unwrap();
    let endpoints = BTreeMap::from([(
        serde_json::from_value(json!("splunk-prod")).unwrap(),
        fakes::endpoint(json!({"url": server.url(), "tokenFile": file})),
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
    assert_eq!(
        lock(&fake).taken_ids(),
        [events[0].event.id.clone(), events[2].event.id.clone()]
    );
}

#[tokio::test]
async fn hostile_answers_are_bounded_retries() {
    let (server, fake) = collector(Collector {
        tricks: VecDeque::from([
            Trick::Answer(503, "x".repeat(8 << 20)),
            Trick::Answer(502, "\u{1b}[2J<html>\n\0bad gateway</html>".to_owned()),
        ]),
        ..Collector::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, Value::Null);
    let events = fakes::events(2, 10);
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(
        error.starts_with("HTTP 503: xxx") && error.len() < 1000,
        "{}",
        error.len()
    );
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(!error.contains(['\n', '\0', '\u{1b}']), "{error:?}");
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(lock(&fake).taken_ids(), fakes::ids(&events));
}

#[tokio::test]
async fn a_collector_that_takes_events_and_hangs_times_out_and_the_resend_is_reported() {
    let (server, fake) = collector(Collector {
        tricks: VecDeque::from([Trick::TakeAndHang]),
        ..Collector::new()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, Value::Null);
    let events = fakes::events(3, 10);
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 3 }
    );
    assert_eq!(
        lock(&fake).taken_ids(),
        [fakes::ids(&events), fakes::ids(&events)].concat()
    );
}

#[tokio::test]
async fn a_success_answer_that_is_garbage_leaves_acknowledged_events_unconfirmed() {
    let (server, fake) = collector(Collector {
        tricks: VecDeque::from([Trick::TakeAndSay("<html>proxy says ok</html>".to_owned())]),
        ..Collector::acknowledging()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, json!({"ack": true}));
    let events = fakes::events(2, 10);
    let error = retry_error(guard(sink.send(&events)).await);
    assert!(error.contains("not a HEC answer"), "{error}");
    assert_eq!(
        guard(sink.send(&events)).await,
        Answer::Delivered { duplicates: 2 }
    );
    assert_eq!(lock(&fake).taken_ids.len(), 4);
}

#[tokio::test]
async fn a_connection_closed_mid_request_is_retried() {
    let server = fakes::hang_up().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(&dir, &server.url(), TOKEN, json!({"ack": true}));
    let error = retry_error(guard(sink.send(&fakes::events(2, 10))).await);
    assert!(!error.is_empty());
}

#[tokio::test]
async fn a_collector_not_listening_is_retried() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sink = sink(
        &dir,
        &format!("http://127.0.0.1:{port}"),
        TOKEN,
        Value::Null,
    );
    retry_error(guard(sink.send(&fakes::events(1, 10))).await);
}

#[test]
fn the_fake_reads_the_documented_batch_and_answers_with_the_documented_codes() {
    let batch = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hec/hec-event.batch.concatenated.txt"
    ))
    .unwrap();
    let read = envelopes(&batch).unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[2]["nested"]["key1"], "value1");
    assert!(envelopes(b"[{\"event\":1}]").is_err());
    assert!(envelopes(b"{\"event\":1},{\"event\":2}").is_err());
    let fixture = |name: &str| -> Value {
        let path = format!("{}/tests/fixtures/hec/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    assert_eq!(
        fixture("hec-response.code10-channel-missing.json"),
        hec(10, "Data channel is missing")
    );
    assert_eq!(fixture("hec-response.success.json"), hec(0, "Success"));
    let codes = fixture("hec-status-codes.json");
    for (code, status, text) in [
        (2, 401, "Token is required"),
        (4, 403, "Invalid token"),
        (9, 503, "Server is busy"),
        (11, 400, "Invalid data channel"),
        (14, 400, "ACK is disabled"),
    ] {
        assert!(
            codes
                .as_array()
                .unwrap()
                .contains(&json!({"code": code, "http_status": status, "text": text})),
            "{code}"
        );
    }
}

#[tokio::test]
async fn the_fake_requires_a_channel_of_an_acknowledging_token_as_splunk_does() {
    let (server, fake) = collector(Collector::acknowledging()).await;
    let client = reqwest::Client::new();
    let body = r#"{"event":"x","fields":{"event_id":"1"}}"#;
    let answer = client
        .post(format!("{}/services/collector/event", server.url()))
        .header("authorization", format!("Splunk {TOKEN}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let said: Value = answer.json().await.unwrap();
    let documented: Value = serde_json::from_str(include_str!(
        "fixtures/hec/hec-response.code10-channel-missing.json"
    ))
    .unwrap();
    assert_eq!(said, documented);
    assert!(lock(&fake).taken_ids.is_empty());
}

/// The sinks' states as `gitward sinks status --format json` prints them.
#[test]
fn reconcile_once_delivers_to_splunk_with_acknowledgement_and_sinks_test_reaches_it() {
    use common::host::{Host, ISSUERS, certificate};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, fake) = runtime.block_on(collector(Collector {
        indexes: vec!["security".to_owned()],
        ..Collector::acknowledging()
    }));
    let sink = "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: splunk}\nspec:\n  \
                type: splunk-hec\n  endpoint: splunk-prod\n  minSeverity: info\n  \
                splunk: {index: security, ack: true}\n";
    let web = certificate("web", "  dnsNames: [web.example.com]\n");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web),
        ("sinks.yaml", sink),
    ]);
    let token = host.dir.path().join("splunk-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    host.config(&format!(
        "endpoints:\n  splunk-prod: {{url: \"{}\", tokenFile: {}}}\n",
        server.url(),
        token.display()
    ));
    host.reconcile(&[]).expect(0);
    {
        let collector = lock(&fake);
        assert_eq!(collector.refusals, Vec::<String>::new());
        let mut kinds: Vec<String> = collector
            .taken
            .iter()
            .map(|e| format!("{} {}", e["event"]["type"], e["event"]["subject"]))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                r#""dev.gitward.certificate.issued" "Certificate/web""#,
                r#""dev.gitward.certificate.issued" "Issuer/issuing""#,
                r#""dev.gitward.certificate.issued" "Issuer/root""#,
            ]
        );
        assert!(collector.taken.iter().all(|e| e["index"] == "security"));
        assert!(collector.polls >= 1, "delivered once acknowledged");
    }
    let state = common::sink_state(host.dir.path(), "splunk");
    assert_eq!(
        (
            &state["delivered"],
            &state["backlog"],
            &state["deadLetters"],
            &state["possibleDuplicates"]
        ),
        (&json!(3), &json!(0), &json!(0), &json!(0)),
        "{state}"
    );

    let test = common::gitward_in(
        host.dir.path(),
        &["sinks", "test", "splunk", "--config", "gitward.yaml"],
    )
    .expect(0);
    assert!(test.stdout.contains("delivered"), "{}", test.stdout);
    let collector = lock(&fake);
    let last = collector.taken.last().expect("the test event");
    assert_eq!(last["event"]["type"], "dev.gitward.sink.test");
}
