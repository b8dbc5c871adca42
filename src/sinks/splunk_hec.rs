//! `splunk-hec`: events to a Splunk HTTP Event Collector as JSON envelopes concatenated in
//! one request body (`POST <url>/services/collector/event`), at most [`MAX_REQUEST_BYTES`] a
//! request. Each envelope carries the CloudEvent, as stored, as its `event`, and the event id
//! as the indexed field `event_id`, by which searches deduplicate (`| dedup event_id`).
//!
//! With `ack: true` a batch counts as delivered only once Splunk says every event of it is
//! indexed (indexer acknowledgement): each request carries the sink's channel
//! (`X-Splunk-Request-Channel`), Splunk answers an `ackId`, which is asked after at
//! `/services/collector/ack` until it is true, for at most [`ACK_TIMEOUT`]. When it does not
//! come the batch is retried; acknowledgements still missing are asked once more before it
//! is resent (a late one saves a duplicate), and events sent again are reported as possible
//! duplicates once delivered.
//!
//! Splunk's answers (its `code`): busy (9), 5xx, 408 and 429 are retried; 401 and 403
//! (token missing, disabled or invalid) are retried as the host's to fix; a data error (400
//! with code 5, 6, 12, 13 or 15) is refused, and the worker then finds the events Splunk
//! refuses; 400 about the channel (10 missing, 11 invalid), the index (7) or acknowledgement
//! (14) is retried, because the events are not at fault but the way to Splunk or the token's
//! settings are — after 11 the sink opens a new channel.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use tokio::time::Instant;

use super::{Answer, Sending, Sink, SinkProblem, http};
use crate::config::Endpoint;
use crate::events::outbox::Stored;
use crate::model::SinkSpec;

/// Most events one batch takes.
pub const BATCH_SIZE: usize = 1000;
/// Most bytes one request carries (Splunk's `max_content_length` is larger by default); a
/// larger event goes alone, as an event is never split.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Longest wait for the indexer acknowledgement of a batch before it is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(120);
/// The first wait before acknowledgements are asked for; each next one twice as long.
const FIRST_POLL: Duration = Duration::from_millis(25);
const LONGEST_POLL: Duration = Duration::from_secs(5);
/// The header naming the channel of a request.
pub const CHANNEL: &str = "x-splunk-request-channel";
/// The envelope's `source`.
pub const SOURCE: &str = "gitward";
/// The envelope's `sourcetype` unless the sink sets one.
pub const DEFAULT_SOURCETYPE: &str = "gitward:event";
/// Events remembered across attempts at most. The worker resends one batch, so this is
/// never reached; were it, duplicates would be under-reported rather than memory grow.
const LEDGER_CAP: usize = 100_000;

/// What a receiver holds of the events of a batch across the attempts at sending it: what
/// it has for sure is not sent again, and what went out more than once is reported as
/// possible duplicates when the batch is delivered.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Events the receiver confirmed it has.
    has: HashSet<String>,
    /// How many copies of each event went out and may have arrived.
    copies: HashMap<String, u32>,
}

impl Ledger {
    /// Whether the receiver has event `id` for sure.
    pub fn has(&self, id: &str) -> bool {
        self.has.contains(id)
    }

    /// Events that went out and may have arrived (taken, or their answer was lost).
    pub fn sent<'s>(&mut self, ids: impl IntoIterator<Item = &'s str>) {
        if self.copies.len() > LEDGER_CAP {
            self.copies.clear();
            self.has.clear();
        }
        for id in ids {
            *self.copies.entry(id.to_owned()).or_default() += 1;
        }
    }

    /// Events the receiver confirmed it has.
    pub fn confirmed<'s>(&mut self, ids: impl IntoIterator<Item = &'s str>) {
        self.has.extend(ids.into_iter().map(str::to_owned));
    }

    /// The batch is done with (delivered, or an event refused): how many of its events the
    /// receiver may hold twice. They are forgotten.
    pub fn settle(&mut self, events: &[Stored]) -> u64 {
        let mut duplicates = 0;
        for stored in events {
            let id = stored.event.id.as_str();
            if self.copies.remove(id).unwrap_or(0) > 1 {
                duplicates += 1;
            }
            self.has.remove(id);
        }
        duplicates
    }
}

/// An acknowledgement asked for and the events it stands for.
type Awaited = (u64, Vec<String>);

pub struct SplunkHec {
    name: String,
    client: reqwest::Client,
    event_url: String,
    ack_url: String,
    authorization: HeaderValue,
    /// Kept to remove from a receiver's answers, should one echo it.
    token: String,
    channel: String,
    /// The envelope between `time` and `event`: host, source, sourcetype, index.
    middle: String,
    ack: bool,
    ack_timeout: Duration,
    ledger: Ledger,
    /// Acknowledgements an earlier attempt did not get: asked again before a resend.
    pending: Vec<Awaited>,
    warned_unacknowledged: bool,
}

/// The collector's base URL from the endpoint's: it may name the collector's paths, which
/// gitward adds itself.
fn collector_base(url: &str) -> Result<String, SinkProblem> {
    if url.contains(['?', '#']) {
        return Err(SinkProblem(
            "a splunk-hec endpoint URL is the collector's address, like \
             `https://splunk.example.com:8088`, without a query"
                .to_owned(),
        ));
    }
    let base = url.trim_end_matches('/');
    let base = base
        .strip_suffix("/services/collector/event")
        .or_else(|| base.strip_suffix("/services/collector"))
        .unwrap_or(base);
    Ok(base.to_owned())
}

/// A string as JSON.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Epoch seconds with milliseconds, as HEC's `time` takes them.
pub fn epoch(time: DateTime<Utc>) -> String {
    let millis = time.timestamp_millis();
    format!("{}.{:03}", millis.div_euclid(1000), millis.rem_euclid(1000))
}

/// This host's name, the envelope's `host`.
fn host_name() -> String {
    super::host_name().unwrap_or_else(|| "localhost".to_owned())
}

impl SplunkHec {
    pub fn new(name: &str, spec: &SinkSpec, endpoint: &Endpoint) -> Result<SplunkHec, SinkProblem> {
        let file = endpoint.token_file.as_deref().ok_or_else(|| {
            SinkProblem("a splunk-hec endpoint needs `tokenFile` (the HEC token)".to_owned())
        })?;
        let token = super::read_secret(file, "tokenFile")?;
        let mut authorization =
            HeaderValue::from_str(&format!("Splunk {token}")).map_err(|_| {
                SinkProblem(format!(
                    "tokenFile ({}) holds characters an HTTP header cannot carry",
                    file.display()
                ))
            })?;
        authorization.set_sensitive(true);
        let base = collector_base(&endpoint.url)?;
        let settings = spec.splunk.as_ref();
        let sourcetype = settings
            .and_then(|s| s.sourcetype.as_deref())
            .unwrap_or(DEFAULT_SOURCETYPE);
        let mut middle = format!(
            ",\"host\":{},\"source\":{},\"sourcetype\":{}",
            quoted(&host_name()),
            quoted(SOURCE),
            quoted(sourcetype)
        );
        if let Some(index) = settings.and_then(|s| s.index.as_deref()) {
            middle.push_str(&format!(",\"index\":{}", quoted(index)));
        }
        middle.push_str(",\"event\":");
        Ok(SplunkHec {
            name: name.to_owned(),
            client: http::client(endpoint)?,
            event_url: format!("{base}/services/collector/event"),
            ack_url: format!("{base}/services/collector/ack"),
            authorization,
            token,
            channel: uuid::Uuid::new_v4().to_string(),
            middle,
            ack: settings.is_some_and(|s| s.ack),
            ack_timeout: ACK_TIMEOUT,
            ledger: Ledger::default(),
            pending: Vec::new(),
            warned_unacknowledged: false,
        })
    }

    /// The same sink waiting `timeout` for acknowledgements instead of [`ACK_TIMEOUT`].
    pub fn with_ack_timeout(mut self, timeout: Duration) -> SplunkHec {
        self.ack_timeout = timeout;
        self
    }

    /// The channel requests go on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// A receiver's text without the token.
    fn scrub(&self, text: &str) -> String {
        text.replace(&self.token, "[token]")
    }

    /// A new channel: acknowledgements asked on the old one are lost with it.
    fn new_channel(&mut self) {
        self.channel = uuid::Uuid::new_v4().to_string();
        self.pending.clear();
    }

    /// The envelope of one event.
    fn envelope(&self, stored: &Stored, out: &mut String) {
        out.push_str("{\"time\":");
        out.push_str(&epoch(stored.event.time));
        out.push_str(&self.middle);
        out.push_str(&stored.json);
        out.push_str(",\"fields\":{\"event_id\":");
        out.push_str(&quoted(&stored.event.id));
        out.push_str("}}");
    }

    /// `events` as request bodies of at most [`MAX_REQUEST_BYTES`], in order, each with the
    /// ids of its events.
    fn bodies(&self, events: &[&Stored]) -> Vec<(String, Vec<String>)> {
        let mut bodies = Vec::new();
        let mut body = String::new();
        let mut ids = Vec::new();
        let mut one = String::new();
        for stored in events {
            one.clear();
            self.envelope(stored, &mut one);
            if !body.is_empty() && body.len() + one.len() > MAX_REQUEST_BYTES {
                bodies.push((std::mem::take(&mut body), std::mem::take(&mut ids)));
            }
            body.push_str(&one);
            ids.push(stored.event.id.clone());
        }
        if !body.is_empty() {
            bodies.push((body, ids));
        }
        bodies
    }

    fn request(&self, url: &str, body: String) -> reqwest::RequestBuilder {
        self.client
            .post(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CHANNEL, &self.channel)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// Sends one request of events.
    async fn post(&self, body: String) -> Posted {
        match self.request(&self.event_url, body).send().await {
            Ok(response) => {
                let status = response.status();
                let after = http::retry_after(response.headers());
                let text = self.scrub(&http::body(response).await);
                judge(status, after, &text, self.ack)
            }
            Err(error) => Posted::Failed {
                // Refused before it was sent: the events did not arrive. Else they may have.
                unsure: !error.is_connect(),
                answer: http::unreachable(error),
                new_channel: false,
            },
        }
    }

    /// Asks which of the acknowledgements `ids` are true.
    async fn poll(&self, ids: &[u64]) -> Polled {
        let url = format!("{}?channel={}", self.ack_url, self.channel);
        let body = serde_json::json!({ "acks": ids }).to_string();
        let response = match self.request(&url, body).send().await {
            Ok(response) => response,
            Err(error) => {
                let error = match http::unreachable(error) {
                    Answer::Retry { error, .. } => error,
                    other => format!("{other:?}"),
                };
                return Polled::Transient(format!("acknowledgement: {error}"));
            }
        };
        let status = response.status();
        let text = self.scrub(&http::body(response).await);
        let said = format!(
            "acknowledgement: HTTP {}: {}",
            status.as_u16(),
            http::one_line(&text)
        );
        if status.is_success() {
            return match acked(&text) {
                Some(acked) => Polled::Acked(acked),
                None => Polled::Transient(said),
            };
        }
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            return Polled::Transient(said);
        }
        let code = serde_json::from_str::<HecAnswer>(&text)
            .ok()
            .and_then(|a| a.code);
        Polled::Fatal {
            error: format!("{said}{}", code.map(hint).unwrap_or_default()),
            new_channel: code == Some(11),
        }
    }

    /// Acknowledgements an earlier attempt did not get, asked once more: the events of those
    /// now true are not sent again.
    async fn recheck(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return;
        }
        let ids: Vec<u64> = pending.iter().map(|(id, _)| *id).collect();
        if let Polled::Acked(acked) = self.poll(&ids).await {
            for (id, events) in &pending {
                if acked.contains(id) {
                    self.ledger.confirmed(events.iter().map(String::as_str));
                }
            }
        }
    }

    /// Asks after `waiting` until each is true or the acknowledgement timeout passes; the
    /// events of those true are confirmed. Those missing stay pending for the next attempt.
    async fn await_acks(&mut self, mut waiting: Vec<Awaited>) -> Result<(), String> {
        let deadline = Instant::now() + self.ack_timeout;
        let mut interval = FIRST_POLL;
        let mut last = None;
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(interval.min(left)).await;
            interval = (interval * 2).min(LONGEST_POLL);
            let ids: Vec<u64> = waiting.iter().map(|(id, _)| *id).collect();
            match self.poll(&ids).await {
                Polled::Acked(acked) => {
                    let (done, rest): (Vec<_>, Vec<_>) =
                        waiting.into_iter().partition(|(id, _)| acked.contains(id));
                    for (_, events) in &done {
                        self.ledger.confirmed(events.iter().map(String::as_str));
                    }
                    waiting = rest;
                }
                Polled::Transient(error) => last = Some(error),
                Polled::Fatal { error, new_channel } => {
                    self.pending.extend(waiting);
                    if new_channel {
                        self.new_channel();
                    }
                    return Err(error);
                }
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        let events: usize = waiting.iter().map(|(_, events)| events.len()).sum();
        let error = format!(
            "no indexer acknowledgement from Splunk for {events} event(s) within {} s{}",
            self.ack_timeout.as_secs(),
            last.map(|last| format!(" (last answer: {last})"))
                .unwrap_or_default()
        );
        self.pending.extend(waiting);
        Err(error)
    }

    /// Sends the events the receiver does not have yet; the acknowledgements to wait for, or
    /// how the receiver refused.
    async fn post_all(&mut self, events: &[Stored]) -> Result<Vec<Awaited>, Answer> {
        let todo: Vec<&Stored> = events
            .iter()
            .filter(|stored| !self.ledger.has(&stored.event.id))
            .collect();
        let mut waiting = Vec::new();
        for (body, ids) in self.bodies(&todo) {
            let ids_str = || ids.iter().map(String::as_str);
            match self.post(body).await {
                Posted::Taken(Some(ack_id)) if self.ack => {
                    self.ledger.sent(ids_str());
                    waiting.push((ack_id, ids));
                }
                Posted::Taken(_) => {
                    if self.ack && !self.warned_unacknowledged {
                        self.warned_unacknowledged = true;
                        tracing::warn!(
                            sink = %self.name,
                            "Splunk took events without an ackId: the HEC token does not have \
                             indexer acknowledgement enabled, so events count as delivered \
                             once received"
                        );
                    }
                    self.ledger.sent(ids_str());
                    self.ledger.confirmed(ids_str());
                }
                Posted::Failed {
                    answer,
                    unsure,
                    new_channel,
                } => {
                    if unsure {
                        self.ledger.sent(ids_str());
                    }
                    self.pending.extend(waiting);
                    if new_channel {
                        self.new_channel();
                    }
                    return Err(answer);
                }
            }
        }
        Ok(waiting)
    }
}

/// How a request of events went.
#[derive(Debug, PartialEq)]
enum Posted {
    /// Splunk took the events; the acknowledgement to ask after, when it gave one.
    Taken(Option<u64>),
    /// It did not. `unsure`: they may have arrived all the same (the answer was lost).
    Failed {
        answer: Answer,
        unsure: bool,
        new_channel: bool,
    },
}

/// How asking after acknowledgements went.
enum Polled {
    Acked(HashSet<u64>),
    /// Ask again later.
    Transient(String),
    /// Asking again cannot help (the token, the channel).
    Fatal {
        error: String,
        new_channel: bool,
    },
}

/// What HEC answers, as far as it is read.
#[derive(Debug, Deserialize)]
struct HecAnswer {
    code: Option<i64>,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
}

/// The acknowledgements an answer of `/services/collector/ack` says are true.
fn acked(text: &str) -> Option<HashSet<u64>> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let acks = value.get("acks")?.as_object()?;
    Some(
        acks.iter()
            .filter(|(_, done)| done.as_bool() == Some(true))
            .filter_map(|(id, _)| id.parse().ok())
            .collect(),
    )
}

/// What a HEC code asks the host to look at.
fn hint(code: i64) -> &'static str {
    match code {
        7 => "; the HEC token may not write to the sink's `splunk.index`",
        10 => "; the X-Splunk-Request-Channel header did not reach Splunk (dropped by a proxy?)",
        11 => "; a new channel is opened for the next attempt",
        14 => {
            "; the HEC token does not have indexer acknowledgement enabled: enable it, or set \
             `splunk.ack: false`"
        }
        _ => "",
    }
}

/// How Splunk answered a request of events.
fn judge(status: StatusCode, after: Option<Duration>, text: &str, ack: bool) -> Posted {
    let said = serde_json::from_str::<HecAnswer>(text).ok();
    if status.is_success() {
        return match said {
            Some(said) => Posted::Taken(said.ack_id),
            None if !ack => Posted::Taken(None),
            // Taken, it seems, but with nothing to confirm it by.
            None => Posted::Failed {
                answer: Answer::Retry {
                    error: format!(
                        "HTTP {}: not a HEC answer, no ackId: {}",
                        status.as_u16(),
                        http::one_line(text)
                    ),
                    after: None,
                },
                unsure: true,
                new_channel: false,
            },
        };
    }
    let code = said.and_then(|said| said.code);
    let line = format!("HTTP {}: {}", status.as_u16(), http::one_line(text));
    let answer = match code {
        Some(code @ (7 | 9 | 10 | 11 | 14)) => Answer::Retry {
            error: format!("{line}{}", hint(code)),
            after,
        },
        Some(_) if status == StatusCode::BAD_REQUEST => Answer::Rejected { answer: line },
        _ => http::classify(status, after, text),
    };
    Posted::Failed {
        answer,
        unsure: false,
        new_channel: code == Some(11),
    }
}

impl Sink for SplunkHec {
    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    fn send<'a>(&'a mut self, events: &'a [Stored]) -> Sending<'a> {
        Box::pin(async move {
            if self.ack {
                self.recheck().await;
            }
            let waiting = match self.post_all(events).await {
                Ok(waiting) => waiting,
                Err(answer) => {
                    if matches!(answer, Answer::Rejected { .. }) && events.len() == 1 {
                        // The worker makes it a dead letter.
                        self.ledger.settle(events);
                    }
                    return answer;
                }
            };
            if let Err(error) = self.await_acks(waiting).await {
                return Answer::Retry { error, after: None };
            }
            Answer::Delivered {
                duplicates: self.ledger.settle(events),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    #[test]
    fn times_are_epoch_seconds_with_milliseconds() {
        let time = DateTime::parse_from_rfc3339("2015-06-01T19:50:55.253Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(epoch(time), "1433188255.253");
        let before = DateTime::parse_from_rfc3339("1969-12-31T23:59:58.500Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(epoch(before), "-2.500");
    }

    #[test]
    fn the_endpoint_may_name_the_collector_path() {
        for url in [
            "https://splunk:8088",
            "https://splunk:8088/",
            "https://splunk:8088/services/collector",
            "https://splunk:8088/services/collector/event/",
        ] {
            assert_eq!(collector_base(url).unwrap(), "https://splunk:8088", "{url}");
        }
        assert!(collector_base("https://splunk:8088/?token=x").is_err());
    }

    #[test]
    fn data_errors_are_refused_and_the_rest_retried() {
        let fixture = include_str!("../../tests/fixtures/hec/hec-status-codes.json");
        let codes: Vec<serde_json::Value> = serde_json::from_str(fixture).unwrap();
        for entry in codes {
            let code = entry["code"].as_i64().unwrap();
            let http_status = entry["http_status"].as_u64().unwrap() as u16;
            let body = serde_json::json!({"text": entry["text"], "code": code}).to_string();
            let posted = judge(status(http_status), None, &body, true);
            let refused = matches!(
                posted,
                Posted::Failed {
                    answer: Answer::Rejected { .. },
                    ..
                }
            );
            match code {
                0 => assert_eq!(posted, Posted::Taken(None)),
                5 | 6 | 12 | 13 | 15 | 16 => assert!(refused, "{code}: {posted:?}"),
                _ => assert!(
                    matches!(
                        posted,
                        Posted::Failed {
                            answer: Answer::Retry { .. },
                            unsure: false,
                            ..
                        }
                    ),
                    "{code}: {posted:?}"
                ),
            }
        }
    }

    #[test]
    fn a_channel_splunk_calls_invalid_is_replaced() {
        let posted = judge(
            status(400),
            None,
            r#"{"text":"Invalid data channel","code":11}"#,
            true,
        );
        let Posted::Failed {
            answer: Answer::Retry { error, .. },
            new_channel: true,
            ..
        } = posted
        else {
            panic!("{posted:?}");
        };
        assert!(error.contains("new channel"), "{error}");
    }

    #[test]
    fn a_success_without_json_is_unsure_only_when_acknowledgements_are_awaited() {
        assert_eq!(
            judge(status(200), None, "<html>ok</html>", false),
            Posted::Taken(None)
        );
        assert!(matches!(
            judge(status(200), None, "<html>ok</html>", true),
            Posted::Failed { unsure: true, .. }
        ));
        assert_eq!(
            judge(
                status(200),
                None,
                r#"{"text":"Success","code":0,"ackId":7}"#,
                true
            ),
            Posted::Taken(Some(7))
        );
    }

    #[test]
    fn acknowledgements_read_are_only_those_said_true() {
        assert_eq!(
            acked(r#"{"acks":{"0":true,"1":false,"2":true,"x":true}}"#),
            Some(HashSet::from([0, 2]))
        );
        assert_eq!(acked(r#"{"acks":[0]}"#), None);
        assert_eq!(acked("garbage"), None);
    }
}
