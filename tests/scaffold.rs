//! `gitward init` and `gitward demo`: repositories built from content embedded in the binary.

mod common;

use common::{TestRepo, gitward_in};

#[test]
fn init_writes_a_starter_that_validates_and_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = gitward_in(dir.path(), &["init", "pki"]).expect(0);
    assert!(
        run.stdout
            .starts_with("Wrote 9 files to pki and initialised a Git repository."),
        "{}",
        run.stdout
    );
    let pki = dir.path().join("pki");
    assert!(pki.join(".gitwardignore").is_file());
    assert!(pki.join(".git").is_dir());
    assert_eq!(
        gitward_in(&pki, &["validate"]).expect(0).stdout,
        "valid: 2 issuers, 1 certificate, 1 policy, 1 gate, 1 sink in 7 files\n"
    );
    let branch = std::process::Command::new("git")
        .args(["symbolic-ref", "--short", "HEAD"])
        .current_dir(&pki)
        .output()
        .expect("git");
    assert_eq!(String::from_utf8_lossy(&branch.stdout).trim(), "main");
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
fn demo_builds_a_repository_with_a_change_and_shows_its_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let run = gitward_in(dir.path(), &["demo", "demo"]).expect(0);
    assert!(
        run.stdout.starts_with("Demo repository: demo\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "  ~ Certificate/api-example-com     reissue  certificates/prod/api.yaml:1\n"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Plan: 1 to issue, 1 to reissue, 1 to remove."),
        "{}",
        run.stdout
    );
    // A real repository: main checked out and clean, the change on its branch.
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&demo)
            .output()
            .expect("git");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(git(&["status", "--porcelain"]), "");
    assert_eq!(
        git(&["branch", "--format=%(refname:short)"]),
        "main\nrotate-api-certificate"
    );
    assert_eq!(git(&["rev-list", "--count", "rotate-api-certificate"]), "2");
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
    .expect(0);
    // A second demo into the same directory is refused rather than mixed in.
    let again = gitward_in(dir.path(), &["demo", "demo"]).expect(2);
    assert!(
        again.stderr.contains("already a Git repository"),
        "{}",
        again.stderr
    );
}
