//! Where `plan --post` posts: the forge, repository, pull request, head commit and token of
//! the CI job it runs in, read from the variables each CI system sets — or given on the
//! command line. A pure function of the variables, the command line and (on GitHub Actions)
//! the event file.

use serde::Deserialize;

use super::{ForgeError, ForgeKind, Target, locate};

/// What the command line says; each given value wins over the environment.
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub forge: Option<ForgeKind>,
    /// The repository's web URL (`https://github.com/acme/pki`).
    pub repo_url: Option<String>,
    /// The API's base URL, for a forge whose API is not where the repository URL says.
    pub api_url: Option<String>,
    pub pr: Option<u64>,
    /// The commit the status is for (default: the pull request's head as the CI says).
    pub sha: Option<String>,
    /// The token, read from `--token-file`.
    pub token: Option<String>,
}

/// Where to post, found.
#[derive(Debug, Clone)]
pub struct Destination {
    pub target: Target,
    pub number: u64,
    pub sha: String,
    /// The CI job's page, for the status's link.
    pub run_url: Option<String>,
    /// Which CI system was recognised (`github-actions`, ...), or `command line`.
    pub ci: &'static str,
}

/// The variable that, when set, holds the token on every CI system.
pub const TOKEN_VARIABLE: &str = "GITWARD_FORGE_TOKEN";

/// What a CI system's variables tell; any part may be missing.
#[derive(Default)]
struct Found {
    ci: &'static str,
    forge: Option<ForgeKind>,
    api: Option<String>,
    repository: Option<String>,
    repo_url: Option<String>,
    number: Option<u64>,
    sha: Option<String>,
    token: Option<String>,
    run_url: Option<String>,
    /// Why the token found cannot post, when the CI's own token cannot.
    token_caveat: Option<&'static str>,
}

/// The parts of a GitHub Actions event file that matter here.
#[derive(Deserialize)]
struct Event {
    pull_request: Option<EventPull>,
    number: Option<u64>,
}

#[derive(Deserialize)]
struct EventPull {
    number: u64,
    head: EventHead,
}

#[derive(Deserialize)]
struct EventHead {
    sha: String,
}

/// Finds where to post. `var` reads an environment variable (empty counts as unset);
/// `event` reads GitHub Actions' event file at a path; `planned` is the head commit planned,
/// the status's commit when neither the command line nor the CI names another.
pub fn destination(
    given: &Given,
    planned: &str,
    var: &dyn Fn(&str) -> Option<String>,
    event: &dyn Fn(&str) -> Option<String>,
) -> Result<Destination, ForgeError> {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let found = recognise(&var, event);
    let missing = |what: &str, flag: &str| {
        ForgeError::Setup(if found.ci.is_empty() {
            format!("no CI system recognised from the environment: give {flag} ({what})")
        } else {
            format!("{} does not say {what}: give {flag}", found.ci)
        })
    };
    let forge = given
        .forge
        .or(found.forge)
        .ok_or_else(|| missing("which forge", "--forge"))?;
    let repo_url = given.repo_url.clone().or(found.repo_url.clone());
    let (api, repository) = match (&given.api_url, &repo_url, &found.api, &found.repository) {
        (_, Some(url), _, _) if given.repo_url.is_some() || found.repository.is_none() => {
            let (api, repository) = locate(forge, url)?;
            (given.api_url.clone().unwrap_or(api), repository)
        }
        (api, _, found_api, Some(repository)) => (
            api.clone()
                .or(found_api.clone())
                .ok_or_else(|| missing("the API URL", "--api-url"))?,
            repository.clone(),
        ),
        _ => return Err(missing("the repository", "--repo-url")),
    };
    let number = given
        .pr
        .or(found.number)
        .ok_or_else(|| missing("the pull request", "--pr"))?;
    let sha = given
        .sha
        .clone()
        .or(found.sha.clone())
        .unwrap_or_else(|| planned.to_owned());
    let token = match (&given.token, var(TOKEN_VARIABLE), &found.token) {
        (Some(token), _, _) => token.clone(),
        (None, Some(token), _) => token,
        (None, None, Some(token)) => token.clone(),
        (None, None, None) => {
            return Err(ForgeError::Setup(format!(
                "no token to post with: give --token-file, or set {TOKEN_VARIABLE}{}",
                found
                    .token_caveat
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            )));
        }
    };
    Ok(Destination {
        target: Target {
            kind: forge,
            api: api.trim_end_matches('/').to_owned(),
            repository,
            token: token.trim().to_owned(),
        },
        number,
        sha,
        run_url: found.run_url,
        ci: if given.forge.is_some() && given.repo_url.is_some() {
            "command line"
        } else {
            found.ci
        },
    })
}

/// What the CI system the variables belong to says.
fn recognise(
    var: &dyn Fn(&str) -> Option<String>,
    event: &dyn Fn(&str) -> Option<String>,
) -> Found {
    let is = |name: &str| var(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if is("GITHUB_ACTIONS") {
        github_actions(var, event)
    } else if is("GITLAB_CI") {
        gitlab_ci(var)
    } else if is("TF_BUILD") {
        azure_pipelines(var)
    } else if var("BITBUCKET_BUILD_NUMBER").is_some() {
        bitbucket_pipelines(var)
    } else if var("JENKINS_URL").is_some() {
        jenkins(var)
    } else {
        Found::default()
    }
}

/// GitHub Actions (and Gitea Actions, which sets the same variables and `GITEA_ACTIONS`).
fn github_actions(
    var: &dyn Fn(&str) -> Option<String>,
    event: &dyn Fn(&str) -> Option<String>,
) -> Found {
    let gitea = var("GITEA_ACTIONS").is_some_and(|v| v == "true");
    let event: Option<Event> = var("GITHUB_EVENT_PATH")
        .and_then(|path| event(&path))
        .and_then(|text| serde_json::from_str(&text).ok());
    let pull = event.as_ref().and_then(|e| e.pull_request.as_ref());
    let run_url = match (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        (Some(server), Some(repo), Some(run)) => {
            Some(format!("{server}/{repo}/actions/runs/{run}"))
        }
        _ => None,
    };
    Found {
        ci: if gitea {
            "gitea-actions"
        } else {
            "github-actions"
        },
        forge: Some(if gitea {
            ForgeKind::Gitea
        } else {
            ForgeKind::GitHub
        }),
        api: var("GITHUB_API_URL").or(Some("https://api.github.com".to_owned())),
        repository: var("GITHUB_REPOSITORY"),
        repo_url: None,
        number: pull
            .map(|p| p.number)
            .or(event.as_ref().and_then(|e| e.number)),
        // For a pull request GITHUB_SHA is the test merge; the status belongs on the head.
        sha: pull.map(|p| p.head.sha.clone()).or(var("GITHUB_SHA")),
        token: if gitea {
            var("GITEA_TOKEN").or(var("GITHUB_TOKEN"))
        } else {
            var("GITHUB_TOKEN")
        },
        run_url,
        token_caveat: Some("pass `env: GITHUB_TOKEN: ${{ github.token }}` to the step"),
    }
}

fn gitlab_ci(var: &dyn Fn(&str) -> Option<String>) -> Found {
    Found {
        ci: "gitlab-ci",
        forge: Some(ForgeKind::GitLab),
        api: var("CI_API_V4_URL"),
        repository: var("CI_PROJECT_ID"),
        repo_url: None,
        number: var("CI_MERGE_REQUEST_IID").and_then(|n| n.parse().ok()),
        // In a merged-results pipeline CI_COMMIT_SHA is the merge; the source branch's head
        // is what reviewers see.
        sha: var("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA").or(var("CI_COMMIT_SHA")),
        token: var("GITLAB_TOKEN"),
        run_url: var("CI_JOB_URL"),
        token_caveat: Some(
            "CI_JOB_TOKEN may not write merge request notes or commit statuses: use a project access token with the api scope",
        ),
    }
}

fn azure_pipelines(var: &dyn Fn(&str) -> Option<String>) -> Found {
    let collection = var("SYSTEM_COLLECTIONURI");
    let project = var("SYSTEM_TEAMPROJECT");
    let run_url = match (&collection, &project, var("BUILD_BUILDID")) {
        (Some(c), Some(p), Some(id)) => Some(format!(
            "{}/{}/_build/results?buildId={id}",
            c.trim_end_matches('/'),
            super::api::segment(p)
        )),
        _ => None,
    };
    // A pipeline may build a GitHub repository; then the pull request lives there.
    if var("BUILD_REPOSITORY_PROVIDER").as_deref() == Some("GitHub") {
        return Found {
            ci: "azure-pipelines",
            forge: Some(ForgeKind::GitHub),
            api: Some("https://api.github.com".to_owned()),
            repository: var("BUILD_REPOSITORY_NAME"),
            number: var("SYSTEM_PULLREQUEST_PULLREQUESTNUMBER").and_then(|n| n.parse().ok()),
            sha: var("SYSTEM_PULLREQUEST_SOURCECOMMITID"),
            run_url,
            ..Found::default()
        };
    }
    Found {
        ci: "azure-pipelines",
        forge: Some(ForgeKind::AzureDevOps),
        api: collection.map(|c| c.trim_end_matches('/').to_owned()),
        repository: match (project, var("BUILD_REPOSITORY_ID")) {
            (Some(p), Some(r)) => Some(format!("{p}/{r}")),
            _ => None,
        },
        repo_url: None,
        number: var("SYSTEM_PULLREQUEST_PULLREQUESTID").and_then(|n| n.parse().ok()),
        sha: var("SYSTEM_PULLREQUEST_SOURCECOMMITID").or(var("BUILD_SOURCEVERSION")),
        token: var("SYSTEM_ACCESSTOKEN"),
        run_url,
        token_caveat: Some("map it in the step: `env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`"),
    }
}

fn bitbucket_pipelines(var: &dyn Fn(&str) -> Option<String>) -> Found {
    let repository = match (var("BITBUCKET_WORKSPACE"), var("BITBUCKET_REPO_SLUG")) {
        (Some(w), Some(r)) => Some(format!("{w}/{r}")),
        _ => None,
    };
    let run_url = match (&repository, var("BITBUCKET_BUILD_NUMBER")) {
        (Some(r), Some(n)) => Some(format!("https://bitbucket.org/{r}/pipelines/results/{n}")),
        _ => None,
    };
    Found {
        ci: "bitbucket-pipelines",
        forge: Some(ForgeKind::Bitbucket),
        api: Some("https://api.bitbucket.org/2.0".to_owned()),
        repository,
        repo_url: None,
        number: var("BITBUCKET_PR_ID").and_then(|n| n.parse().ok()),
        sha: var("BITBUCKET_COMMIT"),
        token: var("BITBUCKET_TOKEN"),
        run_url,
        token_caveat: Some("a repository access token with pull request write scope"),
    }
}

/// Jenkins (multibranch pipelines): the pull request's URL names the forge and repository.
fn jenkins(var: &dyn Fn(&str) -> Option<String>) -> Found {
    let change_url = var("CHANGE_URL");
    let (forge, repo_url) = change_url
        .as_deref()
        .and_then(repository_of_change)
        .map_or((None, None), |(f, u)| (Some(f), Some(u)));
    Found {
        ci: "jenkins",
        forge,
        repo_url,
        number: var("CHANGE_ID").and_then(|n| n.parse().ok()),
        // With the "merge with target" strategy GIT_COMMIT is a merge made for the build;
        // branch-api names the pull request's head.
        sha: var("CHANGE_BRANCH_COMMIT_ID").or(var("GIT_COMMIT")),
        run_url: var("BUILD_URL"),
        ..Found::default()
    }
}

/// The forge and repository URL of a pull request's URL, by the path each forge gives it.
fn repository_of_change(url: &str) -> Option<(ForgeKind, String)> {
    const PATHS: [(&str, ForgeKind); 5] = [
        ("/-/merge_requests/", ForgeKind::GitLab),
        ("/pullrequest/", ForgeKind::AzureDevOps),
        ("/pull-requests/", ForgeKind::Bitbucket),
        ("/pulls/", ForgeKind::Gitea),
        ("/pull/", ForgeKind::GitHub),
    ];
    PATHS.iter().find_map(|(path, kind)| {
        url.rsplit_once(path)
            .map(|(repository, _)| (*kind, repository.to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn found_in(
        vars: &[(&str, &str)],
        event_text: Option<&str>,
    ) -> Result<Destination, ForgeError> {
        found_with(&Given::default(), vars, event_text)
    }

    fn found_with(
        given: &Given,
        vars: &[(&str, &str)],
        event_text: Option<&str>,
    ) -> Result<Destination, ForgeError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        destination(given, "planned", &|name| vars.get(name).cloned(), &|_| {
            event_text.map(str::to_owned)
        })
    }

    #[test]
    fn github_actions_posts_on_the_pull_requests_head_not_the_test_merge() {
        let d = found_in(
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_API_URL", "https://ghe.example.com/api/v3"),
                ("GITHUB_SERVER_URL", "https://ghe.example.com"),
                ("GITHUB_REPOSITORY", "acme/pki"),
                ("GITHUB_RUN_ID", "42"),
                ("GITHUB_EVENT_PATH", "/ignored"),
                ("GITHUB_SHA", "mergemergemerge"),
                ("GITHUB_TOKEN", "ghs_x\n"),
            ],
            Some(r#"{"number": 7, "pull_request": {"number": 7, "head": {"sha": "headhead"}}}"#),
        )
        .unwrap();
        assert_eq!(d.target.kind, ForgeKind::GitHub);
        assert_eq!(d.target.api, "https://ghe.example.com/api/v3");
        assert_eq!(d.target.repository, "acme/pki");
        assert_eq!((d.number, d.sha.as_str()), (7, "headhead"));
        assert_eq!(d.target.token, "ghs_x");
        assert_eq!(
            d.run_url.as_deref(),
            Some("https://ghe.example.com/acme/pki/actions/runs/42")
        );
    }

    #[test]
    fn gitlab_ci_names_its_project_and_merge_request() {
        let d = found_in(
            &[
                ("GITLAB_CI", "true"),
                ("CI_API_V4_URL", "https://gitlab.example.com/api/v4"),
                ("CI_PROJECT_ID", "12"),
                ("CI_MERGE_REQUEST_IID", "3"),
                ("CI_COMMIT_SHA", "abc"),
                ("GITLAB_TOKEN", "glpat-x"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            (
                d.target.kind,
                d.target.api.as_str(),
                d.target.repository.as_str()
            ),
            (ForgeKind::GitLab, "https://gitlab.example.com/api/v4", "12")
        );
        assert_eq!((d.number, d.sha.as_str()), (3, "abc"));
    }

    #[test]
    fn a_job_token_alone_is_refused_with_the_reason() {
        let e = found_in(
            &[
                ("GITLAB_CI", "true"),
                ("CI_API_V4_URL", "https://gitlab.example.com/api/v4"),
                ("CI_PROJECT_ID", "12"),
                ("CI_MERGE_REQUEST_IID", "3"),
                ("CI_COMMIT_SHA", "abc"),
                ("CI_JOB_TOKEN", "job"),
            ],
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("CI_JOB_TOKEN may not"), "{e}");
    }

    #[test]
    fn jenkins_learns_the_forge_from_the_change_url() {
        let d = found_in(
            &[
                ("JENKINS_URL", "https://ci.example.com/"),
                ("CHANGE_ID", "9"),
                (
                    "CHANGE_URL",
                    "https://gitlab.example.com/ops/pki/-/merge_requests/9",
                ),
                ("GIT_COMMIT", "abc"),
                ("GITWARD_FORGE_TOKEN", "t"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(d.sha, "abc");
        let d = found_in(
            &[
                ("JENKINS_URL", "https://ci.example.com/"),
                ("CHANGE_ID", "9"),
                (
                    "CHANGE_URL",
                    "https://gitlab.example.com/ops/pki/-/merge_requests/9",
                ),
                ("GIT_COMMIT", "mergemerge"),
                ("CHANGE_BRANCH_COMMIT_ID", "headhead"),
                ("GITWARD_FORGE_TOKEN", "t"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(d.sha, "headhead");
        assert_eq!(d.target.kind, ForgeKind::GitLab);
        assert_eq!(d.target.api, "https://gitlab.example.com/api/v4");
        assert_eq!(d.target.repository, "ops/pki");
    }

    #[test]
    fn azure_pipelines_and_bitbucket_pipelines_are_recognised() {
        let d = found_in(
            &[
                ("TF_BUILD", "True"),
                ("SYSTEM_COLLECTIONURI", "https://dev.azure.com/acme/"),
                ("SYSTEM_TEAMPROJECT", "ops"),
                ("BUILD_REPOSITORY_ID", "0f6c"),
                ("SYSTEM_PULLREQUEST_PULLREQUESTID", "5"),
                ("SYSTEM_PULLREQUEST_SOURCECOMMITID", "abc"),
                ("SYSTEM_ACCESSTOKEN", "t"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            (
                d.target.kind,
                d.target.api.as_str(),
                d.target.repository.as_str(),
                d.number
            ),
            (
                ForgeKind::AzureDevOps,
                "https://dev.azure.com/acme",
                "ops/0f6c",
                5
            )
        );
        let d = found_in(
            &[
                ("BITBUCKET_BUILD_NUMBER", "8"),
                ("BITBUCKET_WORKSPACE", "acme"),
                ("BITBUCKET_REPO_SLUG", "pki"),
                ("BITBUCKET_PR_ID", "4"),
                ("BITBUCKET_COMMIT", "abc"),
                ("BITBUCKET_TOKEN", "t"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            (d.target.kind, d.target.repository.as_str(), d.number),
            (ForgeKind::Bitbucket, "acme/pki", 4)
        );
    }

    #[test]
    fn the_command_line_wins_and_works_without_a_ci() {
        let given = Given {
            forge: Some(ForgeKind::Gitea),
            repo_url: Some("https://git.example.com/acme/pki".to_owned()),
            pr: Some(2),
            sha: Some("abc".to_owned()),
            token: Some("t".to_owned()),
            ..Given::default()
        };
        let d = found_with(
            &given,
            &[("GITHUB_ACTIONS", "true"), ("GITHUB_REPOSITORY", "x/y")],
            None,
        )
        .unwrap();
        assert_eq!(
            (
                d.target.kind,
                d.target.api.as_str(),
                d.target.repository.as_str()
            ),
            (
                ForgeKind::Gitea,
                "https://git.example.com/api/v1",
                "acme/pki"
            )
        );
        assert_eq!(d.ci, "command line");
        let e = found_in(&[], None).unwrap_err();
        assert!(e.to_string().contains("no CI system recognised"), "{e}");
    }
}
