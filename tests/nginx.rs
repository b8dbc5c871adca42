//! A real nginx serving what gitward issued: `openssl s_client` accepts it with the root as
//! the only trust anchor, and after a renewal and the target's reload command nginx serves the
//! new certificate.

use crate::common;

use common::host::{Host, ISSUERS, certificate};
use common::peers::Nginx;

/// The serial of the certificate nginx serves, verified against `ca` for `host_name` as at
/// `at`.
fn served_serial(
    host: &Host,
    port: u16,
    ca: &str,
    host_name: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    let connect = format!("127.0.0.1:{port}");
    let at = at.timestamp().to_string();
    let run = host
        .openssl(&[
            "s_client",
            "-connect",
            &connect,
            "-servername",
            host_name,
            "-verify_hostname",
            host_name,
            "-CAfile",
            ca,
            "-verify_return_error",
            "-attime",
            &at,
        ])
        .expect(0);
    assert!(
        run.stdout.contains("Verify return code: 0 (ok)"),
        "{}",
        run.stdout
    );
    let begin = run
        .stdout
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = run
        .stdout
        .find("-----END CERTIFICATE-----")
        .expect("its end");
    let served = host.dir.path().join("served.pem");
    std::fs::write(&served, &run.stdout[begin..end + 25]).expect("served.pem");
    host.openssl(&[
        "x509",
        "-noout",
        "-serial",
        "-in",
        &served.to_string_lossy(),
    ])
    .expect(0)
    .stdout
}

#[test]
fn nginx_serves_the_issued_certificate_and_the_renewed_one_after_reload() {
    let www = certificate(
        "www",
        "  dnsNames: [www.example.com]\n  keyAlgorithm: ECDSA-P256\n  duration: 30d\n  renewBefore: 10d\n",
    );
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("www.yaml", &www)]);
    host.config_reload(&["/bin/true"], "");
    host.reconcile(&[]).expect(0);

    let nginx = Nginx::start(host.dir.path(), &host.out("www"));
    let ca = host
        .out("www")
        .join("ca.pem")
        .to_string_lossy()
        .into_owned();
    let first = served_serial(
        &host,
        nginx.port,
        &ca,
        "www.example.com",
        chrono::Utc::now(),
    );
    assert_eq!(first, host.serial("www"));
    // A name the certificate does not carry is refused.
    let connect = format!("127.0.0.1:{}", nginx.port);
    host.openssl(&[
        "s_client",
        "-connect",
        &connect,
        "-verify_hostname",
        "other.example.com",
        "-CAfile",
        &ca,
        "-verify_return_error",
    ])
    .expect(1);

    let reload: Vec<&str> = nginx.reload.iter().map(String::as_str).collect();
    host.config_reload(&reload, "");
    let later = chrono::Utc::now() + chrono::Duration::days(21);
    let run = host.reconcile(&["--now", &later.to_rfc3339()]).expect(0);
    assert!(
        run.stdout.contains("renewed   Certificate/www"),
        "{}",
        run.stdout
    );
    let renewed = host.serial("www");
    assert_ne!(renewed, first);
    // nginx replaces its workers after the reload signal; wait for the new ones.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let served = served_serial(&host, nginx.port, &ca, "www.example.com", later);
        if served == renewed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nginx still serves {served} after the reload, not {renewed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = host
        .repo
        .git(&["show", "gitward/status:status/certificate/www.yaml"]);
    assert!(status.contains("reason: Reloaded"), "{status}");
}
