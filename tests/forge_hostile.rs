//! Pull requests on every forge, attacked: the CI job `plan --post` runs in (its variables,
//! its event file, its token), the forge's answers (huge, endless, slow, not JSON, redirects,
//! links anywhere, reviews that are not approvals), the daemon's webhooks for pull requests
//! and the pull requests themselves (a fork's policies and gates). Each test asserts what a
//! user must see: a refusal with a clear message, no token where it must not be, the commit
//! in force kept. An attack that works today stays here as an ignored test named after what
//! it breaks; it fails until the defect is fixed.

use crate::common;
use crate::common::ci;
use crate::fakes;
use crate::fakes::github as github_fake;
use crate::fakes::hostile_forge as hostile;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ci::{CI_VARIABLES, PLAN, gitward_in_ci, repo_with_change};
use common::{Run, TestRepo};
use fakes::guard;
use hostile::{Body, Hostile, Reply, Request, github_ok};
use serde_json::{Value, json};

/// The token every hostile run posts with: it must never come back.
const TOKEN: &str = "ghs_hostile-token-0123456789";
const MARKER: &str = "<!-- gitward:plan -->";

/// GitHub Actions' variables for pull request `number` at `head`, the API at `api`; the
/// event file is written into the repository's `.git`.
fn actions_env(repo: &TestRepo, api: &str, number: u64, head: &str) -> Vec<(&'static str, String)> {
    let event = ci::pull_request_event(repo, number, head);
    vec![
        ("GITHUB_ACTIONS", "true".to_owned()),
        ("GITHUB_API_URL", format!("{api}/api/v3")),
        ("GITHUB_REPOSITORY", "acme/pki".to_owned()),
        ("GITHUB_EVENT_PATH", event.display().to_string()),
        ("GITHUB_TOKEN", TOKEN.to_owned()),
    ]
}

/// `plan --post` of the usual change to a hostile forge whose answers `route` gives.
async fn post_to(
    route: impl Fn(&Request, &str) -> Reply + Send + Sync + 'static,
) -> (Run, Hostile, TestRepo) {
    let forge = Hostile::start(route).await;
    let repo = repo_with_change(false);
    let head = repo.git(&["rev-parse", "change"]);
    let run = gitward_in_ci(
        repo.path(),
        PLAN,
        &actions_env(&repo, &forge.url(), 7, &head),
    )
    .await;
    (run, forge, repo)
}

/// Neither stream holds the token, nor gitward died of a signal or a panic.
fn assert_clean_failure(run: &Run, says: &str) {
    assert_eq!(run.code, 2, "exit code\n{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(says),
        "expected `{says}` in:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(TOKEN), "the token came back:\n{text}");
    }
}

/// A page of `count` copies of `item` as a JSON array.
fn array_of(item: &str, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (item.len() + 1) + 2);
    out.push(b'[');
    for n in 0..count {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.as_bytes());
    }
    out.push(b']');
    out
}

// ---------------------------------------------------------------------------------------
// The forge's answers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_answer_without_end_or_over_the_bound_is_cut_off_and_refused() {
    guard(async {
        // A status answer that never ends (chunked, 64 KiB at a time).
        let (run, _forge, _repo) = post_to(|request, _| match request.method.as_str() {
            "POST" => Reply::body(201, Body::Endless(vec![b' '; 64 * 1024])),
            _ => github_ok(request),
        })
        .await;
        assert_clean_failure(&run, "an answer longer than 8388608 bytes");

        // A listing that says it is 16 GiB long.
        let (run, forge, _repo) = post_to(|request, _| match request.method.as_str() {
            "GET" if request.path().ends_with("/comments") => {
                Reply::body(200, Body::Claims(16 << 30))
            }
            _ => github_ok(request),
        })
        .await;
        assert_clean_failure(&run, "an answer longer than 8388608 bytes");
        assert_eq!(
            forge.count("/comments"),
            1,
            "no comment after an unread listing"
        );
    })
    .await;
}

#[tokio::test]
async fn an_answer_that_trickles_for_ever_is_given_up_on() {
    guard(async {
        // One byte a second of a status answer: every request has a deadline.
        let (run, forge, _repo) = post_to(|request, _| match request.method.as_str() {
            "POST" => Reply::body(201, Body::Trickle(b" ".to_vec(), Duration::from_secs(1))),
            _ => github_ok(request),
        })
        .await;
        assert_clean_failure(&run, "setting the commit status");
        // Nothing was posted past the status that never finished.
        assert_eq!(forge.count("/comments"), 0);
    })
    .await;
}

#[tokio::test]
async fn answers_that_are_not_what_github_answers_are_refused_without_a_crash() {
    guard(async {
        let deep = "[".repeat(200_000);
        let wrong = [
            "<html><body>502 Bad Gateway</body></html>".to_owned(),
            r#"{"message": "not a list"}"#.to_owned(),
            r#"[{"id": "one"}]"#.to_owned(),
            r#"[{"id": 1, "body": 5, "user": {"login": ["x"]}}]"#.to_owned(),
            r#"[{"id": -1}]"#.to_owned(),
            r#"[{"id": 1e400}]"#.to_owned(),
            deep,
            String::new(),
        ];
        for answer in wrong {
            let shown: String = answer.chars().take(40).collect();
            let (run, forge, _repo) = post_to(move |request, _| match request.method.as_str() {
                "GET" if request.path().ends_with("/comments") => Reply::json(200, answer.clone()),
                _ => github_ok(request),
            })
            .await;
            assert_clean_failure(&run, "reading the pull request's comments");
            assert!(
                run.stderr.contains("not what GitHub answers"),
                "{shown}: {}",
                run.stderr
            );
            // No comment is created on the strength of a listing that could not be read.
            let created = forge
                .requests()
                .iter()
                .filter(|r| r.method == "POST" && r.path().ends_with("/comments"))
                .count();
            assert_eq!(created, 0, "{shown}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_redirect_never_takes_the_token_to_another_host() {
    guard(async {
        let elsewhere = Hostile::start(|request, _| github_ok(request)).await;
        let target = format!("{}/api/v3/repos/acme/pki/statuses/x", elsewhere.url());
        for status in [301, 302, 303, 307, 308] {
            let target = target.clone();
            let (run, _forge, _repo) = post_to(move |request, _| match request.method.as_str() {
                "POST" => Reply::json(status, "{}").header("Location", target.clone()),
                _ => github_ok(request),
            })
            .await;
            assert_clean_failure(&run, &format!("GitHub answered {status}"));
        }
        assert_eq!(elsewhere.requests().len(), 0, "a redirect was followed");
    })
    .await;
}

#[tokio::test]
async fn next_links_that_climb_leave_or_loop_are_refused() {
    guard(async {
        let elsewhere = Hostile::start(|request, _| github_ok(request)).await;
        let other = elsewhere.url();
        let links = [
            (
                "{base}/api/v3/../../steal?page=2",
                "a link points outside the API",
            ),
            (
                "{base}/api/v3/%2e%2e/%2E%2E/steal",
                "a link points outside the API",
            ),
            (
                "{base}/api/v3/repos/acme/pki/../../../../x",
                "a link points outside the API",
            ),
            (
                "{other}/api/v3/repos/acme/pki/issues/7/comments?page=2",
                "a link points outside the API",
            ),
            ("//{other_host}/api/v3/x", "a next-page link that is no URL"),
            ("javascript:alert(1)", "a link points outside the API"),
            ("file:///etc/passwd", "a link points outside the API"),
            // The same page again and again.
            (
                "{base}/api/v3/repos/acme/pki/issues/7/comments?per_page=100",
                "more than 50 pages",
            ),
        ];
        for (link, says) in links {
            let other = other.clone();
            let (run, forge, _repo) = post_to(move |request, base| match request.method.as_str() {
                "GET" if request.path().ends_with("/comments") => {
                    let link = link
                        .replace("{base}", base)
                        .replace("{other}", &other)
                        .replace("{other_host}", other.trim_start_matches("http://"));
                    Reply::json(200, "[]").header("Link", format!("<{link}>; rel=\"next\""))
                }
                _ => github_ok(request),
            })
            .await;
            assert_clean_failure(&run, says);
            assert!(forge.count("/comments") <= 50, "{link}");
            for request in forge.requests().iter() {
                assert!(
                    request.path().starts_with("/api/v3/repos/acme/pki/"),
                    "{link} led to {}",
                    request.target
                );
            }
        }
        assert_eq!(elsewhere.requests().len(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_forge_that_echoes_the_token_has_it_taken_out_of_every_message() {
    guard(async {
        let (run, _forge, _repo) = post_to(|request, _| match request.method.as_str() {
            "POST" => Reply::json(
                401,
                format!(
                    "{{\"message\": \"Bad credentials: {}\", \"token\": \"{TOKEN}\"}}",
                    request.header("authorization").unwrap_or_default()
                ),
            ),
            _ => github_ok(request),
        })
        .await;
        assert_clean_failure(&run, "GitHub answered 401");
        assert!(run.stderr.contains("[redacted]"), "{}", run.stderr);
    })
    .await;
}

#[tokio::test]
async fn a_token_with_a_line_break_cannot_add_headers() {
    guard(async {
        let forge = Hostile::start(|request, _| github_ok(request)).await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let mut env = actions_env(&repo, &forge.url(), 7, &head);
        env.retain(|(k, _)| *k != "GITHUB_TOKEN");
        env.push(("GITHUB_TOKEN", format!("{TOKEN}\r\nX-Injected: yes")));
        let run = gitward_in_ci(repo.path(), PLAN, &env).await;
        assert_clean_failure(&run, "the token holds characters a header cannot");
        assert_eq!(forge.requests().len(), 0);
    })
    .await;
}

/// `plan --post` with the event file at `path`; returns the run.
async fn post_with_event_file(repo: &TestRepo, api: &str, path: &Path) -> Run {
    let env = vec![
        ("GITHUB_ACTIONS", "true".to_owned()),
        ("GITHUB_API_URL", format!("{api}/api/v3")),
        ("GITHUB_REPOSITORY", "acme/pki".to_owned()),
        ("GITHUB_EVENT_PATH", path.display().to_string()),
        ("GITHUB_TOKEN", TOKEN.to_owned()),
    ];
    gitward_in_ci(repo.path(), PLAN, &env).await
}

#[tokio::test]
async fn event_files_that_are_devices_secrets_or_garbage_are_not_believed() {
    guard(async {
        let forge = Hostile::start(|request, _| github_ok(request)).await;
        let repo = repo_with_change(false);
        let scratch = tempfile::tempdir().expect("tempdir");
        // A file of the host's that is no event file, linked where the event file should be.
        let secret = scratch.path().join("host-secret");
        std::fs::write(&secret, "root:SECRET-HASH-OF-THE-HOST:19000:0:99999:7:::\n")
            .expect("secret");
        let link = scratch.path().join("event-link.json");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        let garbage = scratch.path().join("garbage.json");
        std::fs::write(&garbage, "{\"pull_request\": {\"number\": 7, \"head\": ").expect("garbage");
        let negative = scratch.path().join("negative.json");
        std::fs::write(
            &negative,
            r#"{"pull_request": {"number": -7, "head": {"sha": "x"}}}"#,
        )
        .expect("negative");
        let overflow = scratch.path().join("overflow.json");
        std::fs::write(
            &overflow,
            r#"{"pull_request": {"number": 18446744073709551616, "head": {"sha": "x"}}}"#,
        )
        .expect("overflow");
        for path in [
            Path::new("/dev/zero"),
            Path::new("/dev/null"),
            Path::new("/etc/shadow"),
            Path::new("/nonexistent/event.json"),
            scratch.path(),
            &link,
            &garbage,
            &negative,
            &overflow,
        ] {
            let run = post_with_event_file(&repo, &forge.url(), path).await;
            assert_clean_failure(
                &run,
                "github-actions does not say the pull request: give --pr",
            );
            assert!(!run.stderr.contains("SECRET-HASH"), "{}", run.stderr);
        }
        assert_eq!(forge.requests().len(), 0);

        // The largest number there is names a pull request like any other: no overflow.
        let max = scratch.path().join("max.json");
        let head = repo.git(&["rev-parse", "change"]);
        std::fs::write(
            &max,
            json!({"pull_request": {"number": u64::MAX, "head": {"sha": head}}}).to_string(),
        )
        .expect("max");
        post_with_event_file(&repo, &forge.url(), &max)
            .await
            .expect(0);
        let wanted = format!("/issues/{}/comments", u64::MAX);
        assert!(forge.count(&wanted) >= 1);
    })
    .await;
}

/// Runs `gitward` with exactly `env` of the CI variables, killed after `limit`; the exit code
/// (`None`: it had to be killed) and its standard error.
fn run_killed_after(
    dir: &Path,
    args: &[&str],
    env: &[(&str, String)],
    limit: Duration,
) -> (Option<i32>, String) {
    use wait_timeout::ChildExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_gitward"));
    for name in CI_VARIABLES {
        command.env_remove(name);
    }
    let mut child = command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gitward runs");
    let status = child.wait_timeout(limit).expect("wait");
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.and_then(|s| s.code()), stderr)
}

#[tokio::test]
async fn an_event_file_that_is_a_fifo_does_not_hang_the_job() {
    guard(async {
        let forge = Hostile::start(|request, _| github_ok(request)).await;
        let repo = repo_with_change(false);
        let scratch = tempfile::tempdir().expect("tempdir");
        let fifo = scratch.path().join("event.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let env = vec![
            ("GITHUB_ACTIONS", "true".to_owned()),
            ("GITHUB_API_URL", format!("{}/api/v3", forge.url())),
            ("GITHUB_REPOSITORY", "acme/pki".to_owned()),
            ("GITHUB_EVENT_PATH", fifo.display().to_string()),
            ("GITHUB_TOKEN", TOKEN.to_owned()),
        ];
        let dir = repo.path().to_owned();
        // A hang guard, not a measurement: reading the event file takes no time at all.
        let (code, stderr) = tokio::task::spawn_blocking(move || {
            run_killed_after(&dir, PLAN, &env, Duration::from_secs(60))
        })
        .await
        .expect("the run ends");
        assert_eq!(
            code,
            Some(2),
            "still reading the FIFO after a minute: {stderr}"
        );
        assert!(stderr.contains("give --pr"), "{stderr}");
    })
    .await;
}

#[tokio::test]
async fn token_files_that_are_devices_or_fifos_are_refused() {
    guard(async {
        let forge = Hostile::start(|request, _| github_ok(request)).await;
        let repo = repo_with_change(false);
        let scratch = tempfile::tempdir().expect("tempdir");
        let fifo = scratch.path().join("token");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let api = format!("{}/api/v3", forge.url());
        for path in [
            fifo.as_path(),
            Path::new("/dev/zero"),
            Path::new("/dev/urandom"),
        ] {
            let path = path.display().to_string();
            let args = [
                "plan",
                "--base",
                "main",
                "--head",
                "change",
                "--post",
                "--forge",
                "github",
                "--repo-url",
                "https://github.example.com/acme/pki",
                "--api-url",
                &api,
                "--pr",
                "7",
                "--token-file",
                &path,
            ];
            let run = gitward_in_ci(repo.path(), &args, &[]).await;
            assert_clean_failure(&run, "is not a regular file");
        }
        assert_eq!(forge.requests().len(), 0);
    })
    .await;
}

#[tokio::test]
async fn repository_and_api_urls_that_are_not_a_forges_are_refused() {
    guard(async {
        let forge = Hostile::start(|request, _| github_ok(request)).await;
        let repo = repo_with_change(false);
        let token = repo.path().join(".git/token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        let token = token.display().to_string();
        let cases = [
            ("ssh://git@github.com/acme/pki", None, "not an http(s) URL"),
            ("file:///etc/passwd", None, "not an http(s) URL"),
            (
                "https://github.com/acme/../../pki",
                None,
                "expected https://host/<owner>/<repository>",
            ),
            (
                "https://github.com/acme/pki/extra",
                None,
                "expected https://host/<owner>/<repository>",
            ),
            (
                "https://github.com/acme/pki",
                Some("file:///etc/passwd"),
                "the API URL is not http(s)",
            ),
            (
                "https://github.com/acme/pki",
                Some("gopher://127.0.0.1:70/x"),
                "the API URL is not http(s)",
            ),
        ];
        for (url, api, says) in cases {
            let mut args = vec![
                "plan",
                "--base",
                "main",
                "--head",
                "change",
                "--post",
                "--forge",
                "github",
                "--repo-url",
                url,
                "--pr",
                "7",
                "--token-file",
                &token,
            ];
            if let Some(api) = api {
                args.extend(["--api-url", api]);
            }
            let run = gitward_in_ci(repo.path(), &args, &[]).await;
            assert_clean_failure(&run, says);
        }
        assert_eq!(forge.requests().len(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_repository_url_with_a_password_is_refused_without_printing_it() {
    guard(async {
        let repo = repo_with_change(false);
        let token = repo.path().join(".git/token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        let token = token.display().to_string();
        let args = [
            "plan",
            "--base",
            "main",
            "--head",
            "change",
            "--post",
            "--forge",
            "github",
            "--repo-url",
            "https://ci-bot:hunter2-repo-password@github.com/acme/pki",
            "--pr",
            "7",
            "--token-file",
            &token,
        ];
        let run = gitward_in_ci(repo.path(), &args, &[]).await;
        assert_clean_failure(&run, "credentials go in --token-file");
        assert!(
            !run.stderr.contains("hunter2-repo-password"),
            "{}",
            run.stderr
        );
        // Jenkins names the repository through CHANGE_URL: the same refusal, the same care.
        let env = [
            ("JENKINS_URL", "https://ci.example.com/".to_owned()),
            ("CHANGE_ID", "7".to_owned()),
            (
                "CHANGE_URL",
                "https://ci-bot:hunter2-repo-password@github.com/acme/pki/pull/7".to_owned(),
            ),
            ("GITWARD_FORGE_TOKEN", TOKEN.to_owned()),
        ];
        let run = gitward_in_ci(repo.path(), PLAN, &env).await;
        assert_clean_failure(&run, "credentials go in --token-file");
        assert!(
            !run.stderr.contains("hunter2-repo-password"),
            "{}",
            run.stderr
        );
    })
    .await;
}

#[tokio::test]
async fn credentials_in_the_api_url_are_never_sent_or_shown() {
    guard(async {
        let forge = Hostile::start(|request, _| github_ok(request)).await;
        let repo = repo_with_change(false);
        let token = repo.path().join(".git/token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        let token = token.display().to_string();
        let api = format!("http://api-user:hunter2-api-password@{}/api/v3", forge.addr);
        let args = [
            "plan",
            "--base",
            "main",
            "--head",
            "change",
            "--post",
            "--forge",
            "github",
            "--repo-url",
            "https://github.example.com/acme/pki",
            "--api-url",
            &api,
            "--pr",
            "7",
            "--token-file",
            &token,
        ];
        let run = gitward_in_ci(repo.path(), &args, &[]).await;
        assert!(
            !run.stderr.contains("hunter2-api-password"),
            "{}",
            run.stderr
        );
        assert!([0, 2].contains(&run.code), "{}", run.stderr);
        assert!(!forge.requests().is_empty(), "{}", run.stderr);
        let basic = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode("api-user:hunter2-api-password")
        };
        for request in forge.requests().iter() {
            let text = request.text();
            assert!(!text.contains("hunter2-api-password"), "{text}");
            assert!(!text.contains(&basic), "{text}");
            let authorizations: Vec<&String> = request
                .headers
                .iter()
                .filter(|(n, _)| n == "authorization")
                .map(|(_, v)| v)
                .collect();
            assert_eq!(authorizations, [&format!("Bearer {TOKEN}")], "{text}");
        }
    })
    .await;
}

/// Runs `gitward` with exactly `env` of the CI variables and at most `bytes` of address
/// space (the soft limit: the policy sandbox still sets its own below the hard one).
fn run_with_address_space(dir: &Path, args: &[&str], env: &[(&str, String)], bytes: u64) -> Run {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_gitward"));
    for name in CI_VARIABLES {
        command.env_remove(name);
    }
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir);
    // SAFETY: getrlimit and setrlimit are async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        command.pre_exec(move || {
            let (_, hard) = getrlimit(Resource::RLIMIT_AS).map_err(std::io::Error::from)?;
            setrlimit(Resource::RLIMIT_AS, bytes.min(hard), hard).map_err(std::io::Error::from)
        });
    }
    let output = command.output().expect("gitward runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Address space a `plan --post` is given in the exhaustion tests: room for the largest
/// honest listing (50 pages of 100 comments of 65,536 characters) several times over.
const ADDRESS_SPACE: u64 = 1536 << 20;
/// Address space a reconcile is given in the exhaustion tests: it also compiles and evaluates
/// policies in child processes on stacks of their own (256 MiB reserved each), so it needs
/// more room than `plan --post` to be reliably honest, and still far less than the attack
/// took (several GiB).
const RECONCILE_ADDRESS_SPACE: u64 = 4 << 30;

/// The most items of `item` one answer within gitward's 8 MiB bound holds.
fn most_items(item: &str) -> usize {
    (8 * 1024 * 1024 - 2) / (item.len() + 1)
}

#[tokio::test]
async fn an_honest_plan_post_fits_the_address_space_of_the_exhaustion_tests() {
    guard(async {
        let forge = Hostile::start(|request, _| github_ok(request)).await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let env = actions_env(&repo, &forge.url(), 7, &head);
        let dir = repo.path().to_owned();
        let run = tokio::task::spawn_blocking(move || {
            run_with_address_space(&dir, PLAN, &env, ADDRESS_SPACE)
        })
        .await
        .expect("the run ends");
        run.expect(0);
    })
    .await;
}

#[tokio::test]
async fn pages_of_tiny_items_do_not_exhaust_plan_post() {
    guard(async {
        let item = r#"{"id":1}"#;
        let page = std::sync::Arc::new(array_of(item, most_items(item)));
        let forge = Hostile::start(move |request, base| match request.method.as_str() {
            "GET" if request.path().ends_with("/comments") => {
                let n: usize = request
                    .query("page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(1);
                Reply::bytes(200, page.to_vec()).header(
                    "Link",
                    format!(
                        "<{base}/api/v3/repos/acme/pki/issues/7/comments?page={}>; rel=\"next\"",
                        n + 1
                    ),
                )
            }
            _ => github_ok(request),
        })
        .await;
        let repo = repo_with_change(false);
        let head = repo.git(&["rev-parse", "change"]);
        let env = actions_env(&repo, &forge.url(), 7, &head);
        let dir = repo.path().to_owned();
        let run = tokio::task::spawn_blocking(move || {
            run_with_address_space(&dir, PLAN, &env, ADDRESS_SPACE)
        })
        .await
        .expect("the run ends");
        assert!(!run.stderr.contains("memory allocation"), "{}", run.stderr);
        assert_clean_failure(&run, "reading the pull request's comments");
    })
    .await;
}

#[tokio::test]
async fn another_bots_comment_with_the_marker_is_never_edited() {
    guard(async {
        let (run, forge, _repo) =
            post_to(
                |request, _| match (request.method.as_str(), request.path()) {
                    ("GET", path) if path.ends_with("/issues/7/comments") => Reply::json(
                        200,
                        json!([{
                            "id": 55,
                            "body": format!("{MARKER}\nanother tool's report, kept by its own bot"),
                            "user": {"login": "other-tool[bot]", "type": "Bot", "id": 99}
                        }])
                        .to_string(),
                    ),
                    _ => github_ok(request),
                },
            )
            .await;
        run.expect(0);
        let requests = forge.requests();
        assert!(
            !requests.iter().any(|r| r.method == "PATCH"),
            "edited: {:?}",
            requests.iter().map(|r| &r.target).collect::<Vec<_>>()
        );
        assert!(
            requests
                .iter()
                .any(|r| r.method == "POST" && r.path().ends_with("/issues/7/comments"))
        );
    })
    .await;
}

#[tokio::test]
async fn a_basic_credential_echoed_in_another_form_is_not_printed() {
    guard(async {
        use base64::Engine;
        let forge = Hostile::start(|request, _| {
            let authorization = request.header("authorization").unwrap_or_default();
            let encoded = authorization.trim_start_matches("Basic ").to_owned();
            Reply::json(
                401,
                format!("{{\"error\": {{\"message\": \"credentials {encoded} (app password hunter2-app-password) refused\"}}}}"),
            )
        })
        .await;
        let repo = repo_with_change(false);
        let token = repo.path().join(".git/token");
        std::fs::write(&token, "ci-user:hunter2-app-password\n").expect("token");
        let token = token.display().to_string();
        let url = format!("{}/acme/pki", forge.url());
        let args = [
            "plan", "--base", "main", "--head", "change", "--post", "--forge", "bitbucket",
            "--repo-url", &url, "--pr", "7", "--token-file", &token,
        ];
        let run = gitward_in_ci(repo.path(), &args, &[]).await;
        assert_eq!(run.code, 2, "{}", run.stderr);
        let encoded =
            base64::engine::general_purpose::STANDARD.encode("ci-user:hunter2-app-password");
        assert!(!run.stderr.contains(&encoded), "{}", run.stderr);
        assert!(!run.stderr.contains("hunter2-app-password"), "{}", run.stderr);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Approvals from reviews, as a hostile or careless forge shows them
// ---------------------------------------------------------------------------------------

use common::host::{Host, ISSUERS, certificate};

const NOW: &str = "2026-12-01T10:00:00Z";

/// What the hostile GitHub answers for the pull requests of a commit and their reviews.
#[derive(Clone, Default)]
struct Listed {
    pulls: std::sync::Arc<std::sync::Mutex<Value>>,
    reviews: std::sync::Arc<std::sync::Mutex<Value>>,
}

impl Listed {
    fn set(&self, pulls: Value, reviews: Value) {
        *self.pulls.lock().expect("pulls") = pulls;
        *self.reviews.lock().expect("reviews") = reviews;
    }
}

/// A GitHub that answers the pull requests and reviews `listed` holds.
async fn reviewing_github(listed: &Listed) -> Hostile {
    let listed = listed.clone();
    Hostile::start(move |request, _| {
        let path = request.path();
        if request.method == "GET" && path.contains("/commits/") && path.ends_with("/pulls") {
            Reply::json(200, listed.pulls.lock().expect("pulls").to_string())
        } else if request.method == "GET" && path.ends_with("/reviews") {
            Reply::json(200, listed.reviews.lock().expect("reviews").to_string())
        } else {
            github_ok(request)
        }
    })
    .await
}

fn pull_json(number: u64, author: &str, head: &str, base: &str, merged_as: Option<&str>) -> Value {
    json!({
        "number": number,
        "user": {"login": author, "type": "User"},
        "head": {"sha": head, "ref": "change"},
        "base": {"ref": base},
        "merged_at": merged_as.map(|_| "2026-11-30T10:00:00Z"),
        "merge_commit_sha": merged_as,
        "html_url": format!("https://github.com/acme/pki/pull/{number}"),
    })
}

fn review_json(login: Option<&str>, state: &str, commit: Option<&str>, association: &str) -> Value {
    json!({
        "id": 80,
        "user": login.map(|l| json!({"login": l, "type": "User"})),
        "state": state,
        "commit_id": commit,
        "submitted_at": "2026-11-30T09:00:00Z",
        "html_url": "https://github.com/acme/pki/pull/7#pullrequestreview-80",
        "author_association": association,
    })
}

/// A host whose commit in force holds certificate `a` and a gate over prod certificates
/// requiring `approvals` (a YAML flow mapping), its forge `forge` at `api`.
/// A host whose gate counts GitHub reviews as `approvals` says, from a stand-in that lists
/// what `listed` holds (kept running as long as the first value is).
async fn github_gated(listed: &Listed, approvals: &str) -> (Hostile, Host) {
    let github = reviewing_github(listed).await;
    let api = format!("{}/api/v3", github.url());
    (github, gated_host("github", &api, "acme/pki", approvals))
}

fn gated_host(forge: &str, api: &str, repository: &str, approvals: &str) -> Host {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    host.config(&format!(
        "endpoints:\n  forge-api: {{url: \"{api}\", tokenFile: forge-token, timeout: 5s}}\nforge: {{type: {forge}, endpoint: forge-api, repository: \"{repository}\"}}\n"
    ));
    std::fs::write(host.dir.path().join("forge-token"), format!("{TOKEN}\n")).expect("token");
    host.reconcile(&["--now", NOW]).expect(0);
    host.repo.write(
        "gate.yaml",
        format!("apiVersion: gitward/v1\nkind: Gate\nmetadata: {{name: prod}}\nspec:\n  appliesTo: {{kinds: [Certificate], selector: {{env: prod}}}}\n  require:\n    approvals: {approvals}\n"),
    );
    host.repo.commit("Gate prod changes on reviews");
    host.reconcile(&["--now", NOW]).expect(0);
    host
}

/// Certificate `name` on branch `change` off main, merged with a merge commit; returns
/// (the pull request's head, the merge).
fn merge_change(host: &Host, name: &str) -> (String, String) {
    host.repo.git(&["checkout", "-q", "-b", "change"]);
    host.repo.write(
        &format!("{name}.yaml"),
        certificate(name, &format!("  dnsNames: [{name}.example.com]\n")),
    );
    let head = host.repo.commit(&format!("Add {name}"));
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

async fn reconcile(host: &Host) -> Run {
    host.reconcile_beside(&["--now", NOW]).await
}

#[tokio::test]
async fn reviews_that_are_not_approvals_of_the_head_by_another_person_count_for_nothing() {
    guard(async {
        let listed = Listed::default();
        let (_github, host) = github_gated(
            &listed,
            "{count: 1, from: [octocat, alice, ghost], source: github}",
        )
        .await;
        let (head, merge) = merge_change(&host, "b");
        listed.set(
            json!([pull_json(7, "octocat", &head, "main", Some(&merge))]),
            json!([
                // The author, under another case.
                review_json(Some("OctoCat"), "APPROVED", Some(&head), "OWNER"),
                // A deleted account.
                review_json(None, "APPROVED", Some(&head), "NONE"),
                // Alice approved, then asked for changes: her latest word stands.
                review_json(Some("alice"), "APPROVED", Some(&head), "MEMBER"),
                review_json(Some("ALICE"), "CHANGES_REQUESTED", Some(&head), "MEMBER"),
                // A state GitHub does not have.
                review_json(Some("ghost"), "approved", Some(&head), "MEMBER"),
            ]),
        );
        let run = reconcile(&host).await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(!host.out("b").join("cert.pem").exists());
        assert!(host.out("a").join("cert.pem").exists());
        let why = host.explain_head();
        assert!(why.contains("0 of 1 approval"), "{why}");
        assert!(
            why.contains("opened the pull request (separation of duties)"),
            "{why}"
        );
        assert!(
            why.contains("their latest review is changes requested"),
            "{why}"
        );
        assert!(!run.stderr.contains(TOKEN));
    })
    .await;
}

#[tokio::test]
async fn a_pull_request_that_is_not_this_commits_merge_proves_nothing() {
    guard(async {
        let listed = Listed::default();
        let (_github, host) =
            github_gated(&listed, "{count: 1, from: [alice], source: github}").await;
        let (head, merge) = merge_change(&host, "b");
        let approved = json!([review_json(
            Some("alice"),
            "APPROVED",
            Some(&head),
            "MEMBER"
        )]);
        let other = "e".repeat(40);
        for pulls in [
            // Merged, but as another commit, with another head.
            json!([pull_json(7, "mallory", &other, "main", Some(&other))]),
            // Open, its head not this commit.
            json!([pull_json(7, "mallory", &other, "main", None)]),
            // This commit's head, never merged.
            json!([pull_json(7, "mallory", &merge, "main", None)]),
            // Merged as this commit, into another branch.
            json!([pull_json(7, "mallory", &head, "release", Some(&merge))]),
            // Nothing GitHub would say: a number, an object.
            json!(7),
            json!({"pulls": []}),
        ] {
            listed.set(pulls.clone(), approved.clone());
            let run = reconcile(&host).await;
            assert_eq!(run.code, 1, "{pulls}: {}", run.stderr);
            assert!(!host.out("b").join("cert.pem").exists(), "{pulls}");
            let why = host.explain_head();
            assert!(
                why.contains("0 of 1 approvals: reviews not read"),
                "{pulls}: {why}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn gitlab_approvals_without_a_user_or_by_the_author_count_for_nothing() {
    guard(async {
        let merge_requests = std::sync::Arc::new(std::sync::Mutex::new(json!([])));
        let answer = merge_requests.clone();
        let gitlab = Hostile::start(move |request, _| {
            let path = request.path();
            if path.ends_with("/merge_requests") && path.contains("/commits/") {
                Reply::json(200, answer.lock().expect("mrs").to_string())
            } else if path.ends_with("/approvals") {
                Reply::json(
                    200,
                    json!({"approved_by": [
                        {"user": null},
                        {"user": {"username": "DANA"}},
                        {"approved_at": "2026-11-30T09:00:00Z"},
                        {"user": {"username": "erik"}, "approved_at": "2026-11-30T09:00:00Z"},
                    ]})
                    .to_string(),
                )
            } else {
                Reply::json(200, "[]")
            }
        })
        .await;
        let host = gated_host(
            "gitlab",
            &format!("{}/api/v4", gitlab.url()),
            "ops/pki",
            "{count: 2, source: gitlab}",
        );
        let (head, merge) = merge_change(&host, "b");
        *merge_requests.lock().expect("mrs") = json!([{
            "iid": 3, "author": {"username": "dana"}, "sha": head, "state": "merged",
            "target_branch": "main", "merge_commit_sha": merge,
            "web_url": "https://gitlab.example.com/ops/pki/-/merge_requests/3",
        }]);
        let run = reconcile(&host).await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(!host.out("b").join("cert.pem").exists());
        let why = host.explain_head();
        assert!(why.contains("1 of 2 approvals: erik"), "{why}");
    })
    .await;
}

/// A merge by mallory of a change to `b`, its pull request reviewed as `reviews` says of the
/// head: not applied, `why` if it is.
async fn not_applied_with(approvals: &str, reviews: impl Fn(&str) -> Value, why: &str) {
    let listed = Listed::default();
    let (_github, host) = github_gated(&listed, approvals).await;
    let (head, merge) = merge_change(&host, "b");
    listed.set(
        json!([pull_json(7, "mallory", &head, "main", Some(&merge))]),
        reviews(&head),
    );
    let run = reconcile(&host).await;
    assert_eq!(run.code, 1, "applied on {why}: {}", host.explain_head());
    assert!(!host.out("b").join("cert.pem").exists());
}

#[tokio::test]
async fn an_approval_by_an_account_without_write_access_does_not_count() {
    guard(not_applied_with(
        "{count: 1, source: github}",
        |head| {
            json!([review_json(
                Some("mallory-second-account"),
                "APPROVED",
                Some(head),
                "NONE"
            )])
        },
        "a stranger's approval",
    ))
    .await;
}

#[tokio::test]
async fn an_approval_of_an_unknown_commit_does_not_count_for_the_final_head() {
    guard(not_applied_with(
        "{count: 1, from: [alice], source: github}",
        |_| json!([review_json(Some("alice"), "APPROVED", None, "MEMBER")]),
        "a stale approval",
    ))
    .await;
}

#[tokio::test]
async fn an_unreviewed_push_does_not_ride_in_on_the_next_approved_merge() {
    guard(async {
        let listed = Listed::default();
        let (_github, host) =
            github_gated(&listed, "{count: 1, from: [alice], source: github}").await;
        // Pushed straight to main: no pull request, blocked.
        host.repo.write(
            "sneaky.yaml",
            certificate("sneaky", "  dnsNames: [sneaky.example.com]\n"),
        );
        host.repo.commit("Add sneaky");
        let run = reconcile(&host).await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(!host.out("sneaky").join("cert.pem").exists());
        // An honest pull request, approved, merged on top.
        let (head, merge) = merge_change(&host, "b");
        listed.set(
            json!([pull_json(7, "mallory", &head, "main", Some(&merge))]),
            json!([review_json(
                Some("alice"),
                "APPROVED",
                Some(&head),
                "MEMBER"
            )]),
        );
        reconcile(&host).await;
        assert!(
            !host.out("sneaky").join("cert.pem").exists(),
            "the unreviewed certificate was issued: {}",
            host.explain_head()
        );
    })
    .await;
}

#[tokio::test]
async fn a_forge_answer_of_the_wrong_type_is_not_copied_into_the_record() {
    guard(async {
        let filler = "FORGE-TEXT ".repeat(100_000);
        let answer = json!([{"number": filler}]).to_string();
        let github = Hostile::start(move |request, _| {
            if request.path().ends_with("/pulls") {
                Reply::json(200, answer.clone())
            } else {
                github_ok(request)
            }
        })
        .await;
        let host = gated_host(
            "github",
            &format!("{}/api/v3", github.url()),
            "acme/pki",
            "{count: 1, from: [alice], source: github}",
        );
        merge_change(&host, "b");
        let run = reconcile(&host).await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        let note = host
            .repo
            .git(&["notes", "--ref", "gitward", "show", "HEAD"]);
        let why = host.explain_head();
        for (what, text) in [("note", &note), ("explain", &why), ("stderr", &run.stderr)] {
            assert!(
                text.matches("FORGE-TEXT").count() < 1000,
                "{what} holds {} bytes of the forge's answer",
                text.len()
            );
        }
    })
    .await;
}

#[tokio::test]
async fn pages_of_tiny_reviews_do_not_exhaust_a_reconcile() {
    guard(async {
        let listed = Listed::default();
        let item = r#"{"state":""}"#;
        let page = std::sync::Arc::new(array_of(item, most_items(item)));
        let pulls = listed.pulls.clone();
        let github = Hostile::start(move |request, base| {
            let path = request.path();
            if path.ends_with("/pulls") {
                Reply::json(200, pulls.lock().expect("pulls").to_string())
            } else if path.ends_with("/reviews") {
                let n: usize = request
                    .query("page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(1);
                Reply::bytes(200, page.to_vec()).header(
                    "Link",
                    format!(
                        "<{base}/api/v3/repos/acme/pki/pulls/7/reviews?page={}>; rel=\"next\"",
                        n + 1
                    ),
                )
            } else {
                github_ok(request)
            }
        })
        .await;
        let host = gated_host(
            "github",
            &format!("{}/api/v3", github.url()),
            "acme/pki",
            "{count: 1, from: [alice], source: github}",
        );
        let (head, merge) = merge_change(&host, "b");
        listed.set(
            json!([pull_json(7, "mallory", &head, "main", Some(&merge))]),
            json!([]),
        );
        let run = reconcile_in_address_space(&host).await;
        assert!(!run.stderr.contains("memory allocation"), "{}", run.stderr);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(!host.out("b").join("cert.pem").exists());
        assert!(host.explain_head().contains("reviews not read"));
    })
    .await;
}

/// `reconcile --once` of `host` with its address space bounded as the exhaustion tests bound it.
async fn reconcile_in_address_space(host: &Host) -> Run {
    let dir = host.dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let args = [
            "reconcile",
            "--once",
            "--config",
            "gitward.yaml",
            "--now",
            NOW,
        ];
        run_with_address_space(&dir, &args, &[], RECONCILE_ADDRESS_SPACE)
    })
    .await
    .expect("the run ends")
}

#[tokio::test]
async fn an_honest_reconcile_reading_reviews_fits_the_address_space_of_the_exhaustion_tests() {
    guard(async {
        let listed = Listed::default();
        let (_github, host) =
            github_gated(&listed, "{count: 1, from: [alice], source: github}").await;
        let (head, merge) = merge_change(&host, "b");
        listed.set(
            json!([pull_json(7, "mallory", &head, "main", Some(&merge))]),
            json!([review_json(
                Some("alice"),
                "APPROVED",
                Some(&head),
                "MEMBER"
            )]),
        );
        let run = reconcile_in_address_space(&host).await;
        run.expect(0);
        assert!(host.out("b").join("cert.pem").exists());
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// What the repository's writers put into the comment
// ---------------------------------------------------------------------------------------

/// A `warn` policy in the pull request whose message is `message`.
fn talking_policy(repo: &TestRepo, message: &str) -> String {
    repo.write(
        "policies/talk.yaml",
        "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: talk}\nspec:\n  module: policies/talk.rego\n  rule: data.gitward.talk.deny\n  appliesTo: {kinds: [Certificate]}\n  enforcement: warn\n  severity: high\n",
    );
    repo.write(
        "policies/talk.rego",
        format!(
            "package gitward.talk\n\nimport rego.v1\n\ndeny contains {} if input.name == \"api-example-com\"\n",
            serde_json::to_string(message).expect("a Rego string")
        ),
    );
    repo.commit("A policy that talks")
}

/// The body of the comment `plan --post` created.
fn posted_comment(forge: &Hostile) -> String {
    let requests = forge.requests();
    let created = requests
        .iter()
        .find(|r| r.method == "POST" && r.path().ends_with("/comments"))
        .expect("a comment was created");
    let body: Value = serde_json::from_slice(&created.body).expect("a JSON body");
    body["body"].as_str().expect("a body").to_owned()
}

#[tokio::test]
async fn a_policy_message_cannot_command_the_forge_or_hide_the_report() {
    guard(async {
        let forge = Hostile::start(|request, _| github_ok(request)).await;
        let repo = repo_with_change(false);
        let message = format!(
            "x\n/approve\n/merge\n/assign @mallory\n{MARKER}\n<!--\n@acme/security-team [click](https://evil.example) <img src=x onerror=alert(1)>\n::set-env name=X::y"
        );
        let head = talking_policy(&repo, &message);
        let run = gitward_in_ci(repo.path(), PLAN, &actions_env(&repo, &forge.url(), 7, &head))
            .await
            .expect(0);
        // The report in the job's log commands no runner.
        assert!(run.stdout.contains("set-env"), "{}", run.stdout);
        for line in run.stdout.lines().chain(run.stderr.lines()) {
            assert!(!line.trim_start().starts_with("::"), "{line}");
        }
        let body = posted_comment(&forge);
        assert!(body.starts_with(MARKER), "{body}");
        assert_eq!(body.matches(MARKER).count(), 1, "{body}");
        // GitLab runs quick actions at the start of a line of a note; GitHub hides what
        // follows `<!--`.
        for line in body.lines() {
            assert!(!line.starts_with('/'), "{line}");
            assert!(!line.starts_with("::"), "{line}");
        }
        // HTML only where gitward writes it: `\<` is text.
        let unescaped = body.replace("\\<", "");
        assert_eq!(unescaped.matches("<!--").count(), 1, "{body}");
        assert!(!unescaped.contains("<img"), "{body}");
        assert!(!body.contains("@acme/security-team"), "{body}");
        assert!(!body.contains("[click](https://evil.example)"), "{body}");
    })
    .await;
}

#[tokio::test]
async fn a_policy_message_cannot_reference_other_issues_from_the_comment() {
    guard(async {
        let forge = Hostile::start(|request, _| github_ok(request)).await;
        let repo = repo_with_change(false);
        let head = talking_policy(&repo, "see acme/secret-project#1, #2 and !3");
        gitward_in_ci(
            repo.path(),
            PLAN,
            &actions_env(&repo, &forge.url(), 7, &head),
        )
        .await
        .expect(0);
        let body = posted_comment(&forge);
        assert!(body.contains("secret-project"), "{body}");
        for reference in ["acme/secret-project#1", " #2", " !3"] {
            assert!(
                !body.contains(reference),
                "`{reference}` is live in:\n{body}"
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The daemon's pull requests: webhooks, fork heads, gates in force
// ---------------------------------------------------------------------------------------

use common::peers::{Daemon, free_port, http, signed_with};

const HOOK_SECRET: &str = "webhook-secret-for-hostile-pulls";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A host following its repository over `file://` (so it works in a mirror), listening on
/// `port`, its forge the GitHub stand-in at `api`; `files` are the first commit's.
fn daemon_host(port: u16, api: &str, files: &[(&str, &str)]) -> Host {
    daemon_host_waiting(port, api, files, "5s")
}

/// [`daemon_host`] whose forge requests may take `timeout`.
fn daemon_host_waiting(port: u16, api: &str, files: &[(&str, &str)], timeout: &str) -> Host {
    let host = Host::new(files);
    host.config(&format!(
        "listen: 127.0.0.1:{port}\nwebhooks: {{github: {{secretFile: hook-secret}}}}\nendpoints:\n  forge-api: {{url: \"{api}\", tokenFile: forge-token, timeout: {timeout}}}\nforge: {{type: github, endpoint: forge-api, repository: \"acme/pki\"}}\n"
    ));
    host.follow(&format!("file://{}", host.repo.path().display()));
    std::fs::write(host.dir.path().join("hook-secret"), HOOK_SECRET).expect("secret");
    std::fs::write(
        host.dir.path().join("forge-token"),
        format!("{}\n", github_fake::TOKEN),
    )
    .expect("token");
    host
}

fn start_daemon(host: &Host, port: u16) -> Daemon {
    let mut daemon = Daemon::spawn(
        env!("CARGO_BIN_EXE_gitward"),
        &["run", "--config", "gitward.yaml", "--log-format", "json"],
        host.dir.path(),
        &[],
    );
    daemon.wait_for(port);
    daemon.wait_until("the daemon becomes ready", || {
        http(port, "/readyz", None).0 == 200
    });
    daemon
}

/// A branch `name` off main with `files` (and without `removed`), kept by the forge under
/// `refs/pull/<number>/head`; returns its head.
fn fork_pull(host: &Host, number: u64, files: &[(&str, &str)], removed: &[&str]) -> String {
    let name = format!("fork-{number}");
    host.repo.git(&["checkout", "-q", "-b", &name, "main"]);
    for (path, text) in files {
        host.repo.write(path, text);
    }
    for path in removed {
        host.repo.remove(path);
    }
    let head = host.repo.commit(&format!("Fork change {number}"));
    host.repo
        .git(&["update-ref", &format!("refs/pull/{number}/head"), &head]);
    host.repo.git(&["checkout", "-q", "main"]);
    head
}

/// A `pull_request` delivery of `body` (raw JSON text), signed with `secret`.
fn signed_delivery(body: &str, delivery: &str, secret: &str) -> (String, Vec<(String, String)>) {
    (
        body.to_owned(),
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-GitHub-Event".to_owned(), "pull_request".to_owned()),
            ("X-GitHub-Delivery".to_owned(), delivery.to_owned()),
            (
                "X-Hub-Signature-256".to_owned(),
                signed_with(secret.as_bytes(), body.as_bytes()),
            ),
        ],
    )
}

/// The body GitHub sends when pull request `number` into `base` gets head `head`.
fn pull_body(number: Value, head: &str, base: &str) -> String {
    json!({
        "action": "synchronize",
        "number": number,
        "pull_request": {"number": number, "head": {"sha": head}, "base": {"ref": base}},
    })
    .to_string()
}

fn deliver(port: u16, (body, headers): &(String, Vec<(String, String)>)) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    http(port, "/hooks/github", Some((body.as_bytes(), &headers)))
}

/// The refs of the daemon's mirror with their commits, but the pull requests' heads it
/// fetched: its record (status branch, notes) and the branches.
fn mirror_record(host: &Host) -> String {
    let mirror = host.dir.path().join("state/mirror.git");
    let refs = host.repo.git(&[
        "--git-dir",
        &mirror.display().to_string(),
        "for-each-ref",
        "--format=%(refname) %(objectname)",
    ]);
    assert!(refs.contains("refs/notes/gitward"), "{refs}");
    refs.lines()
        .filter(|l| !l.starts_with("refs/gitward/pulls/"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walk(dir);
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .flat_map(|e| {
            let path = e.path();
            let mut here = vec![path.display().to_string()];
            if path.is_dir() {
                here.extend(walk(&path));
            }
            here
        })
        .collect()
}

#[test]
fn pull_request_deliveries_that_lie_overflow_or_repeat_change_nothing_and_the_daemon_goes_on() {
    let rt = runtime();
    let github = rt.block_on(github_fake::GitHub::start());
    let port = free_port();
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = daemon_host(
        port,
        &github.api_url(),
        &[("issuers.yaml", ISSUERS), ("a.yaml", &a)],
    );
    let mut daemon = start_daemon(&host, port);
    let b = certificate("b", "  dnsNames: [b.example.com]\n");
    let head = fork_pull(&host, 7, &[("b.yaml", &b)], &[]);

    // Numbers no pull request has, and bodies that are not pull requests: 400, nothing queued.
    let sentinel = pull_body(json!(424242), &head, "main");
    for (number, says) in [
        ("18446744073709551616", "pull request payload"),
        ("-7", "pull request payload"),
        ("7.5", "pull request payload"),
        ("\"7\"", "pull request payload"),
        ("null", "pull request payload"),
    ] {
        let body = sentinel.replace("424242", number);
        let (code, text) = deliver(
            port,
            &signed_delivery(&body, &format!("bad-{number}"), HOOK_SECRET),
        );
        assert_eq!(code, 400, "{number}: {text}");
        assert!(text.contains(says), "{number}: {text}");
    }
    let (code, _) = deliver(
        port,
        &signed_delivery("{\"action\": \"opened\"}", "no-pull", HOOK_SECRET),
    );
    assert_eq!(code, 400);
    // Signed with another secret: 401, whatever it says.
    let (code, _) = deliver(
        port,
        &signed_delivery(
            &pull_body(json!(7), &head, "main"),
            "forged",
            "not-the-secret",
        ),
    );
    assert_eq!(code, 401);

    // A pull request whose ref does not exist: accepted, not planned, and nothing stops.
    let (code, _) = deliver(
        port,
        &signed_delivery(
            &pull_body(json!(404), &head, "main"),
            "missing-ref",
            HOOK_SECRET,
        ),
    );
    assert_eq!(code, 202);

    // A delivery that names another head than the pull request's ref: the ref's is planned.
    let claimed = "f".repeat(40);
    let delivery = signed_delivery(
        &pull_body(json!(7), &claimed, "main"),
        "lying-head",
        HOOK_SECRET,
    );
    let (code, text) = deliver(port, &delivery);
    assert_eq!((code, text.as_str()), (202, "pull request plan queued\n"));
    daemon.wait_until("pull request 7 is planned", || {
        !github.state().comments_on(7).is_empty()
    });
    // The same delivery again is a replay.
    let (code, text) = deliver(port, &delivery);
    assert_eq!(
        (code, text.as_str()),
        (200, "delivery seen before: ignored\n")
    );
    {
        let forge = github.state();
        assert_eq!(
            forge.statuses_of(&head, "gitward/plan").len(),
            1,
            "{}",
            daemon.log()
        );
        assert!(forge.statuses_of(&claimed, "gitward/plan").is_empty());
        assert!(forge.comments_on(404).is_empty());
        // Besides the plan on the fetched head, only the reconciled main got a status.
        let main = host.repo.git(&["rev-parse", "main"]);
        for (sha, status) in &forge.statuses {
            assert!(
                (sha == &head && status["context"] == "gitward/plan")
                    || (sha == &main && status["context"] == "gitward/apply"),
                "{sha} {status}"
            );
        }
        assert_eq!(forge.violations, Vec::<String>::new());
    }
    assert!(!host.out("b").join("cert.pem").exists());
    assert_eq!(http(port, "/healthz", None).0, 200);
    let log = daemon.log();
    assert!(!log.contains(github_fake::TOKEN));
    assert!(!log.contains(HOOK_SECRET));
    daemon.terminate();
}

/// Pull request deliveries for a handful of pull requests, far more than a source may send in
/// a burst; the answers.
fn flood(port: u16, count: usize) -> Vec<u16> {
    (0..count)
        .map(|n| {
            let body = pull_body(json!(n % 3 + 1000), &"a".repeat(40), "main");
            deliver(
                port,
                &signed_delivery(&body, &format!("flood-{n}"), HOOK_SECRET),
            )
            .0
        })
        .collect()
}

#[test]
fn a_flood_of_pull_request_deliveries_is_rate_limited_and_the_daemon_keeps_serving() {
    let rt = runtime();
    let github = rt.block_on(github_fake::GitHub::start());
    let port = free_port();
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = daemon_host(
        port,
        &github.api_url(),
        &[("issuers.yaml", ISSUERS), ("a.yaml", &a)],
    );
    let mut daemon = start_daemon(&host, port);
    let answers = flood(port, 80);
    assert!(answers.contains(&429), "{answers:?}");
    assert!(
        answers.iter().all(|c| [202, 429].contains(c)),
        "{answers:?}"
    );
    assert_eq!(http(port, "/healthz", None).0, 200);
    assert_eq!(http(port, "/readyz", None).0, 200);
    daemon.terminate();
}

#[test]

fn a_flood_of_pull_request_deliveries_does_not_lock_out_the_push_that_follows() {
    let rt = runtime();
    let github = rt.block_on(github_fake::GitHub::start());
    let port = free_port();
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = daemon_host(
        port,
        &github.api_url(),
        &[("issuers.yaml", ISSUERS), ("a.yaml", &a)],
    );
    let mut daemon = start_daemon(&host, port);
    flood(port, 80);
    let b = certificate("b", "  dnsNames: [b.example.com]\n");
    host.repo.write("b.yaml", b);
    let pushed = host.repo.commit("Add b");
    let body = json!({"ref": "refs/heads/main", "after": pushed}).to_string();
    let (body, mut headers) = signed_delivery(&body, "the-push", HOOK_SECRET);
    headers[1].1 = "push".to_owned();
    let (code, text) = deliver(port, &(body, headers));
    assert_eq!((code, text.as_str()), (202, "reconcile queued\n"));
    daemon.wait_until("the push is applied", || {
        host.out("b").join("cert.pem").exists()
    });
    daemon.terminate();
}

const BLOCKING_GATE: &str = "apiVersion: gitward/v1\nkind: Gate\nmetadata: {name: prod}\nspec:\n  appliesTo: {kinds: [Certificate], selector: {env: prod}}\n  require:\n    approvals: {count: 1}\n";

/// A policy `name` of `enforcement` whose rule body is `rego_body` (after `deny contains`).
fn policy_files(name: &str, enforcement: &str, rego_body: &str) -> [(String, String); 2] {
    [
        (
            format!("{name}.yaml"),
            format!(
                "apiVersion: gitward/v1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  module: {name}.rego\n  rule: data.gitward.{name}.deny\n  appliesTo: {{kinds: [Certificate]}}\n  enforcement: {enforcement}\n  severity: high\n"
            ),
        ),
        (
            format!("{name}.rego"),
            format!("package gitward.{name}\n\nimport rego.v1\n\ndeny contains {rego_body}\n"),
        ),
    ]
}

#[test]
fn a_fork_cannot_drop_the_gate_in_force_and_planning_it_writes_nothing() {
    let rt = runtime();
    let github = rt.block_on(github_fake::GitHub::start());
    let port = free_port();
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = daemon_host(
        port,
        &github.api_url(),
        &[("issuers.yaml", ISSUERS), ("a.yaml", &a)],
    );
    let mut daemon = start_daemon(&host, port);
    host.repo.write("gate.yaml", BLOCKING_GATE);
    let gated = host.repo.commit("Gate prod certificates on an approval");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_until("the gate is in force", || {
        github
            .state()
            .statuses_of(&gated, "gitward/apply")
            .iter()
            .any(|s| s["state"] == "success")
    });

    let b = certificate("b", "  dnsNames: [b.example.com]\n");
    let dropped = fork_pull(&host, 11, &[("b.yaml", &b)], &["gate.yaml"]);
    let weakened_gate = BLOCKING_GATE.replace("kinds: [Certificate]", "kinds: [Issuer]");
    let c = certificate("c", "  dnsNames: [c.example.com]\n");
    let weakened = fork_pull(
        &host,
        12,
        &[("c.yaml", &c), ("gate.yaml", &weakened_gate)],
        &[],
    );
    // A policy that would spin for ten billion steps, holding next to nothing.
    let [spin_yaml, spin_rego] = policy_files(
        "spin",
        "deny",
        "msg if {\n\tsome i in numbers.range(1, 100000)\n\tsome j in numbers.range(1, 100000)\n\ti * j < 0\n\tmsg := \"never\"\n}",
    );
    let d = certificate("d", "  dnsNames: [d.example.com]\n");
    let spinning = fork_pull(
        &host,
        13,
        &[
            ("d.yaml", &d),
            (&spin_yaml.0, &spin_yaml.1),
            (&spin_rego.0, &spin_rego.1),
        ],
        &[],
    );

    // Links to the host's files, a module path that climbs out of the repository.
    host.repo.git(&["checkout", "-q", "-b", "fork-14", "main"]);
    std::os::unix::fs::symlink("/etc/passwd", host.repo.path().join("leak.yaml")).expect("symlink");
    std::os::unix::fs::symlink("/proc/self/environ", host.repo.path().join("environ.rego"))
        .expect("symlink");
    let [climb_yaml, _] = policy_files("climb", "deny", "\"x\" if true");
    host.repo.write(
        &climb_yaml.0,
        climb_yaml.1.replace(
            "module: climb.rego",
            "module: ../../../../../../../etc/climb.rego",
        ),
    );
    let linked = host.repo.commit("Fork change 14");
    host.repo.git(&["update-ref", "refs/pull/14/head", &linked]);
    // A history of its own, nothing in common with main, and YAML that is not.
    host.repo.git(&["checkout", "-q", "--orphan", "fork-15"]);
    host.repo.git(&["rm", "-q", "-r", "-f", "."]);
    host.repo.git(&["clean", "-q", "-f", "-d"]);
    host.repo.write("z.yaml", "{{{ not: yaml");
    let orphan = host.repo.commit("Fork change 15");
    host.repo.git(&["update-ref", "refs/pull/15/head", &orphan]);
    host.repo.git(&["checkout", "-q", "-f", "main"]);
    host.repo.git(&["clean", "-q", "-f", "-d"]);

    let refs_before = mirror_record(&host);
    let out_before = listing(&host.dir.path().join("out"));
    let keys_before = listing(&host.dir.path().join("state/keys"));
    for (number, head) in [
        (11, &dropped),
        (12, &weakened),
        (13, &spinning),
        (14, &linked),
        (15, &orphan),
    ] {
        let body = pull_body(json!(number), head, "main");
        let (code, _) = deliver(
            port,
            &signed_delivery(&body, &format!("pr-{number}"), HOOK_SECRET),
        );
        assert_eq!(code, 202);
    }
    daemon.wait_until("the pull requests are planned", || {
        let forge = github.state();
        [11, 12, 13, 14, 15]
            .iter()
            .all(|n| !forge.comments_on(*n).is_empty())
    });
    // Served all along, whatever the policies do.
    assert_eq!(http(port, "/healthz", None).0, 200);
    {
        let forge = github.state();
        for (number, head) in [(11, &dropped), (12, &weakened)] {
            let status = &forge.statuses_of(head, "gitward/plan")[0];
            assert_eq!(
                status["state"],
                "failure",
                "#{number}: {status}\n{}",
                daemon.log()
            );
            let comment = &forge.comments_on(number)[0].body;
            assert!(comment.contains("`prod`"), "#{number}: {comment}");
            assert!(
                comment.contains("the commit in force"),
                "#{number}: {comment}"
            );
        }
        let status = &forge.statuses_of(&spinning, "gitward/plan")[0];
        assert_eq!(status["state"], "failure", "{status}");
        let comment = &forge.comments_on(13)[0].body;
        assert!(comment.contains("policy `spin` failed"), "{comment}");
        let status = &forge.statuses_of(&linked, "gitward/plan")[0];
        assert_eq!(status["state"], "failure", "{status}");
        let status = &forge.statuses_of(&orphan, "gitward/plan")[0];
        assert_eq!(status["state"], "failure", "{status}");
        // Nothing of the host in what the forge shows: no file, no environment, no path.
        let host_dir = host.dir.path().display().to_string();
        for comment in &forge.comments {
            for leak in ["root:x:0:0", "root:", "PATH=", "HOME=", host_dir.as_str()] {
                assert!(
                    !comment.body.contains(leak),
                    "`{leak}` in #{}:\n{}",
                    comment.issue,
                    comment.body
                );
            }
        }
        assert_eq!(forge.violations, Vec::<String>::new());
    }
    // Planning is parsing and Rego: no certificate, no key, no record, no push.
    for name in ["b", "c", "d"] {
        assert!(!host.out(name).exists(), "{name}");
    }
    assert_eq!(listing(&host.dir.path().join("out")), out_before);
    assert_eq!(listing(&host.dir.path().join("state/keys")), keys_before);
    assert_eq!(mirror_record(&host), refs_before);
    daemon.terminate();
}

#[test]
fn an_apply_status_says_one_short_line_whatever_a_policy_message_holds() {
    let rt = runtime();
    let github = rt.block_on(github_fake::GitHub::start());
    let port = free_port();
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = daemon_host(
        port,
        &github.api_url(),
        &[("issuers.yaml", ISSUERS), ("a.yaml", &a)],
    );
    let mut daemon = start_daemon(&host, port);
    let message = format!(
        "\"line one\\n\\n## Injected heading\\n[click](https://evil.example) @acme/security-team \\u001b[31m{}\" if true",
        "padding ".repeat(40)
    );
    let [yaml, rego] = policy_files("loud", "deny", &message);
    host.repo.write(&yaml.0, &yaml.1);
    host.repo.write(&rego.0, &rego.1);
    let blocked = host.repo.commit("A policy that blocks with a loud message");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_until("the blocked commit gets its apply status", || {
        !github
            .state()
            .statuses_of(&blocked, "gitward/apply")
            .is_empty()
    });
    let forge = github.state();
    let status = &forge.statuses_of(&blocked, "gitward/apply")[0];
    assert_eq!(status["state"], "failure", "{status}");
    let description = status["description"].as_str().expect("a description");
    assert!(description.starts_with("blocked: "), "{description}");
    assert!(description.chars().count() <= 140, "{description}");
    assert!(
        !description.chars().any(char::is_control),
        "{description:?}"
    );
    assert_eq!(forge.violations, Vec::<String>::new());
    drop(forge);
    daemon.terminate();
}

#[test]

fn a_pull_request_that_cannot_be_planned_is_told_why() {
    let rt = runtime();
    let github = rt.block_on(github_fake::GitHub::start());
    let port = free_port();
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = daemon_host(
        port,
        &github.api_url(),
        &[("issuers.yaml", ISSUERS), ("a.yaml", &a)],
    );
    let mut daemon = start_daemon(&host, port);
    // The fork edits a.yaml one way, main another: the merge conflicts.
    let theirs = certificate("a", "  dnsNames: [a.example.com, fork.example.com]\n");
    let head = fork_pull(&host, 16, &[("a.yaml", &theirs)], &[]);
    host.repo.write(
        "a.yaml",
        certificate("a", "  dnsNames: [a.example.com, main.example.com]\n"),
    );
    let main = host.repo.commit("Main moves on");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_until("main is applied", || {
        !github
            .state()
            .statuses_of(&main, "gitward/apply")
            .is_empty()
    });
    let body = pull_body(json!(16), &head, "main");
    let (code, _) = deliver(port, &signed_delivery(&body, "conflict", HOOK_SECRET));
    assert_eq!(code, 202);
    daemon.wait_until("the pull request hears why it was not planned", || {
        let forge = github.state();
        !forge.statuses_of(&head, "gitward/plan").is_empty() || !forge.comments_on(16).is_empty()
    });
    let forge = github.state();
    let status = &forge.statuses_of(&head, "gitward/plan")[0];
    assert_eq!(status["state"], "error", "{status}");
    assert!(
        status["description"]
            .as_str()
            .unwrap_or_default()
            .contains("conflict"),
        "{status}"
    );
    drop(forge);
    daemon.terminate();
}

/// POSTs `body` with `headers` to the daemon on `port` from the loopback address
/// `127.0.0.<octet>`; the HTTP status.
fn post_from(octet: u8, port: u16, (body, headers): &(String, Vec<(String, String)>)) -> u16 {
    use std::io::{Read, Write};
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let from: std::net::SocketAddr = format!("127.0.0.{octet}:0").parse().expect("an address");
    socket.bind(&from.into()).expect("bind");
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    socket.connect(&to.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!(
        "POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[test]
fn more_pull_requests_than_the_queue_holds_are_refused_with_503_not_kept() {
    let rt = runtime();
    // A forge that takes the status and never answers: the one pull request being planned
    // holds the planner for the whole request timeout while deliveries pile up.
    let forge = rt.block_on(Hostile::start(|request, _| match request.method.as_str() {
        "POST" => Reply::body(201, Body::Stall),
        _ => github_ok(request),
    }));
    let port = free_port();
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = daemon_host_waiting(
        port,
        &format!("{}/api/v3", forge.url()),
        &[("issuers.yaml", ISSUERS), ("a.yaml", &a)],
        "10m",
    );
    let b = certificate("b", "  dnsNames: [b.example.com]\n");
    let head = fork_pull(&host, 1, &[("b.yaml", &b)], &[]);
    let mut daemon = start_daemon(&host, port);
    let first = signed_delivery(&pull_body(json!(1), &head, "main"), "first", HOOK_SECRET);
    assert_eq!(post_from(2, port, &first), 202);
    daemon.wait_until("the planner is held by the forge", || {
        let planned = format!("/statuses/{head}");
        forge
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path().ends_with(&planned))
    });
    // 300 more pull requests from five addresses (each within its burst): 256 wait, the rest
    // are refused.
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..300u64 {
        let delivery = signed_delivery(
            &pull_body(json!(2000 + n), &head, "main"),
            &format!("many-{n}"),
            HOOK_SECRET,
        );
        let code = post_from(3 + (n / 60) as u8, port, &delivery);
        *answers.entry(code).or_default() += 1;
    }
    assert_eq!(answers.get(&202), Some(&256), "{answers:?}");
    assert_eq!(answers.get(&503), Some(&44), "{answers:?}");
    // A pull request already waiting coalesces rather than being refused.
    let again = signed_delivery(&pull_body(json!(2000), &head, "main"), "again", HOOK_SECRET);
    assert_eq!(post_from(9, port, &again), 202);
    assert_eq!(http(port, "/healthz", None).0, 200);
    drop(forge);
    drop(rt);
    daemon.terminate();
}

/// GitLab's captured `Merge Request Hook` payload with `change` applied to its
/// `object_attributes`, as raw text with `424242` replaced by `iid`.
fn gitlab_body(iid: &str, change: impl Fn(&mut Value)) -> String {
    use base64::Engine;
    let captured: Value = serde_json::from_str(include_str!(
        "fixtures/webhooks/gitlab/merge_request.opened.delivery.json"
    ))
    .expect("the captured delivery");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(captured["body_raw_base64"].as_str().expect("a body"))
        .expect("base64");
    let mut body: Value = serde_json::from_slice(&raw).expect("a payload");
    body["object_attributes"]["iid"] = json!(424242);
    body["object_attributes"]["target_branch"] = json!("main");
    body["object_attributes"]["action"] = json!("update");
    change(&mut body["object_attributes"]);
    body.to_string().replace("424242", iid)
}

#[test]
fn gitlab_merge_request_hooks_that_lie_or_overflow_are_refused() {
    use gitward::webhook::{Outcome, Provider, Rejection, judge};
    let secret = b"gitlab-hook-token";
    let with_token = |token: &'static str| {
        move |name: &str| match name.to_ascii_lowercase().as_str() {
            "x-gitlab-token" => Some(token.to_owned()),
            "x-gitlab-event" => Some("Merge Request Hook".to_owned()),
            _ => None,
        }
    };
    let good = gitlab_body("4", |_| {});
    for token in [
        "",
        "gitlab-hook-toke",
        "gitlab-hook-tokenX",
        "GITLAB-HOOK-TOKEN",
    ] {
        assert!(
            matches!(
                judge(
                    Provider::GitLab,
                    secret,
                    with_token(token),
                    good.as_bytes(),
                    "main"
                ),
                Err(Rejection::Unauthenticated(_))
            ),
            "{token:?}"
        );
    }
    let judged = |body: &str| {
        judge(
            Provider::GitLab,
            secret,
            with_token("gitlab-hook-token"),
            body.as_bytes(),
            "main",
        )
    };
    for iid in ["18446744073709551616", "-4", "4.5", "\"4\"", "null", "1e3"] {
        assert!(
            matches!(
                judged(&gitlab_body(iid, |_| {})),
                Err(Rejection::Malformed(_))
            ),
            "{iid}"
        );
    }
    assert!(matches!(judged("[]"), Err(Rejection::Malformed(_))));
    assert!(matches!(
        judged(&"[".repeat(100_000)),
        Err(Rejection::Malformed(_))
    ));
    // Into another branch, or an action that changes no plan: authentic, ignored.
    let other = gitlab_body("4", |a| a["target_branch"] = json!("release"));
    assert!(matches!(judged(&other), Ok(Outcome::Ignored { .. })));
    for action in ["merge", "close", "unknown"] {
        let body = gitlab_body("4", |a| a["action"] = json!(action));
        assert!(
            matches!(judged(&body), Ok(Outcome::Ignored { .. })),
            "{action}"
        );
    }
    // Only the number is taken: a head the delivery names is never fetched.
    let body = gitlab_body("18446744073709551615", |a| {
        a["last_commit"]["id"] = json!("../../refs/heads/main");
    });
    match judged(&body) {
        Ok(Outcome::PullRequest { request, .. }) => assert_eq!(request.number, u64::MAX),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn another_bots_note_is_never_edited_when_gitlab_will_not_say_whose_the_token_is() {
    guard(async {
        let forge = Hostile::start(
            |request, _| match (request.method.as_str(), request.path()) {
                ("GET", "/api/v4/user") => Reply::json(503, r#"{"message": "try later"}"#),
                ("GET", path) if path.ends_with("/notes") => Reply::json(
                    200,
                    json!([{
                        "id": 55, "system": false,
                        "body": format!("{MARKER}\nanother tool's report"),
                        "author": {"username": "other-tool-bot", "bot": true},
                    }])
                    .to_string(),
                ),
                ("POST", _) => Reply::json(201, r#"{"id": 1}"#),
                _ => Reply::json(200, r#"{"id": 55}"#),
            },
        )
        .await;
        let repo = repo_with_change(false);
        let token = repo.path().join(".git/token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        let token = token.display().to_string();
        let url = format!("{}/ops/pki", forge.url());
        let args = [
            "plan",
            "--base",
            "main",
            "--head",
            "change",
            "--post",
            "--forge",
            "gitlab",
            "--repo-url",
            &url,
            "--pr",
            "7",
            "--token-file",
            &token,
        ];
        gitward_in_ci(repo.path(), &args, &[]).await.expect(0);
        let requests = forge.requests();
        assert!(
            !requests.iter().any(|r| r.method == "PUT"),
            "edited: {:?}",
            requests.iter().map(|r| &r.target).collect::<Vec<_>>()
        );
    })
    .await;
}

#[tokio::test]
async fn a_bitbucket_next_page_elsewhere_never_gets_the_token() {
    guard(async {
        let elsewhere = Hostile::start(|request, _| github_ok(request)).await;
        let steal = format!("{}/2.0/steal?page=2", elsewhere.url());
        let forge =
            Hostile::start(
                move |request, _| match (request.method.as_str(), request.path()) {
                    ("GET", path) if path.ends_with("/comments") => {
                        Reply::json(200, json!({"values": [], "next": steal}).to_string())
                    }
                    ("GET", _) => Reply::json(200, r#"{"values": []}"#),
                    _ => Reply::json(201, r#"{"id": 1}"#),
                },
            )
            .await;
        let repo = repo_with_change(false);
        let token = repo.path().join(".git/token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        let token = token.display().to_string();
        let url = format!("{}/acme/pki", forge.url());
        let args = [
            "plan",
            "--base",
            "main",
            "--head",
            "change",
            "--post",
            "--forge",
            "bitbucket",
            "--repo-url",
            &url,
            "--pr",
            "7",
            "--token-file",
            &token,
        ];
        let run = gitward_in_ci(repo.path(), &args, &[]).await;
        assert_clean_failure(&run, "outside the API");
        assert_eq!(elsewhere.requests().len(), 0);
        assert!(forge.count("/comments") >= 1, "{}", run.stderr);
    })
    .await;
}
