//! Gates enforced by the daemon: the gate in force judges a change, a closed window holds a
//! change back until it opens (applied then without a new commit), a newer head supersedes a
//! pending one, and renewals go on during freezes unless the gate says otherwise.

use crate::common;

use chrono::{DateTime, Duration, Timelike, Utc};

use common::host::{Host, ISSUERS, certificate};
use common::peers::Daemon;

/// Monday 2026-11-30 at `hour`:00 UTC, as `--now` takes it.
fn monday(hour: u32) -> String {
    format!("2026-11-30T{hour:02}:00:00Z")
}

/// A gate on prod certificates open on weekdays from 09:00 to 17:00 UTC, with `extra`
/// requirements.
fn office_hours(extra: &str) -> String {
    format!(
        "apiVersion: gitward/v1\nkind: Gate\nmetadata: {{name: office-hours}}\nspec:\n  appliesTo: {{kinds: [Certificate], selector: {{env: prod}}}}\n  require:\n    window:\n      timezone: UTC\n      allow: [{{days: [Mon, Tue, Wed, Thu, Fri], from: '09:00', to: '17:00'}}]\n{extra}"
    )
}

/// Tuesday 2026-12-01 10:00 UTC in Unix seconds, when what these tests issue is valid.
fn tuesday_ten() -> i64 {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .expect("a time")
        .timestamp()
}

fn summary(host: &Host) -> String {
    host.repo.git(&["show", "gitward/status:summary.yaml"])
}

fn note(host: &Host, rev: &str) -> String {
    host.repo.git(&["notes", "--ref=gitward", "show", rev])
}

fn with_b() -> String {
    certificate("b", "  dnsNames: [b.example.com]\n")
}

/// A host whose first commit (certificate `a` and the office-hours gate) is applied.
fn gated_host() -> Host {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("a.yaml", &a),
        ("gate.yaml", &office_hours("")),
    ]);
    host.reconcile(&["--now", &monday(10)]).expect(0);
    host
}

#[test]
fn a_pending_commit_is_applied_when_its_window_opens_without_a_new_commit() {
    let host = gated_host();
    host.repo.write("b.yaml", with_b());
    let head = host.repo.commit("Add b");
    // Monday 18:00: closed until Tuesday 09:00.
    let run = host.reconcile(&["--now", &monday(18)]).expect(1);
    assert!(
        run.stdout.contains("pending") && run.stdout.contains("window opens, 2026-12-01T09:00:00Z"),
        "{}",
        run.stdout
    );
    assert!(!host.out("b").join("cert.pem").exists());
    let status = summary(&host);
    assert!(status.contains("result: pending"), "{status}");
    assert!(status.contains("opensAt: 2026-12-01T09:00:00Z"), "{status}");
    assert!(note(&host, &head).contains("result: pending"));
    // Still closed at 08:59 the next day, open at 09:00: the same commit, no new one.
    host.reconcile(&["--now", "2026-12-01T08:59:00Z"]).expect(1);
    assert!(!host.out("b").join("cert.pem").exists());
    let run = host.reconcile(&["--now", "2026-12-01T09:00:00Z"]).expect(0);
    assert!(
        run.stdout.contains("issued    Certificate/b"),
        "{}",
        run.stdout
    );
    host.verify_at("b", Some(tuesday_ten())).expect(0);
    assert_eq!(host.repo.git(&["rev-parse", "main"]), head);
    let gate = host
        .repo
        .git(&["show", "gitward/status:status/gate/office-hours.yaml"]);
    assert!(gate.contains("outcome: pass"), "{gate}");
    assert!(note(&host, &head).contains("result: applied"));
}

#[test]
fn a_newer_head_supersedes_a_pending_one() {
    let host = gated_host();
    host.repo.write("b.yaml", with_b());
    let pending = host.repo.commit("Add b");
    host.reconcile(&["--now", &monday(18)]).expect(1);
    host.repo
        .write("c.yaml", certificate("c", "  dnsNames: [c.example.com]\n"));
    let newer = host.repo.commit("Add c");
    host.reconcile(&["--now", &monday(19)]).expect(1);
    assert!(summary(&host).contains(&format!("source: {newer}")));
    let run = host.reconcile(&["--now", "2026-12-01T09:00:00Z"]).expect(0);
    assert!(
        run.stdout.contains("issued    Certificate/b"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("issued    Certificate/c"),
        "{}",
        run.stdout
    );
    let status = summary(&host);
    assert!(status.contains(&format!("applied: {newer}")), "{status}");
    // The superseded commit's record says it waited; it was never applied on its own.
    assert!(note(&host, &pending).contains("result: pending"));
}

#[test]
fn a_change_that_weakens_its_own_gate_is_judged_by_the_gate_in_force() {
    let host = gated_host();
    // The change deletes the gate and adds a prod certificate, out of hours.
    host.repo.remove("gate.yaml");
    host.repo.write("b.yaml", with_b());
    host.repo.commit("Drop the gate, add b");
    let run = host.reconcile(&["--now", &monday(18)]).expect(1);
    assert!(run.stdout.contains("pending"), "{}", run.stdout);
    assert!(!host.out("b").join("cert.pem").exists());
    // A change that only edits the gate is judged by the gate as it was: it applies to
    // certificates, so a gate-only change passes and the weaker gate is then in force.
    host.repo.git(&["reset", "-q", "--hard", "HEAD~1"]);
    host.repo.write(
        "gate.yaml",
        office_hours("").replace("from: '09:00', to: '17:00'", "from: '00:00', to: '24:00'"),
    );
    host.repo.commit("Open the gate around the clock");
    host.reconcile(&["--now", &monday(18)]).expect(0);
    host.repo.write("b.yaml", with_b());
    host.repo.commit("Add b");
    host.reconcile(&["--now", &monday(19)]).expect(0);
    host.verify_at("b", Some(tuesday_ten())).expect(0);
}

#[test]
fn plan_shows_what_the_daemon_will_decide() {
    let host = gated_host();
    host.repo.git(&["checkout", "-q", "-b", "change"]);
    host.repo.write("b.yaml", with_b());
    host.repo.commit("Add b");
    let plan = |now: &str| {
        host.repo.gitward(&[
            "plan", "--base", "main", "--head", "change", "--format", "json", "--now", now,
        ])
    };
    let pending: serde_json::Value =
        serde_json::from_str(&plan(&monday(18)).expect(0).stdout).expect("json");
    assert_eq!(pending["verdict"], "pending");
    assert_eq!(pending["opensAt"], "2026-12-01T09:00:00Z");
    assert_eq!(pending["gates"][0]["outcome"], "pending");
    let open: serde_json::Value =
        serde_json::from_str(&plan(&monday(10)).expect(0).stdout).expect("json");
    assert_eq!(open["verdict"], "apply");
    assert_eq!(open["gates"][0]["outcome"], "pass");
}

#[test]
fn renewals_go_on_during_a_freeze_unless_the_gate_follows_the_window() {
    let freeze = "      deny: [{from: 2026-12-20, to: 2027-01-04, reason: year-end freeze}]\n";
    let a = certificate("a", "  dnsNames: [a.example.com]\n  duration: 30d\n");
    for (renewals, renewed) in [("anytime", true), ("followWindow", false)] {
        let gate = office_hours(&format!("    renewals: {renewals}\n    expiryMargin: 5d\n"))
            .replace("      allow:", &format!("{freeze}      allow:"));
        let host = Host::new(&[
            ("issuers.yaml", ISSUERS),
            ("a.yaml", &a),
            ("gate.yaml", &gate),
        ]);
        // Issued on 2026-12-02; due for renewal 20 days on, during the freeze.
        host.reconcile(&["--now", "2026-12-02T10:00:00Z"]).expect(0);
        let serial = host.serial("a");
        let run = host.reconcile(&["--now", "2026-12-23T10:00:00Z"]).expect(0);
        assert_eq!(
            host.serial("a") != serial,
            renewed,
            "{renewals}: {}",
            run.stdout
        );
        let status = || {
            host.repo
                .git(&["show", "gitward/status:status/certificate/a.yaml"])
        };
        if !renewed {
            assert!(
                status().contains("the renewal waits for the window of gate `office-hours`"),
                "{}",
                status()
            );
            // Expiry beats freeze: within 5 days of notAfter (2027-01-01) it renews.
            let run = host.reconcile(&["--now", "2026-12-28T10:00:00Z"]).expect(0);
            assert!(
                run.stdout.contains("renewed   Certificate/a  renewed while the window of gate `office-hours` is closed"),
                "{}",
                run.stdout
            );
            assert!(!status().contains("waits for the window"), "{}", status());
        }
    }
}

#[test]
fn the_daemon_sleeps_until_the_window_opens_and_applies_the_pending_commit() {
    // A window that opens at the next whole minute (or the one after, if that is too close
    // to set up in time) and stays open for an hour, every day.
    let now = Utc::now();
    let mut opens: DateTime<Utc> = now
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("a minute")
        + Duration::minutes(1);
    if opens - now < Duration::seconds(20) {
        opens += Duration::minutes(1);
    }
    let closes = opens + Duration::hours(1);
    let gate = office_hours("").replace(
        "allow: [{days: [Mon, Tue, Wed, Thu, Fri], from: '09:00', to: '17:00'}]",
        &format!(
            "allow: [{{from: '{}', to: '{}'}}]",
            opens.format("%H:%M"),
            closes.format("%H:%M")
        ),
    );
    // Applied while nothing is gated yet; the gate then governs what comes after.
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    host.reconcile(&[]).expect(0);
    host.repo.write("gate.yaml", &gate);
    host.repo.commit("Gate prod changes");
    host.reconcile(&[]).expect(0);
    host.repo.write("b.yaml", with_b());
    let head = host.repo.commit("Add b");
    let daemon = Daemon::gitward(host.dir.path());
    daemon.wait_until("the commit is pending", || {
        summary(&host).contains("result: pending")
    });
    assert!(!host.out("b").join("cert.pem").exists());
    // No new commit, no trigger: the daemon wakes when the window opens.
    let applied = || host.out("b").join("cert.pem").exists();
    let mut waited = 0;
    while !applied() && waited < 3 {
        waited += 1;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            daemon.wait_until("the window opens", applied)
        }));
    }
    assert!(applied(), "not applied; log:\n{}", daemon.log());
    assert!(Utc::now() >= opens, "applied before the window opened");
    daemon.wait_until("the status records it", || {
        summary(&host).contains(&format!("applied: {head}"))
    });
}
