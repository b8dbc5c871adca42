//! `gitward reconcile --once` against real repositories, checked with `openssl` and `git`.

use crate::common;

use common::host::{Host, ISSUERS, certificate};

#[test]
fn a_chain_is_issued_that_openssl_verifies_with_every_key_algorithm() {
    let mut files = vec![("issuers.yaml".to_owned(), ISSUERS.to_owned())];
    for (i, algorithm) in [
        "ECDSA-P256",
        "ECDSA-P384",
        "Ed25519",
        "RSA-2048",
        "RSA-3072",
        "RSA-4096",
    ]
    .iter()
    .enumerate()
    {
        files.push((
            format!("certs/c{i}.yaml"),
            certificate(&format!("c{i}"), &format!("  dnsNames: [c{i}.example.com, www.c{i}.example.com]\n  ipAddresses: [10.0.0.{i}]\n  keyAlgorithm: {algorithm}\n  usages: [serverAuth, clientAuth]\n  duration: 30d\n")),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let host = Host::new(&refs);
    let run = host.reconcile(&[]).expect(0);
    assert!(
        run.stdout.starts_with("gitward reconcile: "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(" applied\n"), "{}", run.stdout);
    for (i, key) in [
        "ASN1 OID: prime256v1",
        "ASN1 OID: secp384r1",
        "ED25519",
        "Public-Key: (2048 bit)",
        "Public-Key: (3072 bit)",
        "Public-Key: (4096 bit)",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("c{i}");
        let verified = host.verify(&name);
        assert_eq!(
            verified.code, 0,
            "{name}: {}{}",
            verified.stdout, verified.stderr
        );
        let text = host.text(&host.out(&name).join("cert.pem"));
        assert!(text.contains(key), "{name}: {text}");
        assert!(
            text.contains(&format!(
                "DNS:c{i}.example.com, DNS:www.c{i}.example.com, IP Address:10.0.0.{i}"
            )),
            "{text}"
        );
        assert!(
            text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
            "{text}"
        );
        assert!(text.contains("CA:FALSE"), "{text}");
        let dates = host
            .openssl(&[
                "x509",
                "-noout",
                "-startdate",
                "-enddate",
                "-in",
                &host.out(&name).join("cert.pem").to_string_lossy(),
            ])
            .stdout;
        let date = |prefix: &str| {
            dates
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(str::to_owned)
                .unwrap_or_default()
        };
        let parse = |s: String| {
            chrono::NaiveDateTime::parse_from_str(&s.replace(" GMT", ""), "%b %e %H:%M:%S %Y")
                .expect("an openssl date")
        };
        assert_eq!(
            parse(date("notAfter=")) - parse(date("notBefore=")),
            chrono::Duration::days(30),
            "{name}"
        );
        // The key is the certificate's and only its owner may read it.
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(host.out(&name).join("key.pem"))
                .expect("key")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let cert_key = host
            .openssl(&[
                "x509",
                "-noout",
                "-pubkey",
                "-in",
                &host.out(&name).join("cert.pem").to_string_lossy(),
            ])
            .stdout;
        let key = host
            .openssl(&[
                "pkey",
                "-pubout",
                "-in",
                &host.out(&name).join("key.pem").to_string_lossy(),
            ])
            .stdout;
        assert_eq!(cert_key, key, "{name}: key.pem belongs to cert.pem");
    }
    let ca = host.text(&host.out("c0").join("chain.pem"));
    assert!(
        ca.contains("CA:TRUE, pathlen:0")
            && ca.contains("Permitted:\n                  DNS:example.com"),
        "{ca}"
    );
    assert!(
        ca.contains("Certificate Sign, CRL Sign")
            && ca.contains("X509v3 Subject Key Identifier")
            && ca.contains("X509v3 Authority Key Identifier"),
        "{ca}"
    );
    assert!(
        host.dir.path().join("reloaded").exists(),
        "the reload command ran"
    );
}

#[test]
fn the_ca_constraints_are_enforced_by_openssl() {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "api.yaml",
            &certificate("api", "  dnsNames: [api.example.com]\n"),
        ),
    ]);
    host.reconcile(&[]).expect(0);
    // A leaf for another domain, signed by hand with the issuing CA's key, does not verify:
    // the name constraints bind whoever holds the key.
    let key = host.dir.path().join("state/keys/issuer/issuing.pem");
    let chain = host.out("api").join("chain.pem");
    let work = host.dir.path();
    host.openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "rogue.key",
        "-subj",
        "/CN=rogue.example.org",
        "-addext",
        "subjectAltName=DNS:rogue.example.org",
        "-out",
        "rogue.csr",
    ])
    .expect(0);
    host.openssl(&[
        "x509",
        "-req",
        "-in",
        "rogue.csr",
        "-CA",
        &chain.to_string_lossy(),
        "-CAkey",
        &key.to_string_lossy(),
        "-CAcreateserial",
        "-days",
        "1",
        "-copy_extensions",
        "copyall",
        "-out",
        "rogue.pem",
    ])
    .expect(0);
    let rogue = host.openssl(&[
        "verify",
        "-CAfile",
        &host.out("api").join("ca.pem").to_string_lossy(),
        "-untrusted",
        &chain.to_string_lossy(),
        "rogue.pem",
    ]);
    assert_ne!(rogue.code, 0);
    assert!(
        rogue.stderr.contains("permitted subtree violation")
            || rogue.stdout.contains("permitted subtree violation"),
        "{}{}",
        rogue.stdout,
        rogue.stderr
    );
    // pathLen 0: a CA signed by the issuing CA is not valid either.
    host.openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "sub.key",
        "-subj",
        "/CN=sub.example.com",
        "-out",
        "sub.csr",
    ])
    .expect(0);
    std::fs::write(
        work.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n",
    )
    .expect("ext");
    host.openssl(&[
        "x509",
        "-req",
        "-in",
        "sub.csr",
        "-CA",
        &chain.to_string_lossy(),
        "-CAkey",
        &key.to_string_lossy(),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ca.ext",
        "-out",
        "sub.pem",
    ])
    .expect(0);
    host.openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-subj",
        "/CN=leaf.example.com",
        "-addext",
        "subjectAltName=DNS:leaf.example.com",
        "-out",
        "leaf.csr",
    ])
    .expect(0);
    host.openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "sub.pem",
        "-CAkey",
        "sub.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-copy_extensions",
        "copyall",
        "-out",
        "leaf.pem",
    ])
    .expect(0);
    std::fs::write(
        work.join("untrusted.pem"),
        format!(
            "{}{}",
            std::fs::read_to_string(work.join("sub.pem")).expect("sub"),
            std::fs::read_to_string(&chain).expect("chain")
        ),
    )
    .expect("bundle");
    let deep = host.openssl(&[
        "verify",
        "-CAfile",
        &host.out("api").join("ca.pem").to_string_lossy(),
        "-untrusted",
        "untrusted.pem",
        "leaf.pem",
    ]);
    assert_ne!(deep.code, 0, "{}", deep.stdout);
    assert!(
        format!("{}{}", deep.stdout, deep.stderr).contains("path length constraint exceeded"),
        "{}{}",
        deep.stdout,
        deep.stderr
    );
}

#[test]
fn a_second_reconcile_changes_nothing() {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "api.yaml",
            &certificate("api", "  dnsNames: [api.example.com]\n"),
        ),
    ]);
    host.reconcile(&[]).expect(0);
    let before = std::fs::metadata(host.out("api").join("cert.pem")).expect("cert");
    let notes = host
        .repo
        .git(&["rev-list", "--count", "refs/notes/gitward"]);
    std::fs::remove_file(host.dir.path().join("reloaded")).expect("marker");
    let run = host.reconcile(&[]).expect(0);
    assert!(
        run.stdout.ends_with("(status unchanged)\n"),
        "{}",
        run.stdout
    );
    assert_eq!(host.status_commits(), 1);
    assert_eq!(
        host.repo
            .git(&["rev-list", "--count", "refs/notes/gitward"]),
        notes
    );
    let after = std::fs::metadata(host.out("api").join("cert.pem")).expect("cert");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&before),
        std::os::unix::fs::MetadataExt::ino(&after),
        "no file rewritten"
    );
    assert!(
        !host.dir.path().join("reloaded").exists(),
        "nothing to reload"
    );
    // Status is in Git for anyone: the status branch and the note on the commit.
    let log = host
        .repo
        .git(&["log", "--format=%B", "-1", "gitward/status"]);
    assert!(
        log.contains("Gitward-Source: ") && log.contains("Gitward-Result: applied"),
        "{log}"
    );
    let tree = host
        .repo
        .git(&["ls-tree", "-r", "--name-only", "gitward/status"]);
    assert_eq!(
        tree,
        "status/certificate/api.yaml\nstatus/issuer/issuing.yaml\nstatus/issuer/root.yaml\nsummary.yaml"
    );
    let api = host
        .repo
        .git(&["show", "gitward/status:status/certificate/api.yaml"]);
    assert!(
        api.contains("specHash: sha256:")
            && api.contains("fingerprint: ")
            && api.contains("renewAt: "),
        "{api}"
    );
    assert!(!api.contains("PRIVATE KEY"), "no key material in Git");
    let note = host.repo.git(&["log", "--notes=gitward", "-1", "main"]);
    assert!(
        note.contains("Notes (gitward):\n    result: applied"),
        "{note}"
    );
    let status = host.repo.gitward(&["status", "main"]).expect(0);
    assert!(
        status.stdout.contains(": applied (status ")
            && status.stdout.contains("issued    Certificate/api  serial "),
        "{}",
        status.stdout
    );
    let json: serde_json::Value = serde_json::from_str(
        &host
            .repo
            .gitward(&["status", "--format", "json"])
            .expect(0)
            .stdout,
    )
    .expect("json");
    assert_eq!(json["result"], "applied");
    host.repo.write("README.md", "more\n");
    host.repo.commit("Unreconciled");
    host.repo.gitward(&["status"]).expect(1);
}

#[test]
fn renewal_and_spec_changes_reissue_and_reload() {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "api.yaml",
            &certificate(
                "api",
                "  dnsNames: [api.example.com]\n  duration: 30d\n  renewBefore: 10d\n",
            ),
        ),
        (
            "web.yaml",
            &certificate(
                "web",
                "  dnsNames: [web.example.com]\n  rotatePrivateKey: false\n  duration: 30d\n",
            ),
        ),
    ]);
    host.reconcile(&[]).expect(0);
    let serial = host.serial("api");
    let web_key = std::fs::read_to_string(host.out("web").join("key.pem")).expect("key");
    // 21 days on, api is inside its renewal window (30d - 10d); web (renewBefore 10d by default) too.
    let later_time = chrono::Utc::now() + chrono::Duration::days(21);
    let later = later_time.to_rfc3339();
    std::fs::remove_file(host.dir.path().join("reloaded")).expect("marker");
    let run = host.reconcile(&["--now", &later]).expect(0);
    assert!(
        run.stdout.contains("renewed   Certificate/api"),
        "{}",
        run.stdout
    );
    assert_ne!(host.serial("api"), serial);
    assert!(
        host.dir.path().join("reloaded").exists(),
        "reloaded after renewal"
    );
    assert_eq!(
        std::fs::read_to_string(host.out("web").join("key.pem")).expect("key"),
        web_key,
        "rotatePrivateKey: false keeps the key"
    );
    // A spec change reissues; a change to the CA reissues everything below it.
    host.repo.edit(
        "api.yaml",
        "dnsNames: [api.example.com]",
        "dnsNames: [api.example.com, api2.example.com]",
    );
    host.repo.commit("Another name");
    let run = host.reconcile(&["--now", &later]).expect(0);
    assert!(
        run.stdout.contains("reissued  Certificate/api"),
        "{}",
        run.stdout
    );
    assert!(
        host.text(&host.out("api").join("cert.pem"))
            .contains("DNS:api2.example.com")
    );
    host.repo.edit(
        "issuers.yaml",
        "commonName: Test Issuing CA",
        "commonName: Test Issuing CA 2",
    );
    host.repo.commit("New issuing CA");
    let run = host.reconcile(&["--now", &later]).expect(0);
    for line in [
        "reissued  Issuer/issuing",
        "reissued  Certificate/api",
        "reissued  Certificate/web",
    ] {
        assert!(run.stdout.contains(line), "{}", run.stdout);
    }
    assert_eq!(
        host.verify_at("web", Some(later_time.timestamp() + 60))
            .code,
        0
    );
    assert!(
        host.text(&host.out("web").join("chain.pem"))
            .contains("Test Issuing CA 2")
    );
}

#[test]
fn an_invalid_or_blocked_commit_applies_nothing() {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "api.yaml",
            &certificate("api", "  dnsNames: [api.example.com]\n"),
        ),
    ]);
    host.reconcile(&[]).expect(0);
    let serial = host.serial("api");
    host.repo.edit(
        "api.yaml",
        "dnsNames: [api.example.com]",
        "dnsNames: [api.example.com]\n  duration: 14d\n  keyAlgorithm: ECDSA-P999",
    );
    let bad = host.repo.commit("Broken");
    let run = host.reconcile(&[]).expect(1);
    assert!(
        run.stdout.contains(" failed\n")
            && run
                .stdout
                .contains("problem: api.yaml:9:17: spec.keyAlgorithm: `ECDSA-P999` is not one of"),
        "{}",
        run.stdout
    );
    assert_eq!(host.serial("api"), serial, "nothing applied");
    let summary = host.repo.git(&["show", "gitward/status:summary.yaml"]);
    assert!(
        summary.contains(&format!("source: {bad}")) && summary.contains("result: failed"),
        "{summary}"
    );
    // A policy that blocks: the new deny finding stops the change, the last good commit stays.
    host.repo.edit("api.yaml", "  keyAlgorithm: ECDSA-P999", "");
    host.repo.write("policies/short.rego", "package gitward.short\n\nimport rego.v1\n\ndeny contains \"too short\" if input.computed.durationSeconds < 20 * 86400\n");
    host.repo.write("policies/short.yaml", "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: short}\nspec:\n  module: policies/short.rego\n  rule: data.gitward.short.deny\n  appliesTo: {kinds: [Certificate]}\n");
    host.repo.commit("Shorter, and a policy against it");
    let run = host.reconcile(&[]).expect(1);
    assert!(
        run.stdout.contains(" blocked\n")
            && run
                .stdout
                .contains("problem: new deny finding: short Certificate/api: too short"),
        "{}",
        run.stdout
    );
    assert_eq!(host.serial("api"), serial, "nothing applied");
}

#[test]
fn hostile_targets_and_deleted_certificates() {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "api.yaml",
            &certificate("api", "  dnsNames: [api.example.com]\n"),
        ),
        (
            "web.yaml",
            &certificate("web", "  dnsNames: [web.example.com]\n"),
        ),
    ]);
    // Someone planted a link where web's directory goes.
    let outside = host.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::create_dir_all(host.dir.path().join("out")).expect("mkdir");
    std::os::unix::fs::symlink(&outside, host.out("web")).expect("symlink");
    let run = host.reconcile(&[]).expect(1);
    assert!(
        run.stdout.contains("failed    Certificate/web  ")
            && run
                .stdout
                .contains("is a symbolic link; gitward never follows links"),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_dir(&outside).expect("outside").count(),
        0,
        "nothing written through the link"
    );
    // Git is told which certificate's directory, not where the host keeps it.
    let note = host.repo.git(&["notes", "--ref=gitward", "show", "main"]);
    assert!(
        note.contains("message: 'web: is a symbolic link; gitward never follows links")
            && !note.contains(&*host.dir.path().to_string_lossy()),
        "{note}"
    );
    assert_eq!(host.verify("api").code, 0, "the rest was applied");
    std::fs::remove_file(host.out("web")).expect("unlink");
    let run = host.reconcile(&[]).expect(0);
    assert!(
        run.stdout.contains("rewritten Certificate/web"),
        "{}",
        run.stdout
    );
    // Deleted from Git: no longer managed; files stay unless the target prunes.
    host.repo.remove("web.yaml");
    host.repo.commit("Retire web");
    let run = host.reconcile(&[]).expect(0);
    assert!(
        run.stdout.contains("removed   Certificate/web"),
        "{}",
        run.stdout
    );
    assert!(host.out("web").join("cert.pem").exists());
    assert!(
        !host
            .dir
            .path()
            .join("state/keys/certificate/web.pem")
            .exists()
    );
    host.config("    prune: true\n");
    host.repo.remove("api.yaml");
    host.repo.commit("Retire api");
    host.reconcile(&[]).expect(0);
    assert!(!host.out("api").exists(), "pruned");
    let tree = host
        .repo
        .git(&["ls-tree", "-r", "--name-only", "gitward/status"]);
    assert!(!tree.contains("certificate/"), "{tree}");
}

#[test]
fn host_config_mistakes_are_reported_at_their_line() {
    let host = Host::new(&[("issuers.yaml", ISSUERS)]);
    std::fs::write(
        host.dir.path().join("gitward.yaml"),
        "repo: {url: /srv/pki}\nstateDir: state\ntargets:\n  web: {dir: out, reload: nginx}\n",
    )
    .expect("config");
    let run = host.reconcile(&[]).expect(2);
    assert_eq!(
        run.stderr,
        "error: invalid host config:\ngitward.yaml:4:27: targets.web.reload must be a list, not a string\n"
    );
}

/// Kill the reconcile at every crash point of a multi-certificate run in turn, then run it
/// again: it must converge to one status commit whose certificates are the ones on disk,
/// with no certificate issued that status does not know.
#[test]
fn a_crash_at_any_point_converges() {
    let files = [
        ("issuers.yaml", ISSUERS.to_owned()),
        ("a.yaml", certificate("a", "  dnsNames: [a.example.com]\n")),
        ("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n")),
    ];
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let mut point = 1;
    loop {
        let host = Host::new(&refs);
        let finished = host.reconcile_crashing_at(point);
        // Serials issued before the crash, as the journal recorded them.
        let run = host.reconcile(&[]).expect(0);
        assert_eq!(host.status_commits(), 1, "point {point}: {}", run.stdout);
        for name in ["a", "b"] {
            host.assert_on_disk_is_in_status(name, &format!("point {point}"));
            assert_eq!(host.verify(name).code, 0, "point {point}");
        }
        assert_eq!(
            host.repo
                .git(&["rev-list", "--count", "refs/notes/gitward"]),
            "1",
            "point {point}"
        );
        assert_eq!(
            host.keys_in_flight(),
            0,
            "point {point}: every staged key promoted"
        );
        if finished {
            break;
        }
        point += 1;
    }
    assert!(point > 10, "the run passes through {point} crash points");
}

/// More certificates than are journaled and written at once: a run crashed after some
/// batches are on disk converges, every certificate on disk is the one its status names.
#[test]
fn a_crash_between_write_batches_converges() {
    let names: Vec<String> = (0..300).map(|i| format!("c{i:03}")).collect();
    let documents: Vec<String> = names
        .iter()
        .map(|name| certificate(name, &format!("  dnsNames: [{name}.example.com]\n")))
        .collect();
    let certificates = documents.join("---\n");
    let files = [
        ("issuers.yaml", ISSUERS),
        ("many.yaml", certificates.as_str()),
    ];
    let sample = ["c000", "c255", "c256", "c299"];
    // Crash points further and further into the run, until one lets it finish.
    let mut point = 150;
    loop {
        let host = Host::new(&files);
        let finished = host.reconcile_crashing_at(point);
        host.reconcile(&[]).expect(0);
        assert_eq!(host.status_commits(), 1, "point {point}");
        let recorded = host
            .repo
            .git(&["ls-tree", "-r", "--name-only", "gitward/status"])
            .lines()
            .filter(|path| path.starts_with("status/certificate/"))
            .count();
        assert_eq!(recorded, names.len(), "point {point}");
        for name in sample {
            host.assert_on_disk_is_in_status(name, &format!("point {point}"));
        }
        assert_eq!(host.verify("c299").code, 0, "point {point}");
        assert_eq!(host.keys_in_flight(), 0, "point {point}");
        if finished {
            break;
        }
        point *= 2;
    }
    assert!(point > 600, "crashed after a first batch ({point})");
}

#[test]
fn a_commit_whose_policy_crashes_fails_and_the_commit_in_force_keeps_renewing() {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "api.yaml",
            &certificate(
                "api",
                "  dnsNames: [api.example.com]\n  duration: 30d\n  renewBefore: 10d\n",
            ),
        ),
    ]);
    host.reconcile(&[]).expect(0);
    let serial = host.serial("api");
    // Passes validation, then allocates gigabytes in one builtin call.
    host.repo.write("policies/hog.rego", "package gitward.hog\n\nimport rego.v1\n\ndeny contains \"never\" if count(sprintf(\"%0999999999d\", [1])) < 0\n");
    host.repo.write("policies/hog.yaml", "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: hog}\nspec:\n  module: policies/hog.rego\n  rule: data.gitward.hog.deny\n  appliesTo: {kinds: [Certificate]}\n");
    host.repo.edit(
        "api.yaml",
        "[api.example.com]",
        "[api.example.com, api2.example.com]",
    );
    let bad = host.repo.commit("A policy that exhausts memory");
    let run = host.reconcile(&[]).expect(1);
    assert!(
        run.stdout.contains(" failed\n")
            && run
                .stdout
                .contains("policy `hog` failed on Certificate/api: "),
        "{}",
        run.stdout
    );
    assert_eq!(host.serial("api"), serial, "nothing of the commit applied");
    let note = host.repo.git(&["notes", "--ref=gitward", "show", &bad]);
    assert!(
        note.contains("result: failed") && note.contains("policy `hog` failed"),
        "{note}"
    );
    // The commit in force is still renewed while the head keeps failing.
    let later = (chrono::Utc::now() + chrono::Duration::days(21)).to_rfc3339();
    let run = host.reconcile(&["--now", &later]).expect(1);
    assert!(
        run.stdout.contains("renewed   Certificate/api"),
        "{}",
        run.stdout
    );
    assert_ne!(host.serial("api"), serial);
    assert!(
        !host
            .text(&host.out("api").join("cert.pem"))
            .contains("api2.example.com"),
        "the renewal is of the commit in force"
    );
}

fn one_certificate() -> Host {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)])
}

#[test]
fn a_failed_reload_is_told_in_short_to_git_and_in_full_to_the_host() {
    let host = one_certificate();
    let private = host.dir.path().join("private/nginx.conf");
    let script = format!("echo \"cannot open {}\" >&2; exit 3", private.display());
    host.config_reload(&["/bin/sh", "-c", &script], "");
    let run = host.reconcile(&[]).expect(1);
    assert!(
        run.stdout
            .contains("problem: target `web`: reload command exited 3\n"),
        "{}",
        run.stdout
    );
    let detail = format!("cannot open {}", private.display());
    assert!(run.stderr.contains(&detail), "{}", run.stderr);

    let head = host.repo.git(&["rev-parse", "main"]);
    let note = host.repo.git(&["notes", "--ref=gitward", "show", &head]);
    assert!(
        note.contains("- 'target `web`: reload command exited 3'"),
        "{note}"
    );
    let status = host.repo.git(&["log", "-p", "gitward/status"]);
    assert!(
        status.contains("reason: ReloadFailed")
            && status.contains("message: reload command exited 3"),
        "{status}"
    );
    let host_dir = host.dir.path().to_string_lossy().into_owned();
    for (place, text) in [("note", note), ("status branch", status)] {
        for private in [host_dir.as_str(), "/bin/sh", "cannot open"] {
            assert!(!text.contains(private), "{place} holds {private}: {text}");
        }
    }
}

#[test]
fn a_reload_command_that_writes_much_to_stderr_is_not_held_by_it() {
    let host = one_certificate();
    // 10 MB, far more than a pipe holds: a pipe nobody reads would stop the command.
    host.config_reload(
        &[
            "/bin/sh",
            "-c",
            "head -c 10000000 /dev/zero | tr '\\0' x >&2",
        ],
        "    timeout: 20s\n",
    );
    let run = host.reconcile(&[]).expect(0);
    assert!(!run.stdout.contains("problem:"), "{}", run.stdout);
    let status = host
        .repo
        .git(&["show", "gitward/status:status/certificate/a.yaml"]);
    assert!(status.contains("reason: Reloaded"), "{status}");
}

#[test]
fn a_hostile_note_is_shown_without_breaking_status() {
    let host = one_certificate();
    let head = host.repo.git(&["rev-parse", "main"]);
    // Anyone who can push refs/notes/gitward writes what `gitward status` reads.
    host.repo.git(&[
        "notes",
        "--ref=gitward",
        "add",
        "-m",
        "result: applied\nstatusCommit: \"é€😀\u{202e}xyzw\"\nresources:\n- {kind: Certificate, name: \"a\\e[2J\", change: issued, serial: \"\u{202e}10\"}\n",
        &head,
    ]);
    let run = host.repo.gitward(&["status", "main"]).expect(0);
    assert_eq!(
        run.stdout,
        format!(
            "{} Configuration: applied (status é€😀\\u{{202e}}xyzw)\n  issued    Certificate/a\\u{{1b}}[2J  serial \\u{{202e}}10\n",
            &head[..8]
        )
    );
}

#[test]
fn a_moved_certificate_leaves_its_old_target_and_stale_temporary_files_are_swept() {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "api.yaml",
            &certificate("api", "  dnsNames: [api.example.com]\n"),
        ),
    ]);
    host.config("    prune: true\n  internal:\n    dir: internal\n");
    host.reconcile(&[]).expect(0);
    let serial = host.serial("api");
    let old = host.out("api");
    // What a writer killed between writing and renaming leaves: a copy of the key.
    let stale = old.join(".key.pem.0123456789abcdef.tmp");
    std::fs::write(&stale, "-----BEGIN PRIVATE KEY-----\n").expect("stale file");
    host.repo
        .edit("api.yaml", "target: web", "target: internal");
    host.repo.commit("Serve api from the internal target");
    let plan = host
        .repo
        .gitward(&["plan", "--base", "HEAD~1", "--head", "HEAD"])
        .expect(0);
    assert!(
        plan.stdout.contains("Certificate/api  move")
            && plan.stdout.contains("target changed: web → internal")
            && plan.stdout.contains("1 to move."),
        "{}",
        plan.stdout
    );
    let run = host.reconcile(&[]).expect(0);
    assert!(
        run.stdout.contains("moved     Certificate/api"),
        "{}",
        run.stdout
    );
    assert!(
        !old.exists(),
        "the old target prunes: its directory is gone"
    );
    let new = host.dir.path().join("internal/api");
    assert!(new.join("key.pem").exists() && new.join("fullchain.pem").exists());
    let moved = host.openssl(&[
        "x509",
        "-noout",
        "-serial",
        "-in",
        &new.join("cert.pem").to_string_lossy(),
    ]);
    assert_eq!(moved.stdout, serial, "moved, not reissued");
    // A stale temporary file is swept by the next write of the certificate's files.
    let stale = new.join(".cert.pem.fedcba9876543210.tmp");
    std::fs::write(&stale, "x").expect("stale file");
    std::fs::write(new.join("keep.txt"), "not gitward's").expect("other file");
    std::fs::remove_file(new.join("chain.pem")).expect("drift");
    std::fs::write(new.join("cert.pem"), "drifted").expect("drift");
    host.reconcile(&[]).expect(0);
    assert!(!stale.exists(), "swept");
    assert!(
        new.join("keep.txt").exists(),
        "only gitward's temporary files are swept"
    );
}

#[test]
fn a_damaged_state_database_is_rebuilt_from_status_and_the_secret_store() {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "api.yaml",
            &certificate("api", "  dnsNames: [api.example.com]\n"),
        ),
    ]);
    host.reconcile(&[]).expect(0);
    let serial = host.serial("api");
    let state = host.dir.path().join("state");
    std::fs::write(state.join("gitward.db"), vec![0x5a; 8192]).expect("damage");
    for companion in ["gitward.db-wal", "gitward.db-shm"] {
        let _ = std::fs::remove_file(state.join(companion));
    }
    let run = host.reconcile(&[]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("is damaged") && run.stderr.contains("gitward state rebuild"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    // A crash between the status commit and the promotion of the key leaves it staged; a
    // staged key that status never learnt of is of no use.
    let keys = state.join("keys/certificate");
    std::fs::rename(keys.join("api.pem"), keys.join("api.next.pem")).expect("stage");
    std::fs::write(keys.join("ghost.next.pem"), "-----BEGIN PRIVATE KEY-----\n").expect("orphan");
    let rebuilt = common::gitward_in(
        host.dir.path(),
        &["state", "rebuild", "--config", "gitward.yaml"],
    )
    .expect(0);
    assert!(
        rebuilt.stdout.contains("the old one is kept as")
            && rebuilt.stdout.contains("key in force  Certificate/api")
            && rebuilt.stdout.contains("key removed   Certificate/ghost"),
        "{}",
        rebuilt.stdout
    );
    assert!(keys.join("api.pem").exists() && !keys.join("ghost.next.pem").exists());
    let run = host.reconcile(&[]).expect(0);
    assert!(
        !run.stdout.contains("Certificate/api"),
        "nothing to do: {}",
        run.stdout
    );
    assert_eq!(host.serial("api"), serial);
    // Rebuilt again within the same second: the first damaged file stays kept.
    std::fs::write(state.join("gitward.db"), vec![0x5a; 8192]).expect("damage");
    common::gitward_in(
        host.dir.path(),
        &["state", "rebuild", "--config", "gitward.yaml"],
    )
    .expect(0);
    let kept = std::fs::read_dir(&state)
        .expect("state")
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("gitward.db.damaged-")
                && !name.ends_with("-wal")
                && !name.ends_with("-shm")
        })
        .count();
    assert_eq!(kept, 2);
}

#[test]
fn targets_near_the_secret_store_are_refused_with_a_relative_config() {
    let host = one_certificate();
    std::fs::create_dir_all(host.dir.path().join("state")).expect("state");
    // `--config gitward.yaml` from its own directory: every path in it is relative.
    std::fs::write(
        host.dir.path().join("gitward.yaml"),
        format!(
            "repo: {{url: {}, branch: main}}\nstateDir: state\ntargets:\n  web: {{dir: state/tls}}\n",
            host.repo.path().display()
        ),
    )
    .expect("config");
    let run = host.reconcile(&[]).expect(2);
    assert!(
        run.stderr.contains("gitward.yaml:4:14: targets.web.dir: ")
            && run.stderr.contains("the state directory"),
        "{}",
        run.stderr
    );
    assert!(!host.dir.path().join("state/tls").exists());
}

#[test]
fn an_oversized_note_is_ignored_unread() {
    let host = one_certificate();
    host.reconcile(&[]).expect(0);
    let head = host.repo.git(&["rev-parse", "main"]);
    let applied = host.repo.gitward(&["status", "main"]).expect(0);
    assert!(applied.stdout.contains("applied"), "{}", applied.stdout);
    // 20 MB of note, pushed by someone who may write refs/notes/gitward.
    let big = host.dir.path().join("big-note");
    let mut text = String::from("result: applied\nstatusCommit: x\n");
    text.push_str(&"# padding\n".repeat(2_000_000));
    std::fs::write(&big, text).expect("note");
    host.repo.git(&[
        "notes",
        "--ref=gitward",
        "add",
        "-f",
        "-F",
        &big.to_string_lossy(),
        &head,
    ]);
    let run = host.repo.gitward(&["status", "main"]).expect(1);
    assert!(!run.stdout.contains("applied"), "{}", run.stdout);
    // The next reconcile writes its own note over it.
    host.reconcile(&[]).expect(0);
    host.repo.gitward(&["status", "main"]).expect(0);
}
