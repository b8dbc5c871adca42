//! Events end to end: `gitward reconcile --once` records a reconcile's events in the outbox
//! with its outcome and delivers them before it exits; `gitward sinks` and `gitward events`
//! show what happened. The receivers are files (the `file` sink) and a small HTTP receiver
//! that answers what the test tells it.

use crate::common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use common::host::{Host, ISSUERS, certificate};
use common::receiver::Receiver;
use common::{gitward_in, sink_state};
use serde_json::Value;

fn sink(name: &str, type_: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "apiVersion: gitward/v1\nkind: Sink\nmetadata: {{name: {name}}}\nspec:\n  type: {type_}\n  endpoint: {endpoint}\n{extra}"
    )
}

/// A host following issuers, two certificates and `sinks`.
fn host_with(sinks: &str) -> Host {
    let web = certificate("web", "  dnsNames: [web.example.com]\n");
    let api = certificate("api", "  dnsNames: [api.example.com]\n");
    Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web),
        ("api.yaml", &api),
        ("sinks.yaml", sinks),
    ])
}

/// An endpoint line for a file in the host's directory.
fn file_endpoint(host: &Host, name: &str, file: &str) -> String {
    format!(
        "  {name}: {{url: \"file://{}\"}}\n",
        host.dir.path().join(file).display()
    )
}

fn endpoints(host: &Host, lines: &str) {
    host.config(&format!("endpoints:\n{lines}"));
}

/// The CloudEvents a file sink wrote, in order.
fn written(host: &Host, file: &str) -> Vec<Value> {
    std::fs::read_to_string(host.dir.path().join(file))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is a JSON event"))
        .collect()
}

/// "type subject" of each event, sorted.
fn kinds(events: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap_or(""),
                e["subject"].as_str().unwrap_or("")
            )
        })
        .collect();
    kinds.sort();
    kinds
}

const ISSUED: [&str; 4] = [
    "dev.gitward.certificate.issued Certificate/api",
    "dev.gitward.certificate.issued Certificate/web",
    "dev.gitward.certificate.issued Issuer/issuing",
    "dev.gitward.certificate.issued Issuer/root",
];

#[test]
fn a_reconcile_tells_its_sinks_what_it_issued_once() {
    let host = host_with(&sink("audit", "file", "audit-log", "  minSeverity: info\n"));
    endpoints(&host, &file_endpoint(&host, "audit-log", "events.jsonl"));
    host.reconcile(&[]).expect(0);
    let events = written(&host, "events.jsonl");
    assert_eq!(kinds(&events), ISSUED);
    let web = events
        .iter()
        .find(|e| e["subject"] == "Certificate/web")
        .expect("web");
    assert_eq!(web["specversion"], "1.0");
    assert_eq!(web["datacontenttype"], "application/json");
    assert_eq!(
        web["source"],
        format!("file://{}", host.repo.path().display())
    );
    assert_eq!(web["data"]["resource"]["file"], "web.yaml");
    assert_eq!(web["data"]["resource"]["line"], 1);
    assert_eq!(web["data"]["severity"], "low");
    assert_eq!(
        web["data"]["commit"]["sha"],
        host.repo.git(&["rev-parse", "HEAD"]).trim()
    );
    // The serial the event names is the certificate's on disk.
    let on_disk = host.serial("web");
    let on_disk = on_disk.trim().trim_start_matches("serial=").to_lowercase();
    let told = web["data"]["details"]["serial"].as_str().expect("serial");
    assert_eq!(told.replace(':', ""), on_disk);

    // Nothing new: nothing more to tell.
    host.reconcile(&[]).expect(0);
    assert_eq!(written(&host, "events.jsonl").len(), 4);
    let audit = sink_state(host.dir.path(), "audit");
    assert_eq!(audit["delivered"], 4);
    assert_eq!(audit["backlog"], 0);
    assert_eq!(audit["deadLetters"], 0);

    // `gitward events` lists the outbox.
    let listed = gitward_in(
        host.dir.path(),
        &[
            "events",
            "--config",
            "gitward.yaml",
            "--type",
            "certificate.issued",
            "--format",
            "json",
        ],
    )
    .expect(0);
    let listed: Vec<Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(kinds(&listed), ISSUED);
    let text = gitward_in(host.dir.path(), &["events", "--config", "gitward.yaml"]).expect(0);
    assert!(
        text.stdout.contains("certificate.issued") && text.stdout.contains("Certificate/web"),
        "{}",
        text.stdout
    );
    let wrong = gitward_in(
        host.dir.path(),
        &["events", "--config", "gitward.yaml", "--type", "nonsense"],
    );
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
}

#[test]
fn a_sink_without_its_endpoint_waits_and_holds_nothing_else_up() {
    let sinks = [
        sink("audit", "file", "audit-log", "  minSeverity: info\n"),
        sink("later", "file", "not-yet", "  minSeverity: info\n"),
        sink("splunk", "splunk-hec", "audit-log", ""),
    ]
    .join("---\n");
    let host = host_with(&sinks);
    endpoints(&host, &file_endpoint(&host, "audit-log", "events.jsonl"));
    let run = host.reconcile(&[]).expect(0);
    assert!(
        run.stdout.contains("sink later: events kept for later: endpoint `not-yet` is not defined in the host config"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("sink splunk: events kept for later: endpoint `audit-log` is a `file://` URL; a splunk-hec sink sends to `https://`, `http://`"),
        "{}",
        run.stdout
    );
    assert_eq!(kinds(&written(&host, "events.jsonl")), ISSUED);
    let later = sink_state(host.dir.path(), "later");
    assert_eq!(later["backlog"], 4);
    assert_eq!(later["delivered"], 0);
    assert!(
        later["problem"]
            .as_str()
            .is_some_and(|p| p.contains("`not-yet` is not defined")),
        "{later}"
    );
    let table = gitward_in(
        host.dir.path(),
        &["sinks", "status", "--config", "gitward.yaml"],
    )
    .expect(0);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("later") && l.contains("file") && l.contains("not defined")),
        "{}",
        table.stdout
    );
    // The status branch says so too, without the host's paths.
    host.repo.write(
        "more.yaml",
        certificate("more", "  dnsNames: [more.example.com]\n"),
    );
    host.repo.commit("One more certificate");
    host.reconcile(&[]).expect(0);
    let recorded = host
        .repo
        .git(&["show", "gitward/status:status/sink/later.yaml"]);
    assert!(recorded.contains("backlog: 4"), "{recorded}");
    assert!(recorded.contains("not defined"), "{recorded}");
    let audit = host
        .repo
        .git(&["show", "gitward/status:status/sink/audit.yaml"]);
    assert!(audit.contains("delivered: 4"), "{audit}");
    assert!(!audit.contains(&host.dir.path().display().to_string()));

    // The host defines the endpoint: the sink's backlog goes out, in order.
    endpoints(
        &host,
        &format!(
            "{}{}",
            file_endpoint(&host, "audit-log", "events.jsonl"),
            file_endpoint(&host, "not-yet", "later.jsonl")
        ),
    );
    host.reconcile(&[]).expect(0);
    let later = written(&host, "later.jsonl");
    assert_eq!(later.len(), 5, "{later:?}");
    assert_eq!(later[4]["subject"], "Certificate/more");
    assert_eq!(written(&host, "events.jsonl").len(), 5);
    assert_eq!(sink_state(host.dir.path(), "later")["backlog"], 0);
}

#[test]
fn a_sink_takes_the_types_and_severities_it_asks_for() {
    let sinks = [
        sink("all", "file", "all", "  minSeverity: info\n"),
        sink(
            "failures",
            "file",
            "failures",
            "  events: [certificate.failed, reconcile.failed]\n  minSeverity: high\n",
        ),
        sink("high", "file", "high", "  minSeverity: critical\n"),
    ]
    .join("---\n");
    let host = host_with(&sinks);
    endpoints(
        &host,
        &["all", "failures", "high"]
            .map(|n| file_endpoint(&host, n, &format!("{n}.jsonl")))
            .concat(),
    );
    host.reconcile(&[]).expect(0);
    // A certificate for a target the host does not grant cannot be written.
    host.repo.write(
        "broken.yaml",
        certificate("broken", "  dnsNames: [broken.example.com]\n")
            .replace("target: web", "target: elsewhere"),
    );
    host.repo
        .commit("A certificate for a target the host lacks");
    host.reconcile(&[]).expect(1);
    let failures = kinds(&written(&host, "failures.jsonl"));
    assert_eq!(
        failures,
        [
            "dev.gitward.certificate.failed Certificate/broken".to_owned(),
            format!(
                "dev.gitward.reconcile.failed commit/{}",
                &host.repo.git(&["rev-parse", "HEAD"]).trim()[..12]
            ),
        ]
    );
    assert_eq!(written(&host, "all.jsonl").len(), 6);
    assert!(written(&host, "high.jsonl").is_empty());
    // Retrying the same commit tells nothing new.
    host.reconcile(&[]).expect(1);
    assert_eq!(written(&host, "failures.jsonl").len(), 2);
}

/// A host with one webhook sink, `hook`, signing for `receiver`.
fn hooked(receiver: &Receiver) -> Host {
    let host = host_with(&sink("hook", "webhook", "hook", "  minSeverity: info\n"));
    std::fs::write(
        host.dir.path().join("hook-secret"),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    )
    .expect("secret");
    endpoints(
        &host,
        &format!(
            "  hook: {{url: \"{}\", secretFile: hook-secret}}\n",
            receiver.url
        ),
    );
    host
}

#[test]
fn what_a_receiver_refuses_is_kept_until_an_operator_retries_or_discards_it() {
    let receiver = Receiver::start();
    receiver.status.store(422, Ordering::SeqCst);
    let host = hooked(&receiver);
    host.reconcile(&[]).expect(0);
    let hook = sink_state(host.dir.path(), "hook");
    assert_eq!(hook["deadLetters"], 4, "{hook}");
    assert_eq!(hook["backlog"], 0);
    assert!(
        hook["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 422") && e.contains("not today")),
        "{hook}"
    );
    // The receiver is fixed; the operator sends the dead letters again.
    receiver.status.store(204, Ordering::SeqCst);
    let retried = gitward_in(
        host.dir.path(),
        &["sinks", "retry", "hook", "--config", "gitward.yaml"],
    )
    .expect(0);
    assert!(
        retried.stdout.contains("4 dead letters queued again"),
        "{}",
        retried.stdout
    );
    host.reconcile(&[]).expect(0);
    assert_eq!(receiver.ids().len(), 4);
    let hook = sink_state(host.dir.path(), "hook");
    assert_eq!(hook["deadLetters"], 0);
    assert_eq!(hook["delivered"], 4);

    // Refused again, then discarded.
    receiver.status.store(400, Ordering::SeqCst);
    host.repo.write(
        "more.yaml",
        certificate("more", "  dnsNames: [more.example.com]\n"),
    );
    host.repo.commit("One more certificate");
    host.reconcile(&[]).expect(0);
    assert_eq!(sink_state(host.dir.path(), "hook")["deadLetters"], 1);
    gitward_in(
        host.dir.path(),
        &["sinks", "discard", "hook", "--config", "gitward.yaml"],
    )
    .expect(0);
    assert_eq!(sink_state(host.dir.path(), "hook")["deadLetters"], 0);
    let unknown = gitward_in(
        host.dir.path(),
        &["sinks", "retry", "nonesuch", "--config", "gitward.yaml"],
    );
    assert_eq!(unknown.code, 2);
    assert!(
        unknown
            .stderr
            .contains("no sink `nonesuch` in force; the sinks in force are: hook"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn a_receiver_that_cannot_take_events_now_gets_them_later_in_order() {
    let receiver = Receiver::start();
    receiver.status.store(503, Ordering::SeqCst);
    let host = hooked(&receiver);
    let run = host.reconcile(&[]).expect(0);
    assert!(
        run.stdout
            .contains("sink hook: events kept for later: HTTP 503"),
        "{}",
        run.stdout
    );
    let hook = sink_state(host.dir.path(), "hook");
    assert_eq!(hook["backlog"], 4);
    assert_eq!(hook["deadLetters"], 0);
    assert!(hook["oldestPendingSeconds"].as_i64().is_some(), "{hook}");
    // `sinks test` says what the receiver answers.
    let test = gitward_in(
        host.dir.path(),
        &["sinks", "test", "hook", "--config", "gitward.yaml"],
    );
    assert_eq!(test.code, 1);
    assert!(
        test.stdout
            .contains("not delivered, a retry could succeed: HTTP 503"),
        "{}",
        test.stdout
    );
    receiver.status.store(204, Ordering::SeqCst);
    let test = gitward_in(
        host.dir.path(),
        &["sinks", "test", "hook", "--config", "gitward.yaml"],
    )
    .expect(0);
    assert!(test.stdout.contains("delivered"), "{}", test.stdout);
    host.reconcile(&[]).expect(0);
    let bodies = receiver.bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 5, "the test event and the backlog");
    assert!(bodies[0].contains("dev.gitward.sink.test"));
    let delivered: Vec<Value> = bodies[1..]
        .iter()
        .map(|b| serde_json::from_str(b).expect("JSON"))
        .collect();
    assert_eq!(kinds(&delivered), ISSUED);
    // In the outbox's order.
    let listed = gitward_in(
        host.dir.path(),
        &["events", "--config", "gitward.yaml", "--format", "json"],
    )
    .expect(0);
    let listed: Vec<String> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["id"].to_string())
        .collect();
    let delivered: Vec<String> = delivered.iter().map(|e| e["id"].to_string()).collect();
    assert_eq!(delivered, listed);
    assert_eq!(sink_state(host.dir.path(), "hook")["backlog"], 0);
}

/// A crash anywhere in a reconcile or its delivery (as `kill -9`): run again, every event
/// arrives. Only a crash after the receiver took a batch and before that was recorded sends
/// the batch twice (delivery is at least once); the ids say which events are the same.
#[test]
fn a_crash_at_any_point_loses_no_event() {
    let mut point = 1;
    let mut twice = Vec::new();
    loop {
        let host = host_with(&sink("audit", "file", "audit-log", "  minSeverity: info\n"));
        endpoints(&host, &file_endpoint(&host, "audit-log", "events.jsonl"));
        let finished = host.reconcile_crashing_at(point);
        host.reconcile(&[]).expect(0);
        let events = written(&host, "events.jsonl");
        let mut ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 4, "point {point}: {events:?}");
        if events.len() != 4 {
            assert_eq!(events.len(), 8, "point {point}: the batch once more");
            twice.push(point);
        }
        if finished {
            break;
        }
        point += 1;
    }
    assert!(point > 5, "the run passes through {point} crash points");
    assert_eq!(twice.len(), 1, "a batch sent twice at points {twice:?}");
}

#[test]
fn the_file_sink_rotates_by_size_and_keeps_as_many_files_as_asked() {
    let host = host_with(&sink("audit", "file", "audit-log", "  minSeverity: info\n"));
    let file = host.dir.path().join("events.jsonl");
    endpoints(
        &host,
        &format!(
            "  audit-log: {{url: \"file://{}\", rotateBytes: 3000, keep: 2}}\n",
            file.display()
        ),
    );
    host.reconcile(&[]).expect(0);
    for n in 0..6 {
        host.repo.write(
            &format!("more-{n}.yaml"),
            certificate(
                &format!("more-{n}"),
                &format!("  dnsNames: [more-{n}.example.com]\n"),
            ),
        );
        host.repo.commit(&format!("Certificate {n}"));
        host.reconcile(&[]).expect(0);
    }
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", file.display()));
    assert!(rotated(1).exists() && rotated(2).exists());
    assert!(!rotated(3).exists(), "two rotated files are kept");
    for path in [file.clone(), rotated(1), rotated(2)] {
        let size = std::fs::metadata(&path).expect("file").len();
        assert!(size <= 3000, "{} is {size} bytes", path.display());
    }
    // The newest events are in the current file, whole lines of JSON.
    let newest = written(&host, "events.jsonl");
    assert_eq!(
        newest.last().map(|e| e["subject"].clone()),
        Some(Value::from("Certificate/more-5"))
    );
}
