//! `pagerduty`: problems as PagerDuty alerts, through the Events API v2 (`POST
//! https://events.pagerduty.com/v2/enqueue`, the integration key in the body as
//! `routing_key`).
//!
//! Only events that open or clear a problem (those with a `data.condition`) reach PagerDuty:
//! an opening one is a `trigger`, a clearing one a `resolve`, both with a `dedup_key` derived
//! from the event's `source` (the repository) and the condition's key, so the trigger sent
//! again after a crash lands on the alert already open, and the resolve closes the alert
//! its trigger opened. Other events (`certificate.issued` without a problem to clear, a sink
//! test...) are passed over: they count as delivered without a request. The exception is
//! the event of `gitward sinks test`, sent as a change event (`/v2/change/enqueue`): it
//! proves the URL and the routing key, shows on the service's timeline and pages no one.
//!
//! PagerDuty takes about 120 events a minute per integration key: requests are paced by a
//! token bucket per key (two a second, bursts of four). A 429 is retried after its
//! `Retry-After`, or after [`PAUSE_AFTER_429`] when it gives none; PagerDuty's own advice is
//! to wait tens of seconds. A 400 is PagerDuty refusing the event, with its `errors` as the
//! answer, unless it refuses the routing key: that the host fixes, so it is retried.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::SecondsFormat;
use serde_json::{Map, Value, json};
use sha2::Digest;

use super::{Answer, Sending, Sink, SinkProblem, http};
use crate::config::Endpoint;
use crate::events::Event;
use crate::events::outbox::Stored;
use crate::model::{EventType, FindingSeverity};

/// PagerDuty's limit on `payload.summary`, in characters.
pub const SUMMARY_CHARS: usize = 1024;
/// PagerDuty's limit on `dedup_key`; counted in bytes here, which is never fewer.
pub const DEDUP_KEY_BYTES: usize = 255;
/// PagerDuty's limit on an event's size; custom details are left out above it.
pub const PAYLOAD_BYTES: usize = 512 * 1024;
/// The wait after a 429 that does not say how long to wait.
pub const PAUSE_AFTER_429: Duration = Duration::from_secs(30);
/// Requests a second one integration key is sent, sustained...
pub const RATE_PER_SECOND: f64 = 2.0;
/// ... and how many may go at once after a quiet time.
pub const BURST: f64 = 4.0;
/// Events one batch takes: each is a request, paced, so a batch stays short.
const BATCH: usize = 10;
/// Ids of events PagerDuty took that are kept, so that a batch sent again after a failure
/// part-way does not send them twice.
const REMEMBERED: usize = 256;

pub struct PagerDuty {
    client: reqwest::Client,
    url: String,
    /// Where change events go: the Events API's change path on the same host.
    change_url: String,
    routing_key: String,
    /// Which token bucket paces this sink: one per URL and key, whatever the sinks.
    bucket: [u8; 32],
    /// Events of recent batches PagerDuty took.
    accepted: VecDeque<String>,
}

impl PagerDuty {
    pub fn new(endpoint: &Endpoint) -> Result<PagerDuty, SinkProblem> {
        let file = endpoint
            .routing_key_file
            .as_deref()
            .ok_or_else(|| SinkProblem("a pagerduty endpoint needs `routingKeyFile`".to_owned()))?;
        let routing_key = super::read_secret(file, "routingKeyFile")?;
        if routing_key.len() != 32 || !routing_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SinkProblem(format!(
                "routingKeyFile ({}) does not hold a PagerDuty integration key: 32 letters and \
                 digits, the Integration Key of an Events API v2 integration (not a REST API key)",
                file.display()
            )));
        }
        let url = enqueue_url(&endpoint.url)?;
        let change_url = change_url(&url)?;
        let bucket = http::bucket_of(&[&url, &routing_key]);
        Ok(PagerDuty {
            client: http::client(endpoint)?,
            url,
            change_url,
            routing_key,
            bucket,
            accepted: VecDeque::new(),
        })
    }

    /// Sends one event's message to `url` and says how PagerDuty answered.
    async fn post(&self, url: &str, message: &Value) -> Answer {
        let body = match serde_json::to_vec(message) {
            Ok(body) => body,
            Err(error) => {
                return Answer::Rejected {
                    answer: format!("the event cannot be encoded: {error}"),
                };
            }
        };
        http::pace(self.bucket, RATE_PER_SECOND, BURST).await;
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        match request.send().await {
            // PagerDuty has the event: what it says besides does not matter.
            Ok(response) if response.status().is_success() => Answer::Delivered { duplicates: 0 },
            Ok(response) => {
                let status = response.status();
                let after = http::retry_after(response.headers());
                let text = http::body(response).await;
                classify(status, after, &text, &self.routing_key)
            }
            Err(error) => hide_key(http::unreachable(error), &self.routing_key),
        }
    }

    fn remember(&mut self, id: &str) {
        if self.accepted.len() >= REMEMBERED {
            self.accepted.pop_front();
        }
        self.accepted.push_back(id.to_owned());
    }
}

impl Sink for PagerDuty {
    fn batch_size(&self) -> usize {
        BATCH
    }

    fn send<'a>(&'a mut self, events: &'a [Stored]) -> Sending<'a> {
        Box::pin(async move {
            for stored in events {
                let id = &stored.event.id;
                if self.accepted.contains(id) {
                    continue;
                }
                let (url, message) = if stored.event.kind() == Some(EventType::SinkTest) {
                    (&self.change_url, change(&stored.event, &self.routing_key))
                } else {
                    match message(&stored.event, &self.routing_key) {
                        Some(message) => (&self.url, message),
                        None => continue,
                    }
                };
                match self.post(url, &message).await {
                    Answer::Delivered { .. } => self.remember(id),
                    other => return other,
                }
            }
            Answer::Delivered { duplicates: 0 }
        })
    }
}

/// The URL events are posted to: the endpoint's, or PagerDuty's enqueue path on its host when
/// it names a host only (`https://events.pagerduty.com`).
fn enqueue_url(url: &str) -> Result<String, SinkProblem> {
    let mut parsed = reqwest::Url::parse(url).map_err(|error| {
        SinkProblem(format!(
            "`{}` is not a URL: {error}",
            crate::redact::credentials(url)
        ))
    })?;
    if parsed.path() == "/" || parsed.path().is_empty() {
        parsed.set_path("/v2/enqueue");
    }
    Ok(parsed.into())
}

/// The change-events URL next to the events URL `url`: `.../v2/enqueue` becomes
/// `.../v2/change/enqueue`; any other path is replaced by `/v2/change/enqueue`.
fn change_url(url: &str) -> Result<String, SinkProblem> {
    let mut parsed = reqwest::Url::parse(url)
        .map_err(|error| SinkProblem(format!("the PagerDuty URL is not a URL: {error}")))?;
    let path = match parsed.path().strip_suffix("/enqueue") {
        Some(base) => format!("{base}/change/enqueue"),
        None => "/v2/change/enqueue".to_owned(),
    };
    parsed.set_path(&path);
    Ok(parsed.into())
}

/// The change event for `event` (the event of `gitward sinks test`): no alert, no page.
pub fn change(event: &Event, routing_key: &str) -> Value {
    json!({
        "routing_key": routing_key,
        "payload": {
            "summary": summary(event),
            "source": pd_source(event),
            "timestamp": event.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "custom_details": custom_details(event),
        },
    })
}

/// The Events API message for `event`: a trigger when it opens a problem, a resolve when it
/// clears one, nothing when it does neither.
pub fn message(event: &Event, routing_key: &str) -> Option<Value> {
    let condition = event.data.condition.as_ref()?;
    let dedup_key = dedup_key(&event.source, &condition.key);
    if !condition.open {
        return Some(json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        }));
    }
    let kind = event
        .type_
        .strip_prefix(crate::events::TYPE_PREFIX)
        .unwrap_or(&event.type_);
    let mut payload = Map::new();
    payload.insert("summary".into(), json!(summary(event)));
    payload.insert("source".into(), json!(pd_source(event)));
    payload.insert("severity".into(), json!(severity(event.data.severity)));
    payload.insert(
        "timestamp".into(),
        json!(event.time.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    if !event.subject.is_empty() {
        payload.insert("component".into(), json!(event.subject));
    }
    if let Some(resource) = &event.data.resource {
        payload.insert("group".into(), json!(resource.kind));
    }
    payload.insert("class".into(), json!(kind));
    payload.insert("custom_details".into(), custom_details(event));
    let mut message = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": payload,
        "client": "gitward",
    });
    if message.to_string().len() > PAYLOAD_BYTES {
        // Only the details can be that large: the alert goes without them.
        message["payload"]["custom_details"] = json!({
            "eventId": event.id,
            "type": event.type_,
            "subject": event.subject,
            "fingerprint": event.data.fingerprint,
            "note": "the event's details are left out: they are larger than PagerDuty takes",
        });
    }
    Some(message)
}

/// What the alert shows besides its summary: the event's data, its id, type and subject.
fn custom_details(event: &Event) -> Value {
    let mut details = match serde_json::to_value(&event.data) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    details.insert("eventId".into(), json!(event.id));
    details.insert("type".into(), json!(event.type_));
    details.insert("subject".into(), json!(event.subject));
    Value::Object(details)
}

/// PagerDuty's `source`, which it requires not empty: the repository the event is about.
fn pd_source(event: &Event) -> &str {
    if event.source.trim().is_empty() {
        "gitward"
    } else {
        &event.source
    }
}

/// The alert's `dedup_key`: `<source>#<condition key>` when it fits in 255 bytes; otherwise
/// its beginning followed by `~` and a digest of both, so that it stays unique, stable and
/// as readable as it can. The source is part of it so that two repositories sending to the
/// same integration never close each other's alerts.
pub fn dedup_key(source: &str, key: &str) -> String {
    let readable = format!("{source}#{key}");
    if readable.len() <= DEDUP_KEY_BYTES {
        return readable;
    }
    let digest = sha2::Sha256::new()
        .chain_update(source.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let digest = hex::encode(&digest[..16]);
    let room = DEDUP_KEY_BYTES - digest.len() - 1;
    let cut = floor_char_boundary(&readable, room);
    format!("{}~{digest}", &readable[..cut])
}

/// The largest index at most `at` that is a char boundary of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// PagerDuty's severity for gitward's.
pub fn severity(severity: FindingSeverity) -> &'static str {
    match severity {
        FindingSeverity::Critical => "critical",
        FindingSeverity::High => "error",
        FindingSeverity::Medium => "warning",
        FindingSeverity::Low | FindingSeverity::Info => "info",
    }
}

/// The alert's title: the event's message, at most 1024 characters; its type and subject
/// when it has none (PagerDuty refuses an empty summary).
pub fn summary(event: &Event) -> String {
    let message = event.data.message.trim();
    let text = if message.is_empty() {
        format!("{} {}", event.type_, event.subject)
    } else {
        message.to_owned()
    };
    match text.char_indices().nth(SUMMARY_CHARS) {
        Some((at, _)) => text[..at].to_owned(),
        None => text,
    }
}

/// How PagerDuty's answer other than 2xx classifies. 429 waits at least tens of seconds; a
/// 400 that refuses the routing key is retried, as any refused credential; another 400 is
/// the event refused, told with PagerDuty's `errors`. The routing key, should PagerDuty
/// echo it, is never part of the text.
pub fn classify(
    status: reqwest::StatusCode,
    after: Option<Duration>,
    body: &str,
    routing_key: &str,
) -> Answer {
    let explained = explained(body);
    // Judged on what PagerDuty said, before the key is hidden: the mask's own words must not
    // read as a complaint about the key.
    let about_key = refuses_key(&explained.replace(routing_key, ""));
    // Hidden before the text is cut, so that no part of the key is left either.
    let said = explained.replace(routing_key, "[routing key]");
    let answer = if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Answer::Retry {
            error: format!(
                "HTTP 429: {}",
                http::one_line(if said.trim().is_empty() {
                    "too many events for this integration key"
                } else {
                    &said
                })
            ),
            after: Some(after.unwrap_or(PAUSE_AFTER_429)),
        }
    } else if status == reqwest::StatusCode::BAD_REQUEST && about_key {
        Answer::Retry {
            error: format!(
                "HTTP 400: {} (PagerDuty refuses the routing key: check the endpoint's \
                 routingKeyFile)",
                http::one_line(&said)
            ),
            after: None,
        }
    } else {
        http::classify(status, after, &said)
    };
    hide_key(answer, routing_key)
}

/// PagerDuty's error body as one text, `message: error; error`, or the body as it came.
fn explained(body: &str) -> String {
    let Ok(Value::Object(answer)) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    let message = answer
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| answer.get("status").and_then(Value::as_str))
        .unwrap_or_default();
    let errors: Vec<&str> = answer
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| errors.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if errors.is_empty() {
        if message.is_empty() {
            body.to_owned()
        } else {
            message.to_owned()
        }
    } else if message.is_empty() {
        errors.join("; ")
    } else {
        format!("{message}: {}", errors.join("; "))
    }
}

fn refuses_key(said: &str) -> bool {
    let said = said.to_ascii_lowercase();
    said.contains("routing_key") || said.contains("routing key") || said.contains("service key")
}

/// `answer` with the routing key cut out of its text.
fn hide_key(answer: Answer, routing_key: &str) -> Answer {
    let hide = |text: String| text.replace(routing_key, "[routing key]");
    match answer {
        Answer::Retry { error, after } => Answer::Retry {
            error: hide(error),
            after,
        },
        Answer::Rejected { answer } => Answer::Rejected {
            answer: hide(answer),
        },
        delivered => delivered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ConditionChange, EventData};

    const KEY: &str = "R0123456789abcdefABCDEF012345678";

    fn event(message: &str, condition: Option<(&str, bool)>) -> Event {
        Event {
            specversion: "1.0".into(),
            id: "e1".into(),
            source: "https://git.example.com/ops/pki.git".into(),
            type_: "dev.gitward.certificate.failed".into(),
            subject: "Certificate/web".into(),
            time: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            datacontenttype: "application/json".into(),
            data: EventData {
                severity: FindingSeverity::High,
                resource: None,
                commit: None,
                message: message.into(),
                details: Map::new(),
                compliance: Vec::new(),
                fingerprint: "fp".into(),
                condition: condition.map(|(key, open)| ConditionChange {
                    key: key.into(),
                    open,
                }),
            },
            starts: false,
        }
    }

    #[test]
    fn a_trigger_carries_the_documented_fields_and_a_resolve_only_its_key() {
        let trigger = message(&event("web failed", Some(("Certificate/web", true))), KEY).unwrap();
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["routing_key"], KEY);
        assert_eq!(
            trigger["dedup_key"],
            "https://git.example.com/ops/pki.git#Certificate/web"
        );
        assert_eq!(trigger["payload"]["summary"], "web failed");
        assert_eq!(trigger["payload"]["severity"], "error");
        assert_eq!(trigger["payload"]["class"], "certificate.failed");
        assert_eq!(trigger["payload"]["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(trigger["payload"]["custom_details"]["eventId"], "e1");

        let resolve = message(&event("fixed", Some(("Certificate/web", false))), KEY).unwrap();
        let keys: Vec<&String> = resolve.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["routing_key", "event_action", "dedup_key"]);
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
        assert_eq!(resolve["event_action"], "resolve");

        assert_eq!(message(&event("issued", None), KEY), None);
    }

    #[test]
    fn severities_map_to_pagerdutys_four() {
        use FindingSeverity as S;
        let mapped: Vec<&str> = [S::Critical, S::High, S::Medium, S::Low, S::Info]
            .into_iter()
            .map(severity)
            .collect();
        assert_eq!(mapped, ["critical", "error", "warning", "info", "info"]);
    }

    #[test]
    fn a_long_message_is_cut_to_1024_characters_on_a_character() {
        let long = "é".repeat(1500);
        let cut = summary(&event(&long, None));
        assert_eq!(cut.chars().count(), SUMMARY_CHARS);
        assert_eq!(
            summary(&event("  ", None)),
            "dev.gitward.certificate.failed Certificate/web"
        );
    }

    #[test]
    fn dedup_keys_are_readable_when_they_fit_and_unique_when_they_do_not() {
        assert_eq!(
            dedup_key("https://h/r.git", "finding/ab"),
            "https://h/r.git#finding/ab"
        );
        let long_source = format!("https://h/{}.git", "ü".repeat(200));
        let a = dedup_key(&long_source, "Certificate/a");
        let b = dedup_key(&long_source, "Certificate/b");
        assert_ne!(a, b);
        assert_eq!(a, dedup_key(&long_source, "Certificate/a"));
        assert!(a.len() <= DEDUP_KEY_BYTES, "{}", a.len());
        assert!(a.starts_with("https://h/üü"), "{a}");
        assert_ne!(
            dedup_key("https://h/x.git", "k"),
            dedup_key("https://h/y.git", "k")
        );
    }

    #[test]
    fn an_oversized_event_goes_without_its_details() {
        let mut big = event("web failed", Some(("Certificate/web", true)));
        big.data
            .details
            .insert("log".into(), json!("x".repeat(PAYLOAD_BYTES)));
        let trigger = message(&big, KEY).unwrap();
        assert!(trigger.to_string().len() < PAYLOAD_BYTES);
        assert_eq!(trigger["payload"]["custom_details"]["eventId"], "e1");
        assert_eq!(trigger["payload"]["summary"], "web failed");
    }

    #[test]
    fn pagerdutys_answers_classify_without_the_routing_key() {
        let status = |code| reqwest::StatusCode::from_u16(code).unwrap();
        let invalid = r#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.severity' is invalid","'payload.source' is missing or blank"]}"#;
        assert_eq!(
            classify(status(400), None, invalid, KEY),
            Answer::Rejected {
                answer: "HTTP 400: Event object is invalid: 'payload.severity' is invalid; \
                         'payload.source' is missing or blank"
                    .into()
            }
        );
        let key_refused = format!(
            r#"{{"status":"invalid event","message":"Event object is invalid","errors":["Invalid routing key {KEY}"]}}"#
        );
        let Answer::Retry { error, after: None } = classify(status(400), None, &key_refused, KEY)
        else {
            panic!("a refused routing key is retried");
        };
        assert!(!error.contains(KEY), "{error}");
        assert!(error.contains("[routing key]"), "{error}");
        assert_eq!(
            classify(status(429), None, "", KEY),
            Answer::Retry {
                error: "HTTP 429: too many events for this integration key".into(),
                after: Some(PAUSE_AFTER_429)
            }
        );
        assert!(matches!(
            classify(status(429), Some(Duration::from_secs(7)), "", KEY),
            Answer::Retry { after: Some(after), .. } if after == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(status(503), None, "<html>", KEY),
            Answer::Retry { after: None, .. }
        ));
        assert!(matches!(
            classify(status(404), None, "not here", KEY),
            Answer::Rejected { .. }
        ));
    }

    #[test]
    fn change_events_go_next_to_the_events() {
        assert_eq!(
            change_url("https://events.pagerduty.com/v2/enqueue").unwrap(),
            "https://events.pagerduty.com/v2/change/enqueue"
        );
        assert_eq!(
            change_url("http://127.0.0.1:9/proxy/pd?x=1").unwrap(),
            "http://127.0.0.1:9/v2/change/enqueue?x=1"
        );
        let mut test = event("a test event", None);
        test.type_ = "dev.gitward.sink.test".into();
        let change = change(&test, KEY);
        assert_eq!(change["routing_key"], KEY);
        assert_eq!(change["payload"]["summary"], "a test event");
        assert!(change.get("event_action").is_none());
    }

    #[test]
    fn a_host_only_url_gets_the_enqueue_path() {
        assert_eq!(
            enqueue_url("https://events.pagerduty.com").unwrap(),
            "https://events.pagerduty.com/v2/enqueue"
        );
        assert_eq!(
            enqueue_url("https://events.eu.pagerduty.com/v2/enqueue").unwrap(),
            "https://events.eu.pagerduty.com/v2/enqueue"
        );
    }
}
