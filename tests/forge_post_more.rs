//! `gitward plan --post` to Gitea, Bitbucket Cloud and Azure DevOps: the binary, run in a
//! real repository with Gitea Actions', Bitbucket Pipelines', Azure Pipelines' or Jenkins'
//! variables set (or the forge named on the command line), posts the status on the pull
//! request's head, one plan comment kept up to date across pushes, and on Bitbucket a Code
//! Insights report with its annotations, to stand-ins of each forge's API.

use crate::common;
use crate::common::ci;
use crate::fakes;
use crate::fakes::azure as azure_fake;
use crate::fakes::bitbucket as bitbucket_fake;
use crate::fakes::gitea as gitea_fake;

use ci::{CI_VARIABLES, PLAN, gitward_in_ci, repo_with_change};
use common::TestRepo;
use fakes::guard;

use azure_fake::Azure;
use bitbucket_fake::Bitbucket;
use gitea_fake::Gitea;
use gitward::forge::{self, ForgeKind, Target, api};

const MARKER: &str = "<!-- gitward:plan -->";

/// A person's comment that imitates the plan comment.
fn imitation() -> String {
    format!("{MARKER}\n### gitward plan: ✅ would apply (trust me)")
}

/// The second push of the pull request: another edit on `change`.
fn push_again(repo: &TestRepo) -> String {
    repo.edit(
        "certificates/prod/api.yaml",
        "    - api-v2.example.com\n",
        "    - api-v3.example.com\n",
    );
    repo.commit("api-v3 instead")
}

/// What Gitea Actions sets for a `pull_request` run of pull request `number` at `head`.
fn gitea_actions_env(
    repo: &TestRepo,
    gitea: &Gitea,
    number: u64,
    head: &str,
) -> Vec<(&'static str, String)> {
    let event = ci::pull_request_event(repo, number, head);
    vec![
        ("GITHUB_ACTIONS", "true".to_owned()),
        ("GITEA_ACTIONS", "true".to_owned()),
        ("GITHUB_API_URL", gitea.api_url()),
        ("GITHUB_SERVER_URL", gitea.web_url()),
        (
            "GITHUB_REPOSITORY",
            format!("{}/{}", gitea_fake::OWNER, gitea_fake::REPO),
        ),
        ("GITHUB_RUN_ID", "31".to_owned()),
        ("GITHUB_EVENT_PATH", event.display().to_string()),
        ("GITHUB_SHA", "f".repeat(40)),
        ("GITEA_TOKEN", gitea_fake::TOKEN.to_owned()),
    ]
}

#[tokio::test]
async fn gitea_actions_keeps_one_comment_and_leaves_a_persons_imitation_alone() {
    guard(async {
        let gitea = Gitea::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let planted = gitea.state().add_comment(7, "mallory", 7, &imitation());
        let run = gitward_in_ci(
            repo.path(),
            PLAN,
            &gitea_actions_env(&repo, &gitea, 7, &head),
        )
        .await
        .expect(0);
        assert!(
            run.stderr.contains(
                "posted to gitea acme/pki #7 (gitea-actions): status gitward/plan success"
            ),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("comment created"), "{}", run.stderr);
        {
            let forge = gitea.state();
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
                format!("{}/acme/pki/actions/runs/31", gitea.web_url())
            );
            assert!(
                forge
                    .statuses_of(&"f".repeat(40), "gitward/plan")
                    .is_empty()
            );
        }
        let second = push_again(&repo);
        let run = gitward_in_ci(
            repo.path(),
            PLAN,
            &gitea_actions_env(&repo, &gitea, 7, &second),
        )
        .await
        .expect(0);
        assert!(run.stderr.contains("comment updated"), "{}", run.stderr);
        let forge = gitea.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        assert_eq!(forge.statuses_of(&second, "gitward/plan").len(), 1);
        let comments = forge.comments_on(7);
        assert_eq!(comments.len(), 2, "{comments:?}");
        let mallorys = comments.iter().find(|c| c.id == planted).unwrap();
        assert_eq!((mallorys.edits, mallorys.body.clone()), (0, imitation()));
        let ours = comments.iter().find(|c| c.id != planted).unwrap();
        assert_eq!(
            (ours.login.as_str(), ours.edits),
            (gitea_fake::ACTIONS_LOGIN, 1)
        );
        assert!(ours.body.starts_with(MARKER), "{}", ours.body);
        assert!(ours.body.contains("api-v3.example.com"), "{}", ours.body);
    })
    .await;
}

#[tokio::test]
async fn jenkins_posts_to_the_forge_its_change_url_names_on_the_heads_commit() {
    guard(async {
        let gitea = Gitea::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let env = vec![
            ("JENKINS_URL", "https://ci.example.com/".to_owned()),
            (
                "BUILD_URL",
                "https://ci.example.com/job/pki/job/PR-12/3/".to_owned(),
            ),
            ("CHANGE_ID", "12".to_owned()),
            (
                "CHANGE_URL",
                format!("{}/acme/pki/pulls/12", gitea.web_url()),
            ),
            ("CHANGE_BRANCH_COMMIT_ID", head.clone()),
            // The merge with the target Jenkins built: not what reviewers see.
            ("GIT_COMMIT", "e".repeat(40)),
            ("GITWARD_FORGE_TOKEN", gitea_fake::TOKEN.to_owned()),
        ];
        let run = gitward_in_ci(repo.path(), PLAN, &env).await.expect(0);
        assert!(
            run.stderr
                .contains("posted to gitea acme/pki #12 (jenkins)"),
            "{}",
            run.stderr
        );
        let forge = gitea.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        let statuses = forge.statuses_of(&head, "gitward/plan");
        assert_eq!(statuses.len(), 1, "{:?}", forge.statuses);
        assert_eq!(
            statuses[0]["target_url"],
            "https://ci.example.com/job/pki/job/PR-12/3/"
        );
        assert_eq!(forge.comments_on(12).len(), 1);
    })
    .await;
}

/// What Bitbucket Pipelines sets for a pull request pipeline of pull request 4 at `head`.
fn pipelines_env(head: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BITBUCKET_BUILD_NUMBER", "8".to_owned()),
        ("BITBUCKET_WORKSPACE", bitbucket_fake::WORKSPACE.to_owned()),
        ("BITBUCKET_REPO_SLUG", bitbucket_fake::SLUG.to_owned()),
        ("BITBUCKET_PR_ID", "4".to_owned()),
        ("BITBUCKET_COMMIT", head.to_owned()),
        ("BITBUCKET_TOKEN", bitbucket_fake::TOKEN.to_owned()),
    ]
}

/// Bitbucket Cloud's API is not where the pipeline's variables say in a test.
fn with_api<'a>(args: &[&'a str], api: &'a str) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(["--api-url", api]);
    all
}

fn bitbucket_pull(id: u64, head: &str) -> bitbucket_fake::Pull {
    bitbucket_fake::Pull {
        id,
        author: bitbucket_fake::Account::person("ann"),
        branch: "change".to_owned(),
        head: head.to_owned(),
        merged_as: None,
        participants: Vec::new(),
    }
}

/// The Code Insights report of the example's change at `head`: it would apply, with the
/// one finding of the example annotated where it is.
fn check_insights(forge: &bitbucket_fake::Forge, head: &str) {
    let report = forge.report(head, "gitward-plan").expect("the report");
    assert_eq!(report["result"], "PASSED");
    assert_eq!(
        report["link"],
        "https://bitbucket.org/acme/pki/pipelines/results/8"
    );
    assert_eq!(
        report["details"],
        "would apply: 0 to issue, 1 to reissue, 0 to remove"
    );
    let data: Vec<(String, serde_json::Value)> = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["title"].as_str().unwrap().to_owned(), d["value"].clone()))
        .collect();
    assert!(
        data.contains(&("Safe to merge?".to_owned(), true.into())),
        "{data:?}"
    );
    assert!(
        data.contains(&("To reissue".to_owned(), 1.into())),
        "{data:?}"
    );
    let annotations = forge.annotations_of(head, "gitward-plan");
    assert_eq!(annotations.len(), 1, "{annotations:?}");
    let erp = annotations[0];
    assert_eq!(
        (
            erp["path"].as_str(),
            erp["line"].as_u64(),
            erp["severity"].as_str()
        ),
        (Some("certificates/prod/erp.yaml"), Some(16), Some("MEDIUM"))
    );
    assert!(
        erp["title"]
            .as_str()
            .unwrap()
            .starts_with("max-validity: Certificate/legacy-erp")
    );
}

#[tokio::test]
async fn bitbucket_pipelines_gets_a_build_status_one_comment_and_a_code_insights_report() {
    guard(async {
        let bitbucket = Bitbucket::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let api = bitbucket.api_url();
        let planted = {
            let mut forge = bitbucket.state();
            forge.pulls.push(bitbucket_pull(4, &head));
            let planted =
                forge.add_comment(4, bitbucket_fake::Account::person("mallory"), &imitation());
            // Enough remarks that the comments come in two pages.
            for n in 0..55 {
                forge.add_comment(
                    4,
                    bitbucket_fake::Account::person("alice"),
                    &format!("remark {n}"),
                );
            }
            planted
        };
        let run = gitward_in_ci(repo.path(), &with_api(PLAN, &api), &pipelines_env(&head))
            .await
            .expect(0);
        assert!(
            run.stderr.contains(
                "posted to bitbucket acme/pki #4 (bitbucket-pipelines): status gitward/plan success"
            ),
            "{}",
            run.stderr
        );
        {
            let forge = bitbucket.state();
            assert_eq!(forge.violations, Vec::<String>::new());
            let status = forge
                .status(&head, "gitward-plan")
                .expect("the build status");
            assert_eq!(status["state"], "SUCCESSFUL");
            assert_eq!(status["name"], "gitward/plan");
            // Without the Commit Links app the open pull requests give the source branch.
            assert_eq!(status["refname"], "change");
            assert_eq!(
                status["url"],
                "https://bitbucket.org/acme/pki/pipelines/results/8"
            );
            check_insights(&forge, &head);
            let ours: Vec<_> = forge
                .comments_on(4)
                .into_iter()
                .filter(|c| c.id != planted && c.raw.starts_with(MARKER))
                .collect();
            assert_eq!(ours.len(), 1);
            assert_eq!(ours[0].user, bitbucket_fake::Account::bot());
            let pages = forge
                .requests
                .iter()
                .filter(|r| r.method == "GET" && r.path.ends_with("/pullrequests/4/comments"))
                .count();
            assert_eq!(pages, 2);
        }
        let second = push_again(&repo);
        bitbucket.state().pulls[0].head = second.clone();
        let run = gitward_in_ci(repo.path(), &with_api(PLAN, &api), &pipelines_env(&second))
            .await
            .expect(0);
        assert!(run.stderr.contains("comment updated"), "{}", run.stderr);
        let forge = bitbucket.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        assert_eq!(
            forge
                .status(&second, "gitward-plan")
                .map(|s| s["state"].clone()),
            Some("SUCCESSFUL".into())
        );
        assert!(forge.report(&second, "gitward-plan").is_some());
        let comments = forge.comments_on(4);
        assert_eq!(comments.len(), 57);
        let mallorys = comments.iter().find(|c| c.id == planted).unwrap();
        assert_eq!((mallorys.edits, mallorys.raw.clone()), (0, imitation()));
        let ours: Vec<_> = comments
            .iter()
            .filter(|c| c.user == bitbucket_fake::Account::bot())
            .collect();
        assert_eq!((ours.len(), ours[0].edits), (1, 1));
        assert!(ours[0].raw.contains("api-v3.example.com"));
    })
    .await;
}

/// The example in `infra/pki` of a monorepo, and a change that adds `count` certificates
/// valid longer than policy `max-validity` allows.
fn monorepo_with_long_lived(count: usize) -> TestRepo {
    let repo = TestRepo::new();
    let root = repo.path().join("infra/pki");
    common::copy_dir(&common::project_dir().join("example-repo"), &root);
    common::open_gates(&root);
    repo.commit("Example configuration in a monorepo");
    repo.git(&["checkout", "-q", "-b", "change"]);
    let erp = repo.read("infra/pki/certificates/prod/erp.yaml");
    for n in 0..count {
        repo.write(
            &format!("infra/pki/certificates/prod/bulk-{n:03}.yaml"),
            erp.replace("legacy-erp", &format!("bulk-{n:03}")).replace(
                "erp.example.internal",
                &format!("bulk-{n:03}.example.internal"),
            ),
        );
    }
    repo.commit("Many long-lived certificates");
    repo
}

#[tokio::test]
async fn a_blocked_monorepo_change_is_annotated_at_repository_paths_in_batches_bitbucket_takes() {
    guard(async {
        let bitbucket = Bitbucket::start().await;
        let repo = monorepo_with_long_lived(250);
        let head = repo.git(&["rev-parse", "change"]);
        let token = repo.path().join(".git/token");
        std::fs::write(
            &token,
            format!(
                "{}:{}\n",
                bitbucket_fake::APP_USER,
                bitbucket_fake::APP_PASSWORD
            ),
        )
        .unwrap();
        let (api, token) = (bitbucket.api_url(), token.display().to_string());
        // Another tool's bot comment with the marker: the app password's user is not it.
        let planted = {
            let mut forge = bitbucket.state();
            forge.pulls.push(bitbucket_pull(4, &head));
            forge.commit_links_app = true;
            forge.add_comment(4, bitbucket_fake::Account::bot(), &imitation())
        };
        let mut args = PLAN.to_vec();
        args.extend([
            "--repo",
            "infra/pki",
            "--forge",
            "bitbucket",
            "--repo-url",
            "https://bitbucket.org/acme/pki",
            "--api-url",
            &api,
            "--pr",
            "4",
            "--token-file",
            &token,
        ]);
        let run = gitward_in_ci(repo.path(), &args, &[]).await.expect(1);
        assert!(
            run.stderr.contains(
                "posted to bitbucket acme/pki #4 (command line): status gitward/plan failure"
            ),
            "{}",
            run.stderr
        );
        let forge = bitbucket.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        assert_eq!(
            forge
                .status(&head, "gitward-plan")
                .map(|s| s["state"].clone()),
            Some("FAILED".into())
        );
        assert_eq!(
            forge
                .report(&head, "gitward-plan")
                .map(|r| r["result"].clone()),
            Some("FAILED".into())
        );
        let annotations = forge.annotations_of(&head, "gitward-plan");
        assert_eq!(annotations.len(), 251);
        let batches: Vec<usize> = forge
            .requests
            .iter()
            .filter(|r| r.path.ends_with("/reports/gitward-plan/annotations"))
            .map(|r| {
                r.body
                    .as_ref()
                    .and_then(|b| b.as_array())
                    .map_or(0, Vec::len)
            })
            .collect();
        assert_eq!(batches, [100, 100, 51]);
        let bulk = annotations
            .iter()
            .find(|a| a["path"] == "infra/pki/certificates/prod/bulk-007.yaml")
            .expect("an annotation at the file's path in the repository");
        assert_eq!(
            (bulk["line"].as_u64(), bulk["result"].as_str()),
            (Some(16), Some("FAILED"))
        );
        assert!(
            bulk["details"]
                .as_str()
                .unwrap()
                .contains("it blocks the change"),
            "{bulk}"
        );
        // The comment fits what Bitbucket takes, and the other bot's is untouched.
        let comments = forge.comments_on(4);
        assert_eq!(comments.len(), 2);
        let other = comments.iter().find(|c| c.id == planted).unwrap();
        assert_eq!(other.edits, 0);
        let ours = comments.iter().find(|c| c.id != planted).unwrap();
        assert_eq!(ours.user.nickname, bitbucket_fake::APP_USER);
        assert!(ours.raw.chars().count() < bitbucket_fake::COMMENT_REFUSED_AT);
        assert!(
            ours.raw.contains("whole report is in the CI job's output"),
            "the report was long enough to be cut"
        );
    })
    .await;
}

/// What Azure Pipelines sets for a pull request build of pull request 3 at `head`.
fn azure_pipelines_env(azure: &Azure, head: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TF_BUILD", "True".to_owned()),
        ("SYSTEM_COLLECTIONURI", azure.collection_url()),
        ("SYSTEM_TEAMPROJECT", azure_fake::PROJECT.to_owned()),
        ("BUILD_REPOSITORY_ID", azure_fake::REPO_ID.to_owned()),
        ("BUILD_REPOSITORY_NAME", azure_fake::REPO_NAME.to_owned()),
        ("BUILD_REPOSITORY_PROVIDER", "TfsGit".to_owned()),
        ("BUILD_BUILDID", "77".to_owned()),
        ("SYSTEM_PULLREQUEST_PULLREQUESTID", "3".to_owned()),
        ("SYSTEM_PULLREQUEST_SOURCECOMMITID", head.to_owned()),
        // The merge Azure Pipelines builds: not what reviewers see.
        ("BUILD_SOURCEVERSION", "d".repeat(40)),
        ("SYSTEM_ACCESSTOKEN", azure_fake::SYSTEM_TOKEN.to_owned()),
    ]
}

#[tokio::test]
async fn azure_pipelines_sets_the_pull_request_status_and_keeps_one_thread() {
    guard(async {
        let azure = Azure::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let planted = {
            let mut forge = azure.state();
            forge.open_pull(3, &head);
            forge.add_thread(3, azure_fake::Identity::person("mallory"), "text", &imitation())
        };
        let run = gitward_in_ci(repo.path(), PLAN, &azure_pipelines_env(&azure, &head))
            .await
            .expect(0);
        let repository = format!("{}/{}", azure_fake::PROJECT, azure_fake::REPO_ID);
        assert!(
            run.stderr.contains(&format!("posted to azure-devops {repository} #3 (azure-pipelines): status gitward/plan success")),
            "{}",
            run.stderr
        );
        {
            let forge = azure.state();
            assert_eq!(forge.violations, Vec::<String>::new());
            let statuses = forge.statuses_of(3);
            assert_eq!(statuses.len(), 1);
            assert_eq!(statuses[0]["state"], "succeeded");
            assert_eq!(statuses[0]["context"], serde_json::json!({"name": "plan", "genre": "gitward"}));
            assert_eq!(
                statuses[0]["targetUrl"],
                format!("{}ops/_build/results?buildId=77", azure.collection_url())
            );
            assert!(forge.commit_statuses.is_empty());
            let bearer = forge.requests.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {}", azure_fake::SYSTEM_TOKEN)));
            assert!(bearer, "System.AccessToken goes as Bearer");
        }
        let second = push_again(&repo);
        azure.state().pulls[0].head = second.clone();
        let run = gitward_in_ci(repo.path(), PLAN, &azure_pipelines_env(&azure, &second))
            .await
            .expect(0);
        assert!(run.stderr.contains("comment updated"), "{}", run.stderr);
        let forge = azure.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        assert_eq!(forge.statuses_of(3).len(), 2);
        let threads = forge.threads_on(3);
        assert_eq!(threads.len(), 2);
        let mallorys = threads.iter().find(|t| t.id == planted).unwrap();
        assert_eq!((mallorys.comments[0].edits, mallorys.comments[0].content.clone()), (0, imitation()));
        let ours = threads.iter().find(|t| t.id != planted).unwrap();
        assert_eq!(ours.comments.len(), 1);
        assert_eq!(ours.comments[0].author, azure_fake::Identity::build_service());
        assert_eq!((ours.comments[0].edits, ours.status.as_str()), (1, "closed"));
        assert!(ours.comments[0].content.contains("api-v3.example.com"));
    })
    .await;
}

#[tokio::test]
async fn a_personal_access_token_from_the_command_line_posts_to_azure_devops() {
    guard(async {
        let azure = Azure::start().await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        azure.state().open_pull(3, &head);
        let token = repo.path().join(".git/token");
        std::fs::write(&token, azure_fake::PAT).unwrap();
        let (api, token) = (azure.collection_url(), token.display().to_string());
        let mut args = PLAN.to_vec();
        args.extend([
            "--forge",
            "azure-devops",
            "--repo-url",
            "https://dev.azure.com/acme/ops/_git/pki",
            "--api-url",
            &api,
            "--pr",
            "3",
            "--token-file",
            &token,
        ]);
        for _ in 0..2 {
            gitward_in_ci(repo.path(), &args, &[]).await.expect(0);
        }
        let forge = azure.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        assert_eq!(forge.statuses_of(3).len(), 2);
        let threads = forge.threads_on(3);
        assert_eq!(threads.len(), 1, "the same plan twice: one thread");
        assert_eq!(threads[0].comments[0].author.id, azure_fake::PAT_OWNER_ID);
        assert_eq!(threads[0].comments[0].edits, 0);
        assert!(
            forge
                .requests
                .iter()
                .all(|r| r.authorization.as_deref() == Some(&common_basic(azure_fake::PAT)))
        );
    })
    .await;
}

fn common_basic(pat: &str) -> String {
    fakes::basic("", pat)
}

#[tokio::test]
async fn a_failing_forge_exits_2_without_the_token_on_every_forge() {
    guard(async {
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let gitea = Gitea::start().await;
        let bitbucket = Bitbucket::start().await;
        let azure = Azure::start().await;
        bitbucket.state().pulls.push(bitbucket_pull(4, &head));
        azure.state().open_pull(3, &head);
        let echo = |token: &str| format!("internal error; your token {token} is fine");
        gitea
            .state()
            .tricks
            .push_back((500, echo(gitea_fake::TOKEN)));
        // The first call (the pull requests for the status's branch) passes; the status fails.
        bitbucket.state().tricks.extend([
            (404, "{}".to_owned()),
            (200, r#"{"values": []}"#.to_owned()),
            (500, echo(bitbucket_fake::TOKEN)),
        ]);
        azure
            .state()
            .tricks
            .push_back((503, echo(azure_fake::SYSTEM_TOKEN)));
        let bitbucket_api = bitbucket.api_url();
        let runs = [
            (
                gitea_fake::TOKEN,
                "Gitea answered 500",
                PLAN.to_vec(),
                gitea_actions_env(&repo, &gitea, 7, &head),
            ),
            (
                bitbucket_fake::TOKEN,
                "Bitbucket answered 500",
                with_api(PLAN, &bitbucket_api),
                pipelines_env(&head),
            ),
            (
                azure_fake::SYSTEM_TOKEN,
                "Azure DevOps answered 503",
                PLAN.to_vec(),
                azure_pipelines_env(&azure, &head),
            ),
        ];
        for (token, said, args, env) in runs {
            let run = gitward_in_ci(repo.path(), &args, &env).await.expect(2);
            assert!(
                run.stderr.contains("posting to the forge: "),
                "{}",
                run.stderr
            );
            assert!(run.stderr.contains(said), "{}", run.stderr);
            assert!(run.stderr.contains("[redacted]"), "{}", run.stderr);
            assert!(!run.stderr.contains(token), "{}", run.stderr);
            assert!(!run.stdout.contains(token), "{}", run.stdout);
        }
        assert!(gitea.state().comments.is_empty());
        assert!(bitbucket.state().comments.is_empty());
        assert!(azure.state().threads_on(3).is_empty());
    })
    .await;
}

fn target(kind: ForgeKind, api: String, repository: &str, token: &str) -> Box<dyn forge::Forge> {
    forge::connect(
        &Target {
            kind,
            api,
            repository: repository.to_owned(),
            token: token.to_owned(),
        },
        &api::Options::default(),
    )
    .expect("a client")
}

#[tokio::test]
async fn gitea_finds_open_pull_requests_by_head_and_merged_ones_by_merge_commit() {
    guard(async {
        let gitea = Gitea::start().await;
        let (head, merge, old_head) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        {
            let mut forge = gitea.state();
            for n in 1..=60 {
                forge.pulls.push(gitea_fake::Pull {
                    number: n,
                    author: "ann".to_owned(),
                    head: format!("{n:040}"),
                    merged_as: None,
                });
            }
            forge.pulls.push(gitea_fake::Pull {
                number: 61,
                author: "ann".to_owned(),
                head: head.clone(),
                merged_as: None,
            });
            forge.pulls.push(gitea_fake::Pull {
                number: 62,
                author: "ann".to_owned(),
                head: old_head.clone(),
                merged_as: Some(merge.clone()),
            });
            let review = |login: &str, state: &str, dismissed: bool| gitea_fake::GivenReview {
                login: login.to_owned(),
                state: state.to_owned(),
                commit: old_head.clone(),
                dismissed,
            };
            forge.reviews.insert(
                62,
                vec![
                    review("bob", "APPROVED", false),
                    review("eve", "APPROVED", true),
                    review("carl", "REQUEST_CHANGES", false),
                ],
            );
        }
        let client = target(
            ForgeKind::Gitea,
            gitea.api_url(),
            "acme/pki",
            gitea_fake::TOKEN,
        );
        let open = client.pulls_for(&head).await.unwrap();
        assert_eq!(
            open.iter()
                .map(|p| (p.number, p.merged))
                .collect::<Vec<_>>(),
            [(61, false)]
        );
        let merged = client.pulls_for(&merge).await.unwrap();
        assert_eq!(merged.len(), 1);
        assert_eq!(
            (
                merged[0].number,
                merged[0].merged,
                merged[0].merge_sha.as_deref()
            ),
            (62, true, Some(merge.as_str()))
        );
        assert_eq!(merged[0].head_sha, old_head);
        let reviews = client.reviews(&merged[0]).await.unwrap();
        let approved: Vec<(&str, bool)> = reviews
            .iter()
            .map(|r| (r.reviewer.as_str(), r.approved))
            .collect();
        assert_eq!(approved, [("bob", true), ("eve", false), ("carl", false)]);
        assert_eq!(gitea.state().violations, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn bitbucket_finds_a_commits_pull_requests_and_their_approvals() {
    guard(async {
        let bitbucket = Bitbucket::start().await;
        let (head, merge) = ("a".repeat(40), "b".repeat(40));
        {
            let mut forge = bitbucket.state();
            forge.commit_links_app = true;
            let mut merged = bitbucket_pull(9, &head);
            merged.merged_as = Some(merge.clone());
            merged.participants = vec![
                (
                    bitbucket_fake::Account::person("bob"),
                    true,
                    Some("approved".to_owned()),
                ),
                (
                    bitbucket_fake::Account::person("eve"),
                    false,
                    Some("changes_requested".to_owned()),
                ),
            ];
            forge.pulls.push(merged);
        }
        let client = target(
            ForgeKind::Bitbucket,
            bitbucket.api_url(),
            "acme/pki",
            bitbucket_fake::TOKEN,
        );
        let pulls = client.pulls_for(&merge).await.unwrap();
        assert_eq!(pulls.len(), 1);
        assert_eq!(
            (
                pulls[0].number,
                pulls[0].merged,
                pulls[0].merge_sha.as_deref(),
                pulls[0].author.as_str()
            ),
            (9, true, Some(merge.as_str()), "ann")
        );
        assert_eq!(
            pulls[0].url,
            "https://bitbucket.org/acme/pki/pull-requests/9"
        );
        let reviews = client.reviews(&pulls[0]).await.unwrap();
        let seen: Vec<(&str, bool)> = reviews
            .iter()
            .map(|r| (r.reviewer.as_str(), r.approved))
            .collect();
        assert_eq!(seen, [("bob", true), ("eve", false)]);
        assert!(client.pulls_for(&"c".repeat(40)).await.unwrap().is_empty());
        assert_eq!(bitbucket.state().violations, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn azure_devops_finds_pull_requests_votes_and_puts_a_status_with_no_pull_request_on_the_commit()
 {
    guard(async {
        let azure = Azure::start().await;
        let (head, merge, old_head) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        {
            let mut forge = azure.state();
            forge.open_pull(3, &head);
            forge.pulls.push(azure_fake::Pull {
                id: 2,
                author: azure_fake::Identity::person("ann"),
                head: old_head.clone(),
                status: "completed".to_owned(),
                merge: Some(merge.clone()),
                reviewers: vec![
                    (azure_fake::Identity::person("bob"), 10, false),
                    (azure_fake::Identity::person("carol"), 5, false),
                    (azure_fake::Identity::person("dave"), -5, false),
                    (
                        azure_fake::Identity {
                            id: "g".to_owned(),
                            name: "[ops]\\Reviewers".to_owned(),
                        },
                        10,
                        true,
                    ),
                ],
            });
        }
        let repository = format!("{}/{}", azure_fake::PROJECT, azure_fake::REPO_NAME);
        let client = target(
            ForgeKind::AzureDevOps,
            azure.collection_url(),
            &repository,
            azure_fake::PAT,
        );
        let open = client.pulls_for(&head).await.unwrap();
        assert_eq!(
            open.iter()
                .map(|p| (p.number, p.merged))
                .collect::<Vec<_>>(),
            [(3, false)]
        );
        let merged = client.pulls_for(&merge).await.unwrap();
        assert_eq!(merged.len(), 1);
        assert_eq!(
            (
                merged[0].number,
                merged[0].merged,
                merged[0].head_sha.as_str()
            ),
            (2, true, old_head.as_str())
        );
        assert_eq!(merged[0].author, "ann@example.com");
        assert_eq!(
            merged[0].url,
            format!("{}ops/_git/pki/pullrequest/2", azure.collection_url())
        );
        let reviews = client.reviews(&merged[0]).await.unwrap();
        let seen: Vec<(&str, bool)> = reviews
            .iter()
            .map(|r| (r.reviewer.as_str(), r.approved))
            .collect();
        assert_eq!(
            seen,
            [
                ("bob@example.com", true),
                ("carol@example.com", true),
                ("dave@example.com", false)
            ]
        );
        // Who the token is comes from connectionData when nothing it posted said.
        azure.state().add_thread(
            3,
            azure_fake::Identity {
                id: azure_fake::PAT_OWNER_ID.to_owned(),
                name: "ci@example.com".to_owned(),
            },
            "text",
            &format!("{MARKER}\nold plan"),
        );
        let outcome = client
            .upsert_comment(3, MARKER, &format!("{MARKER}\nnew plan"))
            .await
            .unwrap();
        assert_eq!(outcome, forge::CommentOutcome::Updated);
        assert!(azure.state().requests.iter().any(|r| {
            r.path.ends_with("/_apis/connectionData")
                && r.query == [("api-version".to_owned(), "7.1-preview".to_owned())]
        }));
        // A merge commit heads no pull request: its status goes on the commit.
        let check = forge::Check {
            context: forge::post::APPLY_CONTEXT.to_owned(),
            state: forge::CheckState::Success,
            description: "applied".to_owned(),
            url: None,
        };
        client.set_check(&merge, &check).await.unwrap();
        let forge = azure.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        assert_eq!(forge.commit_statuses.len(), 1);
        assert_eq!(forge.commit_statuses[0].0, merge);
        assert_eq!(
            forge.commit_statuses[0].1["context"],
            serde_json::json!({"name": "apply", "genre": "gitward"})
        );
        assert!(forge.pr_statuses.is_empty());
    })
    .await;
}

#[test]
fn the_ci_runner_clears_every_variable_plan_post_reads() {
    let source =
        std::fs::read_to_string(common::project_dir().join("src/forge/ci.rs")).expect("ci.rs");
    let read = regex::Regex::new(r#"\b(?:var|is)\("([A-Z][A-Z0-9_]*)"\)"#).unwrap();
    let mut names: Vec<String> = read
        .captures_iter(&source)
        .map(|c| c[1].to_owned())
        .collect();
    names.push(gitward::forge::ci::TOKEN_VARIABLE.to_owned());
    assert!(names.len() > 30, "{names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !CI_VARIABLES.contains(&n.as_str()))
        .collect();
    assert_eq!(missing, Vec::<&String>::new());
}
