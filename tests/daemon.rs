//! `gitward run`: webhook-triggered reconciles, refused deliveries, readiness, one daemon per
//! state directory, and a clean exit on SIGTERM.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::host::{Host, ISSUERS, certificate};
use common::peers::free_port;
use common::tool;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "generic hook secret";

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(host: &Host) -> Running {
    let log = std::fs::File::create(host.dir.path().join("daemon.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_gitward"))
        .args(["run", "--config", "gitward.yaml", "--log-format", "json"])
        .current_dir(host.dir.path())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("gitward run starts");
    Running { child }
}

/// `sha256=<hex HMAC-SHA256>` of `body` with `secret`, as the hooks expect.
fn signed_with(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A POST: the body and its headers.
type Post<'a> = (&'a [u8], &'a [(&'a str, &'a str)]);

/// `curl`s `path` on the daemon; returns (HTTP status, body).
fn http(host: &Host, port: u16, path: &str, post: Option<Post<'_>>) -> (u16, String) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let response = host.dir.path().join("response");
    let request = host.dir.path().join("request");
    let mut args: Vec<String> = vec![
        "-s".into(),
        "-o".into(),
        response.to_string_lossy().into_owned(),
        "-w".into(),
        "%{http_code}".into(),
    ];
    if let Some((body, headers)) = post {
        std::fs::write(&request, body).expect("request body");
        args.push("--data-binary".into());
        args.push(format!("@{}", request.display()));
        for (name, value) in headers {
            args.push("-H".into());
            args.push(format!("{name}: {value}"));
        }
    }
    args.push(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = tool("curl", &args, host.dir.path());
    let code = run.stdout.trim().parse().unwrap_or(0);
    (code, std::fs::read_to_string(&response).unwrap_or_default())
}

fn wait_until(what: &str, host: &Host, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}; daemon log:\n{}",
            std::fs::read_to_string(host.dir.path().join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_signed_push_triggers_a_reconcile_and_sigterm_stops_the_daemon() {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    let port = free_port();
    std::fs::write(host.dir.path().join("hook-secret"), format!("{SECRET}\n")).expect("secret");
    host.config(&format!(
        "listen: 127.0.0.1:{port}\nwebhooks:\n  generic: {{secretFile: hook-secret}}\n"
    ));
    let mut daemon = start(&host);
    wait_until("the daemon becomes ready", &host, || {
        http(&host, port, "/readyz", None).0 == 200
    });
    assert_eq!(http(&host, port, "/healthz", None).0, 200);
    assert!(host.out("a").join("cert.pem").exists());
    // Logs are JSON lines: each issued resource inside the reconcile's span, then the result.
    let first = host.repo.git(&["rev-parse", "main"]);
    let log = std::fs::read_to_string(host.dir.path().join("daemon.log")).expect("log");
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
    wait_until("the new commit is reconciled", &host, || {
        host.out("b").join("cert.pem").exists()
            && host
                .repo
                .git(&["show", "gitward/status:summary.yaml"])
                .contains(&head)
    });
    let (code, status) = http(&host, port, "/status", None);
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["source"], head.as_str());
    assert_eq!(status["result"], "applied");
    let applied = |host: &Host| -> u64 {
        let (_, metrics) = http(host, port, "/metrics", None);
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("gitward_reconciles_total{result=\"applied\"} "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = applied(&host);

    // A signed push notification triggers a reconcile too.
    let body = format!(r#"{{"ref": "refs/heads/main", "after": "{head}"}}"#).into_bytes();
    let signature = signed_with(SECRET.as_bytes(), &body);
    let headers = [
        ("X-Signature-256", signature.as_str()),
        ("X-Delivery-Id", "delivery-1"),
    ];
    let (code, text) = http(&host, port, "/hooks/generic", Some((&body, &headers)));
    assert_eq!((code, text.as_str()), (202, "reconcile queued\n"));
    wait_until("the notification is reconciled", &host, || {
        applied(&host) > before
    });

    // The same delivery again, a wrong signature, an oversized body, an unknown hook.
    let (code, _) = http(&host, port, "/hooks/generic", Some((&body, &headers)));
    assert_eq!(code, 200);
    let forged = [
        ("X-Signature-256", "sha256=00"),
        ("X-Delivery-Id", "delivery-2"),
    ];
    assert_eq!(
        http(&host, port, "/hooks/generic", Some((&body, &forged))).0,
        401
    );
    let huge = vec![b' '; 6 * 1024 * 1024];
    let huge_signature = signed_with(SECRET.as_bytes(), &huge);
    let huge_headers = [("X-Signature-256", huge_signature.as_str())];
    assert_eq!(
        http(&host, port, "/hooks/generic", Some((&huge, &huge_headers))).0,
        413
    );
    assert_eq!(
        http(&host, port, "/hooks/github", Some((&body, &headers))).0,
        404
    );

    let (code, metrics) = http(&host, port, "/metrics", None);
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
    let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
    let config = host.dir.path().join("gitward.yaml");
    let good = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, "repo: [broken\n").expect("config");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    wait_until("the broken config is refused", &host, || {
        std::fs::read_to_string(host.dir.path().join("daemon.log"))
            .unwrap_or_default()
            .contains("host config not reloaded")
    });
    assert_eq!(http(&host, port, "/healthz", None).0, 200);
    std::fs::write(host.dir.path().join("github-secret"), "gh\n").expect("secret");
    std::fs::write(
        &config,
        good.replace(
            "  generic: {secretFile: hook-secret}\n",
            "  generic: {secretFile: hook-secret}\n  github: {secretFile: github-secret}\n",
        ),
    )
    .expect("config");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let ping = br#"{"zen": "Keep it logically awesome."}"#;
    let ping_signature = signed_with(b"gh", ping);
    let ping_headers = [
        ("X-GitHub-Event", "ping"),
        ("X-Hub-Signature-256", ping_signature.as_str()),
    ];
    wait_until("the reloaded config adds the GitHub hook", &host, || {
        http(&host, port, "/hooks/github", Some((ping, &ping_headers))).0 == 200
    });

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = daemon.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}
