//! `gitward init` and `gitward demo`: repositories built from content embedded in the binary.

use crate::common;

use common::peers::Daemon;
use common::{TestRepo, gitward_in, tool};

#[test]
fn init_writes_a_starter_and_its_next_steps_apply_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = gitward_in(dir.path(), &["init", "pki"]).expect(0);
    assert!(
        run.stdout.starts_with(
            "Wrote 9 files to pki and initialised a Git repository.\n\
             A trial host applies it with pki/.gitward/gitward.yaml: it follows main and writes\n"
        ),
        "{}",
        run.stdout
    );
    let pki = dir.path().join("pki");
    assert!(pki.join(".gitwardignore").is_file());
    let branch = tool("git", &["symbolic-ref", "--short", "HEAD"], &pki);
    assert_eq!(branch.stdout.trim(), "main");

    // The steps as printed, in a shell, with the binary named by its own path.
    let (_, steps) = run.stdout.split_once("Next:\n").expect("next steps");
    let gitward = std::fs::canonicalize(env!("CARGO_BIN_EXE_gitward")).expect("the binary");
    assert!(
        steps.contains(&format!("  {} validate\n", gitward.display())),
        "{steps}"
    );
    let shell = std::process::Command::new("sh")
        .args(["-ec", steps])
        .current_dir(dir.path())
        .envs([
            ("GIT_AUTHOR_NAME", "New User"),
            ("GIT_AUTHOR_EMAIL", "new@example.com"),
            ("GIT_COMMITTER_NAME", "New User"),
            ("GIT_COMMITTER_EMAIL", "new@example.com"),
        ])
        .output()
        .expect("sh runs");
    let printed = String::from_utf8_lossy(&shell.stdout);
    assert!(
        shell.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&shell.stderr)
    );
    assert!(
        printed.contains("valid: 2 issuers, 1 certificate, 1 policy, 1 gate, 1 sink in 7 files\n"),
        "{printed}"
    );
    assert!(printed.contains(" applied\n"), "{printed}");
    assert!(pki.join(".gitward/tls/web-tls/app/cert.pem").is_file());
    // The host's files stayed out of the repository.
    assert_eq!(tool("git", &["status", "--porcelain"], &pki).stdout, "");

    // Again: refused in one line of its own, nothing written.
    let again = gitward_in(dir.path(), &["init", "pki"]).expect(2);
    assert_eq!(again.stdout, "");
    assert!(
        again
            .stderr
            .starts_with("error: pki already has .gitwardignore, README.md,")
            && again.stderr.lines().count() == 1,
        "{}",
        again.stderr
    );
}

#[test]
fn init_never_overwrites() {
    let repo = TestRepo::new();
    repo.write("certificates/app.yaml", "mine\n");
    let run = repo.gitward(&["init", "."]).expect(2);
    assert!(
        run.stderr
            .contains("already has certificates/app.yaml; not overwriting anything"),
        "{}",
        run.stderr
    );
    assert_eq!(repo.read("certificates/app.yaml"), "mine\n");
    assert!(!repo.path().join("issuers").exists(), "nothing was written");
}

#[test]
fn demo_builds_a_repository_shows_a_plan_and_applies_each_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let git = |args: &[&str]| {
        let run = tool("git", args, &demo);
        assert_eq!(run.code, 0, "git {args:?}: {}", run.stderr);
        run.stdout.trim().to_owned()
    };
    let mut daemon = Daemon::spawn(
        env!("CARGO_BIN_EXE_gitward"),
        &["demo", "demo"],
        dir.path(),
        &[],
    );
    let certificate = |target: &str, name: &str| {
        demo.join(".gitward/tls")
            .join(target)
            .join(name)
            .join("cert.pem")
    };
    // The demo applies its import before it prints; then the daemon applies main.
    daemon.wait_until("the demo applies main", || {
        daemon.log().contains("gitward now follows main in demo")
            && certificate("web-tls", "api-example-com").exists()
            && tool("git", &["log", "-1", "--notes=gitward", "main"], &demo)
                .stdout
                .contains("result: ")
    });
    let printed = daemon.log();
    assert!(printed.starts_with("Demo repository: demo\n"), "{printed}");
    for expected in [
        "  ~ Certificate/api-example-com     reissue  certificates/prod/api.yaml:1\n",
        "Plan: 1 to issue, 1 to reissue, 1 to remove.",
        "gitward now follows main in demo",
        "metrics       http://127.0.0.1:",
    ] {
        assert!(
            printed.contains(expected),
            "{expected:?} not in:\n{printed}"
        );
    }
    // The public certificate needs an ACME account this host does not grant: it failed, with
    // the reason in the note; the private ones were issued.
    let note = git(&["notes", "--ref=gitward", "show", "main"]);
    assert!(note.contains("result: failed"), "{note}");
    assert!(note.contains("ACME account `letsencrypt`"), "{note}");
    // The host's files stay out of the repository.
    assert_eq!(git(&["status", "--porcelain"]), "");
    assert_eq!(
        git(&["branch", "--format=%(refname:short)"]),
        "gitward/status\nmain\nrotate-api-certificate"
    );
    gitward_in(&demo, &["validate"]).expect(0);
    gitward_in(
        &demo,
        &[
            "plan",
            "--base",
            "main",
            "--head",
            "rotate-api-certificate",
            "--format",
            "sarif",
        ],
    )
    // The proposed change touches prod: the example's gate wants two signed approvals.
    .expect(1);

    // The first step of the README's walk: point www at the private CA and commit.
    let www = demo.join("certificates/prod/www.yaml");
    let text = std::fs::read_to_string(&www).expect("www.yaml");
    std::fs::write(
        &www,
        text.replace("issuerRef: public-acme", "issuerRef: example-issuing"),
    )
    .expect("edit");
    git(&[
        "-c",
        "user.name=Demo User",
        "-c",
        "user.email=demo@example.com",
        "commit",
        "-qam",
        "Issue www from the private CA",
    ]);
    let note_says = |what: &str| {
        tool("git", &["notes", "--ref=gitward", "show", "main"], &demo)
            .stdout
            .contains(what)
    };
    daemon.wait_until("the gate blocks the commit", || {
        note_says("result: blocked")
    });
    // Alice and Bob approve it with the keys the demo made, as the printed line shows; it is
    // applied, or pending until the gate's window opens.
    let approve = printed
        .lines()
        .find_map(|l| l.strip_prefix("  approve       "))
        .unwrap_or_else(|| panic!("no approve line in:\n{printed}"));
    for who in ["alice", "bob"] {
        let words = shlex::split(&approve.replace("alice", who)).expect("a shell command");
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let run = tool(words[0], &words[1..], &demo);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    }
    daemon.wait_until("the approvals count", || {
        note_says("result: applied") || note_says("result: pending")
    });
    // The security lead overrides the gate with a signed commit: applied now, its review open
    // until another principal signs `Override-Reviewed`.
    let signed = |who: &str, message: &[&str]| {
        let key = format!("user.signingkey=.gitward/keys/{who}");
        let mut args = vec![
            "-c",
            "gpg.format=ssh",
            "-c",
            &key,
            "commit",
            "-S",
            "-q",
            "--allow-empty",
        ];
        for m in message {
            args.extend(["-m", m]);
        }
        git(&args);
        git(&["rev-parse", "--short=12", "HEAD"])
    };
    let overriding = signed(
        "security-lead",
        &[
            "Issue www now",
            "Gate-Override: prod-changes www must not wait",
        ],
    );
    daemon.wait_until("the override applies the commit", || {
        note_says("result: applied") && certificate("web-tls", "www-example-com").exists()
    });
    assert!(git(&["show", "gitward/status:overrides.yaml"]).contains("security-lead@example.com"));
    let reviewed = format!("Override-Reviewed: {overriding}");
    signed("alice", &["Review the www override", &reviewed]);
    daemon.wait_until("the review closes", || {
        tool("git", &["show", "gitward/status:overrides.yaml"], &demo).code != 0
    });
    // The review step as the demo printed it, with this binary's own path (it need not be on
    // PATH): main has moved since the branch, and the plan is of merging the branch, so
    // www's fix on main is not shown undone.
    let review = printed
        .lines()
        .find_map(|l| l.strip_prefix("  review        "))
        .unwrap_or_else(|| panic!("no review line in:\n{printed}"));
    let words = shlex::split(review).expect("a shell command");
    assert_eq!(
        std::fs::canonicalize(&words[0]).expect("the printed binary exists"),
        std::fs::canonicalize(env!("CARGO_BIN_EXE_gitward")).expect("the binary")
    );
    assert_eq!(
        words[1..],
        [
            "plan",
            "--base",
            "main",
            "--head",
            "rotate-api-certificate",
            "--allowed-signers",
            ".gitward/allowed_signers"
        ]
    );
    let plan = tool(
        &words[0],
        &words[1..].iter().map(String::as_str).collect::<Vec<_>>(),
        &demo,
    );
    assert_eq!(plan.code, 1, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("0 of 2 approvals"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .lines()
            .next()
            .is_some_and(|l| l.contains("(Review the www override) → merge of ")),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("www-example-com"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains(
            "  ~ Certificate/api-example-com     reissue  certificates/prod/api.yaml:1\n"
        ),
        "{}",
        plan.stdout
    );
    let subject = tool(
        "openssl",
        &[
            "x509",
            "-noout",
            "-subject",
            "-issuer",
            "-in",
            &certificate("web-tls", "www-example-com").to_string_lossy(),
        ],
        &demo,
    );
    assert!(
        subject.stdout.contains("www.example.com"),
        "{}",
        subject.stdout
    );
    assert!(
        subject.stdout.contains("CN = Example Issuing CA 1"),
        "{}",
        subject.stdout
    );

    daemon.signal(nix::sys::signal::Signal::SIGINT);
    assert_eq!(daemon.exit_code(), Some(0));
    // A second demo into the same directory is refused rather than mixed in.
    let again = gitward_in(dir.path(), &["demo", "demo"]).expect(2);
    assert!(
        again.stderr.contains("already a Git repository"),
        "{}",
        again.stderr
    );
}
