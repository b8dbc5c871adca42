//! The daemon's deliveries: a commit's events reach the receiver without a new trigger, a
//! receiver down keeps them in the backlog across `kill -9` and a restart, and the state of
//! each sink is in `/status` and `/metrics`.

use crate::common;

use std::sync::atomic::Ordering;

use common::host::{Host, ISSUERS, certificate};
use common::peers::{Daemon, free_port, http};
use common::receiver::Receiver;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn hooked_host(receiver: &Receiver, port: u16) -> Host {
    let web = certificate("web", "  dnsNames: [web.example.com]\n");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web),
        (
            "sinks.yaml",
            "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: hook}\nspec: {type: webhook, endpoint: hook, minSeverity: info}\n",
        ),
    ]);
    std::fs::write(host.dir.path().join("hook-secret"), SECRET).expect("secret");
    host.config(&format!(
        "listen: 127.0.0.1:{port}\nendpoints:\n  hook: {{url: \"{}\", secretFile: hook-secret}}\n",
        receiver.url
    ));
    host
}

fn subjects(receiver: &Receiver) -> Vec<String> {
    let mut subjects: Vec<String> = receiver
        .bodies
        .lock()
        .expect("lock")
        .iter()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b).expect("JSON")["subject"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    subjects.sort();
    subjects
}

#[test]
fn a_backlog_survives_kill_9_and_goes_out_when_the_receiver_is_back() {
    let receiver = Receiver::start();
    receiver.status.store(503, Ordering::SeqCst);
    let port = free_port();
    let host = hooked_host(&receiver, port);
    let mut daemon = Daemon::gitward(host.dir.path());
    daemon.wait_for(port);
    daemon.wait_until("the backlog is visible", || {
        let status = http(port, "/status", None).1;
        status.contains("\"backlog\":3") && status.contains("HTTP 503")
    });
    let metrics = http(port, "/metrics", None).1;
    assert!(
        metrics.contains("gitward_sink_backlog{sink=\"hook\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gitward_sink_events_total{sink=\"hook\",outcome=\"failed\"}"),
        "{metrics}"
    );
    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    daemon.exit_code();
    assert!(receiver.bodies.lock().expect("lock").is_empty());

    // Back up, and a daemon started again with its backlog.
    receiver.status.store(204, Ordering::SeqCst);
    let mut daemon = Daemon::gitward(host.dir.path());
    daemon.wait_for(port);
    daemon.wait_until("the backlog is delivered", || {
        receiver.bodies.lock().expect("lock").len() == 3
    });
    assert_eq!(
        subjects(&receiver),
        ["Certificate/web", "Issuer/issuing", "Issuer/root"]
    );
    // A new commit's events follow without another trigger than the commit.
    host.repo.write(
        "api.yaml",
        certificate("api", "  dnsNames: [api.example.com]\n"),
    );
    host.repo.commit("An API certificate");
    daemon.wait_until("the new certificate is told", || {
        subjects(&receiver).contains(&"Certificate/api".to_owned())
    });
    let metrics = http(port, "/metrics", None).1;
    assert!(
        metrics.contains("gitward_sink_events_total{sink=\"hook\",outcome=\"delivered\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gitward_sink_backlog{sink=\"hook\"} 0"),
        "{metrics}"
    );
    assert_eq!(receiver.ids().len(), 4, "each event once");
}
