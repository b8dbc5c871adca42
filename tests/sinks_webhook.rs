//! The `webhook` sink against a receiver that verifies with the Standard Webhooks reference
//! library (PyPI `standardwebhooks`, in `target/pyenv`, which `scripts/test.sh` installs):
//! what it records is what a user's receiver would have accepted.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use gitward::config::Endpoint;
use gitward::events::outbox::Stored;
use gitward::events::{ConditionChange, Draft, EventData, ResourceRef};
use gitward::model::{EventType, FindingSeverity};
use gitward::sinks::webhook::{WebhookSink, secret_key, signature};
use gitward::sinks::{Answer, Sink};

/// The secret of the Standard Webhooks specification's example.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_cGxlYXNlIGRvIG5vdCB1c2UgdGhpcyBrZXk=";

/// Longest any one exchange may take before the test counts it as hung.
const HANG_GUARD: Duration = Duration::from_secs(60);

const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python");
const RECEIVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/webhook-receiver/receiver.py"
);

/// The receiver, running until dropped.
struct Receiver {
    dir: tempfile::TempDir,
    child: Child,
    url: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(secret: &str) -> Receiver {
        assert!(
            Path::new(PYTHON).exists(),
            "{PYTHON} is missing: scripts/test.sh makes it (python3 -m venv target/pyenv && \
             target/pyenv/bin/pip install standardwebhooks)"
        );
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        let port_file = dir.path().join("port");
        let log = std::fs::File::create(dir.path().join("receiver.log")).unwrap();
        let child = Command::new(PYTHON)
            .arg(RECEIVER)
            .arg("--secret-file")
            .arg(&secret_file)
            .arg("--record")
            .arg(dir.path().join("record.jsonl"))
            .arg("--port-file")
            .arg(&port_file)
            .arg("--control")
            .arg(dir.path().join("control.json"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the receiver starts");
        let mut receiver = Receiver {
            dir,
            child,
            url: String::new(),
        };
        let started = Instant::now();
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            if let Ok(Some(status)) = receiver.child.try_wait() {
                panic!("the receiver exited ({status}):\n{}", receiver.log());
            }
            assert!(started.elapsed() < HANG_GUARD, "the receiver did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        receiver.url = format!("http://127.0.0.1:{}/hooks/gitward", port.trim());
        receiver
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("receiver.log")).unwrap_or_default()
    }

    /// Tells the receiver how to answer the next `count` requests.
    fn fail_next(&self, status: u16, count: u32, retry_after: Option<u64>, after_record: bool) {
        let control = self.dir.path().join("control.json");
        let written = self.dir.path().join("control.json.tmp");
        let told = json!({
            "status": status,
            "count": count,
            "retry_after": retry_after,
            "after_record": after_record,
        });
        std::fs::write(&written, told.to_string()).unwrap();
        std::fs::rename(written, control).unwrap();
    }

    /// The messages the receiver verified, in order.
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("record.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// A sink sending to the receiver, signing with `secret`.
    fn sink(&self, secret: &str) -> WebhookSink {
        let file = self
            .dir
            .path()
            .join(format!("sender-secret-{}", secret.len()));
        std::fs::write(&file, secret).unwrap();
        let endpoint: Endpoint = serde_json::from_value(json!({
            "url": self.url,
            "secretFile": file,
            "timeout": "10s",
        }))
        .unwrap();
        WebhookSink::new(&endpoint).unwrap()
    }
}

fn body_of(record: &Value) -> Vec<u8> {
    STANDARD
        .decode(record["body_b64"].as_str().unwrap())
        .unwrap()
}

fn event(seq: i64, kind: EventType, name: &str, message: &str) -> Stored {
    let subject = format!("Certificate/{name}");
    let draft = Draft {
        kind,
        anchor: format!("commit-{seq}"),
        subject: subject.clone(),
        data: EventData {
            severity: FindingSeverity::High,
            resource: Some(ResourceRef {
                kind: "Certificate".into(),
                name: name.into(),
                file: Some("certificates/web.yaml".into()),
                line: Some(2),
            }),
            commit: None,
            message: message.into(),
            details: serde_json::Map::new(),
            compliance: Vec::new(),
            fingerprint: subject.clone(),
            condition: Some(ConditionChange {
                key: subject,
                open: true,
            }),
        },
    };
    let event = draft.seal(
        "https://git.example.com/ops/pki.git",
        chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap(),
    );
    let json = serde_json::to_string(&event).unwrap();
    Stored { seq, event, json }
}

fn events() -> Vec<Stored> {
    vec![
        event(
            1,
            EventType::CertificateFailed,
            "web",
            "web: the ACME order failed — «café» ✓ \u{1F512}\n\"quoted\"",
        ),
        event(2, EventType::CertificateExpiring, "api", "api expires soon"),
        event(3, EventType::CertificateFailed, "mail", "mail failed"),
    ]
}

async fn send(sink: &mut WebhookSink, events: &[Stored]) -> Answer {
    tokio::time::timeout(HANG_GUARD, sink.send(events))
        .await
        .expect("the sink answers within the hang guard")
}

#[tokio::test]
async fn events_arrive_verified_with_the_exact_bytes_sent() {
    let receiver = Receiver::start(SECRET);
    let mut sink = receiver.sink(SECRET);
    assert_eq!(sink.batch_size(), 1);
    let events = events();
    for stored in &events {
        let answer = send(&mut sink, std::slice::from_ref(stored)).await;
        assert_eq!(
            answer,
            Answer::Delivered { duplicates: 0 },
            "{}",
            receiver.log()
        );
    }
    let records = receiver.records();
    assert_eq!(records.len(), events.len(), "{}", receiver.log());
    for (record, stored) in records.iter().zip(&events) {
        assert_eq!(record["webhook_id"], stored.event.id);
        assert_eq!(body_of(record), stored.json.as_bytes());
        assert_eq!(
            record["content_type"],
            "application/cloudevents+json; charset=utf-8"
        );
        assert_eq!(record["duplicate"], false);
        let parsed: Value = serde_json::from_slice(&body_of(record)).unwrap();
        assert_eq!(parsed["specversion"], "1.0");
        assert_eq!(parsed["id"], stored.event.id);
    }
    let first: Value = serde_json::from_slice(&body_of(&records[0])).unwrap();
    assert_eq!(first["data"]["message"], events[0].event.data.message);
}

#[tokio::test]
async fn the_receiver_refuses_a_wrong_secret_and_a_changed_body() {
    let receiver = Receiver::start(SECRET);
    let mut sink = receiver.sink(OTHER_SECRET);
    let answer = send(&mut sink, &events()[..1]).await;
    // A refused signature is a credential for the host to fix: the events wait, retried.
    let Answer::Retry { error, after: None } = &answer else {
        panic!("a wrong secret is retried: {answer:?}");
    };
    assert!(
        error.starts_with("HTTP 401: signature not verified"),
        "{error}"
    );
    assert!(!error.contains(SECRET) && !error.contains(OTHER_SECRET));
    assert!(receiver.records().is_empty());

    // The receiver checks what it is sent: a signature over another body does not pass.
    let stored = &events()[0];
    let now = chrono::Utc::now().timestamp();
    let key = secret_key(SECRET).unwrap();
    let signed = signature(&key, &stored.event.id, now, &stored.json);
    let changed = stored.json.replace("failed", "fixed");
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(&receiver.url)
            .header("webhook-id", &stored.event.id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", &signed)
            .body(body)
            .send()
    };
    assert_eq!(post(changed).await.unwrap().status(), 401);
    assert!(receiver.records().is_empty());
    assert_eq!(post(stored.json.clone()).await.unwrap().status(), 204);
    assert_eq!(receiver.records().len(), 1);
}

#[tokio::test]
async fn a_resend_carries_the_same_webhook_id_so_the_receiver_takes_each_event_once() {
    let receiver = Receiver::start(SECRET);
    let mut sink = receiver.sink(SECRET);
    let events = events();
    // The receiver takes the first event but its acknowledgement is lost.
    receiver.fail_next(500, 1, None, true);
    let answer = send(&mut sink, &events).await;
    assert!(
        matches!(&answer, Answer::Retry { error, .. } if error.starts_with("HTTP 500")),
        "{answer:?}"
    );
    // The worker sends the batch again.
    assert_eq!(
        send(&mut sink, &events).await,
        Answer::Delivered { duplicates: 0 }
    );
    let records = receiver.records();
    assert_eq!(records.len(), events.len() + 1, "{}", receiver.log());
    let ids: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), events.len());
    let fresh: Vec<&str> = records
        .iter()
        .filter(|r| r["duplicate"] == false)
        .map(|r| r["webhook_id"].as_str().unwrap())
        .collect();
    let sent: Vec<&str> = events.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(fresh, sent, "each event taken once, in order");
    assert_eq!(records[1]["webhook_id"], events[0].event.id);
    assert_eq!(records[1]["duplicate"], true);
    assert_eq!(body_of(&records[0]), body_of(&records[1]));
}

#[tokio::test]
async fn a_500_then_success_is_a_retry_then_a_delivery() {
    let receiver = Receiver::start(SECRET);
    let mut sink = receiver.sink(SECRET);
    let web = &events()[..1];
    receiver.fail_next(500, 1, None, false);
    assert_eq!(
        send(&mut sink, web).await,
        Answer::Retry {
            error: "HTTP 500: receiver told to fail".into(),
            after: None
        }
    );
    assert!(receiver.records().is_empty());
    assert_eq!(
        send(&mut sink, web).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(receiver.records().len(), 1);

    // A 429 says when to come back.
    receiver.fail_next(429, 1, Some(7), false);
    let answer = send(&mut sink, &events()[1..2]).await;
    assert_eq!(
        answer,
        Answer::Retry {
            error: "HTTP 429: receiver told to fail".into(),
            after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(receiver.records().len(), 1);
}
