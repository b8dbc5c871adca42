//! `gitward run`: webhook-triggered reconciles, refused deliveries, readiness, one daemon per
//! state directory, and a clean exit on SIGTERM.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::gitward_in;
use common::host::{Host, ISSUERS, certificate};
use common::peers::{Daemon, free_port, http, signed_with};

const SECRET: &str = "generic hook secret";

#[test]
fn a_signed_push_triggers_a_reconcile_and_sigterm_stops_the_daemon() {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    let port = free_port();
    std::fs::write(host.dir.path().join("hook-secret"), format!("{SECRET}\n")).expect("secret");
    host.config(&format!(
        "listen: 127.0.0.1:{port}\nwebhooks:\n  generic: {{secretFile: hook-secret}}\n"
    ));
    let mut daemon = Daemon::gitward(host.dir.path());
    daemon.wait_until("the daemon becomes ready", || {
        http(port, "/readyz", None).0 == 200
    });
    assert_eq!(http(port, "/healthz", None).0, 200);
    // The container health check asks the same endpoint, with no HTTP client needed.
    let probe = gitward_in(
        host.dir.path(),
        &["healthcheck", "--config", "gitward.yaml"],
    )
    .expect(0);
    assert_eq!(probe.stdout, "ok\n");
    assert!(host.out("a").join("cert.pem").exists());
    // Logs are JSON lines: each issued resource inside the reconcile's span, then the result.
    let first = host.repo.git(&["rev-parse", "main"]);
    let log = daemon.log();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events.iter().any(|e| e["fields"]["message"] == "resource"
        && e["fields"]["resource"] == "a"
        && e["span"]["commit"] == first.as_str()));
    assert!(events.iter().any(|e| e["fields"]["message"] == "reconciled"
        && e["fields"]["commit"] == first.as_str()
        && e["fields"]["result"] == "applied"));

    // A second daemon on the same state directory refuses to start.
    let second = Command::new(env!("CARGO_BIN_EXE_gitward"))
        .args(["run", "--config", "gitward.yaml"])
        .current_dir(host.dir.path())
        .output()
        .expect("runs");
    assert_eq!(second.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another gitward daemon is running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // A merge adds a certificate: the daemon watches the local repository and applies it
    // without being told.
    let b = certificate("b", "  dnsNames: [b.example.com]\n");
    host.repo.write("b.yaml", &b);
    let head = host.repo.commit("Add b");
    daemon.wait_until("the new commit is reconciled", || {
        host.out("b").join("cert.pem").exists()
            && host
                .repo
                .git(&["show", "gitward/status:summary.yaml"])
                .contains(&head)
    });
    let (code, status) = http(port, "/status", None);
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["source"], head.as_str());
    assert_eq!(status["result"], "applied");
    // Nothing is new when the notification comes: its reconcile does nothing.
    let unchanged = || reconciles(port, "unchanged");
    let before = unchanged();

    // A signed push notification triggers a reconcile too.
    let body = format!(r#"{{"ref": "refs/heads/main", "after": "{head}"}}"#).into_bytes();
    let signature = signed_with(SECRET.as_bytes(), &body);
    let headers = [
        ("X-Signature-256", signature.as_str()),
        ("X-Delivery-Id", "delivery-1"),
    ];
    let (code, text) = http(port, "/hooks/generic", Some((&body, &headers)));
    assert_eq!((code, text.as_str()), (202, "reconcile queued\n"));
    daemon.wait_until("the notification is reconciled", || unchanged() > before);

    // The same delivery again, a wrong signature, an oversized body, an unknown hook.
    let (code, _) = http(port, "/hooks/generic", Some((&body, &headers)));
    assert_eq!(code, 200);
    let forged = [
        ("X-Signature-256", "sha256=00"),
        ("X-Delivery-Id", "delivery-2"),
    ];
    assert_eq!(http(port, "/hooks/generic", Some((&body, &forged))).0, 401);
    let huge = vec![b' '; 6 * 1024 * 1024];
    let huge_signature = signed_with(SECRET.as_bytes(), &huge);
    let huge_headers = [("X-Signature-256", huge_signature.as_str())];
    assert_eq!(
        http(port, "/hooks/generic", Some((&huge, &huge_headers))).0,
        413
    );
    assert_eq!(http(port, "/hooks/github", Some((&body, &headers))).0, 404);

    let (code, metrics) = http(port, "/metrics", None);
    assert_eq!(code, 200);
    for expected in [
        "gitward_certificate_expiry_seconds{kind=\"Certificate\",name=\"b\"}",
        "gitward_webhook_requests_total{provider=\"generic\",outcome=\"triggered\"} 1",
        "gitward_webhook_requests_total{provider=\"generic\",outcome=\"replayed\"} 1",
        "gitward_webhook_requests_total{provider=\"generic\",outcome=\"unauthenticated\"} 1",
        "gitward_reconcile_duration_seconds_count",
        &format!("gitward_last_reconciled_commit{{commit=\"{head}\"}} 1"),
    ] {
        assert!(metrics.contains(expected), "{expected} not in:\n{metrics}");
    }

    // SIGHUP reloads the host config: a broken one is refused and the one in force stays; a
    // good one that adds the GitHub hook makes it answer.
    let config = host.dir.path().join("gitward.yaml");
    let good = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, "repo: [broken\n").expect("config");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_until("the broken config is refused", || {
        daemon.log().contains("host config not reloaded")
    });
    assert_eq!(http(port, "/healthz", None).0, 200);
    std::fs::write(host.dir.path().join("github-secret"), "gh\n").expect("secret");
    std::fs::write(
        &config,
        good.replace(
            "  generic: {secretFile: hook-secret}\n",
            "  generic: {secretFile: hook-secret}\n  github: {secretFile: github-secret}\n",
        ),
    )
    .expect("config");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    let ping = br#"{"zen": "Keep it logically awesome."}"#;
    let ping_signature = signed_with(b"gh", ping);
    let ping_headers = [
        ("X-GitHub-Event", "ping"),
        ("X-Hub-Signature-256", ping_signature.as_str()),
    ];
    daemon.wait_until("the reloaded config adds the GitHub hook", || {
        http(port, "/hooks/github", Some((ping, &ping_headers))).0 == 200
    });

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.exit_code(), Some(0));
    drop(daemon);
    let probe = gitward_in(
        host.dir.path(),
        &["healthcheck", "--config", "gitward.yaml"],
    );
    assert_ne!(probe.code, 0, "nothing answers once the daemon is gone");

    // Delivery ids outlive the daemon: the same delivery after a restart is still a replay.
    let daemon = Daemon::gitward(host.dir.path());
    daemon.wait_until("the restarted daemon becomes ready", || {
        http(port, "/readyz", None).0 == 200
    });
    assert_eq!(
        http(port, "/hooks/generic", Some((&body, &headers))),
        (200, "delivery seen before: ignored\n".to_owned())
    );
    // A flood of forged deliveries from one source is told to wait; an authentic delivery
    // from the same source still gets through.
    let codes: Vec<u16> = (0..150)
        .map(|_| http(port, "/hooks/generic", Some((&body, &forged))).0)
        .collect();
    assert_eq!(codes[0], 401);
    assert_eq!(codes.last(), Some(&429));
    let next = [
        ("X-Signature-256", signature.as_str()),
        ("X-Delivery-Id", "delivery-3"),
    ];
    assert_eq!(
        http(port, "/hooks/generic", Some((&body, &next))),
        (202, "reconcile queued\n".to_owned())
    );
}

#[test]
fn sigterm_during_a_reconcile_finishes_it_and_a_restart_changes_nothing() {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    let started = host.dir.path().join("reload-started");
    let script = format!("touch {}; sleep 2", started.display());
    host.config_reload(&["/bin/sh", "-c", &script], "");
    let mut daemon = Daemon::gitward(host.dir.path());
    daemon.wait_until("the reload command runs", || started.exists());
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.exit_code(), Some(0));
    // The reconcile in progress was finished: its status is recorded and its files are there.
    let head = host.repo.git(&["rev-parse", "main"]);
    assert!(
        host.repo
            .git(&["show", "gitward/status:summary.yaml"])
            .contains(&head),
        "{}",
        daemon.log()
    );
    let serial = host.serial("a");
    let status = host.repo.git(&["rev-parse", "gitward/status"]);

    let daemon = Daemon::gitward(host.dir.path());
    daemon.wait_until("the restarted daemon reconciles", || {
        daemon.log().contains("\"message\":\"reconciled\"")
    });
    assert_eq!(host.serial("a"), serial, "nothing was issued again");
    assert_eq!(host.repo.git(&["rev-parse", "gitward/status"]), status);
}

#[test]
fn a_commit_to_an_issuer_reissues_what_it_signed() {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    let daemon = Daemon::gitward(host.dir.path());
    let issuer = || {
        host.openssl(&[
            "x509",
            "-noout",
            "-issuer",
            "-in",
            &host.out("a").join("cert.pem").to_string_lossy(),
        ])
        .stdout
    };
    daemon.wait_until("the certificate is issued", || {
        issuer().contains("Test Issuing CA")
    });
    let serial = host.serial("a");
    // The commit changes only the issuer; the certificate under it follows.
    host.repo.edit(
        "issuers.yaml",
        "commonName: Test Issuing CA",
        "commonName: Test Issuing CA 2",
    );
    host.repo.commit("Rename the issuing CA");
    daemon.wait_until("the certificate is reissued under the new CA", || {
        issuer().contains("Test Issuing CA 2")
    });
    assert_ne!(host.serial("a"), serial);
    assert_eq!(host.verify("a").code, 0);
}

#[test]
fn webhook_secrets_are_read_next_to_the_config_and_must_not_be_empty() {
    let host = Host::new(&[("issuers.yaml", ISSUERS)]);
    let port = free_port();
    host.config(&format!(
        "listen: 127.0.0.1:{port}\nwebhooks:\n  gitlab: {{tokenFile: secrets/gitlab-token}}\n"
    ));
    // Started from another directory: the relative path is still the config's neighbour.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let config = host.dir.path().join("gitward.yaml");
    let config = config.to_string_lossy();
    let run = gitward_in(elsewhere.path(), &["run", "--config", &config]).expect(2);
    let token = host.dir.path().join("secrets/gitlab-token");
    assert_eq!(
        run.stderr,
        format!(
            "error: invalid host config:\n{config}:12:23: webhooks.gitlab.tokenFile: cannot read {}: No such file or directory (os error 2)\n",
            token.display()
        )
    );
    std::fs::create_dir_all(token.parent().expect("parent")).expect("mkdir");
    std::fs::write(&token, "\n").expect("token");
    let run = gitward_in(elsewhere.path(), &["run", "--config", &config]).expect(2);
    assert_eq!(
        run.stderr,
        format!(
            "error: invalid host config:\n{config}:12:23: webhooks.gitlab.tokenFile: {} is empty; gitward does not start with an empty secret\n",
            token.display()
        )
    );

    std::fs::write(&token, "gitlab token\n").expect("token");
    let mut daemon = Daemon::spawn(
        env!("CARGO_BIN_EXE_gitward"),
        &["run", "--config", &config, "--log-format", "json"],
        elsewhere.path(),
        &[],
    );
    daemon.wait_for(port);
    let body = br#"{"object_kind": "push", "ref": "refs/heads/main"}"#;
    let push = [("X-Gitlab-Event", "Push Hook")];
    for (token, code) in [("", 401), ("gitlab token", 202)] {
        let headers = [push[0], ("X-Gitlab-Token", token)];
        assert_eq!(http(port, "/hooks/gitlab", Some((body, &headers))).0, code);
    }
}

/// Opens up to `count` connections to the daemon from the loopback address `source`, each with
/// half a request's headers; stops at the first that cannot connect.
fn unfinished(port: u16, source: [u8; 4], count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        let Some(mut stream) = connect_from(port, source) else {
            break;
        };
        let _ = stream.write_all(b"POST /hooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        held.push(stream);
    }
    held
}

/// A connection to the daemon from the loopback address `source`, if it can be made.
fn connect_from(port: u16, source: [u8; 4]) -> Option<TcpStream> {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind a loopback address");
    socket
        .connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)).into(),
            Duration::from_secs(5),
        )
        .ok()?;
    Some(TcpStream::from(socket))
}

/// Whether the daemon has not closed `stream` (nothing to read yet).
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("non-blocking");
    let mut byte = [0u8; 1];
    let open =
        matches!((&*stream).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).expect("blocking");
    open
}

/// Sends `request` as it is, without waiting for an answer.
fn send(port: u16, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream.write_all(request).expect("send");
    stream
}

/// The status line of the answer on `stream`.
fn status_line(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn clients_that_hold_connections_or_bodies_back_cannot_take_the_daemon_down() {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    let port = free_port();
    std::fs::write(host.dir.path().join("hook-secret"), SECRET).expect("secret");
    host.config(&format!(
        "listen: 127.0.0.1:{port}\nwebhooks:\n  generic: {{secretFile: hook-secret}}\n"
    ));
    // Few file descriptors, as on a host with a low limit: a few hundred connections would
    // take them all.
    let daemon = Daemon::spawn(
        "/bin/sh",
        &[
            "-c",
            "ulimit -n 512 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_gitward"),
            "run",
            "--config",
            "gitward.yaml",
            "--log-format",
            "json",
        ],
        host.dir.path(),
        &[],
    );
    daemon.wait_until("the daemon becomes ready", || {
        http(port, "/readyz", None).0 == 200
    });

    let body = br#"{"ref": "refs/heads/main"}"#;
    let signature = signed_with(SECRET.as_bytes(), body);
    let stalled = send(
        port,
        format!(
            "POST /hooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Signature-256: {signature}\r\nContent-Length: 100\r\n\r\n{{\"ref\": "
        )
        .as_bytes(),
    );

    // One client opens many connections and finishes no request: beyond its share they are
    // closed at once, and others are served while it holds the rest.
    let flood = unfinished(port, [127, 0, 0, 2], 600);
    assert!(flood.len() > 512, "{} connections", flood.len());
    assert_eq!(http(port, "/healthz", None), (200, "ok\n".to_owned()));
    assert_eq!(flood.iter().filter(|s| still_open(s)).count(), 32);
    daemon.wait_until("unfinished requests are closed", || {
        flood.iter().all(|s| !still_open(s))
    });
    drop(flood);

    // Many clients at once, more connections than file descriptors: the daemon stops taking
    // them before it runs out, and a commit is still applied.
    let crowd: Vec<TcpStream> = (2..22)
        .flat_map(|i| unfinished(port, [127, 0, 0, i], 32))
        .collect();
    // What the listener's backlog cannot queue fails to connect.
    assert!(crowd.len() > 512, "{} connections", crowd.len());
    host.repo
        .write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    host.repo.commit("Add b");
    daemon.wait_until("the commit is applied", || {
        host.out("b").join("cert.pem").exists()
    });
    assert!(
        !daemon.log().contains("Too many open files"),
        "{}",
        daemon.log()
    );
    drop(crowd);
    let headers = [("X-Signature-256", signature.as_str())];
    assert_eq!(
        http(port, "/hooks/generic", Some((body, &headers))),
        (202, "reconcile queued\n".to_owned())
    );

    // A body announced too large is refused before it is sent.
    let huge = format!(
        "POST /hooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Signature-256: {signature}\r\nContent-Length: 100000000000\r\n\r\n"
    );
    assert_eq!(
        status_line(send(port, huge.as_bytes())),
        "HTTP/1.1 413 Payload Too Large"
    );
    // The body that stopped coming at the start was not waited for.
    assert_eq!(status_line(stalled), "HTTP/1.1 408 Request Timeout");

    // Clients from many addresses announcing large bodies and sending them slowly: what the
    // daemon holds for them is bounded (64 MiB in all), the one past it is turned away at
    // once, and a small signed delivery, which large ones cannot crowd out, still gets in.
    let large = format!(
        "POST /hooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{{",
        5 * 1024 * 1024
    );
    let hoarders: Vec<TcpStream> = (2..14)
        .map(|i| {
            let mut held = unfinished_from(port, [127, 0, 0, i]);
            held.write_all(large.as_bytes()).expect("send");
            held
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // One address holds one large body at a time: a second is its own to wait for.
    let mut second = unfinished_from(port, [127, 0, 0, 2]);
    second.write_all(large.as_bytes()).expect("send");
    assert_eq!(status_line(second), "HTTP/1.1 429 Too Many Requests");
    let mut one_more = unfinished_from(port, [127, 0, 0, 14]);
    one_more.write_all(large.as_bytes()).expect("send");
    assert_eq!(status_line(one_more), "HTTP/1.1 503 Service Unavailable");
    assert_eq!(
        http(port, "/hooks/generic", Some((body, &headers))),
        (202, "reconcile queued\n".to_owned())
    );
    drop(hoarders);
}

/// One connection from the loopback address `source`, nothing sent yet.
fn unfinished_from(port: u16, source: [u8; 4]) -> TcpStream {
    let stream = connect_from(port, source).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream
}

#[test]
fn an_invalid_head_does_not_stop_the_renewals_of_the_commit_in_force() {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    host.reconcile(&[]).expect(0);
    let serial = host.serial("a");
    let status = || {
        host.repo
            .git(&["show", "gitward/status:status/certificate/a.yaml"])
    };
    let recorded = status();
    host.repo
        .edit("a.yaml", "dnsNames:", "dnsName: typo\n  dnsNames:");
    host.repo.commit("Broken");
    // Long after: the certificate of the commit in force is due.
    let later = (chrono::Utc::now() + chrono::Duration::days(80)).to_rfc3339();
    let run = host.reconcile(&["--now", &later]).expect(1);
    assert!(run.stdout.contains(" failed\n"), "{}", run.stdout);
    assert_ne!(host.serial("a"), serial, "renewed:\n{}", run.stdout);
    assert_ne!(status(), recorded, "the renewal is recorded");
}

/// `gitward_reconciles_total` of `result` on the daemon listening on `port`.
fn reconciles(port: u16, result: &str) -> u64 {
    let (_, metrics) = http(port, "/metrics", None);
    let prefix = format!("gitward_reconciles_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The JSON events of a daemon's log with this message.
fn events(log: &str, message: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["fields"]["message"] == message)
        .collect()
}

/// A time in a log event, in milliseconds.
fn time(field: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(field.as_str().expect("a time"))
        .expect("RFC 3339")
        .timestamp_millis()
}

/// Milliseconds from an event's time to the retry it announces.
fn retry_in(event: &serde_json::Value) -> i64 {
    time(&event["fields"]["retry_at"]) - time(&event["timestamp"])
}

#[test]
fn a_failing_commit_is_retried_with_backoff_and_each_problem_is_logged() {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let acme = "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: public, labels: {env: prod, owner: pki}}\nspec:\n  acme: {account: letsencrypt}\n";
    let www = certificate("www", "  dnsNames: [www.example.com]\n")
        .replace("issuerRef: issuing", "issuerRef: public");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("acme.yaml", acme),
        ("a.yaml", &a),
        ("www.yaml", &www),
    ]);
    let port = free_port();
    std::fs::write(host.dir.path().join("hook-secret"), SECRET).expect("secret");
    host.config(&format!(
        "listen: 127.0.0.1:{port}\nwebhooks:\n  generic: {{secretFile: hook-secret}}\n"
    ));
    let daemon = Daemon::gitward(host.dir.path());
    let failed = || reconciles(port, "failed");
    daemon.wait_until("the commit fails", || failed() == 1);
    let log = daemon.log();
    // Each resource and each problem at the default level.
    let resources = events(&log, "resource");
    assert!(
        resources
            .iter()
            .any(|e| e["fields"]["resource"] == "a" && e["level"] == "INFO")
    );
    assert!(
        resources
            .iter()
            .any(|e| e["fields"]["resource"] == "www" && e["level"] == "WARN")
    );
    let problems = events(&log, "problem");
    assert!(
        problems.iter().any(|e| e["fields"]["problem"]
            .as_str()
            .is_some_and(|p| p.starts_with("Certificate/www: "))),
        "{log}"
    );

    // A trigger with nothing new does not retry it before its time; the retries wait longer
    // each time.
    let body = br#"{"ref": "refs/heads/main"}"#;
    let signature = signed_with(SECRET.as_bytes(), body);
    let headers = [("X-Signature-256", signature.as_str())];
    assert_eq!(http(port, "/hooks/generic", Some((body, &headers))).0, 202);
    daemon.wait_until("the trigger finds nothing to do", || {
        reconciles(port, "unchanged") == 1
    });
    assert_eq!(failed(), 1);
    daemon.wait_until("the commit is retried", || failed() == 2);
    let tries = events(&daemon.log(), "reconciled");
    assert_eq!(tries.len(), 2, "{}", daemon.log());
    assert!(
        time(&tries[1]["timestamp"]) >= time(&tries[0]["fields"]["retry_at"]),
        "{}",
        daemon.log()
    );
    assert!(retry_in(&tries[1]) > retry_in(&tries[0]));

    // A new commit starts again: its first retry comes sooner than the last one.
    host.repo
        .write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    host.repo.commit("Add b");
    daemon.wait_until("the new commit is tried", || failed() == 3);
    let tries = events(&daemon.log(), "reconciled");
    assert!(retry_in(&tries[2]) < retry_in(&tries[1]));
    assert!(host.out("b").join("cert.pem").exists());
    let (_, metrics) = http(port, "/metrics", None);
    assert!(!metrics.contains("result=\"error\""), "{metrics}");
}
