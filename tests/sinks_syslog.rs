//! The syslog sink against a real rsyslog listening on UDP, TCP and TLS: what rsyslog wrote
//! is read back with independent parsers (PyPI `syslog-rfc5424-parser` and `pycef`, LEEF split
//! as its specification says) and compared with the events sent, hostile characters included.
//! Then the failures: an untrusted certificate, a receiver down, one restarted between
//! batches, one that talks back or never reads.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::peers::{Daemon, free_port, localhost_tls};
use gitward::config::Endpoint;
use gitward::events::outbox::Stored;
use gitward::events::{CommitRef, Draft, EventData, ResourceRef};
use gitward::model::{EventType, FindingSeverity, SinkSpec};
use gitward::sinks::syslog::Syslog;
use gitward::sinks::{Answer, Sink};
use serde_json::{Value, json};

const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python");
const PARSER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/syslog/parse.py"
);
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Everything a receiver or a parser might trip on.
const HOSTILE: &str = "pipe| eq= back\\ br] q\" cr\r lf\n nul\0 tab\t é 日本 🔒 caret^ end";
const SCHEMES: [&str; 3] = ["udp", "tcp", "tls"];

/// rsyslog on loopback ports of its own, writing what each input receives, raw, to a file
/// of its own; nothing outside its directory.
struct Rsyslog {
    dir: PathBuf,
    /// UDP, TCP, TLS, and TLS that wants a client certificate.
    ports: [u16; 4],
    ca: PathBuf,
    daemon: Option<Daemon>,
}

impl Rsyslog {
    fn start(dir: &Path) -> Rsyslog {
        std::fs::create_dir_all(dir).unwrap();
        let (ca, cert, key) = localhost_tls(dir);
        let ports = [free_port(), free_port(), free_port(), free_port()];
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let out = |scheme: &str| dir.join(format!("{scheme}.log")).display().to_string();
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="256k"
  parser.escapeControlCharacterTab="off"
  defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\n")
template(name="fields" type="string"
  string="%pri% %protocol-version% %hostname% %app-name% %procid% %msgid%\n")
ruleset(name="udp") {{
  action(type="omfile" file="{udp_out}" template="raw")
  action(type="omfile" file="{udp_out}.fields" template="fields") }}
ruleset(name="tcp") {{
  action(type="omfile" file="{tcp_out}" template="raw")
  action(type="omfile" file="{tcp_out}.fields" template="fields") }}
ruleset(name="tls") {{
  action(type="omfile" file="{tls_out}" template="raw")
  action(type="omfile" file="{tls_out}.fields" template="fields") }}
ruleset(name="mtls") {{ action(type="omfile" file="{mtls_out}" template="raw") }}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="tls"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{mtls}" ruleset="mtls"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
"#,
            work = work.display(),
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
            udp_out = out("udp"),
            tcp_out = out("tcp"),
            tls_out = out("tls"),
            mtls_out = out("mtls"),
            udp = ports[0],
            tcp = ports[1],
            tls = ports[2],
            mtls = ports[3],
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let mut rsyslog = Rsyslog {
            dir: dir.to_owned(),
            ports,
            ca,
            daemon: None,
        };
        rsyslog.run();
        rsyslog
    }

    fn run(&mut self) {
        let dir = self.dir.display().to_string();
        let mut daemon = Daemon::spawn(
            "/usr/sbin/rsyslogd",
            &[
                "-n",
                "-f",
                &format!("{dir}/rsyslog.conf"),
                "-i",
                &format!("{dir}/rsyslogd.pid"),
            ],
            &self.dir,
            &[],
        );
        daemon.wait_for(self.ports[1]);
        daemon.wait_for(self.ports[2]);
        daemon.wait_for(self.ports[3]);
        // UDP has no handshake: a probe written back says the input is open.
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        daemon.wait_until("rsyslog takes UDP", || {
            let _ = probe.send_to(b"<14>1 - - - - - - probe", ("127.0.0.1", self.ports[0]));
            std::thread::sleep(Duration::from_millis(100));
            std::fs::read_to_string(self.file("udp")).is_ok_and(|t| t.contains(" probe"))
        });
        self.daemon = Some(daemon);
    }

    fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate();
        }
    }

    fn file(&self, scheme: &str) -> PathBuf {
        self.dir.join(format!("{scheme}.log"))
    }

    fn endpoint(&self, scheme: &str) -> Endpoint {
        let (url, port) = match scheme {
            "udp" => ("udp", self.ports[0]),
            "tcp" => ("tcp", self.ports[1]),
            "tls" => ("tls", self.ports[2]),
            _ => ("tls", self.ports[3]),
        };
        endpoint(&format!("{url}://127.0.0.1:{port}"), &self.ca)
    }

    /// Waits until rsyslog wrote `count` messages received over `scheme` (not counting
    /// probes), and returns them as the parsers read them in `format`.
    fn received(&self, scheme: &str, format: &str, count: usize) -> Vec<Value> {
        let file = self.file(scheme);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let got = text.lines().filter(|l| !l.ends_with(" probe")).count();
            if got >= count {
                assert_eq!(got, count, "more than sent over {scheme}:\n{text}");
                return parse(format, &file);
            }
            let log = self.daemon.as_ref().map(Daemon::log).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "rsyslog wrote {got} of {count} over {scheme}:\n{text}\nrsyslog:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn endpoint(url: &str, ca: &Path) -> Endpoint {
    serde_json::from_value(json!({"url": url, "caFile": ca, "timeout": "2s"})).unwrap()
}

fn spec(syslog: Value) -> SinkSpec {
    serde_json::from_value(json!({"type": "syslog", "endpoint": "siem", "syslog": syslog})).unwrap()
}

fn parse(format: &str, file: &Path) -> Vec<Value> {
    let output = std::process::Command::new(PYTHON)
        .args([PARSER, format, &file.display().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON} ({e}): scripts/test.sh makes it"));
    assert!(
        output.status.success(),
        "the parsers refused what rsyslog wrote:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(file).unwrap_or_default()
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An event with `text` wherever text can be: message, subject, fingerprint, author,
/// resource name and file, policy.
fn event(kind: EventType, text: &str, severity: FindingSeverity) -> Stored {
    let mut details = serde_json::Map::new();
    details.insert("policy".into(), format!("policy {text}").into());
    let event = Draft {
        kind,
        anchor: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
        subject: format!("Certificate/{text}"),
        data: EventData {
            severity,
            resource: Some(ResourceRef {
                kind: "Certificate".into(),
                name: text.into(),
                file: Some(format!("certs/{text}.yaml")),
                line: Some(12),
            }),
            commit: Some(CommitRef {
                sha: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
                author: format!("{text} <dev@example.com>"),
            }),
            message: format!("message {text}"),
            details,
            compliance: vec!["PCI-DSS 4.2.1".into(), format!("X {text}")],
            fingerprint: format!("fp {text}"),
            condition: None,
        },
    }
    .seal(
        "https://git.example.com/ops/pki.git",
        chrono::DateTime::parse_from_rfc3339("2025-03-01T12:34:56.789012Z")
            .unwrap()
            .to_utc(),
    );
    Stored {
        seq: 1,
        json: serde_json::to_string(&event).unwrap(),
        event,
    }
}

fn hostile() -> Stored {
    event(EventType::PolicyViolation, HOSTILE, FindingSeverity::High)
}

fn plain() -> Stored {
    event(
        EventType::CertificateIssued,
        "web-01 ok",
        FindingSeverity::Info,
    )
}

/// What a field that cannot escape them makes of control characters: CR, LF and TAB a
/// space, others U+FFFD.
fn flat(text: &str) -> String {
    text.replace(['\r', '\n', '\t'], " ")
        .replace('\0', "\u{fffd}")
}

async fn send(sink: &mut Syslog, events: &[Stored]) -> Answer {
    tokio::time::timeout(Duration::from_secs(120), sink.send(events))
        .await
        .expect("the sink answers")
}

async fn delivered(sink: &mut Syslog, events: &[Stored]) {
    assert_eq!(
        send(sink, events).await,
        Answer::Delivered { duplicates: 0 }
    );
}

/// The RFC 5424 header as sent from this process.
fn assert_header(record: &Value, severity: u64, msgid: &str) {
    assert_eq!(record["version"], 1);
    assert_eq!(record["facility"], 10, "authpriv, the default");
    assert_eq!(record["severity"], severity);
    assert_eq!(record["timestamp"], "2025-03-01T12:34:56.789012Z");
    assert_eq!(record["hostname"], record["this_host"]);
    assert_eq!(record["appname"], "gitward");
    assert_eq!(record["procid"], std::process::id());
    assert_eq!(record["msgid"], msgid);
}

fn assert_rfc5424(record: &Value, stored: &Stored, text: &str, severity: u64) {
    let kind = stored.event.type_.trim_start_matches("dev.gitward.");
    assert_header(record, severity, kind);
    let flat = flat(text);
    assert_eq!(
        record["sd"],
        json!({"gitward@32473": {
            "id": stored.event.id,
            "type": kind,
            "subject": format!("Certificate/{flat}"),
            "severity": stored.event.data.severity.as_str(),
            "fingerprint": format!("fp {flat}"),
            "commit": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            "resource": format!("Certificate/{flat}"),
        }})
    );
    // The CloudEvent exactly as stored, after the BOM.
    let msg = record["msg"].as_str().unwrap();
    assert_eq!(msg.strip_prefix('\u{feff}'), Some(stored.json.as_str()));
    let parsed: gitward::events::Event =
        serde_json::from_str(&msg['\u{feff}'.len_utf8()..]).unwrap();
    assert_eq!(parsed, stored.event);
}

#[tokio::test]
async fn rfc5424_arrives_intact_over_udp_tcp_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(dir.path());
    for scheme in SCHEMES {
        let mut sink = Syslog::new(&spec(json!({})), &rsyslog.endpoint(scheme)).unwrap();
        delivered(&mut sink, &[hostile(), plain()]).await;
        let got = rsyslog.received(scheme, "rfc5424", 2);
        assert_rfc5424(&got[0], &hostile(), HOSTILE, 3);
        assert_rfc5424(&got[1], &plain(), "web-01 ok", 6);
        // rsyslog's own parser read the header as RFC 5424 too.
        let fields = std::fs::read_to_string(dir.path().join(format!("{scheme}.log.fields")));
        let host = gethostname();
        let pid = std::process::id();
        assert_eq!(
            fields
                .unwrap()
                .lines()
                .filter(|l| !l.contains(" - - - "))
                .collect::<Vec<_>>(),
            [
                format!("83 1 {host} gitward {pid} policy.violation"),
                format!("86 1 {host} gitward {pid} certificate.issued"),
            ]
        );
    }
}

/// The CEF extension of `stored` once a CEF parser undid its escapes.
fn cef_extension(stored: &Stored, text: &str) -> Value {
    // CR and LF travel as escapes; TAB and NUL cannot.
    let ext = text.replace('\t', " ").replace('\0', "\u{fffd}");
    json!({
        "rt": "1740832496789",
        "externalId": stored.event.id,
        "cat": stored.event.type_.trim_start_matches("dev.gitward."),
        "subject": format!("Certificate/{ext}"),
        "fingerprint": format!("fp {ext}"),
        "commit": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "compliance": format!("PCI-DSS 4.2.1,X {ext}"),
        "resource": format!("Certificate/{ext}"),
        "line": "12",
        "policy": format!("policy {ext}"),
        "source": "https://git.example.com/ops/pki.git",
        "suser": format!("{ext} <dev@example.com>"),
        "fname": format!("certs/{ext}.yaml"),
        "msg": format!("message {ext}"),
    })
}

#[tokio::test]
async fn cef_arrives_intact_over_udp_tcp_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(dir.path());
    for scheme in SCHEMES {
        let mut sink =
            Syslog::new(&spec(json!({"format": "cef"})), &rsyslog.endpoint(scheme)).unwrap();
        delivered(&mut sink, &[hostile(), plain()]).await;
        let got = rsyslog.received(scheme, "cef", 2);
        for (record, stored, text, severity, cef_severity) in [
            (&got[0], hostile(), HOSTILE, 3, "8"),
            (&got[1], plain(), "web-01 ok", 6, "1"),
        ] {
            let kind = stored.event.type_.trim_start_matches("dev.gitward.");
            assert_header(record, severity, kind);
            assert_eq!(record["sd"], json!({}));
            let cef = &record["cef"];
            assert_eq!(
                cef["header"],
                json!([
                    "CEF:0",
                    "gitward",
                    "gitward",
                    VERSION,
                    kind,
                    format!("message {}", flat(text)),
                    cef_severity
                ])
            );
            assert_eq!(cef["extension"], cef_extension(&stored, text), "{scheme}");
        }
        // pycef reads a line without escapes in its header on its own, to the same values.
        let whole = &got[1]["cef"]["pycef"];
        assert_eq!(whole["extension"], got[1]["cef"]["extension"]);
        assert_eq!(whole["header"]["Name"], "message web-01 ok");
        assert_eq!(whole["header"]["DeviceEventClassID"], "certificate.issued");
        assert_eq!(whole["header"]["DeviceVersion"], VERSION);
        assert_eq!(whole["header"]["Severity"], "1");
    }
}

/// The LEEF attributes of `stored`: CR, LF and TAB a space, the delimiter and NUL U+FFFD.
fn leef_attributes(stored: &Stored, text: &str, delimiter: char, sev: &str) -> Value {
    let v = flat(text).replace(delimiter, "\u{fffd}");
    json!({
        "devTime": "1740832496789",
        "cat": stored.event.type_.trim_start_matches("dev.gitward."),
        "sev": sev,
        "eventId": stored.event.id,
        "subject": format!("Certificate/{v}"),
        "fingerprint": format!("fp {v}"),
        "identHostName": gethostname(),
        "usrName": format!("{v} <dev@example.com>"),
        "commit": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "resource": format!("Certificate/{v}"),
        "file": format!("certs/{v}.yaml"),
        "policy": format!("policy {v}"),
        "compliance": format!("PCI-DSS 4.2.1,X {v}"),
        "source": "https://git.example.com/ops/pki.git",
        "msg": format!("message {v}"),
    })
}

fn gethostname() -> String {
    let output = std::process::Command::new(PYTHON)
        .args(["-c", "import socket; print(socket.gethostname())"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn leef_arrives_intact_over_udp_tcp_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(dir.path());
    // The default `^` over UDP and TCP, TAB written as a hex code over TLS.
    for (scheme, spelled, delimiter) in [("udp", "^", '^'), ("tcp", "^", '^'), ("tls", "x09", '\t')]
    {
        let settings = json!({"format": "leef", "delimiter": spelled});
        let mut sink = Syslog::new(&spec(settings), &rsyslog.endpoint(scheme)).unwrap();
        delivered(&mut sink, &[hostile(), plain()]).await;
        let got = rsyslog.received(scheme, "leef", 2);
        for (record, stored, text, severity, sev) in [
            (&got[0], hostile(), HOSTILE, 3, "8"),
            (&got[1], plain(), "web-01 ok", 6, "1"),
        ] {
            let kind = stored.event.type_.trim_start_matches("dev.gitward.");
            assert_header(record, severity, kind);
            let leef = &record["leef"];
            assert_eq!(
                leef["header"],
                json!(["LEEF:2.0", "gitward", "gitward", VERSION, kind, spelled])
            );
            assert_eq!(leef["delimiter"], delimiter.to_string());
            assert_eq!(
                leef["attributes"],
                leef_attributes(&stored, text, delimiter, sev),
                "{scheme}"
            );
        }
    }
}

#[tokio::test]
async fn a_one_megabyte_event_over_udp_is_cut_to_a_message_the_parsers_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(dir.path());
    let big = "é日本🔒|=\\]\" ".repeat(1024 * 1024 / 20);
    let stored = event(EventType::PolicyViolation, "web", FindingSeverity::Low);
    let mut huge = stored.clone();
    huge.event.data.message = big.clone();
    huge.json = serde_json::to_string(&huge.event).unwrap();
    assert!(huge.json.len() > 1024 * 1024);
    let mut seen = 0;
    for (format, limit) in [("rfc5424", 2048), ("cef", 1200), ("leef", 1000)] {
        let settings = json!({"format": format, "maxMessageBytes": limit});
        let mut sink = Syslog::new(&spec(settings), &rsyslog.endpoint("udp")).unwrap();
        delivered(&mut sink, std::slice::from_ref(&huge)).await;
        seen += 1;
        rsyslog.received("udp", "rfc5424", seen);
        let text = std::fs::read_to_string(rsyslog.file("udp")).unwrap();
        let last = dir.path().join("last.log");
        std::fs::write(&last, text.lines().last().unwrap()).unwrap();
        let record = &parse(format, &last)[0];
        let bytes = record["bytes"].as_u64().unwrap();
        // Cut within a character or outside an escape: a few bytes short of the limit.
        assert!(bytes <= limit && bytes + 8 > limit, "{format}: {bytes}");
        assert_header(record, 5, "policy.violation");
        // The message is cut, within a character, at the end; what precedes it is whole.
        let cut = match format {
            "rfc5424" => {
                assert_eq!(record["sd"]["gitward@32473"]["fingerprint"], "fp web");
                let msg = record["msg"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('\u{feff}');
                assert!(huge.json.starts_with(msg.strip_suffix("...").unwrap()));
                continue;
            }
            "cef" => {
                assert_eq!(record["cef"]["header"][6], "3");
                assert_eq!(
                    record["cef"]["extension"]["cat"], "policy.violation",
                    "{record}"
                );
                record["cef"]["extension"]["msg"].clone()
            }
            _ => {
                assert_eq!(record["leef"]["attributes"]["sev"], "3");
                record["leef"]["attributes"]["msg"].clone()
            }
        };
        let cut = cut
            .as_str()
            .unwrap()
            .strip_suffix("...")
            .unwrap()
            .to_owned();
        assert!(big.starts_with(&cut), "{format}: {cut}");
    }
}

#[tokio::test]
async fn a_receiver_restarted_between_batches_gets_the_next_over_a_new_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut rsyslog = Rsyslog::start(dir.path());
    let mut tcp = Syslog::new(&spec(json!({})), &rsyslog.endpoint("tcp")).unwrap();
    let mut tls = Syslog::new(&spec(json!({})), &rsyslog.endpoint("tls")).unwrap();
    delivered(&mut tcp, &[plain()]).await;
    delivered(&mut tls, &[plain()]).await;
    rsyslog.received("tcp", "rfc5424", 1);
    rsyslog.received("tls", "rfc5424", 1);

    rsyslog.stop();
    // Down: nothing takes the batch, which is to be sent again.
    for sink in [&mut tcp, &mut tls] {
        let answer = send(sink, &[hostile()]).await;
        let Answer::Retry { error, after: None } = answer else {
            panic!("{answer:?}");
        };
        assert!(
            error.contains("cannot connect") && error.contains("refused"),
            "{error}"
        );
    }
    rsyslog.run();
    delivered(&mut tcp, &[hostile()]).await;
    delivered(&mut tls, &[hostile()]).await;
    // Written before rsyslog stops again: with no acknowledgement, what a receiver has not
    // read when it stops is lost.
    rsyslog.received("tcp", "rfc5424", 2);
    rsyslog.received("tls", "rfc5424", 2);
    // Restarted while the connection was idle: the next batch notices and reconnects.
    rsyslog.stop();
    rsyslog.run();
    delivered(&mut tcp, &[hostile(), plain()]).await;
    delivered(&mut tls, &[hostile(), plain()]).await;
    for scheme in ["tcp", "tls"] {
        let got = rsyslog.received(scheme, "rfc5424", 4);
        assert_rfc5424(&got[1], &hostile(), HOSTILE, 3);
        assert_rfc5424(&got[2], &hostile(), HOSTILE, 3);
        assert_rfc5424(&got[3], &plain(), "web-01 ok", 6);
    }
}

#[tokio::test]
async fn a_tls_receiver_whose_certificate_the_ca_file_did_not_sign_is_retried_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&dir.path().join("receiver"));
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_ca, _, _) = localhost_tls(&other);
    let mut untrusting = rsyslog.endpoint("tls");
    untrusting.ca_file = Some(other_ca);
    let mut sink = Syslog::new(&spec(json!({})), &untrusting).unwrap();
    let answer = send(&mut sink, &[plain()]).await;
    let Answer::Retry { error, after: None } = answer else {
        panic!("{answer:?}");
    };
    assert!(
        error.starts_with(&format!(
            "tls://127.0.0.1:{}: TLS handshake: ",
            rsyslog.ports[2]
        )) && error.contains("not trusted")
            // The other CA has the same name as the right one: its signature is what fails.
            && error.contains("BadSignature")
            && error.contains("caFile"),
        "{error}"
    );
    // The name checked is the URL's host: `localhost` is in the certificate...
    let url = format!("tls://localhost:{}", rsyslog.ports[2]);
    let mut sink = Syslog::new(&spec(json!({})), &endpoint(&url, &rsyslog.ca)).unwrap();
    delivered(&mut sink, &[plain()]).await;
    assert_eq!(rsyslog.received("tls", "rfc5424", 1).len(), 1);

    // ...127.0.0.1 is not in one the same CA made for another name (openssl serving it).
    let receiver = dir.path().join("receiver");
    let (cert, key) = issue(
        &receiver,
        "other.example",
        "subjectAltName=DNS:other.example",
    );
    let port = free_port();
    let accept = format!("127.0.0.1:{port}");
    let mut server = Daemon::spawn(
        "openssl",
        &[
            "s_server", "-quiet", "-accept", &accept, "-cert", &cert, "-key", &key,
        ],
        &receiver,
        &[],
    );
    server.wait_for(port);
    let url = format!("tls://127.0.0.1:{port}");
    let mut sink = Syslog::new(&spec(json!({})), &endpoint(&url, &rsyslog.ca)).unwrap();
    let answer = send(&mut sink, &[plain()]).await;
    let Answer::Retry { error, .. } = answer else {
        panic!("{answer:?}");
    };
    assert!(
        error.contains("not trusted") && error.contains("not valid for name \"127.0.0.1\""),
        "{error}"
    );
}

/// A certificate for `name` from the CA `localhost_tls` made in `dir`; returns (cert, key).
fn issue(dir: &Path, name: &str, ext: &str) -> (String, String) {
    let path = |f: &str| dir.join(f).display().to_string();
    std::fs::write(path(&format!("{name}.ext")), format!("{ext}\n")).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let subject = format!("/CN={name}");
    let mut args = vec!["req", "-new", "-subj", &subject];
    args.extend(ec);
    let (key, csr, cert) = (
        path(&format!("{name}.key")),
        path(&format!("{name}.csr")),
        path(&format!("{name}.pem")),
    );
    args.extend(["-keyout", &key, "-out", &csr]);
    common::tool("openssl", &args, dir).expect(0);
    let (ca, ca_key, ext) = (
        path("tls-ca.pem"),
        path("tls-ca.key"),
        path(&format!("{name}.ext")),
    );
    common::tool(
        "openssl",
        &[
            "x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-days", "2", "-extfile",
            &ext, "-out", &cert,
        ],
        dir,
    )
    .expect(0);
    (cert, key)
}

#[tokio::test]
async fn a_receiver_that_wants_a_client_certificate_gets_the_one_configured() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(dir.path());
    // Without one, the receiver closes the connection once the handshake is over: nothing
    // is written to it.
    let mut sink = Syslog::new(&spec(json!({})), &rsyslog.endpoint("mtls")).unwrap();
    let answer = send(&mut sink, &[plain()]).await;
    let Answer::Retry { error, after: None } = answer else {
        panic!("{answer:?}");
    };
    assert!(
        error.contains("closed the connection as soon as the TLS handshake was over")
            && error.contains("clientCertFile"),
        "{error}"
    );

    let (cert, key) = issue(
        dir.path(),
        "gitward-client",
        "extendedKeyUsage=clientAuth,serverAuth",
    );
    let mut endpoint = rsyslog.endpoint("mtls");
    endpoint.client_cert_file = Some(cert.into());
    endpoint.client_key_file = Some(key.into());
    let mut sink = Syslog::new(&spec(json!({"format": "leef"})), &endpoint).unwrap();
    delivered(&mut sink, &[hostile(), plain()]).await;
    let got = rsyslog.received("mtls", "leef", 2);
    assert_eq!(got[0]["leef"]["attributes"]["eventId"], hostile().event.id);
    assert_eq!(got[1]["leef"]["attributes"]["eventId"], plain().event.id);
}

#[tokio::test]
async fn a_udp_receiver_that_is_down_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let endpoint = endpoint(&format!("udp://127.0.0.1:{port}"), dir.path());
    let mut sink = Syslog::new(&spec(json!({})), &endpoint).unwrap();
    // The first datagram goes out; the kernel's "port unreachable" fails the next.
    let answer = send(&mut sink, &[plain(), plain(), plain()]).await;
    let Answer::Retry { error, after: None } = answer else {
        panic!("{answer:?}");
    };
    assert!(
        error.starts_with(&format!("udp://127.0.0.1:{port}: ")),
        "{error}"
    );
    assert!(error.contains("refused"), "{error}");
}

/// A TCP receiver that says a lot back and keeps every byte it reads.
fn chatty_receiver() -> (u16, std::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        if let Ok(mut talker) = stream.try_clone() {
            std::thread::spawn(move || talker.write_all(&vec![b'?'; 1024 * 1024]));
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let mut buffer = [0u8; 65536];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 || tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

#[tokio::test]
async fn what_a_receiver_says_back_is_ignored_and_frames_are_octet_counted() {
    let (port, rx) = chatty_receiver();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = endpoint(&format!("tcp://127.0.0.1:{port}"), dir.path());
    let mut sink = Syslog::new(&spec(json!({"format": "cef"})), &endpoint).unwrap();
    let events = [hostile(), plain(), hostile()];
    delivered(&mut sink, &events[..2]).await;
    // The receiver's megabyte is waiting when the next batch goes: read, not a reason to
    // leave the connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    delivered(&mut sink, &events[2..]).await;
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut frames = Vec::new();
    while frames.len() < 3 {
        assert!(Instant::now() < deadline, "got {frames:?}");
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            bytes.extend(chunk);
        }
        // `<length> <message>`, the length in bytes.
        frames.clear();
        let mut rest = bytes.as_slice();
        while let Some(space) = rest.iter().position(|b| *b == b' ') {
            let length: usize = std::str::from_utf8(&rest[..space])
                .unwrap()
                .parse()
                .unwrap();
            if rest.len() < space + 1 + length {
                break;
            }
            frames.push(String::from_utf8(rest[space + 1..space + 1 + length].to_vec()).unwrap());
            rest = &rest[space + 1 + length..];
        }
    }
    assert_eq!(frames.len(), 3);
    for (frame, stored) in frames.iter().zip(&events) {
        assert!(
            frame.starts_with('<') && frame.contains(" - CEF:0|gitward|"),
            "{frame}"
        );
        assert!(
            frame.contains(&format!("externalId={}", stored.event.id)),
            "{frame}"
        );
        assert!(!frame.contains(['\r', '\n', '\0']), "{frame}");
    }
}

#[tokio::test]
async fn a_receiver_that_never_reads_or_never_answers_the_handshake_times_out() {
    // Accepts (the kernel does) and reads nothing: the batch fills the buffers and stalls.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut endpoint = endpoint(&format!("tcp://127.0.0.1:{port}"), dir.path());
    endpoint.timeout = Some(gitward::model::Duration::from_secs(1));
    let mut sink = Syslog::new(&spec(json!({})), &endpoint).unwrap();
    let mut big = plain();
    big.json = format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024));
    let batch = vec![big; 1000];
    let answer = send(&mut sink, &batch).await;
    let Answer::Retry { error, .. } = answer else {
        panic!("{answer:?}");
    };
    assert!(error.contains("writing took longer than 1 s"), "{error}");

    // Over TLS the handshake is what never ends.
    endpoint.url = format!("tls://127.0.0.1:{port}");
    let (ca, _, _) = localhost_tls(dir.path());
    endpoint.ca_file = Some(ca);
    let mut sink = Syslog::new(&spec(json!({})), &endpoint).unwrap();
    let answer = send(&mut sink, &[plain()]).await;
    let Answer::Retry { error, .. } = answer else {
        panic!("{answer:?}");
    };
    assert!(
        error.contains("TLS handshake took longer than 1 s"),
        "{error}"
    );
    drop(silent);
}

#[test]
fn settings_a_receiver_cannot_use_are_refused_when_the_sink_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("none.pem");
    let problem =
        |settings: Value, url: &str| match Syslog::new(&spec(settings), &endpoint(url, &ca)) {
            Ok(_) => String::new(),
            Err(problem) => problem.to_string(),
        };
    let udp = "udp://127.0.0.1:514";
    assert!(problem(json!({"format": "leef", "delimiter": "|"}), udp).contains("`|` separates"));
    assert!(problem(json!({"format": "leef", "delimiter": "x3D"}), udp).contains("`=` separates"));
    assert!(problem(json!({"format": "leef", "delimiter": "x0A"}), udp).contains("control"));
    assert!(problem(json!({"maxMessageBytes": 100}), udp).contains("maxMessageBytes 100"));
    assert!(problem(json!({"facility": 24}), udp).contains("facility 24"));
    assert!(problem(json!({}), "tls://127.0.0.1:6514").contains("caFile"));
    assert!(problem(json!({}), "tcp://user:pw@siem:514").contains("not a syslog URL"));
    assert_eq!(
        problem(json!({"format": "leef", "delimiter": "x09"}), udp),
        ""
    );
}

#[test]
fn reconcile_once_delivers_to_rsyslog_over_tls_and_sinks_test_reaches_it() {
    use common::host::{Host, ISSUERS, certificate};

    let sink = "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: siem}\nspec:\n  \
                type: syslog\n  endpoint: siem-tls\n  minSeverity: info\n  \
                syslog: {format: cef}\n";
    let web = certificate("web", "  dnsNames: [web.example.com]\n");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web),
        ("sinks.yaml", sink),
    ]);
    let rsyslog = Rsyslog::start(&host.dir.path().join("rsyslog"));
    host.config(&format!(
        "endpoints:\n  siem-tls: {{url: \"tls://localhost:{}\", caFile: {}}}\n",
        rsyslog.ports[2],
        rsyslog.ca.display()
    ));
    host.reconcile(&[]).expect(0);
    let got = rsyslog.received("tls", "cef", 3);
    let mut kinds: Vec<String> = got
        .iter()
        .map(|r| {
            let ext = &r["cef"]["extension"];
            format!(
                "{} {} {}",
                r["cef"]["header"][4], ext["cat"], ext["subject"]
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            r#""certificate.issued" "certificate.issued" "Certificate/web""#,
            r#""certificate.issued" "certificate.issued" "Issuer/issuing""#,
            r#""certificate.issued" "certificate.issued" "Issuer/root""#,
        ]
    );
    for record in &got {
        assert_eq!(record["appname"], "gitward");
        assert_eq!(record["hostname"], record["this_host"]);
        assert_eq!(record["msgid"], "certificate.issued");
    }
    let state = common::sink_state(host.dir.path(), "siem");
    assert_eq!(
        (
            &state["delivered"],
            &state["backlog"],
            &state["deadLetters"]
        ),
        (&json!(3), &json!(0), &json!(0)),
        "{state}"
    );

    let test = common::gitward_in(
        host.dir.path(),
        &["sinks", "test", "siem", "--config", "gitward.yaml"],
    )
    .expect(0);
    assert!(test.stdout.contains("delivered"), "{}", test.stdout);
    let got = rsyslog.received("tls", "cef", 4);
    assert_eq!(got[3]["cef"]["extension"]["cat"], "sink.test");
    assert_eq!(got[3]["cef"]["header"][4], "sink.test");
}
