//! Gates that trust only what is proved: approvals signed with `gitward approve` and checked
//! against the host's allowed signers, overrides on SSH-signed commits, `signedBy`. Keys come
//! from OpenSSH's `ssh-keygen`, signed commits from `git commit -S` with `gpg.format=ssh`.

use crate::common;
use crate::common::signing;

use common::host::{Host, ISSUERS, certificate};
use signing::Key;

const GATE: &str = "apiVersion: gitward/v1\nkind: Gate\nmetadata: {name: prod}\nspec:\n  appliesTo: {kinds: [Certificate], selector: {env: prod}}\n  require:\n    approvals: {count: 2, from: [alice@example.com, bob@example.com, carol@example.com, dave@example.com, test@example.com]}\n  override: {by: [lead@example.com], reviewWithin: 24h, notify: [security]}\n";

/// The sink the gate's overrides are told to: it asks for nothing else than failures.
const SECURITY_SINK: &str = "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: security}\nspec: {type: file, endpoint: security, events: [certificate.failed]}\n";

/// The people of these tests and their keys; all but mallory are listed, dave's key is
/// revoked, and test@example.com is the author of every commit.
struct People {
    host: Host,
    keys: std::collections::BTreeMap<&'static str, Key>,
}

impl People {
    fn new() -> People {
        let a = certificate("a", "  dnsNames: [a.example.com]\n");
        let host = Host::new(&[
            ("issuers.yaml", ISSUERS),
            ("a.yaml", &a),
            ("gate.yaml", GATE),
            ("sink.yaml", SECURITY_SINK),
        ]);
        let keys_dir = host.dir.path().join("keys");
        std::fs::create_dir_all(&keys_dir).expect("keys");
        let mut keys = std::collections::BTreeMap::new();
        for name in ["alice", "bob", "carol", "dave", "lead", "mallory", "test"] {
            keys.insert(name, Key::new(&keys_dir, name, "ed25519"));
        }
        let allowed: String = ["alice", "bob", "carol", "dave", "lead", "test"]
            .iter()
            .map(|name| format!("{name}@example.com {}\n", keys[name].public()))
            .collect();
        std::fs::write(host.dir.path().join("allowed_signers"), allowed).expect("signers");
        std::fs::write(
            host.dir.path().join("revoked"),
            format!("{}\n", keys["dave"].public()),
        )
        .expect("revoked");
        host.config(&format!(
            "signers: {{allowedSignersFile: allowed_signers, revocationFile: revoked}}\nendpoints:\n  security: {{url: \"file://{}\"}}\n",
            host.dir.path().join("security.jsonl").display()
        ));
        People { host, keys }
    }

    /// `gitward approve` of HEAD by `who`, with their key, recorded in the repository.
    fn approve(&self, who: &str) {
        let key = self.keys[who].path.to_string_lossy().into_owned();
        self.host
            .repo
            .gitward(&[
                "approve",
                "HEAD",
                "--key",
                &key,
                "--as",
                &format!("{who}@example.com"),
                "--no-push",
            ])
            .expect(0);
    }

    /// A commit of everything, SSH-signed by `who`, with `message`.
    fn signed_commit(&self, who: &str, message: &str) -> String {
        let key = format!("user.signingkey={}", self.keys[who].path.display());
        let repo = &self.host.repo;
        repo.git(&["add", "-A"]);
        repo.git(&[
            "-c",
            "gpg.format=ssh",
            "-c",
            &key,
            "commit",
            "-S",
            "-q",
            "--allow-empty",
            "-m",
            message,
        ]);
        repo.git(&["rev-parse", "HEAD"])
    }

    fn reconcile(&self, code: i32) -> String {
        self.host.reconcile(&[]).expect(code).stdout
    }

    fn summary(&self) -> String {
        self.host.repo.git(&["show", "gitward/status:summary.yaml"])
    }

    /// The plan of HEAD against the commit in force, as JSON, with the host's signers.
    fn plan(&self) -> serde_json::Value {
        let dir = self.host.dir.path();
        let (allowed, revoked) = (dir.join("allowed_signers"), dir.join("revoked"));
        let applied = self
            .summary()
            .lines()
            .find_map(|l| l.strip_prefix("applied: "))
            .expect("a commit in force")
            .to_owned();
        let run = self.host.repo.gitward(&[
            "plan",
            "--base",
            &applied,
            "--head",
            "HEAD",
            "--format",
            "json",
            "--allowed-signers",
            &allowed.to_string_lossy(),
            "--revoked-keys",
            &revoked.to_string_lossy(),
        ]);
        serde_json::from_str(&run.stdout).expect("json")
    }
}

#[test]
fn only_signed_approvals_of_listed_keys_by_people_who_did_not_write_the_change_count() {
    let people = People::new();
    // Nothing is in force yet: the head's own gate judges the first commit.
    people.reconcile(1);
    assert!(
        people.summary().contains("0 of 2 approvals"),
        "{}",
        people.summary()
    );
    people.approve("alice");
    people.approve("bob");
    people.reconcile(0);

    people
        .host
        .repo
        .write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    people.host.repo.commit("Add b");
    // The author, an unlisted key and a revoked one approve: none counts.
    people.approve("test");
    people.approve("mallory");
    people.approve("dave");
    people.approve("carol");
    let out = people.reconcile(1);
    assert!(out.contains("1 of 2 approvals: carol@example.com"), "{out}");
    let mut seen = common::gate_approvals(&people.plan());
    seen.sort();
    let why = |who: &str| {
        seen.iter()
            .find(|(a, _)| a == who)
            .and_then(|(_, why)| why.clone())
            .unwrap_or_default()
    };
    assert_eq!(why("carol@example.com"), "");
    assert!(
        why("test@example.com").contains("separation of duties"),
        "{seen:?}"
    );
    assert!(!why("mallory@example.com").is_empty(), "{seen:?}");
    assert!(why("dave@example.com").contains("revoked"), "{seen:?}");
    assert!(!people.host.out("b").join("cert.pem").exists());
    people.approve("bob");
    people.reconcile(0);
    assert!(people.host.out("b").join("cert.pem").exists());
}

#[test]
fn an_approval_binds_the_tree_a_content_change_voids_it_and_an_identical_tree_keeps_it() {
    let people = People::new();
    people.approve("alice");
    people.approve("bob");
    people.reconcile(0);
    let repo = &people.host.repo;
    repo.write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    repo.commit("Add b");
    people.approve("alice");
    people.approve("bob");
    // A later change to the content before it is applied: the approvals were of another tree.
    repo.write("b.yaml", certificate("b", "  dnsNames: [b2.example.com]\n"));
    repo.commit("Rename b");
    let out = people.reconcile(1);
    assert!(out.contains("0 of 2 approvals"), "{out}");
    // Undo the content change: the tree is the approved one again, as after a squash.
    repo.write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    repo.commit("Back to b");
    people.reconcile(0);
    assert!(
        people
            .host
            .text(&people.host.out("b").join("cert.pem"))
            .contains("DNS:b.example.com")
    );
}

#[test]
fn an_override_counts_only_on_a_commit_signed_by_a_listed_principal_and_is_reviewed_by_another() {
    let people = People::new();
    people.approve("alice");
    people.approve("bob");
    people.reconcile(0);
    let repo = &people.host.repo;
    repo.write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    // A forged override: the trailer on an unsigned commit.
    repo.commit("Add b\n\nGate-Override: prod the CDN certificate expires tonight");
    let out = people.reconcile(1);
    assert!(out.contains("blocked"), "{out}");
    let plan = people.plan();
    assert!(
        plan["gates"][0]["override"]["refused"]
            .as_str()
            .is_some_and(|r| r.contains("not signed by a listed key")),
        "{plan}"
    );
    // Signed by someone who may not override.
    people.signed_commit(
        "alice",
        "Add b\n\nGate-Override: prod the CDN certificate expires tonight",
    );
    people.reconcile(1);
    // Signed by the security lead: honoured, recorded, and its review is open.
    let overriding = people.signed_commit(
        "lead",
        "Add b\n\nGate-Override: prod the CDN certificate expires tonight",
    );
    people.reconcile(0);
    assert!(people.host.out("b").join("cert.pem").exists());
    let reviews = || {
        std::process::Command::new("git")
            .args(["show", "gitward/status:overrides.yaml"])
            .current_dir(repo.path())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let open = reviews();
    assert!(
        open.contains(&overriding) && open.contains("principal: lead@example.com"),
        "{open}"
    );
    assert!(
        open.contains("reason: the CDN certificate expires tonight"),
        "{open}"
    );
    let note = repo.git(&["notes", "--ref=gitward", "show", &overriding]);
    assert!(
        note.contains("overrides:") && note.contains(&people.keys["lead"].fingerprint()),
        "{note}"
    );
    let explained = repo.gitward(&["explain", &overriding]).expect(0).stdout;
    assert!(
        explained.contains("Override of gate prod by lead@example.com"),
        "{explained}"
    );
    // The one who overrode cannot review it; another signed principal can.
    let short = &overriding[..12];
    people.signed_commit("lead", &format!("Review\n\nOverride-Reviewed: {short}"));
    people.reconcile(0);
    assert!(reviews().contains(&overriding), "{}", reviews());
    people.signed_commit("alice", &format!("Review\n\nOverride-Reviewed: {short}"));
    people.reconcile(0);
    assert_eq!(reviews(), "", "the review is closed");
    // The sink the gate notifies heard of the override and of its review, and of nothing
    // else: it asks only for failures.
    let told: Vec<serde_json::Value> =
        std::fs::read_to_string(people.host.dir.path().join("security.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
    let kinds: Vec<&str> = told.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "dev.gitward.gate.override",
            "dev.gitward.gate.override.reviewed"
        ],
        "{told:?}"
    );
    assert_eq!(told[0]["data"]["details"]["principal"], "lead@example.com");
    assert_eq!(
        told[0]["data"]["details"]["reason"],
        "the CDN certificate expires tonight"
    );
    assert_eq!(told[0]["data"]["details"]["commit"], overriding);
}

#[test]
fn signed_by_needs_the_applied_commit_signed_and_policies_see_the_signature() {
    let signed_gate = GATE.replace(
        "    approvals: {count: 2, from: [alice@example.com, bob@example.com, carol@example.com, dave@example.com, test@example.com]}\n",
        "    signedBy: [lead@example.com]\n",
    );
    let policy = "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: signer}\nspec:\n  module: signer.rego\n  rule: data.signer.warn\n  appliesTo: {kinds: [Certificate]}\n  enforcement: warn\n";
    let rego = "package signer\nimport rego.v1\nwarn contains sprintf(\"signed by %v with %v\", [input.commit.signature.principal, input.commit.signature.keyFingerprint]) if input.commit.signature.verified\n";
    let people = People::new();
    let repo = &people.host.repo;
    repo.write("gate.yaml", &signed_gate);
    repo.write("signer.yaml", policy);
    repo.write("signer.rego", rego);
    people.signed_commit("lead", "Signed gate");
    people.reconcile(0);
    repo.write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    repo.commit("Add b, unsigned");
    let out = people.reconcile(1);
    assert!(
        out.contains("not signed by one of lead@example.com"),
        "{out}"
    );
    let head = people.signed_commit("lead", "Add b, signed");
    people.reconcile(0);
    let note = repo.git(&["notes", "--ref=gitward", "show", &head]);
    let fingerprint = people.keys["lead"].fingerprint();
    assert!(
        note.contains(&format!("signed by lead@example.com with {fingerprint}")),
        "{note}"
    );
}
