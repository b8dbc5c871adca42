//! Attacks on what gates are judged on, through the built binary: approvals notes, commit
//! signatures, override trailers, the status branch and the notes gitward reads back, scan
//! reports, allowed-signers files. Everything in the repository is the attacker's and
//! identity claimed in text proves nothing; each test is one attack and what gitward must do
//! about it. An attack that still succeeds is `#[ignore = "known: …"]` until it is fixed.

use crate::common;
use crate::common::signing;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::host::{Host, ISSUERS, certificate};
use common::{Run, TestRepo, gate_approvals, gate_requirement, gitward_in};
use serde_json::Value;
use signing::Key;

/// The gate of these tests: `require`, and an override by the security lead.
fn gate(require: &str) -> String {
    format!(
        "apiVersion: gitward/v1\nkind: Gate\nmetadata: {{name: prod}}\nspec:\n  appliesTo: {{kinds: [Certificate], selector: {{env: prod}}}}\n  require:\n{require}  override: {{by: [lead@example.com], reviewWithin: 24h}}\n"
    )
}

const ONE_APPROVAL: &str = "    approvals: {count: 1}\n";
const TWO_APPROVALS: &str =
    "    approvals: {count: 2, from: [alice@example.com, bob@example.com, carol@example.com]}\n";
const SIGNED_BY_LEAD: &str = "    signedBy: [lead@example.com]\n";

/// When plans are judged.
const NOW: &str = "2026-12-01T10:00:00Z";

/// The people who sign. Commits are written by test@example.com; lead2 is a second key of
/// the lead's, listed only where a test says so.
const NAMES: [&str; 6] = ["alice", "bob", "carol", "lead", "lead2", "mallory"];

/// A configuration repository with certificate `a` under the gate, a host for it, and keys:
/// alice, bob, carol and lead are listed for their own addresses.
struct Lab {
    host: Host,
    keys: BTreeMap<&'static str, Key>,
    /// The first commit: the base of plans, and the first one reconciled.
    base: String,
}

impl Lab {
    fn new(require: &str) -> Lab {
        let a = certificate("a", "  dnsNames: [a.example.com]\n");
        let host = Host::new(&[
            ("issuers.yaml", ISSUERS),
            ("a.yaml", &a),
            ("gate.yaml", &gate(require)),
        ]);
        let dir = host.dir.path().join("keys");
        std::fs::create_dir_all(&dir).expect("keys");
        let keys = NAMES
            .iter()
            .map(|name| (*name, Key::new(&dir, name, "ed25519")))
            .collect();
        let base = host.repo.git(&["rev-parse", "HEAD"]);
        let lab = Lab { host, keys, base };
        lab.allow(
            &["alice", "bob", "carol", "lead"]
                .map(|name| lab.listed(name, &format!("{name}@example.com")))
                .concat(),
        );
        lab.host
            .config("signers: {allowedSignersFile: allowed_signers}\n");
        lab
    }

    /// [`Lab::new`] with its first commit approved by alice and applied.
    fn in_force(require: &str) -> Lab {
        let lab = Lab::new(require);
        lab.approve(&lab.base, "alice");
        lab.reconcile(0);
        lab
    }

    fn repo(&self) -> &TestRepo {
        &self.host.repo
    }

    fn git(&self, args: &[&str]) -> String {
        self.repo().git(args)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.host.dir.path().join(name)
    }

    /// An allowed-signers line listing `who`'s key for `principals`.
    fn listed(&self, who: &str, principals: &str) -> String {
        format!("{principals} {}\n", self.keys[who].public())
    }

    fn allow(&self, lines: &str) {
        std::fs::write(self.file("allowed_signers"), lines).expect("allowed signers");
    }

    /// Commits certificate `a` named `name`.example.com: a change the gate applies to.
    fn change(&self, name: &str) -> String {
        self.rename(name);
        self.repo().commit(&format!("Rename a to {name}"))
    }

    fn rename(&self, name: &str) {
        self.repo().write(
            "a.yaml",
            certificate("a", &format!("  dnsNames: [{name}.example.com]\n")),
        );
    }

    /// `gitward approve REV` with `who`'s key, as `principal`.
    fn approve_as(&self, rev: &str, who: &str, principal: &str) {
        let key = self.keys[who].path.to_string_lossy().into_owned();
        self.repo()
            .gitward(&[
                "approve",
                rev,
                "--key",
                &key,
                "--as",
                principal,
                "--no-push",
            ])
            .expect(0);
    }

    fn approve(&self, rev: &str, who: &str) {
        self.approve_as(rev, who, &format!("{who}@example.com"));
    }

    /// A commit of everything, SSH-signed with `who`'s key, with `message` as it is.
    fn signed_commit(&self, who: &str, message: &str) -> String {
        self.signed_commit_env(who, message, &[])
    }

    fn signed_commit_env(&self, who: &str, message: &str, env: &[(&str, &str)]) -> String {
        let key = format!("user.signingkey={}", self.keys[who].path.display());
        let file = self.file("message");
        std::fs::write(&file, message).expect("message");
        self.git(&["add", "-A"]);
        git(
            self.repo().path(),
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &key,
                "commit",
                "-S",
                "-q",
                "--allow-empty",
                "--cleanup=verbatim",
                "-F",
                &file.to_string_lossy(),
            ],
            env,
            b"",
        );
        self.git(&["rev-parse", "HEAD"])
    }

    /// A commit object written as is, not checked by git.
    fn raw_commit(&self, text: &str) -> String {
        git(
            self.repo().path(),
            &[
                "hash-object",
                "-t",
                "commit",
                "-w",
                "--literally",
                "--stdin",
            ],
            &[],
            text.as_bytes(),
        )
    }

    /// `gitward plan` of `head` against `base`, with the lab's allowed signers.
    fn plan(&self, base: &str, head: &str, extra: &[&str]) -> Run {
        let allowed = self.file("allowed_signers").to_string_lossy().into_owned();
        let mut args = vec![
            "plan",
            "--base",
            base,
            "--head",
            head,
            "--now",
            NOW,
            "--allowed-signers",
            &allowed,
        ];
        args.extend_from_slice(extra);
        self.repo().gitward(&args)
    }

    fn plan_json(&self, base: &str, head: &str) -> Value {
        let run = self.plan(base, head, &["--format", "json"]);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}\n--- stdout\n{}\n--- stderr\n{}",
                run.stdout, run.stderr
            )
        })
    }

    fn reconcile(&self, code: i32) -> Run {
        self.host.reconcile(&[]).expect(code)
    }

    /// Puts `text` as the approvals note of `object` (a tree or a commit).
    fn note_approvals(&self, object: &str, text: &str) {
        let file = self.file("note");
        std::fs::write(&file, text).expect("note");
        self.git(&[
            "notes",
            "--ref=gitward-approvals",
            "add",
            "-f",
            "-F",
            &file.to_string_lossy(),
            object,
        ]);
    }

    fn approvals_note(&self, object: &str) -> String {
        self.git(&["notes", "--ref=gitward-approvals", "show", object])
    }

    /// A file of the status branch's tip, if it has it.
    fn status_file(&self, path: &str) -> Option<String> {
        let output = Command::new("git")
            .args(["show", &format!("gitward/status:{path}")])
            .current_dir(self.repo().path())
            .output()
            .expect("git runs");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Commits to the status branch a tree edited as anyone who can push it may: each path
    /// set to the bytes given, or removed.
    fn forge_status(&self, edits: &[(&[u8], Option<&[u8]>)]) {
        let index = self.file("forged-index");
        let _ = std::fs::remove_file(&index);
        let index = index.to_string_lossy().into_owned();
        let env = [("GIT_INDEX_FILE", index.as_str())];
        let dir = self.repo().path();
        git(dir, &["read-tree", "gitward/status"], &env, b"");
        for (path, bytes) in edits {
            let entry = match bytes {
                Some(bytes) => {
                    let blob = git(dir, &["hash-object", "-w", "--stdin"], &[], bytes);
                    format!("100644 {blob}\t")
                }
                None => format!("0 {}\t", "0".repeat(40)),
            };
            let mut line = entry.into_bytes();
            line.extend_from_slice(path);
            line.push(0);
            git(
                dir,
                &["update-index", "--add", "-z", "--index-info"],
                &env,
                &line,
            );
        }
        let tree = git(dir, &["write-tree"], &env, b"");
        let commit = git(
            dir,
            &[
                "commit-tree",
                &tree,
                "-p",
                "gitward/status",
                "-m",
                "Edited by hand",
            ],
            &[],
            b"",
        );
        self.git(&["update-ref", "refs/heads/gitward/status", &commit]);
    }

    /// The DNS names of certificate `a` on the host.
    fn served(&self) -> String {
        self.host.text(&self.host.out("a").join("cert.pem"))
    }
}

/// `git` in `dir` with `env` and `input` on stdin; its output, trimmed.
fn git(dir: &Path, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> String {
    let mut child = Command::new("git")
        .args([
            "-c",
            "user.name=Test User",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("input to git");
    let output = child.wait_with_output().expect("git ends");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `gitward` in `dir` with its address space limited to `kib` KiB: what it reads must fit.
fn gitward_limited(dir: &Path, kib: u32, args: &[&str]) -> Run {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_gitward"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("sh runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `commit` (as `git cat-file commit` shows it) with `field`'s identity replaced.
fn written_by(commit: &str, field: &str, identity: &str) -> String {
    commit
        .lines()
        .map(|line| match line.strip_prefix(&format!("{field} ")) {
            Some(rest) => {
                let time = rest.rsplit_once('>').map_or("", |(_, time)| time);
                format!("{field} {identity}{time}\n")
            }
            None => format!("{line}\n"),
        })
        .collect()
}

/// `commit` without its signature header.
fn unsigned(commit: &str) -> String {
    let mut out = String::new();
    let mut in_signature = false;
    for line in commit.split_inclusive('\n') {
        if line.starts_with("gpgsig ") {
            in_signature = true;
            continue;
        }
        if in_signature && line.starts_with(' ') {
            continue;
        }
        in_signature = false;
        out.push_str(line);
    }
    out
}

/// `commit` (unsigned) with `armor` as its signature header, where git puts it.
fn with_signature(commit: &str, armor: &str) -> String {
    let header = format!("gpgsig {}\n", armor.trim_end().replace('\n', "\n "));
    let at = commit.find("\n\n").map_or(commit.len(), |i| i + 1);
    format!("{}{header}{}", &commit[..at], &commit[at..])
}

/// Runs of the terminal controls no report may print raw.
const RAW_CONTROLS: [char; 4] = ['\u{1b}', '\u{7}', '\u{202e}', '\r'];

fn assert_no_raw_controls(what: &str, text: &str) {
    for c in RAW_CONTROLS {
        assert!(!text.contains(c), "{what} prints {c:?} raw");
    }
}

// ---------------------------------------------------------------------------------------
// Approvals

#[test]
fn an_approval_copied_to_another_tree_or_noted_on_the_commit_does_not_count() {
    let lab = Lab::new(ONE_APPROVAL);
    lab.approve(&lab.base, "alice");
    let head = lab.change("a2");
    let (base_tree, head_tree) = (format!("{}^{{tree}}", lab.base), format!("{head}^{{tree}}"));
    // Alice's signature over the base's tree, copied into the note of the head's tree.
    lab.note_approvals(&head_tree, &lab.approvals_note(&base_tree));
    let plan = lab.plan_json(&lab.base, &head);
    assert_eq!(plan["verdict"], "blocked");
    let found = gate_approvals(&plan);
    assert!(
        found.len() == 1
            && found[0]
                .1
                .as_deref()
                .is_some_and(|why| why.contains("not over this tree")),
        "{found:?}"
    );
    // Her approval of the head, noted on the commit rather than on its tree.
    lab.approve(&head, "alice");
    let approval = lab.approvals_note(&head_tree);
    lab.git(&["notes", "--ref=gitward-approvals", "remove", &head_tree]);
    lab.note_approvals(&head, &approval);
    let plan = lab.plan_json(&lab.base, &head);
    assert_eq!(plan["verdict"], "blocked");
    assert!(gate_approvals(&plan).is_empty());
    // On the tree, where it belongs, it counts.
    lab.note_approvals(&head_tree, &approval);
    assert_eq!(lab.plan_json(&lab.base, &head)["verdict"], "apply");
}

#[test]
fn an_approval_whose_approver_smuggles_a_line_into_what_is_signed_does_not_count() {
    let lab = Lab::new(ONE_APPROVAL);
    let head = lab.change("a2");
    let tree = lab.git(&["rev-parse", &format!("{head}^{{tree}}")]);
    let other = lab.git(&["rev-parse", &format!("{}^{{tree}}", lab.base)]);
    for separator in ["\n", "\r"] {
        let approver = format!("alice@example.com{separator}tree {other}");
        let signed = format!("gitward-approval v1\ntree {tree}\ngate prod\napprover {approver}\n");
        let signature = lab.keys["alice"].sign("gitward-approval", signed.as_bytes());
        lab.note_approvals(
            &tree,
            &format!("gate: prod\napprover: {approver}\n{signature}"),
        );
        let plan = lab.plan_json(&lab.base, &head);
        assert_eq!(
            plan["verdict"],
            "blocked",
            "{separator:?}: {:?}",
            gate_approvals(&plan)
        );
    }
}

#[test]
fn an_approval_signed_in_another_namespace_or_by_a_key_kept_to_one_does_not_count() {
    let lab = Lab::new(ONE_APPROVAL);
    let head = lab.change("a2");
    let tree = lab.git(&["rev-parse", &format!("{head}^{{tree}}")]);
    let payload =
        format!("gitward-approval v1\ntree {tree}\ngate prod\napprover alice@example.com\n");
    let verdict = |namespace: &str| {
        let signature = lab.keys["alice"].sign(namespace, payload.as_bytes());
        lab.note_approvals(
            &tree,
            &format!("gate: prod\napprover: alice@example.com\n{signature}"),
        );
        let plan = lab.plan_json(&lab.base, &head);
        (plan["verdict"].clone(), gate_approvals(&plan))
    };
    for namespace in ["file", "git"] {
        let (verdict, found) = verdict(namespace);
        assert!(
            verdict == "blocked"
                && found[0].1.as_deref().is_some_and(
                    |why| why.contains(&format!("signed in the namespace {namespace}"))
                ),
            "{found:?}"
        );
    }
    // Made by hand in the approvals' namespace, it counts...
    assert_eq!(verdict("gitward-approval").0, "apply");
    // ...unless the host keeps the key to signing commits.
    lab.allow(&lab.listed("alice", "alice@example.com namespaces=\"git\""));
    let (verdict, found) = verdict("gitward-approval");
    assert!(
        verdict == "blocked"
            && found[0]
                .1
                .as_deref()
                .is_some_and(|why| why.contains("may sign only in the namespaces git")),
        "{found:?}"
    );
}

#[test]
fn the_same_approver_in_many_spellings_counts_once() {
    let lab = Lab::new(TWO_APPROVALS);
    lab.allow(
        &[
            lab.listed("alice", "*@example.com,*@EXAMPLE.COM,*@Example.com"),
            lab.listed("bob", "bob@example.com"),
        ]
        .concat(),
    );
    let head = lab.change("a2");
    for name in ["alice", "ALICE", "Alice", "aLiCe"] {
        for domain in ["example.com", "EXAMPLE.COM", "Example.com"] {
            lab.approve_as(&head, "alice", &format!("{name}@{domain}"));
        }
    }
    let plan = lab.plan_json(&lab.base, &head);
    assert_eq!(plan["verdict"], "blocked");
    assert_eq!(
        gate_requirement(&plan, "approvals")["counted"],
        serde_json::json!(["alice@example.com"])
    );
    lab.approve(&head, "bob");
    assert_eq!(lab.plan_json(&lab.base, &head)["verdict"], "apply");
}

#[test]
fn an_approval_is_judged_when_the_gate_decides_whatever_the_dates_in_the_repository() {
    let lab = Lab::new(ONE_APPROVAL);
    let head = lab.change("a2");
    lab.approve(&head, "alice");
    // The same tree committed with dates inside each validity.
    let tree = lab.git(&["rev-parse", &format!("{head}^{{tree}}")]);
    let dated = |date: &str| {
        git(
            lab.repo().path(),
            &["commit-tree", &tree, "-p", &lab.base, "-m", "Rename a"],
            &[("GIT_AUTHOR_DATE", date), ("GIT_COMMITTER_DATE", date)],
            b"",
        )
    };
    for (validity, date, says) in [
        (
            "valid-before=\"20250101Z\"",
            "2024-06-01T00:00:00Z",
            "expired at",
        ),
        (
            "valid-after=\"20300101Z\"",
            "2031-01-01T00:00:00Z",
            "is not valid before",
        ),
    ] {
        lab.allow(&lab.listed("alice", &format!("alice@example.com {validity}")));
        for commit in [head.clone(), dated(date)] {
            let plan = lab.plan_json(&lab.base, &commit);
            let found = gate_approvals(&plan);
            assert!(
                plan["verdict"] == "blocked"
                    && found[0].1.as_deref().is_some_and(|why| why.contains(says)),
                "{validity}: {found:?}"
            );
        }
    }
    lab.allow(&lab.listed("alice", "alice@example.com"));
    assert_eq!(lab.plan_json(&lab.base, &head)["verdict"], "apply");
}

#[test]
fn one_key_counts_once_whatever_principals_it_is_listed_for() {
    let lab = Lab::new(TWO_APPROVALS);
    let head = lab.change("a2");
    for principals in ["*@example.com", "alice@example.com,bob@example.com"] {
        lab.allow(
            &[
                lab.listed("carol", "carol@example.com"),
                lab.listed("mallory", principals),
            ]
            .concat(),
        );
        lab.approve_as(&head, "mallory", "alice@example.com");
        lab.approve_as(&head, "mallory", "bob@example.com");
        let plan = lab.plan_json(&lab.base, &head);
        assert_eq!(
            plan["verdict"],
            "blocked",
            "{principals}: {}",
            gate_requirement(&plan, "approvals")
        );
        // A second key makes two.
        lab.approve(&head, "carol");
        assert_eq!(
            lab.plan_json(&lab.base, &head)["verdict"],
            "apply",
            "{principals}"
        );
        lab.git(&[
            "notes",
            "--ref=gitward-approvals",
            "remove",
            &format!("{head}^{{tree}}"),
        ]);
    }
}

#[test]
fn a_key_that_signed_part_of_the_change_does_not_approve_it() {
    let lab = Lab::new("    approvals: {count: 1, from: [alice@example.com]}\n");
    lab.allow(&lab.listed("alice", "Alice@Example.com"));
    lab.rename("a2");
    let signed = lab.signed_commit("alice", "Rename a, signed by Alice");
    lab.approve_as(&signed, "alice", "Alice@Example.com");
    // The same tree committed by someone else, unsigned: her approval counts there.
    let tree = lab.git(&["rev-parse", "HEAD^{tree}"]);
    let other = git(
        lab.repo().path(),
        &["commit-tree", &tree, "-p", &lab.base, "-m", "Rename a"],
        &[],
        b"",
    );
    assert_eq!(lab.plan_json(&lab.base, &other)["verdict"], "apply");
    let plan = lab.plan_json(&lab.base, &signed);
    assert_eq!(plan["verdict"], "blocked", "{:?}", gate_approvals(&plan));
}

#[test]
fn the_author_or_committer_does_not_approve_under_another_case_or_spacing_or_through_a_merge() {
    let lab = Lab::new(ONE_APPROVAL);
    let head = lab.change("a2");
    lab.approve(&head, "alice");
    assert_eq!(lab.plan_json(&lab.base, &head)["verdict"], "apply");
    let text = lab.git(&["cat-file", "commit", &head]);
    let mut variants = vec![
        (
            "author in capitals",
            written_by(&text, "author", "Alice <ALICE@Example.COM>"),
        ),
        (
            "author with blanks",
            written_by(&text, "author", "Alice <  alice@example.com\t>"),
        ),
        (
            "committer",
            written_by(&text, "committer", "Alice <alice@example.com>"),
        ),
    ]
    .into_iter()
    .map(|(what, text)| (what, lab.raw_commit(&text)))
    .collect::<Vec<_>>();
    // A branch of Alice's merged into the change, with the change's tree.
    lab.git(&["checkout", "-q", "-b", "side", &lab.base]);
    git(
        lab.repo().path(),
        &[
            "-c",
            "user.email=alice@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "Alice's part",
        ],
        &[],
        b"",
    );
    lab.git(&["checkout", "-q", "main"]);
    lab.git(&["merge", "-q", "--no-ff", "--no-edit", "side"]);
    variants.push(("merged commit", lab.git(&["rev-parse", "HEAD"])));
    for (what, head) in variants {
        let plan = lab.plan_json(&lab.base, &head);
        let found = gate_approvals(&plan);
        assert!(
            plan["verdict"] == "blocked"
                && found[0]
                    .1
                    .as_deref()
                    .is_some_and(|why| why.contains("separation of duties")),
            "{what}: {found:?}"
        );
    }
}

#[test]
fn an_author_email_padded_with_unicode_blanks_is_still_the_authors() {
    let lab = Lab::new(ONE_APPROVAL);
    let head = lab.change("a2");
    lab.approve(&head, "alice");
    let text = lab.git(&["cat-file", "commit", &head]);
    let padded = lab.raw_commit(&written_by(
        &text,
        "author",
        "Alice <alice@example.com\u{a0}>",
    ));
    let plan = lab.plan_json(&lab.base, &padded);
    assert_eq!(plan["verdict"], "blocked", "{:?}", gate_approvals(&plan));
}

#[test]
fn a_change_of_more_commits_than_are_checked_for_their_writers_fails_closed() {
    let lab = Lab::new(ONE_APPROVAL);
    let change = lab.change("a2");
    // 1000 empty commits on top: with the change, 1001 since the base.
    let mut stream = String::new();
    for i in 1..=1000 {
        let message = format!("Commit {i}\n");
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter Dev <dev@example.com> 1700000000 +0000\ndata {}\n{message}",
            message.len()
        ));
        if i == 1 {
            stream.push_str(&format!("from {change}\n"));
        }
        stream.push('\n');
    }
    git(
        lab.repo().path(),
        &["fast-import", "--quiet"],
        &[],
        stream.as_bytes(),
    );
    lab.approve("main", "alice");
    let plan = lab.plan_json(&lab.base, "main");
    assert_eq!(plan["verdict"], "blocked");
    let found = gate_approvals(&plan);
    assert!(
        found[0]
            .1
            .as_deref()
            .is_some_and(|why| why.contains("too many commits")),
        "{found:?}"
    );
    // 1000 are checked, and the approval counts.
    assert_eq!(lab.plan_json(&lab.base, "main~1")["verdict"], "apply");
}

#[test]
fn hostile_approvals_notes_are_read_within_bounds_and_shown_escaped() {
    let lab = Lab::new(ONE_APPROVAL);
    let head = lab.change("a2");
    let tree = format!("{head}^{{tree}}");
    lab.approve(&head, "alice");
    let real = lab.approvals_note(&tree);
    let junk: String = (0..300)
        .map(|i| {
            format!(
                "gate: prod\napprover: \u{1b}]0;owned\u{7}{i}\u{202e}@example.com\r\n-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n\n"
            )
        })
        .collect();
    // Read first, the junk counts for nothing and the real approval still counts.
    lab.note_approvals(&tree, &format!("{real}\n\n{junk}"));
    let run = lab.plan(&lab.base, &head, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_no_raw_controls("plan", &format!("{}{}", run.stdout, run.stderr));
    let json = lab.plan_json(&lab.base, &head);
    assert!(gate_approvals(&json).len() <= 256);
    // Read after 256 others, it is not read: the note is read up to its bound.
    lab.note_approvals(&tree, &format!("{junk}\n{real}"));
    let run = lab.plan(&lab.base, &head, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.len() + run.stderr.len() < 200_000);
    // A note over a megabyte is not read at all.
    let padding = format!("# {}\n", "x".repeat(1000)).repeat(1100);
    lab.note_approvals(&tree, &format!("{real}\n{padding}"));
    assert_eq!(lab.plan(&lab.base, &head, &[]).code, 1);
    // Notes fanned out into directories, as git writes many of them, are found.
    let tree_id = lab.git(&["rev-parse", &tree]);
    let blob = git(
        lab.repo().path(),
        &["hash-object", "-w", "--stdin"],
        &[],
        real.as_bytes(),
    );
    let index = lab.file("notes-index").to_string_lossy().into_owned();
    let env = [("GIT_INDEX_FILE", index.as_str())];
    let fanned = format!("{}/{}/{}", &tree_id[..2], &tree_id[2..4], &tree_id[4..]);
    git(
        lab.repo().path(),
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("100644,{blob},{fanned}"),
        ],
        &env,
        b"",
    );
    let notes_tree = git(lab.repo().path(), &["write-tree"], &env, b"");
    let notes = git(
        lab.repo().path(),
        &["commit-tree", &notes_tree, "-m", "Notes"],
        &[],
        b"",
    );
    lab.git(&["update-ref", "refs/notes/gitward-approvals", &notes]);
    assert_eq!(lab.plan(&lab.base, &head, &[]).code, 0);
    // A notes ref that names a file, not a commit, holds no approval.
    lab.git(&["update-ref", "refs/notes/gitward-approvals", &blob]);
    let run = lab.plan(&lab.base, &head, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
}

#[test]
fn approve_refuses_what_is_not_a_commit_a_key_that_is_not_a_file_and_names_with_newlines() {
    let lab = Lab::new(ONE_APPROVAL);
    let head = lab.change("a2");
    let alice = lab.keys["alice"].path.to_string_lossy().into_owned();
    let alice_public = format!("{alice}.pub");
    let keys_dir = lab.file("keys").to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 6] = [
        (&["HEAD^{tree}", "--key", &alice][..], "not found"),
        (&["HEAD:a.yaml", "--key", &alice][..], "not found"),
        (&["HEAD", "--key", &keys_dir][..], "Is a directory"),
        (
            &[
                "HEAD",
                "--key",
                &alice,
                "--as",
                "alice@example.com\ntree 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            ][..],
            "is not a principal",
        ),
        (
            &[
                "HEAD",
                "--key",
                &alice,
                "--gate",
                "prod\napprover: bob@example.com",
            ][..],
            "is not a gate name",
        ),
        (
            &["HEAD", "--key", &alice_public][..],
            "not an OpenSSH private key",
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["approve", "--no-push"];
        all.extend_from_slice(args);
        if !args.contains(&"--as") {
            all.extend(["--as", "alice@example.com"]);
        }
        let run = lab.repo().gitward(&all).expect(2);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    assert_eq!(
        lab.git(&["notes", "--ref=gitward-approvals", "list"]),
        "",
        "nothing was recorded"
    );
    // A tag names its commit, whose tree is approved.
    lab.git(&["tag", "-a", "-m", "release", "v1", &head]);
    lab.approve("v1", "alice");
    assert_eq!(lab.plan_json(&lab.base, &head)["verdict"], "apply");
}

#[test]
fn approve_with_an_endless_key_file_refuses_it_without_reading_it_all() {
    let lab = Lab::new(ONE_APPROVAL);
    let run = gitward_limited(
        lab.repo().path(),
        1_000_000,
        &[
            "approve",
            "HEAD",
            "--key",
            "/dev/zero",
            "--as",
            "alice@example.com",
            "--no-push",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("/dev/zero") && !run.stderr.contains("out of memory"),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------
// Commit signatures

#[test]
fn a_commit_signature_counts_only_over_its_own_content_in_the_git_namespace() {
    let lab = Lab::new(SIGNED_BY_LEAD);
    lab.rename("a2");
    let signed = lab.signed_commit("lead", "Rename a, signed\n");
    let summary = |head: &str| {
        let plan = lab.plan_json(&lab.base, head);
        gate_requirement(&plan, "signedBy")["summary"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(summary(&signed), "signed by lead@example.com");
    let text = lab.git(&["cat-file", "commit", &signed]) + "\n";
    let payload = unsigned(&text);
    let sign_in = |namespace: &str| {
        let armor = lab.keys["lead"].sign(namespace, payload.as_bytes());
        lab.raw_commit(&with_signature(&payload, &armor))
    };
    // Made by hand the way git makes it, it verifies: what follows fails for what it is.
    assert_eq!(summary(&sign_in("git")), "signed by lead@example.com");
    let cases = [
        (
            "moved onto other content",
            lab.raw_commit(&text.replace("Rename a, signed", "Rename a, and more")),
            "made over other content",
        ),
        (
            "made in namespace file",
            sign_in("file"),
            "signed in the namespace file, not in git",
        ),
        (
            "a GPG signature",
            lab.raw_commit(&with_signature(
                &payload,
                "-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEE\n-----END PGP SIGNATURE-----\n",
            )),
            "a GPG signature",
        ),
        (
            "a signature of 40 KB",
            lab.raw_commit(&with_signature(
                &payload,
                &format!(
                    "-----BEGIN SSH SIGNATURE-----\n{}-----END SSH SIGNATURE-----\n",
                    format!("{}\n", "A".repeat(76)).repeat(540)
                ),
            )),
            "more than the 16384",
        ),
    ];
    for (what, head, says) in cases {
        let said = summary(&head);
        assert!(
            said.starts_with("not signed by one of lead@example.com") && said.contains(says),
            "{what}: {said}"
        );
    }
}

#[test]
fn signed_by_is_judged_when_the_gate_decides_not_at_a_committer_time_the_signer_chose() {
    let lab = Lab::new(SIGNED_BY_LEAD);
    for (validity, committed) in [
        ("valid-before=\"20250101Z\"", "2024-06-01T00:00:00Z"),
        ("valid-after=\"20300101Z\"", "2031-01-01T00:00:00Z"),
    ] {
        lab.allow(&lab.listed("lead", &format!("lead@example.com {validity}")));
        lab.git(&["reset", "-q", "--hard", &lab.base]);
        lab.rename("a2");
        let head = lab.signed_commit_env(
            "lead",
            "Rename a\n\nGate-Override: prod expiring tonight\n",
            &[("GIT_COMMITTER_DATE", committed)],
        );
        let plan = lab.plan_json(&lab.base, &head);
        assert_eq!(
            plan["verdict"],
            "blocked",
            "{validity}: {}",
            gate_requirement(&plan, "signedBy")["summary"]
        );
    }
}

// ---------------------------------------------------------------------------------------
// Overrides

#[test]
fn an_override_counts_only_in_the_trailers_and_for_a_gate_that_exists() {
    let lab = Lab::new(ONE_APPROVAL);
    lab.rename("a2");
    let outcome = |message: &str| {
        let head = lab.signed_commit("lead", message);
        lab.git(&["reset", "-q", "--soft", "HEAD~1"]);
        let plan = lab.plan_json(&lab.base, &head);
        plan["gates"][0]["outcome"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for message in [
        "Rename a\n\nGate-Override: prod in the body\n\nMore text after it.\n",
        "Rename a\n\nA paragraph of text\nGate-Override: prod inside the paragraph\n",
        "Rename a\n\nGate-Override: nope no such gate\n",
        "Rename a\n\nGate-Override: prod\n",
    ] {
        assert_eq!(outcome(message), "fail", "{message:?}");
    }
    assert_eq!(
        outcome("Rename a\n\nGate-Override: prod expiring tonight\n"),
        "overridden"
    );
}

#[test]
fn a_huge_override_reason_full_of_controls_is_cut_and_escaped_in_every_report() {
    let lab = Lab::new(ONE_APPROVAL);
    lab.rename("a2");
    let head = lab.signed_commit(
        "lead",
        &format!(
            "Rename a\n\nGate-Override: prod \u{1b}[2J\u{202e}\u{7}{}\n",
            "x".repeat(2_000_000)
        ),
    );
    for format in ["text", "markdown", "json", "junit", "sarif"] {
        let run = lab.plan(&lab.base, &head, &["--format", format]);
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(all.len() < 100_000, "{format}: {} bytes", all.len());
        assert!(
            !all.contains('\u{1b}') && !all.contains('\u{7}'),
            "{format}"
        );
        if format == "text" || format == "markdown" {
            assert!(!all.contains('\u{202e}'), "{format}");
        }
    }
    let text = lab.plan(&lab.base, &head, &[]).stdout;
    assert!(text.contains("overridden by lead@example.com"), "{text}");
}

#[test]
fn an_override_reason_reaches_the_log_escaped() {
    let lab = Lab::in_force(ONE_APPROVAL);
    lab.rename("a2");
    lab.signed_commit(
        "lead",
        "Rename a\n\nGate-Override: prod \u{1b}[2Jexpiring\u{7}\n  tonight\rFORGED LOG LINE\n",
    );
    let run = lab.reconcile(0);
    assert_no_raw_controls("reconcile", &format!("{}{}", run.stdout, run.stderr));
    assert!(
        !run.stderr.contains("\n  tonight"),
        "a log line is continued with the reason's: {}",
        run.stderr
    );
}

#[test]
fn an_override_on_a_commit_another_gate_blocks_opens_no_review() {
    let lab = Lab::new(ONE_APPROVAL);
    lab.repo().write(
        "alice-signs.yaml",
        "apiVersion: gitward/v1\nkind: Gate\nmetadata: {name: signed}\nspec:\n  appliesTo: {kinds: [Certificate]}\n  require:\n    signedBy: [alice@example.com]\n",
    );
    let first = lab.signed_commit("alice", "A second gate");
    lab.approve(&first, "bob");
    lab.reconcile(0);
    lab.rename("a2");
    let head = lab.signed_commit("lead", "Rename a\n\nGate-Override: prod expiring tonight\n");
    let run = lab.reconcile(1);
    assert!(run.stdout.contains("blocked"), "{}", run.stdout);
    assert_eq!(lab.status_file("overrides.yaml"), None);
    let note = lab.git(&["notes", "--ref=gitward", "show", &head]);
    assert!(
        note.contains("outcome: overridden") && !note.contains("overrides:"),
        "{note}"
    );
    assert!(lab.served().contains("DNS:a.example.com"));
}

#[test]
fn an_override_signer_listed_for_several_principals_is_each_of_them() {
    let lab = Lab::new(ONE_APPROVAL);
    lab.allow(&lab.listed("lead", "lead@example.com,oncall@example.com"));
    lab.rename("a2");
    let head = lab.signed_commit("lead", "Rename a\n\nGate-Override: prod expiring tonight\n");
    let plan = lab.plan_json(&lab.base, &head);
    assert_eq!(
        plan["gates"][0]["outcome"], "overridden",
        "{}",
        plan["gates"][0]["override"]
    );
}

#[test]
fn the_overrider_does_not_review_their_own_override_with_another_key() {
    let lab = Lab::in_force(ONE_APPROVAL);
    lab.allow(
        &[
            lab.listed("alice", "alice@example.com"),
            lab.listed("lead", "lead@example.com"),
            lab.listed("lead2", "lead@example.com,lead@corp.example.com"),
        ]
        .concat(),
    );
    lab.rename("a2");
    let overriding =
        lab.signed_commit("lead", "Rename a\n\nGate-Override: prod expiring tonight\n");
    lab.reconcile(0);
    assert!(
        lab.status_file("overrides.yaml")
            .is_some_and(|open| open.contains(&overriding)),
        "the override opened a review"
    );
    lab.signed_commit(
        "lead2",
        &format!("Review\n\nOverride-Reviewed: {overriding}\n"),
    );
    lab.reconcile(0);
    let open = lab.status_file("overrides.yaml").unwrap_or_default();
    assert!(
        open.contains(&overriding),
        "the review was closed: {open:?}"
    );
}

#[test]
fn an_open_review_list_forged_on_the_status_branch_is_not_the_hosts_record() {
    let lab = Lab::in_force(ONE_APPROVAL);
    lab.rename("a2");
    let overriding =
        lab.signed_commit("lead", "Rename a\n\nGate-Override: prod expiring tonight\n");
    lab.reconcile(0);
    let open = lab.status_file("overrides.yaml").expect("an open review");
    // Whoever can push the status branch empties the list, or adds a review to it: the host
    // keeps its own record, and the next status says what it holds.
    let twin = format!("{}{}", &overriding[..7], "0".repeat(33));
    lab.forge_status(&[(
        b"overrides.yaml",
        Some(open.replace(&overriding, &twin).as_bytes()),
    )]);
    lab.rename("a3");
    lab.signed_commit(
        "lead",
        "Rename again\n\nGate-Override: prod still expiring\n",
    );
    lab.reconcile(0);
    let open = lab.status_file("overrides.yaml").unwrap_or_default();
    assert!(
        open.contains(&overriding) && !open.contains(&twin),
        "the host's record of open reviews is not what it recorded: {open:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The status branch and notes, read back

#[test]
fn a_forged_status_branch_does_not_make_a_blocked_head_the_commit_in_force() {
    let lab = Lab::in_force(ONE_APPROVAL);
    let head = lab.change("a2");
    lab.reconcile(1);
    let summary = lab.status_file("summary.yaml").expect("a summary");
    let forged: String = summary
        .lines()
        .map(|line| match line.strip_prefix("applied: ") {
            Some(_) => format!("applied: {head}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    lab.forge_status(&[(b"summary.yaml", Some(forged.as_bytes()))]);
    let run = lab.host.reconcile(&[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let served = lab.served();
    assert!(
        served.contains("DNS:a.example.com") && !served.contains("a2.example.com"),
        "{served}"
    );
}

/// A lab whose first commit is applied through a mirror of a bare remote (`file://`),
/// with the change to a2 pushed and blocked; the remote's path.
fn mirrored_and_blocked() -> (Lab, String) {
    let lab = Lab::new(ONE_APPROVAL);
    lab.approve(&lab.base, "alice");
    let remote = lab.file("remote.git").to_string_lossy().into_owned();
    lab.git(&["clone", "-q", "--bare", ".", &remote]);
    lab.git(&["push", "-q", &remote, "refs/notes/gitward-approvals"]);
    lab.host.follow(&format!("file://{remote}"));
    lab.reconcile(0);
    lab.change("a2");
    lab.git(&["push", "-q", &remote, "main"]);
    lab.reconcile(1);
    (lab, remote)
}

/// Pushes to `remote` a status commit whose summary names the head as the commit in force.
fn push_forged_summary(lab: &Lab, remote: &str) {
    let head = lab.git(&["rev-parse", "main"]);
    lab.git(&[
        "fetch",
        "-q",
        remote,
        "+refs/heads/gitward/status:refs/heads/gitward/status",
    ]);
    let summary = lab.status_file("summary.yaml").expect("a summary");
    let forged: String = summary
        .lines()
        .map(|line| match line.strip_prefix("applied: ") {
            Some(_) => format!("applied: {head}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    lab.forge_status(&[(b"summary.yaml", Some(forged.as_bytes()))]);
    lab.git(&["push", "-q", remote, "gitward/status"]);
}

#[test]
fn a_mirror_never_reads_back_a_status_branch_others_pushed() {
    let (lab, remote) = mirrored_and_blocked();
    push_forged_summary(&lab, &remote);
    let run = lab.host.reconcile(&[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(!lab.served().contains("a2.example.com"));
}

#[test]
#[ignore = "known: a new mirror (a new host, or a lost state directory) adopts the remote's status branch as the record, `applied:` included: a head written there as in force is applied without judging a gate (src/remote.rs Mirror::fetch adopting)"]
fn a_new_mirror_does_not_adopt_a_forged_commit_in_force() {
    let (lab, remote) = mirrored_and_blocked();
    push_forged_summary(&lab, &remote);
    std::fs::remove_dir_all(lab.file("state")).expect("the state directory");
    let run = lab.host.reconcile(&[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(!lab.served().contains("a2.example.com"));
}

#[test]
fn a_deleted_status_branch_does_not_let_the_head_judge_itself() {
    let lab = Lab::in_force(ONE_APPROVAL);
    lab.repo().remove("gate.yaml");
    lab.change("a2");
    lab.reconcile(1);
    lab.git(&["update-ref", "-d", "refs/heads/gitward/status"]);
    let run = lab.host.reconcile(&[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(!lab.served().contains("a2.example.com"));
}

#[test]
fn a_certificate_planted_in_the_status_branch_never_reaches_a_target() {
    let lab = Lab::in_force(ONE_APPROVAL);
    let ca = lab.host.out("a").join("ca.pem");
    assert!(lab.host.text(&ca).contains("Test Root CA"));
    lab.host
        .openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "evil.key",
            "-out",
            "evil.pem",
            "-subj",
            "/CN=Evil Root",
            "-days",
            "30",
        ])
        .expect(0);
    let evil = std::fs::read_to_string(lab.file("evil.pem")).expect("evil.pem");
    let text = lab
        .status_file("status/issuer/root.yaml")
        .expect("root's status");
    let mut status: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    status["certificate"] = serde_yaml::Value::String(evil.clone());
    let forged = serde_yaml::to_string(&status).expect("yaml");
    lab.forge_status(&[(b"status/issuer/root.yaml", Some(forged.as_bytes()))]);
    lab.host.reconcile(&[]);
    // Whatever else it does, the host's trust anchor stays the root the daemon made.
    let now = std::fs::read_to_string(&ca).expect("ca.pem");
    assert!(
        !now.contains(evil.trim()) && lab.host.text(&ca).contains("Test Root CA"),
        "ca.pem is now: {}",
        lab.host.text(&ca)
    );
}

#[test]
fn a_status_gate_record_with_a_name_that_is_not_utf8_does_not_stop_reconciling() {
    let lab = Lab::in_force(ONE_APPROVAL);
    lab.forge_status(&[(b"status/gate/caf\xe9.yaml", Some(b"gate: [\n"))]);
    let head = lab.change("a2");
    lab.approve(&head, "bob");
    let run = lab.host.reconcile(&[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(lab.served().contains("a2.example.com"));
}

#[test]
fn a_status_record_filed_under_another_name_does_not_stop_reconciling() {
    let lab = Lab::in_force(ONE_APPROVAL);
    let a = lab
        .status_file("status/certificate/a.yaml")
        .expect("a's status");
    let ghost = a.replacen("name: a\n", "name: ghost\n", 1);
    assert_ne!(a, ghost);
    lab.forge_status(&[(b"status/certificate/zz.yaml", Some(ghost.as_bytes()))]);
    let head = lab.change("a2");
    lab.approve(&head, "bob");
    let run = lab.host.reconcile(&[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(lab.served().contains("a2.example.com"));
}

#[test]
fn hostile_override_records_on_the_status_branch_neither_stop_nor_flood_a_reconcile() {
    let lab = Lab::in_force(ONE_APPROVAL);
    let record = |i: usize| {
        format!(
            "- gate: prod\n  commit: \"{i:040x}\"\n  principal: \"lead@example.com\\e[2J\"\n  keyFingerprint: \"SHA256:x\\u202e\"\n  reason: \"\\e]0;owned\\a {}\"\n  at: 2026-01-01T00:00:00Z\n  reviewDue: 9999-12-31T23:59:59Z\n",
            "y".repeat(100)
        )
    };
    let many: String = (0..5000).map(record).collect();
    for overrides in [many.as_str(), "- gate: [\n", "{}"] {
        lab.forge_status(&[(b"overrides.yaml", Some(overrides.as_bytes()))]);
        lab.git(&["commit", "-q", "--allow-empty", "-m", "Poke"]);
        lab.approve("HEAD", "bob");
        let run = lab.host.reconcile(&[]).expect(0);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert_no_raw_controls("reconcile", &all);
        assert!(all.len() < 10_000, "{} bytes", all.len());
    }
}

/// A note as the daemon writes it on a commit, with controls in every field that is text.
const HOSTILE_NOTE: &str = r#"result: blocked
statusCommit: "\e]0;owned\adeadbeef"
problems: ["\e[2Jcleared \u202Ereversed\r"]
findings: ["policy deny Certificate/a: \e[31mred"]
resources:
  - {kind: Certificate, name: "a\e[1m", change: issued, message: "\e[5mblink"}
overrides:
  - {gate: "prod\e[0m", commit: "0123456789abcdef0123456789abcdef01234567", principal: "lead@example.com\e[8m", keyFingerprint: "SHA256:\u202E", reason: "\e]8;;https://evil.example/\alink", at: 2026-01-01T00:00:00Z, reviewDue: 2026-01-02T00:00:00Z}
"#;

#[test]
fn a_hostile_note_is_shown_escaped_by_explain_and_status() {
    let lab = Lab::new(ONE_APPROVAL);
    let head = lab.change("a2");
    let file = lab.file("note.yaml");
    std::fs::write(&file, HOSTILE_NOTE).expect("note");
    lab.git(&[
        "notes",
        "--ref=gitward",
        "add",
        "-f",
        "-F",
        &file.to_string_lossy(),
        &head,
    ]);
    // Approvals of its tree with controls in their names, which explain lists.
    lab.note_approvals(
        &format!("{head}^{{tree}}"),
        "gate: \u{1b}[31mprod\u{202e}\napprover: \u{1b}]0;owned\u{7}@example.com\n-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
    );
    for args in [["explain", "HEAD"], ["status", "HEAD"]] {
        let run = lab.repo().gitward(&args).expect(0);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert_no_raw_controls(args[0], &all);
        assert!(all.contains("\\u{1b}"), "{}: {all}", args[0]);
    }
    let explained = lab.repo().gitward(&["explain", "HEAD"]).stdout;
    assert!(explained.contains("Approvals of its tree"), "{explained}");
}

#[test]
fn a_hostile_note_is_shown_bounded_by_explain_and_status() {
    let lab = Lab::new(ONE_APPROVAL);
    let head = lab.change("a2");
    let note = format!(
        "result: blocked\nstatusCommit: deadbeef\nproblems: [\"{}\"]\n",
        "x".repeat(1_000_000)
    );
    let file = lab.file("note.yaml");
    std::fs::write(&file, note).expect("note");
    lab.git(&[
        "notes",
        "--ref=gitward",
        "add",
        "-f",
        "-F",
        &file.to_string_lossy(),
        &head,
    ]);
    for args in [["explain", "HEAD"], ["status", "HEAD"]] {
        let run = lab.repo().gitward(&args).expect(0);
        let printed = run.stdout.len() + run.stderr.len();
        assert!(printed < 64 * 1024, "{}: {printed} bytes", args[0]);
    }
}

// ---------------------------------------------------------------------------------------
// Scan reports

const EMPTY_REPORT: &str =
    r#"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "scanner"}}, "results": []}]}"#;

#[test]
fn more_matching_reports_than_are_read_fail_the_gate() {
    let lab = Lab::new("    scans: {paths: ['reports/**/*.sarif'], maxLevel: warning}\n");
    lab.repo().write("reports/clean.sarif", EMPTY_REPORT);
    let base = lab.repo().commit("A clean report");
    for i in 0..300 {
        lab.repo()
            .write(&format!("reports/{}/r{i}.sarif", i % 7), EMPTY_REPORT);
    }
    let head = lab.change("a2");
    let run = lab.plan(&base, &head, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("more than 256 files match the report patterns; only 256 are read"),
        "{}",
        run.stdout
    );
    // 256 files are read and pass.
    for i in 255..300 {
        lab.repo().remove(&format!("reports/{}/r{i}.sarif", i % 7));
    }
    let head = lab.repo().commit("Fewer reports");
    assert_eq!(lab.plan(&base, &head, &[]).code, 0);
}

#[test]
fn gates_reading_the_same_reports_do_not_multiply_memory() {
    let lab = Lab::new(ONE_APPROVAL);
    lab.repo().remove("gate.yaml");
    for i in 0..24 {
        lab.repo().write(
            &format!("gates/g{i}.yaml"),
            format!(
                "apiVersion: gitward/v1\nkind: Gate\nmetadata: {{name: g{i}}}\nspec:\n  appliesTo: {{kinds: [Certificate]}}\n  require:\n    scans: {{paths: ['reports/*.sarif'], maxLevel: warning}}\n"
            ),
        );
    }
    let padded = format!(
        "{}{}}}",
        &EMPTY_REPORT[..EMPTY_REPORT.len() - 1],
        " ".repeat(15 << 20)
    );
    for i in 0..4 {
        lab.repo().write(&format!("reports/r{i}.sarif"), &padded);
    }
    let base = lab.repo().commit("Gates over 60 MB of reports");
    let head = lab.change("a2");
    let run = gitward_limited(
        lab.repo().path(),
        1_000_000,
        &["plan", "--base", &base, "--head", &head, "--now", NOW],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

// ---------------------------------------------------------------------------------------
// Allowed signers given to plan

#[test]
fn allowed_signers_files_are_read_within_bounds_and_refused_where_they_go_wrong() {
    let lab = Lab::new(ONE_APPROVAL);
    let head = lab.change("a2");
    lab.approve(&head, "alice");
    let plan_with = |file: &Path| {
        gitward_in(
            lab.repo().path(),
            &[
                "plan",
                "--base",
                &lab.base,
                "--head",
                &head,
                "--allowed-signers",
                &file.to_string_lossy(),
            ],
        )
    };
    let alice = lab.listed("alice", "alice@example.com");
    let carol = lab.keys["carol"].public();
    // 80,000 lines for others before alice's: read, and her approval counts.
    let many: String = (0..80_000)
        .map(|i| format!("u{i}@example.com {carol}\n"))
        .collect();
    let file = lab.file("many");
    std::fs::write(&file, format!("{many}{alice}")).expect("many");
    assert_eq!(plan_with(&file).code, 0);
    // Over 8 MB: refused unread.
    let file = lab.file("huge");
    std::fs::write(&file, format!("{many}{many}{alice}")).expect("huge");
    let run = plan_with(&file).expect(2);
    assert!(
        run.stderr.contains("more than the 8388608 read"),
        "{}",
        run.stderr
    );
    // A line gitward cannot read refuses the file at its place.
    let file = lab.file("bad");
    std::fs::write(
        &file,
        format!("{alice}bob@example.com expiry=\"x\" {carol}\n"),
    )
    .expect("bad");
    let run = plan_with(&file).expect(2);
    assert!(
        run.stderr
            .contains("bad:2:17: `expiry=\"x\"` is neither a key type nor an option"),
        "{}",
        run.stderr
    );
    // What is not a file is refused, not read.
    for path in ["/dev/zero", "/"] {
        let run = plan_with(Path::new(path)).expect(2);
        assert!(
            run.stderr.contains(&format!("{path}: not a file")),
            "{}",
            run.stderr
        );
    }
    // A certificate authority's key vouches for certificates; it does not approve.
    let file = lab.file("ca");
    std::fs::write(
        &file,
        lab.listed("alice", "alice@example.com cert-authority"),
    )
    .expect("ca");
    assert_eq!(plan_with(&file).code, 1);
}
