//! Trusted signatures against their real peers: `ssh-keygen` makes keys and signatures that
//! gitward must accept or refuse as it does, and checks the ones `gitward approve` makes; `git`
//! signs commits and `git verify-commit` judges them; approvals travel through a bare remote.

use crate::common;
use crate::common::signing;

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use git2::{Oid, Repository};
use gitward::config::HostConfig;
use gitward::remote::Workspace;
use gitward::trust::approvals::{
    APPROVAL_NAMESPACE, APPROVALS_REF, SignedApproval, approvals_of, payload, read_approvals,
};
use gitward::trust::commits::check_commit;
use gitward::trust::signers::{AllowedSigners, NO_SIGNERS};

use common::{Run, TestRepo, gitward_in, tool};
use signing::{Key, ssh_keygen_verifies};

const GATES: &str = "apiVersion: gitward/v1\nkind: Gate\nmetadata: {name: prod-changes}\nspec:\n  appliesTo: {kinds: [Certificate]}\n  require:\n    approvals: {count: 1}\n---\napiVersion: gitward/v1\nkind: Gate\nmetadata: {name: staging-changes}\nspec:\n  appliesTo: {kinds: [Certificate]}\n  require:\n    violations: {deny: 0}\n";

const TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

fn tree() -> Oid {
    Oid::from_str(TREE).unwrap()
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn load(allowed: &Path, revoked: Option<&Path>) -> AllowedSigners {
    AllowedSigners::load(allowed, revoked).unwrap()
}

/// `git` in `dir`, as the test's user.
fn git(dir: &Path, args: &[&str]) -> String {
    let run = tool("git", args, dir);
    assert_eq!(run.code, 0, "git {args:?}: {}", run.stderr);
    run.stdout.trim().to_owned()
}

// Signatures made by ssh-keygen, checked by gitward and ssh-keygen alike.

#[test]
fn signatures_ssh_keygen_makes_verify_for_every_key_type() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let key = Key::new(dir.path(), &format!("alice-{kind}"), kind);
        let allowed = write(
            &dir.path().join(format!("allowed-{kind}")),
            &format!("alice@example.com {}\n", key.public()),
        );
        let message = payload(tree(), "prod-changes", "alice@example.com");
        let signature = key.sign(APPROVAL_NAMESPACE, &message);
        let check = load(&allowed, None).verify(
            APPROVAL_NAMESPACE,
            &message,
            &signature,
            Some("alice@example.com"),
            Utc::now(),
        );
        assert!(check.verified, "{kind}: {check:?}");
        assert_eq!(check.principal.as_deref(), Some("alice@example.com"));
        assert_eq!(check.key_fingerprint, Some(key.fingerprint()), "{kind}");
        assert_eq!(check.problem, None);
    }
}

/// One refusal: the allowed signers (and revoked keys) and the signature gitward checks for
/// alice@example.com over [`payload`] of [`TREE`] and `prod-changes`.
struct Refusal {
    name: &'static str,
    allowed: String,
    revoked: Option<String>,
    signature: String,
    /// What the problem says.
    says: &'static str,
}

#[test]
fn signatures_that_do_not_count_are_refused_with_the_reason_as_ssh_keygen_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Key::new(dir.path(), "alice", "ed25519");
    let mallory = Key::new(dir.path(), "mallory", "ed25519");
    let message = payload(tree(), "prod-changes", "alice@example.com");
    let good = alice.sign(APPROVAL_NAMESPACE, &message);
    let listed = format!("alice@example.com {}\n", alice.public());
    let other_tree = payload(
        Oid::from_str("0123456789012345678901234567890123456789").unwrap(),
        "prod-changes",
        "alice@example.com",
    );
    let mut tampered = good.clone();
    // A character among the last bytes of the blob: the signature itself.
    let body_end = tampered.rfind("\n-----END").unwrap();
    let at = tampered[..body_end]
        .char_indices()
        .rev()
        .filter(|&(_, c)| c.is_ascii_alphanumeric())
        .nth(40)
        .unwrap()
        .0;
    let flipped = if &tampered[at..=at] == "A" { "B" } else { "A" };
    tampered.replace_range(at..=at, flipped);
    let refusals = [
        Refusal {
            name: "a key the host does not list",
            allowed: listed.clone(),
            revoked: None,
            signature: mallory.sign(APPROVAL_NAMESPACE, &message),
            says: "is not in the host's allowed signers",
        },
        Refusal {
            name: "a key listed for another principal",
            allowed: format!("bob@example.com {}\n", alice.public()),
            revoked: None,
            signature: good.clone(),
            says: "is listed for bob@example.com, not for alice@example.com",
        },
        Refusal {
            name: "a key that expired",
            allowed: format!(
                "alice@example.com valid-before=\"20200101Z\" {}\n",
                alice.public()
            ),
            revoked: None,
            signature: good.clone(),
            says: "expired at 2020-01-01T00:00:00+00:00",
        },
        Refusal {
            name: "a key not yet valid",
            allowed: format!(
                "alice@example.com valid-after=\"29990101Z\" {}\n",
                alice.public()
            ),
            revoked: None,
            signature: good.clone(),
            says: "is not valid before 2999-01-01T00:00:00+00:00",
        },
        Refusal {
            name: "a revoked key",
            allowed: listed.clone(),
            revoked: Some(format!("# left the company\n{}\n", alice.public())),
            signature: good.clone(),
            says: "is revoked",
        },
        Refusal {
            name: "a key for commits only",
            allowed: format!("alice@example.com namespaces=\"git\" {}\n", alice.public()),
            revoked: None,
            signature: good.clone(),
            says: "may sign only in the namespaces git, not in gitward-approval",
        },
        Refusal {
            name: "a signature over another tree",
            allowed: listed.clone(),
            revoked: None,
            signature: alice.sign(APPROVAL_NAMESPACE, &other_tree),
            says: "does not match what it is said to sign",
        },
        Refusal {
            name: "a signature over another gate",
            allowed: listed.clone(),
            revoked: None,
            signature: alice.sign(
                APPROVAL_NAMESPACE,
                &payload(tree(), "staging-changes", "alice@example.com"),
            ),
            says: "does not match what it is said to sign",
        },
        Refusal {
            name: "a signature made for commits",
            allowed: listed.clone(),
            revoked: None,
            signature: alice.sign("git", &message),
            says: "signed in the namespace git, not in gitward-approval",
        },
        Refusal {
            name: "a tampered signature",
            allowed: listed.clone(),
            revoked: None,
            signature: tampered,
            says: "does not match what it is said to sign",
        },
        Refusal {
            name: "garbage armor",
            allowed: listed.clone(),
            revoked: None,
            signature:
                "-----BEGIN SSH SIGNATURE-----\nbm90IGEgc2lnbmF0dXJl\n-----END SSH SIGNATURE-----\n"
                    .to_owned(),
            says: "not an SSH signature",
        },
    ];
    for refusal in &refusals {
        let allowed = write(&dir.path().join("allowed"), &refusal.allowed);
        let revoked = refusal
            .revoked
            .as_ref()
            .map(|text| write(&dir.path().join("revoked"), text));
        let check = load(&allowed, revoked.as_deref()).verify(
            APPROVAL_NAMESPACE,
            &message,
            &refusal.signature,
            Some("alice@example.com"),
            Utc::now(),
        );
        assert!(!check.verified, "{}: {check:?}", refusal.name);
        let problem = check.problem.unwrap_or_default();
        assert!(
            problem.contains(refusal.says),
            "{}: {problem:?} does not say {:?}",
            refusal.name,
            refusal.says
        );
        assert!(
            !ssh_keygen_verifies(
                dir.path(),
                &allowed,
                revoked.as_deref(),
                "alice@example.com",
                APPROVAL_NAMESPACE,
                &refusal.signature,
                &message,
            ),
            "{}: ssh-keygen accepts what gitward refuses",
            refusal.name
        );
    }
    // And what both accept, with the same files.
    let allowed = write(&dir.path().join("allowed"), &listed);
    assert!(ssh_keygen_verifies(
        dir.path(),
        &allowed,
        None,
        "alice@example.com",
        APPROVAL_NAMESPACE,
        &good,
        &message
    ));
    let approval = SignedApproval {
        gate: "prod-changes".into(),
        approver: "alice@example.com".into(),
        signature: good,
    };
    assert_eq!(
        approval
            .check(tree(), Some(&load(&allowed, None)), Utc::now())
            .refused,
        None
    );
    let nothing_listed = approval.check(tree(), None, Utc::now());
    assert_eq!(nothing_listed.refused.as_deref(), Some(NO_SIGNERS));
    assert_eq!(nothing_listed.key_fingerprint, Some(alice.fingerprint()));
    let elsewhere = approval.check(
        Oid::from_str("0123456789012345678901234567890123456789").unwrap(),
        Some(&load(&allowed, None)),
        Utc::now(),
    );
    assert_eq!(
        elsewhere.refused.as_deref(),
        Some(
            "the signature is not over this tree, gate and approver: made for another tree or gate, or altered"
        )
    );
}

// Commits signed by git.

/// A repository whose commits git signs with SSH keys.
fn signing_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("a.txt", "a\n");
    repo
}

/// Commits everything, signed with `key` when given, committed at `date` when given.
fn commit(repo: &TestRepo, key: Option<&Key>, date: Option<&str>) -> Oid {
    git(repo.path(), &["add", "-A"]);
    let mut command = Command::new("git");
    command
        .current_dir(repo.path())
        .args([
            "-c",
            "user.name=Alice",
            "-c",
            "user.email=alice@example.com",
        ])
        .args(["-c", "gpg.format=ssh"]);
    if let Some(date) = date {
        command
            .env("GIT_COMMITTER_DATE", date)
            .env("GIT_AUTHOR_DATE", date);
    }
    match key {
        Some(key) => command
            .arg("-c")
            .arg(format!("user.signingkey={}", key.path.display()))
            .args(["commit", "-q", "-S", "--allow-empty", "-m", "change"]),
        None => command.args([
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "change",
        ]),
    };
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Oid::from_str(&git(repo.path(), &["rev-parse", "HEAD"])).unwrap()
}

fn git_verifies(repo: &TestRepo, allowed: &Path, commit: Oid) -> bool {
    tool(
        "git",
        &[
            "-c",
            &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
            "verify-commit",
            &commit.to_string(),
        ],
        repo.path(),
    )
    .code
        == 0
}

#[test]
fn commit_signatures_are_judged_as_git_verify_commit_judges_them() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Key::new(dir.path(), "alice", "ed25519");
    let mallory = Key::new(dir.path(), "mallory", "ecdsa");
    let allowed = write(
        &dir.path().join("allowed"),
        &format!(
            "alice@example.com,release@example.com {}\nold@example.com valid-before=\"20200101Z\" {}\n",
            alice.public(),
            mallory.public()
        ),
    );
    let signers = load(&allowed, None);
    let repo = signing_repo();
    let git2_repo = Repository::open(repo.path()).unwrap();

    let signed = commit(&repo, Some(&alice), None);
    let check = check_commit(&git2_repo, signed, Some(&signers));
    assert!(check.verified, "{check:?}");
    assert_eq!(
        check.principal.as_deref(),
        Some("alice@example.com,release@example.com")
    );
    assert!(check.signed_by("release@example.com"));
    assert!(!check.signed_by("bob@example.com"));
    assert_eq!(check.key_fingerprint, Some(alice.fingerprint()));
    assert!(git_verifies(&repo, &allowed, signed));

    // Judged at the committer's time, as git does: a key that expired since still counts
    // for what it signed while it was valid, and not for what it signs now.
    let then = commit(&repo, Some(&mallory), Some("2019-06-01T12:00:00Z"));
    assert!(check_commit(&git2_repo, then, Some(&signers)).verified);
    assert!(git_verifies(&repo, &allowed, then));
    let now = commit(&repo, Some(&mallory), None);
    let expired = check_commit(&git2_repo, now, Some(&signers));
    assert!(!expired.verified);
    assert!(expired.problem.unwrap().contains("expired at 2020-01-01"));
    assert!(!git_verifies(&repo, &allowed, now));

    let unlisted_key = Key::new(dir.path(), "eve", "ed25519");
    let unlisted = commit(&repo, Some(&unlisted_key), None);
    let check = check_commit(&git2_repo, unlisted, Some(&signers));
    assert!(!check.verified);
    assert_eq!(check.key_fingerprint, Some(unlisted_key.fingerprint()));
    assert!(
        check
            .problem
            .unwrap()
            .contains("is not in the host's allowed signers")
    );
    assert!(!git_verifies(&repo, &allowed, unlisted));

    let unsigned = commit(&repo, None, None);
    let check = check_commit(&git2_repo, unsigned, Some(&signers));
    assert!(!check.verified);
    assert_eq!(check.problem.as_deref(), Some("unsigned"));
    assert!(!git_verifies(&repo, &allowed, unsigned));

    // Without allowed signers on the host, nothing verifies.
    let check = check_commit(&git2_repo, signed, None);
    assert!(!check.verified);
    assert_eq!(check.problem.as_deref(), Some(NO_SIGNERS));
}

#[test]
fn a_gpg_signature_is_reported_as_one_gitward_cannot_verify() {
    let repo = signing_repo();
    commit(&repo, None, None);
    let tree = git(repo.path(), &["rev-parse", "HEAD^{tree}"]);
    let object = format!(
        "tree {tree}\nauthor A <a@example.com> 1700000000 +0000\ncommitter A <a@example.com> 1700000000 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nsigned with gpg\n"
    );
    let path = repo.path().join("object");
    std::fs::write(&path, object).unwrap();
    let id = git(
        repo.path(),
        &["hash-object", "-w", "-t", "commit", &path.to_string_lossy()],
    );
    let git2_repo = Repository::open(repo.path()).unwrap();
    let check = check_commit(&git2_repo, Oid::from_str(&id).unwrap(), None);
    assert!(!check.verified);
    assert_eq!(
        check.problem.as_deref(),
        Some("a GPG signature: gitward verifies SSH signatures only (gpg.format=ssh)")
    );
}

// `gitward approve`, end to end through a bare remote.

/// A bare remote holding a configuration with two gates, and clones of it.
struct Remote {
    dir: tempfile::TempDir,
}

impl Remote {
    fn new() -> Remote {
        let remote = Remote {
            dir: tempfile::tempdir().unwrap(),
        };
        let seed = TestRepo::new();
        seed.write("gates.yaml", GATES);
        seed.commit("Gates");
        git(
            remote.dir.path(),
            &["init", "-q", "--bare", "-b", "main", "remote.git"],
        );
        seed.git(&["push", "-q", &remote.path().to_string_lossy(), "main"]);
        remote
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    fn clone(&self, name: &str, email: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        git(
            self.dir.path(),
            &["clone", "-q", &self.path().to_string_lossy(), name],
        );
        git(&path, &["config", "user.email", email]);
        git(&path, &["config", "user.name", name]);
        path
    }

    fn repo(&self) -> Repository {
        Repository::open_bare(self.path()).unwrap()
    }

    /// The tree of `rev` on the remote.
    fn tree(&self, rev: &str) -> Oid {
        self.repo()
            .revparse_single(rev)
            .unwrap()
            .peel_to_tree()
            .unwrap()
            .id()
    }
}

fn approve(clone: &Path, key: &Key, args: &[&str]) -> Run {
    let key = key.path.to_string_lossy();
    let mut all = vec!["approve", "--key", &key];
    all.extend_from_slice(args);
    gitward_in(clone, &all)
}

#[test]
fn an_approval_is_signed_pushed_and_read_back_on_the_remote_and_ssh_keygen_verifies_it() {
    let remote = Remote::new();
    let keys = tempfile::tempdir().unwrap();
    let clone = remote.clone("alice", "alice@example.com");
    for kind in ["ed25519", "ecdsa"] {
        let key = Key::new(keys.path(), &format!("alice-{kind}"), kind);
        let run = approve(&clone, &key, &["HEAD"]).expect(0);
        let tree = remote.tree("main");
        let head = git(&clone, &["rev-parse", "--short=8", "HEAD"]);
        assert_eq!(
            run.stdout,
            format!(
                "approved gate prod-changes of tree {tree} (commit {head}) as alice@example.com with key {fp}\napproved gate staging-changes of tree {tree} (commit {head}) as alice@example.com with key {fp}\npushed {APPROVALS_REF} to origin\n",
                fp = key.fingerprint()
            ),
            "{kind}"
        );
        // The note annotates the tree, on the remote.
        let note = git(
            &remote.path(),
            &[
                "notes",
                "--ref=gitward-approvals",
                "show",
                &tree.to_string(),
            ],
        );
        assert!(
            note.starts_with(
                "gate: prod-changes\napprover: alice@example.com\n-----BEGIN SSH SIGNATURE-----\n"
            ),
            "{note}"
        );
        let allowed = write(
            &keys.path().join("allowed"),
            &format!("alice@example.com {}\n", key.public()),
        );
        let stored = gitward::trust::approvals::stored(&remote.repo(), tree)
            .unwrap()
            .0;
        assert_eq!(
            stored.len(),
            2,
            "a new approval replaces the same approver's for the gate"
        );
        for approval in &stored {
            assert!(
                ssh_keygen_verifies(
                    keys.path(),
                    &allowed,
                    None,
                    "alice@example.com",
                    APPROVAL_NAMESPACE,
                    &approval.signature,
                    &payload(tree, &approval.gate, "alice@example.com"),
                ),
                "{kind}: ssh-keygen refuses gitward's signature for {}",
                approval.gate
            );
        }
        let approvals = approvals_of(
            &remote.repo(),
            tree,
            Some(&load(&allowed, None)),
            Utc::now(),
        );
        assert_eq!(approvals.len(), 2);
        assert!(
            approvals.iter().all(|a| a.refused.is_none()),
            "{approvals:?}"
        );
        assert_eq!(approvals[0].key_fingerprint, Some(key.fingerprint()));
    }
}

#[test]
fn approvals_pushed_meanwhile_by_others_are_merged_not_lost() {
    let remote = Remote::new();
    let keys = tempfile::tempdir().unwrap();
    let people = ["alice", "bob", "carol", "dave"];
    let clones: Vec<PathBuf> = people
        .iter()
        .map(|p| remote.clone(p, &format!("{p}@example.com")))
        .collect();
    let keys_of: Vec<Key> = people
        .iter()
        .map(|p| Key::new(keys.path(), p, "ed25519"))
        .collect();
    // Alice pushes first; bob's clone does not have her approval: his push is rejected,
    // then merged with hers.
    approve(&clones[0], &keys_of[0], &["HEAD", "--gate", "prod-changes"]).expect(0);
    approve(&clones[1], &keys_of[1], &["HEAD", "--gate", "prod-changes"]).expect(0);
    // Carol and dave at the same time.
    let racing: Vec<_> = [2, 3]
        .iter()
        .map(|&i| {
            Command::new(env!("CARGO_BIN_EXE_gitward"))
                .args(["approve", "--key"])
                .arg(&keys_of[i].path)
                .args(["HEAD", "--gate", "prod-changes"])
                .current_dir(&clones[i])
                .output()
                .unwrap()
        })
        .collect();
    for output in racing {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let allowed: String = people
        .iter()
        .zip(&keys_of)
        .map(|(p, k)| format!("{p}@example.com {}\n", k.public()))
        .collect();
    let allowed = write(&keys.path().join("allowed"), &allowed);
    let found = read_approvals(
        &remote.repo(),
        remote.tree("main"),
        Some(&load(&allowed, None)),
        Utc::now(),
    );
    assert!(found.ignored.is_empty(), "{:?}", found.ignored);
    let mut approvers: Vec<&str> = found
        .approvals
        .iter()
        .map(|a| a.approver.as_str())
        .collect();
    approvers.sort_unstable();
    assert_eq!(
        approvers,
        [
            "alice@example.com",
            "bob@example.com",
            "carol@example.com",
            "dave@example.com"
        ]
    );
    assert!(
        found
            .approvals
            .iter()
            .all(|a| a.refused.is_none() && a.gate == "prod-changes")
    );
    // The merges kept every side's history.
    let log = git(&remote.path(), &["log", "--format=%s", APPROVALS_REF]);
    assert!(log.contains("Approvals merged with the remote's"), "{log}");
}

#[test]
fn an_approval_follows_the_tree_to_every_commit_that_has_it() {
    let remote = Remote::new();
    let keys = tempfile::tempdir().unwrap();
    let key = Key::new(keys.path(), "alice", "ed25519");
    let clone = remote.clone("alice", "alice@example.com");
    approve(
        &clone,
        &key,
        &["HEAD", "--gate", "prod-changes", "--no-push"],
    )
    .expect(0);
    assert!(
        tool(
            "git",
            &["rev-parse", "-q", "--verify", APPROVALS_REF],
            &remote.path()
        )
        .code
            != 0,
        "--no-push pushed"
    );
    // A commit with the same tree (a squash or rebase that changes nothing, here an empty
    // commit) is approved as well; a commit that changes the content is not.
    git(
        &clone,
        &["commit", "-q", "--allow-empty", "-m", "same content"],
    );
    std::fs::write(clone.join("other.yaml"), "# changed\n").unwrap();
    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "-q", "-m", "other content"]);
    let repo = Repository::open(&clone).unwrap();
    let tree_of = |rev: &str| {
        repo.revparse_single(rev)
            .unwrap()
            .peel_to_tree()
            .unwrap()
            .id()
    };
    let allowed = write(
        &keys.path().join("allowed"),
        &format!("alice@example.com {}\n", key.public()),
    );
    let signers = load(&allowed, None);
    let same = approvals_of(&repo, tree_of("HEAD~1"), Some(&signers), Utc::now());
    assert_eq!(same.len(), 1);
    assert_eq!(same[0].refused, None);
    assert!(approvals_of(&repo, tree_of("HEAD"), Some(&signers), Utc::now()).is_empty());
}

#[test]
fn approve_says_what_it_cannot_do() {
    let remote = Remote::new();
    let keys = tempfile::tempdir().unwrap();
    let clone = remote.clone("alice", "alice@example.com");
    let key = Key::new(keys.path(), "alice", "ed25519");
    let run = approve(&clone, &key, &["HEAD", "--as", "alice example"]).expect(2);
    assert!(
        run.stderr.contains("`alice example` is not a principal"),
        "{}",
        run.stderr
    );
    let run = approve(&clone, &key, &["HEAD", "--gate", "Prod"]).expect(2);
    assert!(
        run.stderr.contains("`Prod` is not a gate name"),
        "{}",
        run.stderr
    );
    let run = approve(&clone, &key, &["HEAD", "--gate", "elsewhere", "--no-push"]).expect(0);
    assert!(
        run.stderr
            .contains("warning: `HEAD` defines no gate `elsewhere`"),
        "{}",
        run.stderr
    );
    let public = Key {
        path: PathBuf::from(format!("{}.pub", key.path.display())),
    };
    let run = approve(&clone, &public, &["HEAD"]).expect(2);
    assert!(
        run.stderr.contains("give the private key, not the .pub"),
        "{}",
        run.stderr
    );
    let rsa = Key::new(keys.path(), "rsa", "rsa");
    let run = approve(&clone, &rsa, &["HEAD"]).expect(2);
    assert!(
        run.stderr
            .contains("RSA keys cannot sign approvals with gitward; use an Ed25519 or ECDSA key"),
        "{}",
        run.stderr
    );

    // An encrypted key with no terminal to ask its passphrase on.
    let locked = Key::with_passphrase(keys.path(), "locked", "ed25519", "correct horse");
    let output = Command::new("setsid")
        .arg("-w")
        .arg(env!("CARGO_BIN_EXE_gitward"))
        .args(["approve", "--no-push", "--key"])
        .arg(&locked.path)
        .arg("HEAD")
        .current_dir(&clone)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("it is encrypted and no passphrase could be asked"),
        "{stderr}"
    );

    // The remote refuses the push: the reason is told.
    std::fs::write(
        remote.path().join("hooks/pre-receive"),
        "#!/bin/sh\necho no approvals here >&2\nexit 1\n",
    )
    .unwrap();
    Command::new("chmod")
        .args(["+x"])
        .arg(remote.path().join("hooks/pre-receive"))
        .status()
        .unwrap();
    let other = remote.clone("bob", "bob@example.com");
    let run = approve(
        &other,
        &key,
        &["HEAD", "--gate", "prod-changes", "--as", "bob@example.com"],
    )
    .expect(2);
    assert!(
        run.stderr.contains("rejected 5 times, last: [remote rejected] (pre-receive hook declined): no approvals here"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_default_key_is_the_one_git_signs_with() {
    let remote = Remote::new();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    let fallback = Key::new(&home.path().join(".ssh"), "id_ed25519", "ed25519");
    let signing = Key::new(home.path(), "signing", "ecdsa");
    let clone = remote.clone("alice", "alice@example.com");
    let run = |env_home: &Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_gitward"))
            .args(["approve", "HEAD", "--gate", "prod-changes", "--no-push"])
            .env("HOME", env_home)
            .current_dir(&clone)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(run(home.path()).contains(&fallback.fingerprint()));
    // user.signingkey naming the public half: its private half signs.
    git(
        &clone,
        &[
            "config",
            "user.signingkey",
            &format!("{}.pub", signing.path.display()),
        ],
    );
    assert!(run(home.path()).contains(&signing.fingerprint()));
    // A key given as text names no file: back to ~/.ssh/id_ed25519.
    git(
        &clone,
        &[
            "config",
            "user.signingkey",
            &format!("key::{}", signing.public()),
        ],
    );
    assert!(run(home.path()).contains(&fallback.fingerprint()));
}

// What others write into the approvals notes.

#[test]
fn hostile_notes_are_bounded_and_ignored_with_the_reason() {
    let repo = TestRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("content");
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(dir.path(), "alice", "ed25519");
    let allowed = write(
        &dir.path().join("allowed"),
        &format!("alice@example.com {}\n", key.public()),
    );
    let signers = load(&allowed, None);
    let tree = Oid::from_str(&repo.git(&["rev-parse", "HEAD^{tree}"])).unwrap();
    let good = key.sign(
        APPROVAL_NAMESPACE,
        &payload(tree, "prod-changes", "alice@example.com"),
    );
    let entry = |gate: &str, approver: &str, signature: &str| {
        format!(
            "gate: {gate}\napprover: {approver}\n{}\n\n",
            signature.trim()
        )
    };
    let note = |text: &str| {
        let file = dir.path().join("note");
        std::fs::write(&file, text).unwrap();
        repo.git(&[
            "notes",
            "--ref=gitward-approvals",
            "add",
            "-f",
            "-F",
            &file.to_string_lossy(),
            &tree.to_string(),
        ]);
        read_approvals(
            &Repository::open(repo.path()).unwrap(),
            tree,
            Some(&signers),
            Utc::now(),
        )
    };

    let huge = note(&"x".repeat(2 << 20));
    assert!(huge.approvals.is_empty());
    assert_eq!(huge.ignored.len(), 1);
    assert!(
        huge.ignored[0].contains("more than the 1048576 read"),
        "{:?}",
        huge.ignored
    );

    let garbage = note("\u{1b}[31m not a note\n");
    assert!(garbage.approvals.is_empty());
    assert!(
        garbage.ignored[0].starts_with("line 1: expected `gate: …`"),
        "{:?}",
        garbage.ignored
    );

    // Copies of a good approval, and forged ones around it, count once.
    let forged = key.sign(APPROVAL_NAMESPACE, b"something else");
    let text = [
        entry("prod-changes", "alice@example.com", &forged),
        entry("prod-changes", "alice@example.com", &good),
        entry("prod-changes", "alice@example.com", &good),
        entry("prod-changes", "alice@example.com", &forged),
    ]
    .concat();
    let repeated = note(&text);
    assert_eq!(repeated.approvals.len(), 1);
    assert_eq!(repeated.approvals[0].refused, None);
    assert_eq!(repeated.ignored.len(), 3, "{:?}", repeated.ignored);

    // Thousands of entries: the first 256 are read.
    let many: String = (0..2000)
        .map(|i| entry(&format!("gate-{i}"), "alice@example.com", &good))
        .collect();
    let crowded = note(&many);
    assert_eq!(crowded.approvals.len(), 256);
    assert!(
        crowded
            .ignored
            .iter()
            .any(|i| i.contains("more than 256 approvals"))
    );
    assert!(
        crowded.approvals.iter().all(|a| a.refused.is_some()),
        "signed for one gate only"
    );
}

// The daemon's side: the host config and the mirror.

/// A host config following `url`, with `extra` appended, in `dir`.
fn host_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    write(
        &dir.join("gitward.yaml"),
        &format!("repo: {{url: \"{url}\"}}\nstateDir: state\n{extra}"),
    )
}

#[test]
fn the_daemons_mirror_fetches_the_approvals_people_push() {
    let remote = Remote::new();
    let keys = tempfile::tempdir().unwrap();
    let key = Key::new(keys.path(), "alice", "ed25519");
    let clone = remote.clone("alice", "alice@example.com");
    approve(&clone, &key, &["HEAD", "--gate", "prod-changes"]).expect(0);
    write(
        &keys.path().join("allowed_signers"),
        &format!("alice@example.com {}\n", key.public()),
    );
    let config = HostConfig::load(&host_config(
        keys.path(),
        &format!("file://{}", remote.path().display()),
        "signers: {allowedSignersFile: allowed_signers}\n",
    ))
    .unwrap();
    let workspace = Workspace::of(&config);
    workspace.fetch("main", "gitward/status").unwrap();
    assert!(workspace.has(APPROVALS_REF));
    let mirror = Repository::open_bare(workspace.path()).unwrap();
    let approvals = approvals_of(
        &mirror,
        remote.tree("main"),
        config.allowed_signers().as_deref(),
        Utc::now(),
    );
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].refused, None);
}

#[test]
fn allowed_signers_that_cannot_be_read_keep_the_host_from_starting_and_edits_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Key::new(dir.path(), "alice", "ed25519");
    let config_file = host_config(
        dir.path(),
        "/srv/pki",
        "signers:\n  allowedSignersFile: allowed_signers\n  revocationFile: revoked\ngates: {trustTrailers: true}\n",
    );
    let problems = |path: &Path| -> Vec<String> {
        HostConfig::load(path)
            .unwrap_err()
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let shown = config_file.display().to_string();
    let allowed = dir.path().join("allowed_signers");
    let missing = problems(&config_file);
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].starts_with(&format!(
            "{shown}:4:23: signers.allowedSignersFile: cannot read {}: ",
            allowed.display()
        )),
        "{missing:?}"
    );
    let revoked = write(&dir.path().join("revoked"), "");
    write(
        &allowed,
        &format!(
            "# team\nalice@example.com {}\nbob@example.com\n",
            alice.public()
        ),
    );
    assert_eq!(
        problems(&config_file),
        [format!(
            "{}:3:16: a public key is missing",
            allowed.display()
        )]
    );
    write(&allowed, &format!("alice@example.com {}\n", alice.public()));
    write(&revoked, "SSHKRL\n\0binary");
    assert_eq!(
        problems(&config_file),
        [format!(
            "{}:1:1: a key revocation list (KRL) is a binary format gitward does not read; list the revoked public keys one per line",
            revoked.display()
        )]
    );

    // Loaded, then edited under the running host.
    write(&revoked, "");
    let config = HostConfig::load(&config_file).unwrap();
    assert!(config.trust_trailers());
    let message = payload(tree(), "prod-changes", "alice@example.com");
    let signature = alice.sign(APPROVAL_NAMESPACE, &message);
    let verified = |at: DateTime<Utc>| {
        config.allowed_signers().unwrap().verify(
            APPROVAL_NAMESPACE,
            &message,
            &signature,
            Some("alice@example.com"),
            at,
        )
    };
    assert!(verified(Utc::now()).verified);
    write(&revoked, &format!("{}\n", alice.public()));
    assert!(
        verified(Utc::now())
            .problem
            .unwrap()
            .ends_with("is revoked")
    );
    // An edit that cannot be read leaves the last good signers (the key revoked) in force.
    write(&allowed, "alice@example.com ssh-ed25519\n");
    write(&revoked, "");
    assert!(
        verified(Utc::now())
            .problem
            .unwrap()
            .ends_with("is revoked")
    );
    write(&allowed, &format!("alice@example.com {}\n", alice.public()));
    assert!(verified(Utc::now()).verified);
}
