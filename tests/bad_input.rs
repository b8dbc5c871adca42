//! The bad-input corpus: each `tests/bad-input/<case>/repo/` is committed to a fresh
//! repository, and `validate` (of the commit and of the working tree) must print exactly
//! `tests/bad-input/<case>/expected` and exit 1, and `plan` must exit 2. Set
//! `GITWARD_BLESS=1` to rewrite the expected files after a deliberate change, then review
//! the diff.

use crate::common;

use std::path::Path;

use common::{TestRepo, project_dir};

fn cases() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(project_dir().join("tests/bad-input"))
        .expect("the corpus exists")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    dirs
}

fn check_case(case: &Path) -> Result<(), String> {
    let name = case
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let repo = TestRepo::new();
    repo.write("README.md", "config\n");
    repo.commit("Before");
    repo.copy_tree(&case.join("repo"));
    repo.commit(&name);

    let by_rev = repo.gitward(&["validate", "--rev", "HEAD"]);
    let expected_path = case.join("expected");
    if std::env::var_os("GITWARD_BLESS").is_some() {
        std::fs::write(&expected_path, &by_rev.stdout).map_err(|e| e.to_string())?;
    }
    let expected = std::fs::read_to_string(&expected_path).map_err(|e| format!("{name}: {e}"))?;
    if by_rev.code != 1 || by_rev.stdout != expected {
        return Err(format!(
            "{name}: validate --rev HEAD exited {} with\n{}{}expected exit 1 with\n{expected}",
            by_rev.code, by_rev.stdout, by_rev.stderr
        ));
    }
    let working_tree = repo.gitward(&["validate"]);
    if working_tree.code != 1 || working_tree.stdout != expected {
        return Err(format!(
            "{name}: validate of the working tree exited {} with\n{}",
            working_tree.code, working_tree.stdout
        ));
    }
    let plan = repo.gitward(&["plan", "--base", "HEAD~1", "--head", "HEAD"]);
    let errors: Vec<&str> = expected
        .lines()
        .filter(|l| !l.starts_with("invalid: "))
        .collect();
    if plan.code != 2 || !errors.iter().all(|e| plan.stdout.contains(e)) {
        return Err(format!(
            "{name}: plan exited {} with\n{}",
            plan.code, plan.stdout
        ));
    }
    Ok(())
}

#[test]
fn every_case_of_the_corpus_is_reported_at_its_line_and_fails() {
    let cases = cases();
    assert!(cases.len() >= 25, "the corpus has {} cases", cases.len());
    let failures: Vec<String> = cases.iter().filter_map(|c| check_case(c).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_symbolic_link_is_never_followed() {
    let repo = TestRepo::new();
    repo.write("secret.txt", "apiVersion: gitward/v1\nkind: Sink\n");
    std::os::unix::fs::symlink("/etc/passwd", repo.path().join("passwd.yaml")).expect("symlink");
    std::os::unix::fs::symlink("secret.txt", repo.path().join("inside.yml")).expect("symlink");
    std::fs::create_dir(repo.path().join("real")).expect("mkdir");
    std::os::unix::fs::symlink("real", repo.path().join("certs")).expect("symlink");
    repo.commit("links");
    let expected = "certs:1:1: warning: symbolic link not followed; anything it points to is not loaded\n\
        inside.yml:1:1: symbolic link: gitward never follows links; commit the file itself\n\
        passwd.yaml:1:1: symbolic link: gitward never follows links; commit the file itself\n\
        invalid: 2 errors and 1 warning in 2 files\n";
    let by_rev = repo.gitward(&["validate", "--rev", "HEAD"]).expect(1);
    assert_eq!(by_rev.stdout, expected);
    let working_tree = repo.gitward(&["validate"]).expect(1);
    assert_eq!(working_tree.stdout, expected);
}

#[test]
fn an_oversized_file_is_refused_without_being_parsed() {
    let repo = TestRepo::new();
    let mut big = String::from(
        "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: big}\nspec:\n  type: webhook\n  endpoint: x\n",
    );
    while big.len() <= 1 << 20 {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    let size = big.len();
    repo.write("big.yaml", big);
    repo.commit("big");
    let expected = format!(
        "big.yaml:1:1: file is {size} bytes; gitward reads files of at most 1048576 bytes\ninvalid: 1 error in 1 file\n"
    );
    assert_eq!(
        repo.gitward(&["validate", "--rev", "HEAD"])
            .expect(1)
            .stdout,
        expected
    );
    assert_eq!(repo.gitward(&["validate"]).expect(1).stdout, expected);
}

#[test]
fn problems_in_several_files_are_reported_together() {
    let repo = TestRepo::with_example();
    repo.edit(
        "certificates/prod/api.yaml",
        "keyAlgorithm: ECDSA-P256",
        "keyAlgorithm: ECDSA-P512",
    );
    repo.edit(
        "gates/prod-changes.yaml",
        "notify: [splunk, security-jira]",
        "notify: [splunk, jira]",
    );
    repo.edit(
        "issuers/letsencrypt.yaml",
        "account: letsencrypt",
        "acount: letsencrypt",
    );
    repo.commit("three mistakes");
    let run = repo.gitward(&["validate", "--rev", "HEAD"]).expect(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "certificates/prod/api.yaml:15:17: spec.keyAlgorithm: `ECDSA-P512` is not one of ECDSA-P256, ECDSA-P384, Ed25519, RSA-2048, RSA-3072, RSA-4096; did you mean `ECDSA-P256`?",
            "gates/prod-changes.yaml:48:22: unknown Sink `jira`; did you mean `security-jira`?",
            "issuers/letsencrypt.yaml:13:5: unknown field `acount` in spec.acme; did you mean `account`?",
            "invalid: 3 errors in 3 files",
        ]
    );
}
