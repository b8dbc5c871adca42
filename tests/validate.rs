//! `gitward validate` on commits and working trees.

mod common;

use common::{TestRepo, gitward_in, project_dir};
use serde_json::Value;

const SUMMARY: &str =
    "valid: 4 issuers, 11 certificates, 11 policies, 2 gates, 6 sinks in 40 files\n";

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
    let run = repo.gitward(&["validate", "--rev", "v9"]).expect(2);
    assert!(
        run.stderr.contains("revision `v9` not found"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_empty_configuration_is_valid() {
    let repo = TestRepo::new();
    repo.write("README.md", "nothing yet\n");
    repo.commit("Empty");
    let run = repo.gitward(&["validate", "--rev", "HEAD"]).expect(0);
    assert_eq!(
        run.stdout,
        "valid: 0 issuers, 0 certificates, 0 policies, 0 gates, 0 sinks in 0 files\n"
    );
}
