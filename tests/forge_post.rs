//! `gitward plan --post` from a CI job: the binary, run in a real repository with a CI
//! system's variables set, posts the commit status and the one plan comment to a stand-in of
//! the forge's API, and a second push updates that comment instead of adding one.

use crate::common;
use crate::common::ci;
use crate::fakes;
use crate::fakes::github as github_fake;
use crate::fakes::gitlab as gitlab_fake;

use ci::{PLAN, gitward_in_ci, repo_with_change};
use common::TestRepo;
use fakes::guard;
use github_fake::{GitHub, Trick};
use gitlab_fake::GitLab;

/// What GitHub Actions sets for a `pull_request` run of pull request `number` at `head`.
fn actions_env(
    repo: &TestRepo,
    github: &GitHub,
    number: u64,
    head: &str,
) -> Vec<(&'static str, String)> {
    let event = ci::pull_request_event(repo, number, head);
    vec![
        ("GITHUB_ACTIONS", "true".to_owned()),
        ("GITHUB_API_URL", github.api_url()),
        ("GITHUB_SERVER_URL", "https://github.example.com".to_owned()),
        (
            "GITHUB_REPOSITORY",
            format!("{}/{}", github_fake::OWNER, github_fake::REPO),
        ),
        ("GITHUB_RUN_ID", "4242".to_owned()),
        ("GITHUB_EVENT_PATH", event.display().to_string()),
        // The test merge GitHub checks out; the status must not go there.
        ("GITHUB_SHA", "f".repeat(40)),
        ("GITHUB_TOKEN", github_fake::TOKEN.to_owned()),
    ]
}

#[tokio::test]
async fn github_actions_gets_a_status_on_the_head_and_one_comment_kept_up_to_date() {
    guard(async {
        let github = GitHub::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let run = gitward_in_ci(repo.path(), PLAN, &actions_env(&repo, &github, 7, &head))
            .await
            .expect(0);
        assert!(
            run.stderr.contains(
                "posted to github acme/pki #7 (github-actions): status gitward/plan success"
            ),
            "{}",
            run.stderr
        );
        {
            let forge = github.state();
            assert_eq!(forge.violations, Vec::<String>::new());
            let statuses = forge.statuses_of(&head, "gitward/plan");
            assert_eq!(statuses.len(), 1, "{:?}", forge.statuses);
            assert_eq!(statuses[0]["state"], "success");
            assert_eq!(
                statuses[0]["description"],
                "would apply: 0 to issue, 1 to reissue, 0 to remove"
            );
            assert_eq!(
                statuses[0]["target_url"],
                "https://github.example.com/acme/pki/actions/runs/4242"
            );
            let comments = forge.comments_on(7);
            assert_eq!(comments.len(), 1);
            assert!(
                comments[0]
                    .body
                    .starts_with("<!-- gitward:plan -->\n### gitward plan: ✅ would apply"),
                "{}",
                comments[0].body
            );
            assert!(comments[0].body.contains("Certificate/api-example-com"));
        }

        // A second push: the same comment says the new plan; no second comment.
        repo.edit(
            "certificates/prod/api.yaml",
            "    - api-v2.example.com\n",
            "    - api-v3.example.com\n",
        );
        let second = repo.commit("api-v3 instead");
        let run = gitward_in_ci(repo.path(), PLAN, &actions_env(&repo, &github, 7, &second))
            .await
            .expect(0);
        assert!(run.stderr.contains("comment updated"), "{}", run.stderr);
        let forge = github.state();
        let comments = forge.comments_on(7);
        assert_eq!(comments.len(), 1);
        assert_eq!(comments[0].edits, 1);
        assert!(
            comments[0].body.contains("api-v3.example.com"),
            "{}",
            comments[0].body
        );
        assert_eq!(forge.statuses_of(&second, "gitward/plan").len(), 1);
        assert_eq!(forge.violations, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn a_blocked_change_fails_the_status_and_an_unchanged_plan_leaves_the_comment_alone() {
    guard(async {
        let github = GitHub::start().await;
        let repo = repo_with_change(true);
        let head = repo.git(&["rev-parse", "change"]);
        let env = actions_env(&repo, &github, 3, &head);
        let now = ["--now", "2026-12-01T10:00:00Z"];
        let args: Vec<&str> = PLAN.iter().chain(&now).copied().collect();
        gitward_in_ci(repo.path(), &args, &env).await.expect(1);
        let run = gitward_in_ci(repo.path(), &args, &env).await.expect(1);
        assert!(run.stderr.contains("comment unchanged"), "{}", run.stderr);
        let forge = github.state();
        let statuses = forge.statuses_of(&head, "gitward/plan");
        assert_eq!(statuses.len(), 2);
        assert_eq!(statuses[1]["state"], "failure");
        let description = statuses[1]["description"].as_str().unwrap();
        assert!(
            description.starts_with("blocked: gate prod-changes: fail"),
            "{description}"
        );
        assert!(description.chars().count() <= 140);
        assert_eq!(forge.comments_on(3).len(), 1);
        assert_eq!(forge.comments_on(3)[0].edits, 0);
    })
    .await;
}

#[tokio::test]
async fn a_persons_comment_with_the_marker_is_never_edited() {
    guard(async {
        let github = GitHub::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let planted = github.state().add_comment(
            7,
            "mallory",
            "User",
            "<!-- gitward:plan -->\n### gitward plan: ✅ would apply (trust me)",
        );
        gitward_in_ci(repo.path(), PLAN, &actions_env(&repo, &github, 7, &head))
            .await
            .expect(0);
        let forge = github.state();
        let comments = forge.comments_on(7);
        assert_eq!(comments.len(), 2, "{comments:?} {:?}", forge.requests);
        let mallorys = comments.iter().find(|c| c.id == planted).unwrap();
        assert_eq!(mallorys.edits, 0);
        assert!(mallorys.body.contains("trust me"));
        assert_eq!(forge.violations, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn comments_are_found_across_pages() {
    guard(async {
        let github = GitHub::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        {
            let mut forge = github.state();
            forge.page_size = 2;
            forge.add_comment(
                9,
                github_fake::ACTIONS_BOT,
                "Bot",
                "<!-- gitward:plan -->\nold plan",
            );
            for n in 0..5 {
                forge.add_comment(9, "alice", "User", &format!("review remark {n}"));
            }
        }
        gitward_in_ci(repo.path(), PLAN, &actions_env(&repo, &github, 9, &head))
            .await
            .expect(0);
        let forge = github.state();
        assert_eq!(forge.comments_on(9).len(), 6);
        assert_eq!(forge.comments_on(9)[0].edits, 1);
        let pages = forge
            .requests
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/issues/9/comments"))
            .count();
        assert_eq!(pages, 3);
    })
    .await;
}

#[tokio::test]
async fn the_token_never_follows_a_link_to_another_host() {
    guard(async {
        let github = GitHub::start().await;
        let elsewhere = GitHub::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        github.state().tricks.push_back(Trick::LinkTo(format!(
            "{}/steal?page=2",
            elsewhere.server.url()
        )));
        let run = gitward_in_ci(repo.path(), PLAN, &actions_env(&repo, &github, 7, &head))
            .await
            .expect(2);
        assert!(
            run.stderr.contains("a link points outside the API"),
            "{}",
            run.stderr
        );
        assert!(elsewhere.state().requests.is_empty());
        assert!(!run.stderr.contains(github_fake::TOKEN));
    })
    .await;
}

#[tokio::test]
async fn a_forge_failure_exits_2_without_the_token_and_the_report_is_still_written() {
    guard(async {
        let github = GitHub::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        github.state().tricks.push_back(Trick::Answer(
            500,
            format!("internal error; your token {} is fine", github_fake::TOKEN),
        ));
        let mut args = PLAN.to_vec();
        args.extend(["--format", "json"]);
        let run = gitward_in_ci(repo.path(), &args, &actions_env(&repo, &github, 7, &head))
            .await
            .expect(2);
        let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("the JSON report");
        assert_eq!(report["verdict"], "apply");
        assert!(
            run.stderr
                .contains("posting to the forge: setting the commit status: GitHub answered 500"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("[redacted]"), "{}", run.stderr);
        assert!(!run.stderr.contains(github_fake::TOKEN), "{}", run.stderr);
    })
    .await;
}

#[tokio::test]
async fn without_a_token_or_a_ci_it_says_what_to_give() {
    guard(async {
        let github = GitHub::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let mut env = actions_env(&repo, &github, 7, &head);
        env.retain(|(k, _)| *k != "GITHUB_TOKEN");
        let run = gitward_in_ci(repo.path(), PLAN, &env).await.expect(2);
        assert!(
            run.stderr.contains("no token to post with"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("GITHUB_TOKEN: ${{ github.token }}"),
            "{}",
            run.stderr
        );
        let run = gitward_in_ci(repo.path(), PLAN, &[]).await.expect(2);
        assert!(
            run.stderr
                .contains("no CI system recognised from the environment: give --forge"),
            "{}",
            run.stderr
        );
        assert!(github.state().requests.is_empty());
    })
    .await;
}

#[tokio::test]
async fn the_command_line_names_the_forge_outside_a_ci() {
    guard(async {
        let github = GitHub::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let token = repo.path().join(".git/token");
        std::fs::write(&token, format!("{}\n", github_fake::TOKEN)).unwrap();
        let api = github.api_url();
        let token_file = token.display().to_string();
        let mut args = PLAN.to_vec();
        args.extend([
            "--forge",
            "github",
            "--repo-url",
            "https://ghe.example.com/acme/pki",
            "--api-url",
            &api,
            "--pr",
            "12",
            "--token-file",
            &token_file,
        ]);
        let run = gitward_in_ci(repo.path(), &args, &[]).await.expect(0);
        assert!(run.stderr.contains("(command line)"), "{}", run.stderr);
        let forge = github.state();
        assert_eq!(forge.statuses_of(&head, "gitward/plan").len(), 1);
        assert_eq!(forge.comments_on(12).len(), 1);
    })
    .await;
}

#[tokio::test]
async fn gitlab_ci_sets_the_pipeline_status_and_keeps_one_note() {
    guard(async {
        let gitlab = GitLab::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let env = |sha: &str| {
            vec![
                ("GITLAB_CI", "true".to_owned()),
                ("CI_API_V4_URL", gitlab.api_url()),
                ("CI_PROJECT_ID", gitlab_fake::PROJECT_ID.to_string()),
                ("CI_MERGE_REQUEST_IID", "5".to_owned()),
                ("CI_COMMIT_SHA", sha.to_owned()),
                (
                    "CI_JOB_URL",
                    "https://gitlab.example.com/ops/pki/-/jobs/77".to_owned(),
                ),
                ("GITLAB_TOKEN", gitlab_fake::TOKEN.to_owned()),
            ]
        };
        let run = gitward_in_ci(repo.path(), PLAN, &env(&head))
            .await
            .expect(0);
        assert!(
            run.stderr.contains("posted to gitlab 1234 #5 (gitlab-ci)"),
            "{}",
            run.stderr
        );
        // The same plan again: GitLab refuses a status moving to the state it is in.
        gitward_in_ci(repo.path(), PLAN, &env(&head))
            .await
            .expect(0);
        repo.edit(
            "certificates/prod/api.yaml",
            "    - api-v2.example.com\n",
            "    - api-v3.example.com\n",
        );
        let second = repo.commit("api-v3 instead");
        gitward_in_ci(repo.path(), PLAN, &env(&second))
            .await
            .expect(0);
        let forge = gitlab.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        assert_eq!(
            forge
                .status_of(&head, "gitward/plan")
                .map(|s| s["status"].clone()),
            Some("success".into())
        );
        assert_eq!(
            forge
                .status_of(&second, "gitward/plan")
                .map(|s| s["status"].clone()),
            Some("success".into())
        );
        let notes = forge.notes_on(5);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].body.contains("api-v3.example.com"));
    })
    .await;
}
