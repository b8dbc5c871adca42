//! Events: what recording a cold reconcile's events costs against that reconcile, and how
//! fast the outbox delivers to a Splunk HEC stand-in and to rsyslog over TLS, against a bare
//! loop posting the same batches with the same HTTP client.
//!
//!     GITWARD_BENCH_REPO=DIR cargo bench --bench events
//!
//! DIR is a repository from `scripts/gen-repo.py --algorithm ECDSA-P256 --no-acme --no-gates
//! --no-gate-policy`; `scripts/bench.sh` builds one and runs this. Figures are medians of rounds
//! (the machine is shared and noisy).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Duration as Days, Utc};
use common::{fresh_host, median, reconcile, run, timed};
use gitward::config::Endpoint;
use gitward::events::derive::{EXPIRING_DAYS, Facts, derive};
use gitward::events::outbox::{self, Declared};
use gitward::git::CommitInfo;
use gitward::model::{KeyAlgorithm, Kind, SinkSpec};
use gitward::sinks::worker::{DRAIN_BUDGET, Outbox, Unobserved, drain};
use gitward::status::{Change, Outcome, ResourceOutcome, ResourceStatus, Statuses};
use gitward::store::Store;

const ROUNDS: usize = 3;
const EVENTS: usize = 10_000;

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml::from_str(text).expect("YAML")
}

/// What a cold reconcile of `count` certificates tells: each one issued.
fn issued(count: usize) -> (Vec<ResourceOutcome>, Statuses) {
    let now = Utc::now();
    let mut outcomes = Vec::with_capacity(count);
    let mut statuses = Statuses::new();
    for n in 0..count {
        let name = format!("svc-{n:05}");
        let serial = format!(
            "{:02x}:{:02x}:{:02x}:0a:0b:0c:0d:0e",
            n >> 16,
            (n >> 8) & 255,
            n & 255
        );
        outcomes.push(ResourceOutcome {
            kind: Kind::Certificate,
            name: name.clone(),
            change: Change::Issued,
            serial: Some(serial.clone()),
            message: String::new(),
        });
        statuses.insert(
            (Kind::Certificate, name.clone()),
            Arc::new(ResourceStatus {
                kind: Kind::Certificate,
                name,
                spec_hash: "0".repeat(64),
                issuer: Some("issuing-0".into()),
                issuer_fingerprint: None,
                serial,
                fingerprint: "AB:".repeat(31) + "AB",
                not_before: now,
                not_after: now + Days::days(90),
                renew_at: now + Days::days(60),
                key_algorithm: KeyAlgorithm::EcdsaP256,
                target: Some("web-tls".into()),
                certificate: String::new(),
                conditions: Vec::new(),
            }),
        );
    }
    (outcomes, statuses)
}

/// Recording a cold reconcile's events as the reconcile does: derived, sealed, held before
/// the status commit and released with the outcome, in a state database of its own.
fn record(count: usize, dir: &Path, sinks: &[(&str, SinkSpec)]) -> f64 {
    let (outcomes, after) = issued(count);
    let head = CommitInfo {
        sha: "c0ffee".repeat(6) + "c0ff",
        tree: git2::Oid::ZERO_SHA1,
        author: "Bench".into(),
        email: "bench@example.com".into(),
        summary: "bench".into(),
        message: "bench".into(),
        signature: None,
    };
    let _ = std::fs::remove_dir_all(dir);
    let store = Store::open(dir).expect("store");
    let declared: Vec<Declared> = sinks
        .iter()
        .map(|(name, spec)| Declared {
            name,
            spec,
            problem: None,
        })
        .collect();
    let before = Statuses::new();
    let open = Default::default();
    timed(|| {
        let now = Utc::now();
        let events: Vec<_> = derive(&Facts {
            now,
            head: &head,
            result: Outcome::Applied,
            problems: &[],
            head_applied: true,
            gates: &[],
            overrides: &[],
            reviews_before: &[],
            reviews_after: &[],
            outcomes: &outcomes,
            before: &before,
            after: &after,
            findings: &[],
            catalog: None,
            expiring_days: &EXPIRING_DAYS,
            open_before: &open,
            blocked_since: &Default::default(),
            open_after: &Default::default(),
        })
        .into_iter()
        .map(|d| d.seal("file:///srv/pki", now))
        .collect();
        assert_eq!(events.len(), count);
        outbox::hold(store.db(), &events, &declared, "tip", &head.sha).expect("hold");
        let transaction = gitward::store::write_transaction(store.db()).expect("transaction");
        outbox::release(&transaction, now).expect("release");
        transaction.commit().expect("commit");
    })
    .0
}

/// A state directory whose outbox holds `count` events for the one sink `spec`.
fn backlog(dir: &Path, count: usize, spec: &SinkSpec) -> Outbox {
    record(count, dir, &[("bench", spec.clone())]);
    Outbox::new(Store::open(dir).expect("store"))
}

fn endpoints(url: &str, extra: &str) -> std::collections::BTreeMap<gitward::model::Name, Endpoint> {
    yaml(&format!("bench: {{url: \"{url}\"{extra}}}\n"))
}

/// What the HEC stand-in got: envelopes counted, and the bodies as they came.
#[derive(Default)]
struct Taken {
    envelopes: AtomicUsize,
    bodies: Mutex<Vec<axum::body::Bytes>>,
}

/// A Splunk HEC stand-in on loopback: answers success, counts the envelopes it got and keeps
/// the bodies.
fn hec_stand_in(runtime: &tokio::runtime::Runtime) -> (String, Arc<Taken>) {
    use axum::routing::post;
    let taken = Arc::new(Taken::default());
    let kept = taken.clone();
    let app = axum::Router::new().route(
        "/services/collector/event",
        post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                // Envelopes are concatenated objects: one `{"time":` each.
                let envelopes = body.windows(8).filter(|w| w == b"{\"time\":").count();
                kept.envelopes.fetch_add(envelopes, Ordering::SeqCst);
                kept.bodies.lock().expect("bodies").push(body);
                r#"{"text":"Success","code":0}"#
            }
        }),
    );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    runtime.spawn(async move { axum::serve(listener, app).await });
    (url, taken)
}

/// Events per second of the outbox delivering `count` events to the HEC stand-in, and of a
/// bare loop posting the same bodies with the same client.
fn hec(runtime: &tokio::runtime::Runtime, scratch: &Path, count: usize) -> (f64, f64) {
    let (url, taken) = hec_stand_in(runtime);
    let token = scratch.join("hec-token");
    std::fs::write(&token, "00000000-0000-0000-0000-000000000000\n").expect("token");
    let spec: SinkSpec = yaml(
        "type: splunk-hec\nendpoint: bench\nevents: [certificate.issued]\nminSeverity: info\nsplunk: {index: security}\n",
    );
    let endpoints = endpoints(&url, &format!(", tokenFile: {}", token.display()));
    let outbox = backlog(&scratch.join("hec-state"), count, &spec);
    let (sink_seconds, drained) = timed(|| {
        runtime.block_on(drain(
            &outbox,
            &endpoints,
            Arc::new(Unobserved),
            DRAIN_BUDGET,
        ))
    });
    let drained = drained.expect("drained");
    assert!(drained.iter().all(|d| d.stopped.is_none()), "{drained:?}");
    assert_eq!(taken.envelopes.swap(0, Ordering::SeqCst), count);
    // The floor: the very bodies the sink sent, posted again in a loop with the same client.
    let bodies = std::mem::take(&mut *taken.bodies.lock().expect("bodies"));
    let endpoint = &endpoints[&gitward::model::Name("bench".into())];
    let client = gitward::sinks::http::client(endpoint).expect("client");
    let floor_seconds = timed(|| {
        runtime.block_on(async {
            for body in &bodies {
                let answer = client
                    .post(format!("{url}/services/collector/event"))
                    .header(
                        "authorization",
                        "Splunk 00000000-0000-0000-0000-000000000000",
                    )
                    .body(body.clone())
                    .send()
                    .await
                    .expect("posted");
                assert!(answer.status().is_success());
            }
        })
    })
    .0;
    assert_eq!(taken.envelopes.load(Ordering::SeqCst), count);
    (count as f64 / sink_seconds, count as f64 / floor_seconds)
}

/// rsyslog on a loopback TLS port, writing what it receives to a file.
struct Rsyslog {
    child: Child,
    port: u16,
    ca: PathBuf,
    out: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rsyslog(dir: &Path) -> Rsyslog {
    std::fs::create_dir_all(dir.join("work")).expect("dir");
    let path = |f: &str| dir.join(f).display().to_string();
    std::fs::write(path("ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca, ca_key, cert, key, csr) = (
        path("ca.pem"),
        path("ca.key"),
        path("cert.pem"),
        path("key.pem"),
        path("csr"),
    );
    let mut args = vec!["req", "-x509", "-days", "2", "-subj", "/CN=Bench CA"];
    args.extend(ec);
    args.extend(["-keyout", &ca_key, "-out", &ca]);
    run("openssl", &args, dir);
    let mut args = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr]);
    run("openssl", &args, dir);
    let ext = path("ext");
    run(
        "openssl",
        &[
            "x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-days", "2", "-extfile",
            &ext, "-out", &cert,
        ],
        dir,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let out = dir.join("tls.log");
    std::fs::write(
        dir.join("rsyslog.conf"),
        format!(
            "global(workDirectory=\"{work}\" maxMessageSize=\"64k\" defaultNetstreamDriverCAFile=\"{ca}\" defaultNetstreamDriverCertFile=\"{cert}\" defaultNetstreamDriverKeyFile=\"{key}\")\nmodule(load=\"imtcp\")\ntemplate(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\nruleset(name=\"tls\") {{ action(type=\"omfile\" file=\"{out}\" template=\"raw\") }}\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"tls\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n",
            work = path("work"),
            out = out.display(),
        ),
    )
    .expect("conf");
    let child = Command::new("/usr/sbin/rsyslogd")
        .args([
            "-n",
            "-f",
            &path("rsyslog.conf"),
            "-i",
            &path("rsyslogd.pid"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rsyslogd (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rsyslog does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Rsyslog {
        child,
        port,
        ca: ca.into(),
        out,
    }
}

fn lines(file: &Path) -> usize {
    std::fs::read(file)
        .map(|bytes| bytes.iter().filter(|b| **b == b'\n').count())
        .unwrap_or(0)
}

/// Events per second of the outbox delivering `count` events to rsyslog over TLS, until
/// rsyslog wrote them all.
fn syslog(runtime: &tokio::runtime::Runtime, scratch: &Path, count: usize, round: usize) -> f64 {
    let receiver = rsyslog(&scratch.join(format!("rsyslog-{round}")));
    let spec: SinkSpec = yaml(
        "type: syslog\nendpoint: bench\nevents: [certificate.issued]\nminSeverity: info\nsyslog: {format: rfc5424}\n",
    );
    let endpoints = endpoints(
        &format!("tls://127.0.0.1:{}", receiver.port),
        &format!(", caFile: {}", receiver.ca.display()),
    );
    let outbox = backlog(&scratch.join("syslog-state"), count, &spec);
    let (seconds, ()) = timed(|| {
        let drained = runtime
            .block_on(drain(
                &outbox,
                &endpoints,
                Arc::new(Unobserved),
                DRAIN_BUDGET,
            ))
            .expect("drained");
        assert!(drained.iter().all(|d| d.stopped.is_none()), "{drained:?}");
        let deadline = Instant::now() + Duration::from_secs(300);
        while lines(&receiver.out) < count {
            assert!(
                Instant::now() < deadline,
                "rsyslog wrote {} of {count}",
                lines(&receiver.out)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    count as f64 / seconds
}

fn main() {
    let Some(repo) = std::env::var_os("GITWARD_BENCH_REPO").map(PathBuf::from) else {
        eprintln!("set GITWARD_BENCH_REPO to a repository from scripts/gen-repo.py");
        return;
    };
    let scratch = tempfile::tempdir().expect("scratch");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let all: SinkSpec = yaml("type: file\nendpoint: bench\nminSeverity: info\n");
    let (mut colds, mut records, mut shares, mut hecs, mut floors, mut ratios, mut syslogs) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let cold = reconcile(&fresh_host(&repo, &scratch.path().join("host")));
        let recording = record(
            EVENTS,
            &scratch.path().join("recording"),
            &[("bench", all.clone())],
        );
        let (hec, floor) = hec(&runtime, scratch.path(), EVENTS);
        let syslog = syslog(&runtime, scratch.path(), EVENTS, round);
        eprintln!(
            "round {round}: cold reconcile {cold:.2} s, recording {recording:.3} s, HEC {hec:.0}/s (floor {floor:.0}/s), rsyslog TLS {syslog:.0}/s"
        );
        colds.push(cold);
        records.push(recording);
        shares.push(recording / cold);
        hecs.push(hec);
        floors.push(floor);
        ratios.push(hec / floor);
        syslogs.push(syslog);
    }
    println!("events of a cold reconcile ({EVENTS} certificate.issued):");
    println!(
        "  cold reconcile (binary)                 {:.2} s",
        median(colds)
    );
    println!(
        "  recording its events (derive, seal, hold, release)  {:.3} s = {:.1} % of it   (target: ≤ 5 %)",
        median(records),
        median(shares) * 100.0
    );
    println!("delivering {EVENTS} events from the outbox:");
    println!(
        "  Splunk HEC stand-in                     {:.0} events/s   (target: ≥ 20,000)",
        median(hecs)
    );
    println!(
        "  bare loop, same batches, same client    {:.0} events/s   (outbox / floor {:.2}×)",
        median(floors),
        median(ratios)
    );
    println!(
        "  rsyslog over TLS (written to its file)  {:.0} events/s   (target: ≥ 20,000)",
        median(syslogs)
    );
}
