//! Gates that count a forge's reviews (`approvals.source: github | gitlab`): the daemon finds
//! the pull request merged as the commit and counts each reviewer's latest approval of its
//! final head, never the author's, through the host's forge; `plan` in CI counts them on the
//! pull request it posts to. The forge is a stand-in; the repositories, the reconciles and
//! the certificates are real.

use crate::common;
use crate::fakes;
use crate::fakes::github as github_fake;
use crate::fakes::gitlab as gitlab_fake;

use common::host::{Host, ISSUERS, certificate};
use common::{Run, gitward_beside};
use fakes::guard;
use github_fake::{GitHub, GivenReview, Pull};
use serde_json::Value;

const NOW: &str = "2026-12-01T10:00:00Z";

fn gate(source: &str) -> String {
    format!(
        "apiVersion: gitward/v1\nkind: Gate\nmetadata: {{name: prod}}\nspec:\n  appliesTo: {{kinds: [Certificate], selector: {{env: prod}}}}\n  require:\n    approvals: {{count: 2, source: {source}}}\n"
    )
}

/// A host whose commit in force holds certificate `a` and the gate counting `source`
/// reviews, its forge the stand-in at `api` of kind `forge`.
fn gated_host(forge: &str, api: &str, repository: &str, token: &str, source: &str) -> Host {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    host.config(&format!(
        "endpoints:\n  forge-api: {{url: \"{api}\", tokenFile: forge-token, timeout: 5s}}\nforge: {{type: {forge}, endpoint: forge-api, repository: \"{repository}\"}}\n"
    ));
    std::fs::write(host.dir.path().join("forge-token"), format!("{token}\n")).expect("token");
    host.reconcile(&["--now", NOW]).expect(0);
    host.repo.write("gate.yaml", gate(source));
    host.repo.commit("Gate prod changes on reviews");
    host.reconcile(&["--now", NOW]).expect(0);
    host
}

/// Certificate `b` on branch `change`, merged into `main` with a merge commit; returns
/// (the pull request's head, the merge).
fn merge_change(host: &Host) -> (String, String) {
    host.repo.git(&["checkout", "-q", "-b", "change"]);
    host.repo
        .write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    let head = host.repo.commit("Add b");
    host.repo.git(&["checkout", "-q", "main"]);
    host.repo.git(&[
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "Merge pull request #7",
        "change",
    ]);
    let merge = host.repo.git(&["rev-parse", "HEAD"]);
    (head, merge)
}

fn review(login: &str, state: &str, commit: &str) -> GivenReview {
    GivenReview {
        login: login.to_owned(),
        state: state.to_owned(),
        commit: commit.to_owned(),
        at: "2026-11-30T09:00:00Z".to_owned(),
    }
}

async fn reconcile(host: &Host) -> Run {
    host.reconcile_beside(&["--now", NOW]).await
}

#[tokio::test]
async fn the_merged_pull_requests_approvals_on_its_final_head_apply_the_change() {
    guard(async {
        let github = GitHub::start().await;
        let host = gated_host("github", &github.api_url(), "acme/pki", github_fake::TOKEN, "github");
        let (head, merge) = merge_change(&host);
        {
            let mut forge = github.state();
            forge.pulls.push(Pull {
                number: 7,
                author: "octocat".to_owned(),
                head: head.clone(),
                base: "main".to_owned(),
                merged_as: Some(merge.clone()),
                commits: vec![head.clone()],
            });
            forge.reviews.insert(
                7,
                vec![
                    review("carol", "APPROVED", &"0".repeat(40)),
                    review("octocat", "APPROVED", &head),
                    review("alice", "APPROVED", &head),
                    review("bob", "CHANGES_REQUESTED", &head),
                ],
            );
        }
        // One approval that counts (alice): blocked, and the reasons are in the note.
        reconcile(&host).await.expect(1);
        assert!(!host.out("b").join("cert.pem").exists());
        let why = host.explain_head();
        assert!(why.contains("1 of 2 approvals: alice"), "{why}");
        assert!(why.contains("octocat (GitHub review 2026-11-30 09:00 UTC https://github.com/acme/pki/pull/7#pullrequestreview-"), "{why}");
        assert!(why.contains("does not count: opened the pull request (separation of duties)"), "{why}");
        assert!(why.contains("does not count: approved 000000000000, not the final head"), "{why}");
        assert!(why.contains("does not count: their latest review is changes requested"), "{why}");

        // Bob approves the final head: applied.
        github
            .state()
            .reviews
            .get_mut(&7)
            .expect("reviews")
            .push(review("bob", "APPROVED", &head));
        reconcile(&host).await.expect(0);
        assert!(host.out("b").join("cert.pem").exists());
        let why = host.explain_head();
        assert!(why.contains("2 of 2 approvals: alice, bob"), "{why}");
        let forge = github.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        assert!(
            forge
                .requests
                .iter()
                .any(|r| r.path == format!("/api/v3/repos/acme/pki/commits/{merge}/pulls"))
        );
    })
    .await;
}

#[tokio::test]
async fn an_approved_head_pushed_without_its_pull_request_proves_nothing() {
    guard(async {
        let github = GitHub::start().await;
        let host = gated_host(
            "github",
            &github.api_url(),
            "acme/pki",
            github_fake::TOKEN,
            "github",
        );
        // Approved as a pull request into another branch, then pushed to main directly.
        host.repo
            .write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
        let head = host.repo.commit("Add b");
        {
            let mut forge = github.state();
            forge.pulls.push(Pull {
                number: 9,
                author: "mallory".to_owned(),
                head: head.clone(),
                base: "dev".to_owned(),
                merged_as: Some(head.clone()),
                commits: vec![head.clone()],
            });
            forge.reviews.insert(
                9,
                vec![
                    review("alice", "APPROVED", &head),
                    review("bob", "APPROVED", &head),
                ],
            );
        }
        reconcile(&host).await.expect(1);
        assert!(!host.out("b").join("cert.pem").exists());
        let why = host.explain_head();
        assert!(
            why.contains(&format!(
                "reviews not read: no pull request was merged into `main` as {}",
                &head[..12]
            )),
            "{why}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_forge_that_fails_blocks_the_change_and_keeps_the_commit_in_force() {
    guard(async {
        let github = GitHub::start().await;
        let host = gated_host(
            "github",
            &github.api_url(),
            "acme/pki",
            github_fake::TOKEN,
            "github",
        );
        merge_change(&host);
        github.state().tricks.push_back(github_fake::Trick::Answer(
            502,
            "<html>bad gateway</html>".to_owned(),
        ));
        let run = reconcile(&host).await.expect(1);
        assert!(!run.stderr.contains(github_fake::TOKEN));
        assert!(!host.out("b").join("cert.pem").exists());
        assert!(host.out("a").join("cert.pem").exists());
        let why = host.explain_head();
        assert!(
            why.contains(
                "reviews not read: reading the pull requests of a commit: GitHub answered 502"
            ),
            "{why}"
        );
    })
    .await;
}

#[tokio::test]
async fn plan_in_ci_counts_the_reviews_of_the_pull_request_it_posts_to() {
    guard(async {
        let github = GitHub::start().await;
        let host = gated_host(
            "github",
            &github.api_url(),
            "acme/pki",
            github_fake::TOKEN,
            "github",
        );
        host.repo.git(&["checkout", "-q", "-b", "change"]);
        host.repo
            .write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
        let head = host.repo.commit("Add b");
        {
            let mut forge = github.state();
            forge.pulls.push(Pull {
                number: 7,
                author: "octocat".to_owned(),
                head: head.clone(),
                base: "main".to_owned(),
                merged_as: None,
                commits: vec![head.clone()],
            });
            forge.reviews.insert(
                7,
                vec![
                    review("alice", "APPROVED", &head),
                    review("bob", "APPROVED", &head),
                ],
            );
        }
        let event = host.dir.path().join("event.json");
        std::fs::write(
            &event,
            serde_json::json!({"number": 7, "pull_request": {"number": 7, "head": {"sha": head}}})
                .to_string(),
        )
        .expect("event");
        let env = [
            ("GITHUB_ACTIONS", "true".to_owned()),
            ("GITHUB_API_URL", github.api_url()),
            ("GITHUB_REPOSITORY", "acme/pki".to_owned()),
            ("GITHUB_EVENT_PATH", event.display().to_string()),
            ("GITHUB_TOKEN", github_fake::TOKEN.to_owned()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = gitward_beside(
            host.repo.path(),
            &[
                "plan", "--base", "main", "--head", "change", "--now", NOW, "--format", "json",
                "--post",
            ],
            &env,
        )
        .await
        .expect(0);
        let plan: Value = serde_json::from_str(&run.stdout).expect("a JSON plan");
        common::assert_matches_schema("schemas/plan.schema.json", &plan);
        let approvals = common::gate_requirement(&plan, "approvals");
        assert_eq!(approvals["met"], "yes", "{approvals}");
        let listed: Vec<(&str, &str)> = approvals["approvals"]
            .as_array()
            .expect("approvals")
            .iter()
            .map(|a| (a["approver"].as_str().unwrap(), a["url"].as_str().unwrap()))
            .collect();
        assert_eq!(
            listed,
            [
                (
                    "alice",
                    "https://github.com/acme/pki/pull/7#pullrequestreview-80"
                ),
                (
                    "bob",
                    "https://github.com/acme/pki/pull/7#pullrequestreview-81"
                ),
            ]
        );
        assert_eq!(
            github.state().statuses_of(&head, "gitward/plan")[0]["state"],
            "success"
        );
    })
    .await;
}

#[tokio::test]
async fn gitlab_approvals_in_force_count_and_the_author_never_does() {
    guard(async {
        let gitlab = gitlab_fake::GitLab::start().await;
        let host = gated_host(
            "gitlab",
            &gitlab.api_url(),
            gitlab_fake::PROJECT_PATH,
            gitlab_fake::TOKEN,
            "gitlab",
        );
        let (head, merge) = merge_change(&host);
        gitlab
            .state()
            .merge_requests
            .push(gitlab_fake::MergeRequest {
                iid: 3,
                author: "dana".to_owned(),
                head,
                merged_as: Some(merge),
                approved_by: vec![
                    ("dana".to_owned(), "2026-11-30T08:00:00Z".to_owned()),
                    ("erik".to_owned(), "2026-11-30T09:00:00Z".to_owned()),
                ],
            });
        reconcile(&host).await.expect(1);
        assert!(
            host.explain_head().contains("1 of 2 approvals: erik"),
            "{}",
            host.explain_head()
        );
        gitlab.state().merge_requests[0]
            .approved_by
            .push(("fay".to_owned(), "2026-11-30T10:00:00Z".to_owned()));
        reconcile(&host).await.expect(0);
        assert!(host.out("b").join("cert.pem").exists());
        assert_eq!(gitlab.state().violations, Vec::<String>::new());
    })
    .await;
}
