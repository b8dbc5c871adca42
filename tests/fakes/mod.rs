//! What the tests of the HTTP sinks share: events as the outbox holds them, sink specs and
//! endpoints as the repository and the host config give them, and a loopback server for
//! the fake receivers; and the fake forges and ticket systems themselves.

pub mod azure;
pub mod bitbucket;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod hostile_forge;
pub mod jira;
pub mod servicenow;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gitward::config::Endpoint;
use gitward::events::outbox::Stored;
use gitward::events::{CommitRef, Draft, EventData, ResourceRef};
use gitward::model::{EventType, FindingSeverity, SinkSpec};

/// The time of every test event: Splunk's `time` and Sentinel's `TimeGenerated` come from it.
pub const TIME: &str = "2026-01-02T03:04:05.678Z";

pub fn time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(TIME)
        .expect("a time")
        .with_timezone(&Utc)
}

/// Event `n` (sequence number `n + 1`) with `message`.
pub fn event(n: usize, message: &str) -> Stored {
    let event = Draft {
        kind: EventType::PolicyViolation,
        anchor: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        subject: format!("Certificate/web-{n}"),
        data: EventData {
            severity: FindingSeverity::High,
            resource: Some(ResourceRef {
                kind: "Certificate".to_owned(),
                name: format!("web-{n}"),
                file: Some("certificates/web.yaml".to_owned()),
                line: Some(3),
            }),
            commit: Some(CommitRef {
                sha: "0123456789abcdef0123456789abcdef01234567".to_owned(),
                author: "Ann Example <ann@example.com>".to_owned(),
            }),
            message: message.to_owned(),
            details: serde_json::Map::from_iter([(
                "rule".to_owned(),
                serde_json::json!("min_key_size"),
            )]),
            compliance: vec!["PCI-DSS 4.0 4.2.1".to_owned()],
            fingerprint: format!("fingerprint-{n}"),
            condition: None,
        },
    }
    .seal("https://git.example.com/ops/pki.git", time());
    let json = serde_json::to_string(&event).expect("an event serializes");
    Stored {
        seq: n as i64 + 1,
        event,
        json,
    }
}

/// `count` events, each message `size` bytes or so.
pub fn events(count: usize, size: usize) -> Vec<Stored> {
    (0..count)
        .map(|n| {
            let mut message = format!("key of web-{n} is too short: \"1024\" < 2048 ✗ ");
            while message.len() < size {
                message.push_str("padding ");
            }
            event(n, &message)
        })
        .collect()
}

/// The ids of `events`, in order.
pub fn ids(events: &[Stored]) -> Vec<String> {
    events.iter().map(|s| s.event.id.clone()).collect()
}

pub fn endpoint(value: serde_json::Value) -> Endpoint {
    serde_json::from_value(value).expect("an endpoint")
}

pub fn spec(value: serde_json::Value) -> SinkSpec {
    serde_json::from_value(value).expect("a sink spec")
}

/// A fake receiver on a loopback port; it stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(router: axum::Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Server { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener that takes each connection, reads a little of the request and closes it.
pub async fn hang_up() -> Server {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 64];
            let _ = stream.read(&mut buffer).await;
            drop(stream);
        }
    });
    Server { addr, task }
}

/// Runs `work`, failing the test should it hang (not a measurement: a guard).
pub async fn guard<F: Future>(work: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("finished before the hang guard")
}

/// The form fields of an `application/x-www-form-urlencoded` body.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// The parameters of a URI's query.
pub fn query(uri: &axum::http::Uri) -> Vec<(String, String)> {
    form(uri.query().unwrap_or_default().as_bytes())
}

/// The `Authorization` value of Basic authentication with `user` and `secret`, as the
/// stand-ins expect it.
pub fn basic(user: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

/// A forge stand-in's JSON answer with `status` (an unknown status is a 500).
pub fn json_answer(
    status: u16,
    content_type: &'static str,
    body: &serde_json::Value,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        body.to_string(),
    )
        .into_response()
}
