//! `gitward` run as a CI job runs it: with exactly the CI variables a test gives, none of
//! the ones the machine running the tests may have.

use std::path::Path;
use std::process::Command;

use super::{Run, TestRepo};

/// Every variable `plan --post` reads to learn about the CI job it runs in
/// (`src/forge/ci.rs`); `forge_post_more.rs` checks that none is missing.
pub const CI_VARIABLES: &[&str] = &[
    "GITHUB_ACTIONS",
    "GITHUB_API_URL",
    "GITHUB_REPOSITORY",
    "GITHUB_EVENT_PATH",
    "GITHUB_TOKEN",
    "GITHUB_SHA",
    "GITHUB_SERVER_URL",
    "GITHUB_RUN_ID",
    "GITEA_ACTIONS",
    "GITEA_TOKEN",
    "GITLAB_CI",
    "CI_API_V4_URL",
    "CI_PROJECT_ID",
    "CI_MERGE_REQUEST_IID",
    "CI_COMMIT_SHA",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA",
    "GITLAB_TOKEN",
    "CI_JOB_URL",
    "TF_BUILD",
    "SYSTEM_COLLECTIONURI",
    "SYSTEM_TEAMPROJECT",
    "SYSTEM_ACCESSTOKEN",
    "SYSTEM_PULLREQUEST_PULLREQUESTID",
    "SYSTEM_PULLREQUEST_PULLREQUESTNUMBER",
    "SYSTEM_PULLREQUEST_SOURCECOMMITID",
    "BUILD_BUILDID",
    "BUILD_REPOSITORY_ID",
    "BUILD_REPOSITORY_NAME",
    "BUILD_REPOSITORY_PROVIDER",
    "BUILD_SOURCEVERSION",
    "BITBUCKET_BUILD_NUMBER",
    "BITBUCKET_WORKSPACE",
    "BITBUCKET_REPO_SLUG",
    "BITBUCKET_PR_ID",
    "BITBUCKET_COMMIT",
    "BITBUCKET_TOKEN",
    "JENKINS_URL",
    "BUILD_URL",
    "CHANGE_ID",
    "CHANGE_URL",
    "CHANGE_BRANCH_COMMIT_ID",
    "GIT_COMMIT",
    "GITWARD_FORGE_TOKEN",
];

/// `gitward` in `dir` with exactly the CI variables of `env`.
pub async fn gitward_in_ci(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Run {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gitward"));
        for name in CI_VARIABLES {
            command.env_remove(name);
        }
        let output = command
            .args(&args)
            .envs(env)
            .current_dir(&dir)
            .output()
            .expect("the gitward binary runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("the run ends")
}

/// The example on `main` and a pull request's branch `change` with one edit; gates open
/// unless `gated`.
pub fn repo_with_change(gated: bool) -> TestRepo {
    let repo = if gated {
        TestRepo::with_example()
    } else {
        TestRepo::with_example_open_gates()
    };
    repo.git(&["checkout", "-q", "-b", "change"]);
    repo.edit(
        "certificates/prod/api.yaml",
        "    - api.internal.example.com\n",
        "    - api.internal.example.com\n    - api-v2.example.com\n",
    );
    repo.commit("Add api-v2");
    repo
}

/// `plan` of `change` against `main`, posting.
pub const PLAN: &[&str] = &[
    "plan",
    "--base",
    "main",
    "--head",
    "change",
    "--date",
    "2026-12-01",
    "--post",
];

/// GitHub's event file for a `pull_request` run of pull request `number` at `head`, written in
/// `repo`'s git directory (out of the work tree); its path.
pub fn pull_request_event(repo: &TestRepo, number: u64, head: &str) -> std::path::PathBuf {
    let event = repo.path().join(".git/event.json");
    std::fs::write(
        &event,
        serde_json::json!({
            "action": "synchronize",
            "number": number,
            "pull_request": {"number": number, "head": {"sha": head}},
        })
        .to_string(),
    )
    .expect("the event file");
    event
}
