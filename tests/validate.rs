//! `gitward validate` on commits and working trees.

use crate::common;

use common::{TestRepo, gitward_in, project_dir, tool};
use serde_json::Value;

const SUMMARY: &str =
    "valid: 4 issuers, 11 certificates, 11 policies, 2 gates, 7 sinks in 41 files\n";

#[test]
fn the_example_repository_is_valid_as_a_commit_and_as_a_working_tree() {
    let repo = TestRepo::with_example();
    assert_eq!(
        repo.gitward(&["validate", "--rev", "HEAD"])
            .expect(0)
            .stdout,
        SUMMARY
    );
    assert_eq!(repo.gitward(&["validate"]).expect(0).stdout, SUMMARY);
    // A plain directory, not a Git repository, validates too.
    let run = gitward_in(&project_dir(), &["validate", "--repo", "example-repo"]).expect(0);
    assert_eq!(run.stdout, SUMMARY);
}

#[test]
fn the_working_tree_is_checked_as_it_is_not_as_committed() {
    let repo = TestRepo::with_example();
    repo.edit("sinks/siem.yaml", "format: leef", "format: xml");
    repo.gitward(&["validate", "--rev", "HEAD"]).expect(0);
    let run = repo.gitward(&["validate"]).expect(1);
    assert!(
        run.stdout.starts_with(
            "sinks/siem.yaml:46:13: spec.syslog.format: `xml` is not one of rfc5424, cef, leef"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn ignored_files_are_skipped_in_commits_and_working_trees() {
    let repo = TestRepo::with_example();
    // drafts/ holds an invalid draft; .gitwardignore lists it.
    repo.gitward(&["validate", "--rev", "HEAD"]).expect(0);
    repo.edit(".gitwardignore", "drafts/\n", "");
    repo.commit("Stop ignoring drafts");
    let run = repo.gitward(&["validate", "--rev", "HEAD"]).expect(1);
    assert!(
        run.stdout.contains("drafts/partner-mtls.yaml:"),
        "{}",
        run.stdout
    );
    // Files Git ignores are not part of a working tree's configuration either.
    repo.edit(".gitwardignore", ".github/\n", ".github/\ndrafts/\n");
    repo.write(".gitignore", "local/\n");
    repo.write("local/scratch.yaml", "not: [a resource\n");
    repo.gitward(&["validate"]).expect(0);
}

#[test]
fn a_working_tree_is_read_as_the_commit_made_of_it() {
    let repo = TestRepo::with_example();
    // A repository inside this one, added as a submodule: a commit holds only its commit id.
    let vendor = repo.path().join("vendor/ca-bundle");
    std::fs::create_dir_all(&vendor).expect("mkdir");
    tool("git", &["init", "-q"], &vendor);
    std::fs::write(vendor.join("broken.yaml"), "not: [a resource\n").expect("write");
    let run = tool(
        "git",
        &[
            "-c",
            "user.name=Vendor",
            "-c",
            "user.email=vendor@example.com",
            "commit",
            "-qm",
            "Bundle",
            "--allow-empty",
        ],
        &vendor,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A file that `.gitignore` lists but that was added anyway is in the commit.
    repo.write(".gitignore", "local/\n");
    repo.write(
        "local/override.yaml",
        "apiVersion: gitward/v1\nkind: Certificate\nmetadata:\n  name: override\n  labels: {env: staging, owner: web}\nspec:\n  issuerRef: example-staging\n  dnsNames: [override.staging.example.com]\n  target: web-tls\n",
    );
    repo.git(&["add", "-f", "local/override.yaml"]);
    repo.commit("A submodule and a forced file");
    // Ignored and never added: in no commit.
    repo.write("local/scratch.yaml", "not: [a resource\n");

    let expected = "vendor/ca-bundle:1:1: warning: submodule not read; gitward loads only this repository's files\n\
                    valid: 4 issuers, 12 certificates, 11 policies, 2 gates, 7 sinks in 42 files (1 warning)\n";
    assert_eq!(
        repo.gitward(&["validate", "--rev", "HEAD"])
            .expect(0)
            .stdout,
        expected
    );
    assert_eq!(repo.gitward(&["validate"]).expect(0).stdout, expected);
}

#[test]
fn json_output_carries_counts_and_diagnostics() {
    let repo = TestRepo::with_example();
    repo.edit(
        "certificates/staging/api.yaml",
        "duration: 30d",
        "duration: 30d\n  renewBefore: 31d",
    );
    let run = repo.gitward(&["validate", "--format", "json"]).expect(1);
    let report: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(report["valid"], false);
    assert_eq!(report["resources"]["Certificate"], 10);
    assert_eq!(
        report["diagnostics"],
        serde_json::json!([{
            "file": "certificates/staging/api.yaml",
            "line": 15,
            "column": 3,
            "severity": "error",
            "message": "renewBefore (31d) must be shorter than duration (30d)"
        }])
    );
}

#[test]
fn usage_problems_exit_2() {
    let outside = tempfile::tempdir().expect("tempdir");
    let run = gitward_in(outside.path(), &["validate", "--rev", "HEAD"]).expect(2);
    assert!(
        run.stderr.starts_with("error: ") && run.stderr.contains("not a Git repository"),
        "{}",
        run.stderr
    );
    let run = gitward_in(outside.path(), &["validate", "--repo", "missing"]).expect(2);
    assert!(
        run.stderr.contains("missing: not a directory"),
        "{}",
        run.stderr
    );
    gitward_in(outside.path(), &["validate", "--format", "xml"]).expect(2);
    let repo = TestRepo::with_example();
    let run = gitward_in(&repo.path().join(".git"), &["validate"]).expect(2);
    assert!(
        run.stderr.contains("is not in a working tree"),
        "{}",
        run.stderr
    );
    let run = repo.gitward(&["validate", "--rev", "v9"]).expect(2);
    assert!(
        run.stderr.contains("revision `v9` not found"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_empty_configuration_is_refused_unless_allowed() {
    const EMPTY: &str =
        "valid: 0 issuers, 0 certificates, 0 policies, 0 gates, 0 sinks in 0 files\n";
    // A wrong --repo in CI: a plain directory with no configuration in it.
    let plain = tempfile::tempdir().expect("tempdir");
    std::fs::write(plain.path().join("README.md"), "not a configuration\n").expect("write");
    let run = gitward_in(plain.path(), &["validate"]).expect(2);
    assert_eq!(run.stdout, "");
    let dir = plain.path().canonicalize().expect("canonical");
    assert_eq!(
        run.stderr,
        format!(
            "error: no gitward resources in {}: check --repo and the revisions (--allow-empty accepts an empty configuration)\n",
            dir.display()
        )
    );
    let run = gitward_in(plain.path(), &["validate", "--allow-empty"]).expect(0);
    assert_eq!(run.stdout, EMPTY);

    let repo = TestRepo::new();
    repo.write("README.md", "nothing yet\n");
    repo.commit("Empty");
    repo.write("README.md", "still nothing\n");
    repo.commit("Still empty");
    let run = repo.gitward(&["validate", "--rev", "HEAD"]).expect(2);
    assert!(
        run.stderr
            .starts_with("error: no gitward resources in `HEAD` of "),
        "{}",
        run.stderr
    );
    let run = repo
        .gitward(&["validate", "--rev", "HEAD", "--allow-empty"])
        .expect(0);
    assert_eq!(run.stdout, EMPTY);
    let run = repo
        .gitward(&["plan", "--base", "HEAD~1", "--head", "HEAD"])
        .expect(2);
    assert!(
        run.stderr
            .starts_with("error: no gitward resources in `HEAD~1` or `HEAD` of "),
        "{}",
        run.stderr
    );
    let run = repo
        .gitward(&[
            "plan",
            "--base",
            "HEAD~1",
            "--head",
            "HEAD",
            "--allow-empty",
        ])
        .expect(0);
    assert!(run.stdout.contains("No changes."), "{}", run.stdout);
}
