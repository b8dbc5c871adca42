//! ACME issuance end to end against Let's Encrypt's `pebble`, which validates every http-01
//! challenge for real by fetching it from the listener gitward runs.

use crate::common;

use common::host::Host;
use common::peers::{Pebble, free_port};

fn acme_repo() -> Vec<(&'static str, String)> {
    vec![
        (
            "issuers.yaml",
            "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: public}\nspec:\n  acme: {account: default}\n".to_owned(),
        ),
        (
            "certificates.yaml",
            ["www", "api"]
                .iter()
                .map(|n| {
                    format!(
                        "apiVersion: gitward/v1\nkind: Certificate\nmetadata: {{name: {n}}}\nspec:\n  issuerRef: public\n  dnsNames: [{n}.gitward.test, {n}-alt.gitward.test]\n  keyAlgorithm: ECDSA-P384\n  duration: 90d\n  target: web\n"
                    )
                })
                .collect::<Vec<_>>()
                .join("---\n"),
        ),
    ]
}

fn host_with(pebble: &Pebble, http01_port: u16) -> Host {
    let files = acme_repo();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let host = Host::new(&files);
    host.config(&format!(
        "acme:\n  default:\n    directory: {}\n    contact: mailto:ops@gitward.test\n    http01Listen: 127.0.0.1:{http01_port}\n    trustedRoots: {}\n",
        pebble.directory,
        pebble.tls_ca.display()
    ));
    host
}

#[test]
fn certificates_are_ordered_from_pebble_with_http01() {
    let peers = tempfile::tempdir().expect("tempdir");
    let pebble = Pebble::start(peers.path());
    let host = host_with(&pebble, pebble.http_port);
    let run = host.reconcile(&[]).expect(0);
    assert!(
        run.stdout.contains("issued    Certificate/www"),
        "{}",
        run.stdout
    );
    let root = pebble.issuing_root(peers.path());
    for name in ["www", "api"] {
        let dir = host.out(name);
        let text = host.text(&dir.join("cert.pem"));
        assert!(
            text.contains(&format!("DNS:{name}.gitward.test"))
                && text.contains(&format!("DNS:{name}-alt.gitward.test")),
            "{text}"
        );
        assert!(text.contains("NIST CURVE: P-384"), "{text}");
        // The ACME CA sends its chain, not its root: no ca.pem.
        assert!(!dir.join("ca.pem").exists());
        let fullchain = std::fs::read_to_string(dir.join("fullchain.pem")).expect("fullchain");
        assert!(fullchain.matches("BEGIN CERTIFICATE").count() >= 2);
        host.openssl(&[
            "verify",
            "-CAfile",
            &root.to_string_lossy(),
            "-untrusted",
            &dir.join("chain.pem").to_string_lossy(),
            &dir.join("cert.pem").to_string_lossy(),
        ])
        .expect(0);
        // The key on disk is the one certified.
        let public = |args: &[&str]| host.openssl(args).expect(0).stdout;
        assert_eq!(
            public(&[
                "pkey",
                "-pubout",
                "-in",
                &dir.join("key.pem").to_string_lossy()
            ]),
            public(&[
                "x509",
                "-noout",
                "-pubkey",
                "-in",
                &dir.join("cert.pem").to_string_lossy()
            ])
        );
    }
    let status = host
        .repo
        .git(&["show", "gitward/status:status/certificate/www.yaml"]);
    assert!(status.contains("issuer: public"), "{status}");
    // The account is registered once and kept in the secret store.
    let account = host.dir.path().join("state/acme/default.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&account)
        .expect("account")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Nothing is due: nothing is ordered, nothing new in Git.
    let commits = host.status_commits();
    let run = host.reconcile(&[]).expect(0);
    assert!(run.stdout.contains("status unchanged"), "{}", run.stdout);
    assert_eq!(host.status_commits(), commits);

    // Past the renewal time (a third of 90 days before the end pebble chose), the account
    // kept in the store orders again.
    let serial = host.serial("www");
    let not_after = host
        .openssl(&[
            "x509",
            "-noout",
            "-enddate",
            "-in",
            &host.out("www").join("cert.pem").to_string_lossy(),
        ])
        .stdout;
    let not_after = not_after.trim().trim_start_matches("notAfter=");
    let later = chrono::NaiveDateTime::parse_from_str(not_after, "%b %e %H:%M:%S %Y GMT")
        .expect("openssl's date")
        .and_utc()
        - chrono::Duration::days(29);
    let run = host.reconcile(&["--now", &later.to_rfc3339()]).expect(0);
    assert!(
        run.stdout.contains("renewed   Certificate/www"),
        "{}",
        run.stdout
    );
    assert_ne!(host.serial("www"), serial);
}

#[test]
fn an_unanswered_challenge_fails_the_certificate_and_changes_nothing_on_disk() {
    let peers = tempfile::tempdir().expect("tempdir");
    let pebble = Pebble::start(peers.path());
    // gitward answers on a port pebble does not ask on: validation must fail.
    let host = host_with(&pebble, free_port());
    let run = host.reconcile(&[]).expect(1);
    // pebble's own report of the fetch it tried.
    assert!(
        run.stdout.contains("/.well-known/acme-challenge/")
            && run.stdout.contains("urn:ietf:params:acme:error:connection"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("failed    Certificate/www"),
        "{}",
        run.stdout
    );
    assert!(!host.out("www").join("cert.pem").exists());
    let summary = host.repo.git(&["show", "gitward/status:summary.yaml"]);
    assert!(summary.contains("result: failed"), "{summary}");
}

#[test]
fn a_crash_at_any_point_finishes_the_same_orders() {
    let peers = tempfile::tempdir().expect("tempdir");
    let pebble = Pebble::start(peers.path());
    let mut point = 1;
    loop {
        let host = host_with(&pebble, pebble.http_port);
        let issued_before = pebble.issued();
        let finished = host.reconcile_crashing_at(point);
        let run = host.reconcile(&[]).expect(0);
        assert_eq!(host.status_commits(), 1, "point {point}: {}", run.stdout);
        // The recorded order is finished, not ordered again: one certificate each from the CA.
        assert_eq!(pebble.issued() - issued_before, 2, "point {point}");
        for name in ["www", "api"] {
            host.assert_on_disk_is_in_status(name, &format!("point {point}"));
        }
        assert_eq!(
            host.keys_in_flight(),
            0,
            "point {point}: nothing left staged or ordered"
        );
        if finished {
            break;
        }
        point += 1;
    }
    assert!(point > 5, "the run passes through {point} crash points");
}

#[test]
fn the_daemon_orders_from_pebble_too() {
    let peers = tempfile::tempdir().expect("tempdir");
    let pebble = Pebble::start(peers.path());
    let host = host_with(&pebble, pebble.http_port);
    let daemon = common::peers::Daemon::gitward(host.dir.path());
    daemon.wait_until("a certificate from the daemon", || {
        host.out("api").join("cert.pem").exists()
    });
    assert_eq!(pebble.issued(), 2, "{}", daemon.log());
}
