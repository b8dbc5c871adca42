//! Events and sinks under attack: a hostile repository writer (sinks, names, policies, commits),
//! hostile receivers (any HTTP answer, slow, hanging, huge, redirecting) and odd host files.
//! Each test asserts the safe behaviour; one that gitward does not have yet is ignored with
//! the finding it shows.

use crate::common;
use crate::common::signing;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::host::{Host, ISSUERS, certificate};
use common::peers::{Daemon, free_port, http};
use common::{Run, gitward_in, sink_state, sink_states};
use serde_json::Value;

/// Longest a run of gitward may take before the test counts it as hung.
const HANG_GUARD: Duration = Duration::from_secs(120);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_cGxlYXNlIGRvIG5vdCB1c2UgdGhpcyBrZXk=";
const ROUTING_KEY: &str = "R0123456789abcdefABCDEF012345678";

// ---------------------------------------------------------------------------------------
// A hostile HTTP receiver

/// One request as the receiver read it.
#[derive(Debug, Clone)]
struct Request {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the receiver does with a request.
enum Reply {
    /// These bytes, then the connection is closed.
    Raw(Vec<u8>),
    /// `head` (status line and headers), then `chunk` again and again until gitward goes.
    Endless { head: String, chunk: Vec<u8> },
    /// Not a byte, the connection held open until the receiver is dropped.
    Hang,
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut text = format!(
        "HTTP/1.1 {status} Answer\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    Reply::Raw(text.into_bytes())
}

type Script = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// An HTTP/1.1 receiver on loopback that answers each request as its script says (given the
/// request and how many came before it), one thread per connection, and records them all.
struct Hostile {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.trim_end().split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        line: line.trim_end().to_owned(),
        headers,
        body,
    })
}

impl Hostile {
    fn start(script: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (kept, counted, stopped) = (requests.clone(), connections.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let (kept, script, stopped) = (kept.clone(), script.clone(), stopped.clone());
                std::thread::spawn(move || serve(stream, &kept, &*script, &stopped));
            }
        });
        Hostile {
            url,
            requests,
            connections,
            stop,
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }

    fn count(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }
}

fn serve(mut stream: TcpStream, kept: &Mutex<Vec<Request>>, script: &Script, stop: &AtomicBool) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    let before = {
        let mut all = kept.lock().expect("lock");
        all.push(request.clone());
        all.len() - 1
    };
    let held = Instant::now();
    match script(&request, before) {
        Reply::Raw(bytes) => {
            let _ = stream.write_all(&bytes);
        }
        Reply::Endless { head, chunk } => {
            if stream.write_all(head.as_bytes()).is_ok() {
                while !stop.load(Ordering::SeqCst)
                    && held.elapsed() < HANG_GUARD
                    && stream.write_all(&chunk).is_ok()
                {}
            }
        }
        Reply::Hang => {
            while !stop.load(Ordering::SeqCst) && held.elapsed() < HANG_GUARD {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hosts, sinks, runs

fn sink(name: &str, type_: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "apiVersion: gitward/v1\nkind: Sink\nmetadata: {{name: {name}}}\nspec:\n  type: {type_}\n  endpoint: {endpoint}\n{extra}"
    )
}

/// A host following issuers, one certificate and `sinks`.
fn host_with(sinks: &str) -> Host {
    let web = certificate("web", "  dnsNames: [web.example.com]\n");
    Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web),
        ("sinks.yaml", sinks),
    ])
}

/// A host with one webhook sink `hook` (all events) to `url`, signed with `SECRET`; `extra`
/// goes into the endpoint's flow mapping.
fn hooked(url: &str, extra: &str) -> Host {
    hooked_with(url, extra, "")
}

/// [`hooked`] with `host_extra` at the top of the host config (`listen: ...`).
fn hooked_with(url: &str, extra: &str, host_extra: &str) -> Host {
    let host = host_with(&sink("hook", "webhook", "hook", "  minSeverity: info\n"));
    std::fs::write(host.dir.path().join("hook-secret"), format!("{SECRET}\n")).expect("secret");
    host.config(&format!(
        "{host_extra}endpoints:\n  hook: {{url: \"{url}\", secretFile: hook-secret{extra}}}\n"
    ));
    host
}

/// Whether `request` carries a Standard Webhooks signature made with `secret`.
fn signed_with(request: &Request, secret: &str) -> bool {
    let key = gitward::sinks::webhook::secret_key(secret).expect("a secret");
    let (Some(id), Some(timestamp), Some(signature)) = (
        request.header("webhook-id"),
        request
            .header("webhook-timestamp")
            .and_then(|t| t.parse().ok()),
        request.header("webhook-signature"),
    ) else {
        return false;
    };
    let body = String::from_utf8_lossy(&request.body);
    gitward::sinks::webhook::signature(&key, id, timestamp, &body) == signature
}

fn file_endpoint(host: &Host, name: &str, file: &str) -> String {
    format!(
        "  {name}: {{url: \"file://{}\"}}\n",
        host.dir.path().join(file).display()
    )
}

/// The CloudEvents a file sink wrote, in order.
fn written(host: &Host, file: &str) -> Vec<Value> {
    std::fs::read_to_string(host.dir.path().join(file))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is a JSON event"))
        .collect()
}

fn gitward(host: &Host, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--config", "gitward.yaml"]);
    gitward_in(host.dir.path(), &all)
}

/// `gitward args` in `dir`, killed if it is still running after `guard`: `None` then.
fn within(dir: &Path, args: &[&str], guard: Duration) -> Option<Run> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitward"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gitward runs");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            let output = child.wait_with_output().expect("output");
            return Some(Run {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        if started.elapsed() > guard {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reconcile_within(host: &Host, guard: Duration) -> Option<Run> {
    within(
        host.dir.path(),
        &["reconcile", "--once", "--config", "gitward.yaml"],
        guard,
    )
}

/// Every file of the status branch with its text.
fn status_files(host: &Host) -> Vec<(String, String)> {
    host.repo
        .git(&["ls-tree", "-r", "--name-only", "gitward/status"])
        .lines()
        .map(|path| {
            (
                path.to_owned(),
                host.repo.git(&["show", &format!("gitward/status:{path}")]),
            )
        })
        .collect()
}

fn sink_record(host: &Host, name: &str) -> String {
    host.repo
        .git(&["show", &format!("gitward/status:status/sink/{name}.yaml")])
}

// ---------------------------------------------------------------------------------------
// Receivers that answer badly

#[test]
fn a_redirect_is_not_followed_so_nothing_reaches_a_host_the_host_config_did_not_list() {
    let elsewhere = Hostile::start(|_, _| answer(204, &[], ""));
    let target = elsewhere.url.clone();
    let redirector = Hostile::start(move |_, _| answer(307, &[("location", &target)], ""));
    let host = hooked(&redirector.url, "");
    host.reconcile(&[]).expect(0);
    assert!(redirector.count() >= 1);
    assert_eq!(elsewhere.count(), 0, "a redirect was followed");
    let hook = sink_state(host.dir.path(), "hook");
    assert_eq!(hook["delivered"], 0, "{hook}");

    // The same for PagerDuty, whose routing key travels in the body.
    let pd = host_with(&sink("pager", "pagerduty", "pd", ""));
    std::fs::write(pd.dir.path().join("pd-key"), ROUTING_KEY).expect("key");
    pd.config(&format!(
        "endpoints:\n  pd: {{url: \"{}\", routingKeyFile: pd-key}}\n",
        redirector.url
    ));
    pd.reconcile(&[]).expect(0);
    let test = gitward(&pd, &["sinks", "test", "pager"]);
    assert_eq!(test.code, 1, "{}", test.stdout);
    assert!(!test.stdout.contains(ROUTING_KEY), "{}", test.stdout);
    assert_eq!(elsewhere.count(), 0, "a redirect was followed with the key");
    assert!(
        redirector
            .requests()
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains(ROUTING_KEY)),
        "the test event went to the listed URL"
    );
}

#[test]
fn an_endless_answer_is_read_no_further_than_needed() {
    let endless = |status: u16| {
        move |_: &Request, _: usize| Reply::Endless {
            head: format!("HTTP/1.1 {status} Answer\r\ncontent-type: text/plain\r\n\r\n"),
            chunk: vec![b'x'; 64 * 1024],
        }
    };
    let taking = Hostile::start(endless(200));
    let host = hooked(&taking.url, "");
    let run =
        reconcile_within(&host, HANG_GUARD).expect("reconcile --once hangs on an endless 200");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(sink_state(host.dir.path(), "hook")["delivered"], 3);

    let refusing = Hostile::start(endless(400));
    let host = hooked(&refusing.url, "");
    let run =
        reconcile_within(&host, HANG_GUARD).expect("reconcile --once hangs on an endless 400");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let hook = sink_state(host.dir.path(), "hook");
    assert_eq!(hook["deadLetters"], 3, "{hook}");
    let error = hook["lastError"].as_str().unwrap_or_default();
    assert!(error.starts_with("HTTP 400: xxx"), "{error}");
    assert!(
        error.len() < 2100,
        "{} bytes of the receiver's answer kept",
        error.len()
    );
}

#[test]
fn a_receiver_that_never_answers_holds_nothing_up_and_gets_the_events_later() {
    let receiver = Hostile::start(|_, before| {
        if before < 3 {
            Reply::Hang
        } else {
            answer(204, &[], "")
        }
    });
    let host = hooked(&receiver.url, ", timeout: 1s");
    let run = reconcile_within(&host, HANG_GUARD).expect("reconcile --once hangs");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("sink hook: events kept for later"),
        "{}",
        run.stdout
    );
    assert_eq!(sink_state(host.dir.path(), "hook")["backlog"], 3);
    // Two more hanging tries, then the receiver is back.
    for _ in 0..2 {
        reconcile_within(&host, HANG_GUARD).expect("reconcile --once hangs");
    }
    let run = reconcile_within(&host, HANG_GUARD).expect("reconcile --once hangs");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let hook = sink_state(host.dir.path(), "hook");
    assert_eq!(
        (hook["delivered"].as_i64(), hook["backlog"].as_i64()),
        (Some(3), Some(0)),
        "{hook}"
    );
    let mut ids: Vec<String> = receiver.requests()[3..]
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

/// What a receiver answers is its text: shown on one line, without what the host keeps to
/// itself, wherever gitward shows it.
#[test]
fn a_receivers_answer_is_shown_flat_without_host_paths_or_credentials() {
    let said = "refused\n\u{1b}[31mred\u{202e}txet\r\n---\nkey: !!python/object:os.system [id]\n\
                /etc/gitward/hook-secret https://admin:hunter2@siem.example.com/x \"quoted\"";
    let receiver = Hostile::start(move |_, _| answer(422, &[], said));
    let host = hooked(&receiver.url, "");
    host.reconcile(&[]).expect(0);
    // The next status commit records the refusal.
    host.repo.write(
        "more.yaml",
        certificate("more", "  dnsNames: [more.example.com]\n"),
    );
    host.repo.commit("One more certificate");
    host.reconcile(&[]).expect(0);
    let record = sink_record(&host, "hook");
    let parsed: Value = serde_yaml::from_str(&record).expect("the record is YAML");
    let error = parsed["lastError"]
        .as_str()
        .expect("the refusal is recorded");
    assert!(error.starts_with("HTTP 422: refused"), "{error}");
    assert!(!error.chars().any(char::is_control), "{error:?}");
    assert!(!record.contains("hunter2"), "{record}");
    assert!(!record.contains("/etc/gitward"), "{record}");
    assert!(
        !record.contains(&host.dir.path().display().to_string()),
        "{record}"
    );
    assert_eq!(parsed["name"], "hook");
    // The table an operator reads in a terminal: nothing that moves the cursor or flips text.
    let table = gitward(&host, &["sinks", "status"]).expect(0).stdout;
    assert!(table.contains("HTTP 422"), "{table}");
    assert!(
        !table.contains('\u{1b}') && !table.contains('\u{202e}'),
        "{table:?}"
    );
    let listed = gitward(&host, &["events"]).expect(0).stdout;
    assert!(!listed.contains('\u{1b}'), "{listed:?}");
}

#[test]
fn a_retry_after_of_any_size_is_capped_and_never_panics() {
    for (retry_after, shown) in [
        ("999999999", Some("retry after 3600 s")),
        ("99999999999999999999999999", None),
        ("-5", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ] {
        let receiver =
            Hostile::start(move |_, _| answer(429, &[("retry-after", retry_after)], "slow down"));
        let host = hooked(&receiver.url, "");
        host.reconcile(&[]).expect(0);
        let test = gitward(&host, &["sinks", "test", "hook"]);
        assert_eq!(
            test.code, 1,
            "{retry_after}: {}{}",
            test.stdout, test.stderr
        );
        assert!(
            test.stdout
                .contains("not delivered, a retry could succeed: HTTP 429"),
            "{retry_after}: {}",
            test.stdout
        );
        if let Some(shown) = shown {
            assert!(
                test.stdout.contains(shown),
                "{retry_after}: {}",
                test.stdout
            );
        }
        assert!(!test.stderr.contains("panicked"), "{}", test.stderr);
    }
}

/// A receiver may say "retry after 0 seconds" to every try (a 429 storm): gitward's own
/// backoff still spaces its tries, or it spins sending and writing the state database.
#[test]
fn a_retry_after_of_zero_does_not_make_the_daemon_spin() {
    let receiver = Hostile::start(|_, _| answer(429, &[("retry-after", "0")], "later"));
    let port = free_port();
    let host = hooked_with(&receiver.url, "", &format!("listen: 127.0.0.1:{port}\n"));
    let mut daemon = Daemon::gitward(host.dir.path());
    daemon.wait_for(port);
    daemon.wait_until("the receiver is tried", || receiver.count() >= 1);
    let first = receiver.count();
    std::thread::sleep(Duration::from_secs(5));
    let tries = receiver.count() - first;
    daemon.terminate();
    // With a backoff starting at 1 s and doubling, a handful of tries in 5 s; spinning,
    // thousands.
    assert!(tries < 60, "{tries} requests in about 5 s");
}

/// 401 and 403 are retried so that the host can fix the credential: once the host has, the
/// next try uses it, without restarting the daemon.
#[test]
fn a_fixed_secret_file_is_used_by_the_next_try_of_a_running_daemon() {
    let receiver = Hostile::start(|request, _| {
        if signed_with(request, OTHER_SECRET) {
            answer(204, &[], "")
        } else {
            answer(401, &[("retry-after", "1")], "bad signature")
        }
    });
    let port = free_port();
    let host = hooked_with(&receiver.url, "", &format!("listen: 127.0.0.1:{port}\n"));
    let mut daemon = Daemon::gitward(host.dir.path());
    daemon.wait_for(port);
    daemon.wait_until("the receiver refuses the old secret", || {
        receiver.count() >= 1
    });
    std::fs::write(
        host.dir.path().join("hook-secret"),
        format!("{OTHER_SECRET}\n"),
    )
    .expect("secret");
    // Told as well, for good measure.
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_until("an event signed with the new secret", || {
        receiver
            .requests()
            .iter()
            .any(|r| signed_with(r, OTHER_SECRET))
    });
    daemon.terminate();
}

/// Two repositories that share history (a fork, a mirror for staging) send to one webhook
/// receiver, which deduplicates on `webhook-id` as the README tells it to: an event of one
/// must not pass for a resend of the other's.
#[test]
fn events_of_two_repositories_sharing_commits_have_different_ids() {
    let receiver = Hostile::start(|_, _| answer(204, &[], ""));
    let broken = certificate("broken", "  dnsNames: [broken.example.com]\n")
        .replace("target: web", "target: elsewhere");
    let first = host_with(&sink("hook", "webhook", "hook", "  minSeverity: info\n"));
    first.repo.write("broken.yaml", &broken);
    first
        .repo
        .commit("A certificate for a target this host lacks");
    let second = Host {
        repo: common::TestRepo::new(),
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let origin = first.repo.path().display().to_string();
    second.repo.git(&["fetch", "-q", &origin, "main"]);
    second.repo.git(&["reset", "-q", "--hard", "FETCH_HEAD"]);
    for host in [&first, &second] {
        std::fs::write(host.dir.path().join("hook-secret"), SECRET).expect("secret");
        host.config(&format!(
            "endpoints:\n  hook: {{url: \"{}\", secretFile: hook-secret}}\n",
            receiver.url
        ));
        host.reconcile(&[]).expect(1);
    }
    let mut by_id: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for request in receiver.requests() {
        let event = request.json();
        by_id
            .entry(request.header("webhook-id").unwrap_or_default().to_owned())
            .or_default()
            .push(format!("{} {}", event["source"], event["type"]));
    }
    let shared: Vec<_> = by_id.values().filter(|sent| sent.len() > 1).collect();
    assert!(
        shared.is_empty(),
        "one webhook-id for events of both repositories: {shared:?}"
    );
}

const LEGACY_POLICY: &str = "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: no-legacy}\nspec:\n  module: legacy.rego\n  rule: data.legacy.warn\n  appliesTo: {kinds: [Certificate]}\n  enforcement: warn\n  severity: high\n";
const LEGACY_REGO: &str = "package legacy\n\nimport rego.v1\n\nwarn contains \"a legacy name\" if {\n\tsome name in input.resource.spec.dnsNames\n\tstartswith(name, \"legacy\")\n}\n";

/// A problem that comes back opens again: the branch moved back to a commit seen before
/// (`git reset` and a forced push) brings its violation back, and the receivers must hear
/// of it, or PagerDuty keeps the alert resolved while the problem is open.
#[test]
fn a_violation_back_with_a_commit_seen_before_is_told_again() {
    let audit = sink("audit", "file", "audit", "  minSeverity: info\n");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "web.yaml",
            &certificate("web", "  dnsNames: [legacy.example.com]\n"),
        ),
        ("policy.yaml", LEGACY_POLICY),
        ("legacy.rego", LEGACY_REGO),
        ("sinks.yaml", &audit),
    ]);
    host.config(&format!(
        "endpoints:\n{}",
        file_endpoint(&host, "audit", "audit.jsonl")
    ));
    let violating = host.repo.git(&["rev-parse", "HEAD"]);
    host.reconcile(&[]).expect(0);
    host.repo.write(
        "web.yaml",
        certificate("web", "  dnsNames: [web.example.com]\n"),
    );
    host.repo.commit("No legacy name");
    host.reconcile(&[]).expect(0);
    host.repo.git(&["reset", "-q", "--hard", &violating]);
    host.reconcile(&[]).expect(0);
    let told: Vec<(String, Value)> = written(&host, "audit.jsonl")
        .into_iter()
        .filter(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("dev.gitward.policy."))
        })
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["data"]["condition"].clone(),
            )
        })
        .collect();
    let types: Vec<&str> = told.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "dev.gitward.policy.violation",
            "dev.gitward.policy.resolved",
            "dev.gitward.policy.violation"
        ],
        "{told:?}"
    );
}

/// A certificate whose files could not be written is a problem (`certificate.failed`); once
/// they are written it is over, and receivers that opened an incident hear that it is.
#[test]
fn a_failure_to_write_files_clears_once_they_are_written() {
    let audit = sink("audit", "file", "audit", "  minSeverity: info\n");
    let host = host_with(&audit);
    host.config(&format!(
        "endpoints:\n{}",
        file_endpoint(&host, "audit", "audit.jsonl")
    ));
    // A file where the certificate's directory goes.
    std::fs::create_dir_all(host.dir.path().join("out")).expect("out");
    std::fs::write(host.out("web"), "in the way").expect("blocker");
    host.reconcile(&[]).expect(1);
    std::fs::remove_file(host.out("web")).expect("unblock");
    host.reconcile(&[]).expect(0);
    assert!(host.out("web").join("cert.pem").exists());
    let about_web: Vec<(String, Value)> = written(&host, "audit.jsonl")
        .into_iter()
        .filter(|e| e["subject"] == "Certificate/web")
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["data"]["condition"].clone(),
            )
        })
        .collect();
    assert_eq!(
        about_web[0].0, "dev.gitward.certificate.failed",
        "{about_web:?}"
    );
    assert!(
        about_web[1..]
            .iter()
            .any(|(_, c)| c["key"] == "Certificate/web" && c["open"] == false),
        "the failure is never cleared: {about_web:?}"
    );
}

/// The host's credential files are trusted, but one that is not a regular file (a FIFO
/// nobody writes, a device) must not hang gitward.
#[test]
fn a_secret_file_that_is_a_fifo_does_not_hang_reconcile() {
    let receiver = Hostile::start(|_, _| answer(204, &[], ""));
    let host = hooked(&receiver.url, "");
    let secret = host.dir.path().join("hook-secret");
    std::fs::remove_file(&secret).expect("secret");
    common::tool("mkfifo", &[&secret.to_string_lossy()], host.dir.path()).expect(0);
    let run = reconcile_within(&host, Duration::from_secs(60))
        .expect("reconcile --once hangs on a FIFO for secretFile");
    assert!(
        run.stdout.contains("sink hook: events kept for later"),
        "{}",
        run.stdout
    );
    assert_eq!(receiver.count(), 0);
}

const NOTIFYING_GATE: &str = "apiVersion: gitward/v1\nkind: Gate\nmetadata: {name: prod}\nspec:\n  appliesTo: {kinds: [Certificate], selector: {env: prod}}\n  require:\n    approvals: {count: 2, from: [alice@example.com, bob@example.com]}\n  override: {by: [lead@example.com], reviewWithin: 24h, notify: [siem]}\n";

/// `override.notify` is how the security team hears of every override. The one overriding
/// writes the commit: if that commit can drop the notified sink (and the gate's `notify`),
/// the override goes to no one.
#[test]
fn an_override_reaches_the_sinks_notified_before_the_commit_that_uses_it() {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let siem = sink("siem", "file", "siem", "  events: [certificate.failed]\n");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("a.yaml", &a),
        ("gate.yaml", NOTIFYING_GATE),
        ("sinks.yaml", &siem),
    ]);
    let keys_dir = host.dir.path().join("keys");
    std::fs::create_dir_all(&keys_dir).expect("keys");
    let keys: std::collections::BTreeMap<&str, signing::Key> = ["alice", "bob", "lead"]
        .into_iter()
        .map(|name| (name, signing::Key::new(&keys_dir, name, "ed25519")))
        .collect();
    let allowed: String = keys
        .iter()
        .map(|(name, key)| format!("{name}@example.com {}\n", key.public()))
        .collect();
    std::fs::write(host.dir.path().join("allowed_signers"), allowed).expect("signers");
    host.config(&format!(
        "signers: {{allowedSignersFile: allowed_signers}}\nendpoints:\n{}",
        file_endpoint(&host, "siem", "siem.jsonl")
    ));
    for who in ["alice", "bob"] {
        host.repo
            .gitward(&[
                "approve",
                "HEAD",
                "--key",
                &keys[who].path.to_string_lossy(),
                "--as",
                &format!("{who}@example.com"),
                "--no-push",
            ])
            .expect(0);
    }
    host.reconcile(&[]).expect(0);

    // The overriding commit also takes the SIEM out of the repository.
    host.repo
        .write("b.yaml", certificate("b", "  dnsNames: [b.example.com]\n"));
    host.repo.remove("sinks.yaml");
    host.repo.edit("gate.yaml", ", notify: [siem]", "");
    host.repo.git(&["add", "-A"]);
    let signing_key = format!("user.signingkey={}", keys["lead"].path.display());
    host.repo.git(&[
        "-c",
        "gpg.format=ssh",
        "-c",
        &signing_key,
        "commit",
        "-S",
        "-q",
        "-m",
        "Add b, quietly\n\nGate-Override: prod nobody needs to know",
    ]);
    host.reconcile(&[]).expect(0);
    assert!(
        host.out("b").join("cert.pem").exists(),
        "the override was honoured"
    );
    let told: Vec<String> = written(&host, "siem.jsonl")
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    assert!(
        told.iter().any(|t| t == "dev.gitward.gate.override"),
        "the notified sink never heard of the override: {told:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Many sinks, a state database that is not what gitward left

/// `count` sinks of `type_` naming `endpoint`, in files of at most 1000 (a file holds at
/// most 1 MiB).
fn many_sinks(repo: &common::TestRepo, count: usize, type_: &str, endpoint: &str) {
    for file in 0..count.div_ceil(1000) {
        let text: Vec<String> = (file * 1000..((file + 1) * 1000).min(count))
            .map(|i| sink(&format!("s{i}"), type_, endpoint, "  minSeverity: info\n"))
            .collect();
        repo.write(&format!("sinks/{file}.yaml"), text.join("---\n"));
    }
}

/// Every sink costs work at each reconcile, each `sinks status`, each `/metrics` scrape
/// (its backlog is counted), and multiplies what its endpoint receives. Like findings (20,000
/// a commit) and approvals (256 a tree), how many sinks a repository declares is bounded.
/// Measured: 10,000 sinks naming an undefined endpoint with a backlog of 20,099 events (one
/// commit of warn findings) make `gitward sinks status` take 74 s of CPU, and so every
/// reconcile and every scrape.
#[test]
fn a_repository_cannot_declare_sinks_without_bound() {
    let repo = common::TestRepo::new();
    repo.write("issuers.yaml", ISSUERS);
    many_sinks(&repo, 10_000, "file", "audit");
    repo.commit("Ten thousand sinks");
    let run = repo.gitward(&["validate"]);
    assert_eq!(
        run.code, 1,
        "10,000 sinks are valid:\n{}{}",
        run.stdout, run.stderr
    );
}

/// An endpoint that accepts connections and never answers costs its timeout: the sinks of a
/// `reconcile --once` are delivered side by side, so N sinks naming it wait for it once
/// together, not N times one after the other, and each tries it once in the run.
#[test]
fn sinks_sharing_a_hanging_endpoint_do_not_each_wait_for_it() {
    let receiver = Hostile::start(|_, _| Reply::Hang);
    let web = certificate("web", "  dnsNames: [web.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("web.yaml", &web)]);
    many_sinks(&host.repo, 30, "webhook", "hook");
    host.repo.commit("Thirty sinks, one endpoint");
    std::fs::write(host.dir.path().join("hook-secret"), SECRET).expect("secret");
    host.config(&format!(
        "endpoints:\n  hook: {{url: \"{}\", secretFile: hook-secret, timeout: 1s}}\n",
        receiver.url
    ));
    let run = reconcile_within(&host, HANG_GUARD).expect("reconcile --once hangs");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(sink_states(host.dir.path()).len(), 30);
    assert_eq!(
        run.stdout.matches("events kept for later").count(),
        30,
        "{}",
        run.stdout
    );
    let tries = receiver.connections.load(Ordering::SeqCst);
    assert_eq!(
        tries, 30,
        "each sink tries once in the run, and is not retried"
    );
}

/// Jira and ServiceNow sinks never deliver in this version, and a sink may name an endpoint
/// the host never defines: such a sink must not keep the outbox from being pruned, or the
/// state database grows with every event for ever.
#[test]
fn a_sink_that_cannot_deliver_does_not_pin_the_outbox_for_ever() {
    let sinks = [
        sink("audit", "file", "audit", "  minSeverity: info\n"),
        sink("tickets", "jira", "jira-cloud", "  jira: {project: SEC}\n"),
    ]
    .join("---\n");
    let host = host_with(&sinks);
    host.config(&format!(
        "endpoints:\n{}",
        file_endpoint(&host, "audit", "audit.jsonl")
    ));
    host.reconcile(&[]).expect(0);
    assert_eq!(written(&host, "audit.jsonl").len(), 3);
    // The events are a year old.
    let db = rusqlite::Connection::open(host.dir.path().join("state/gitward.db")).expect("db");
    db.execute("UPDATE events SET time = time - 365 * 86400", [])
        .expect("aged");
    drop(db);
    host.repo.write(
        "more.yaml",
        certificate("more", "  dnsNames: [more.example.com]\n"),
    );
    host.repo.commit("One more certificate");
    host.reconcile(&[]).expect(0);
    let kept = gitward(&host, &["events", "--format", "json"])
        .expect(0)
        .stdout;
    assert_eq!(
        kept.lines().count(),
        1,
        "events a year old are kept for a sink that never delivers:\n{kept}"
    );
}

/// The state database is the host's, but a row that no longer reads (a `sinks.spec` edited,
/// or written by another version) must not make a sink's backlog vanish from what operators
/// see.
#[test]
fn a_sink_whose_spec_does_not_read_still_shows_its_backlog() {
    let receiver = Hostile::start(|_, _| answer(503, &[], "down"));
    let host = hooked(&receiver.url, "");
    host.reconcile(&[]).expect(0);
    assert_eq!(sink_state(host.dir.path(), "hook")["backlog"], 3);
    let db = rusqlite::Connection::open(host.dir.path().join("state/gitward.db")).expect("db");
    db.execute("UPDATE sinks SET spec = '{\"type\": 7}'", [])
        .expect("tampered");
    drop(db);
    let hook = sink_state(host.dir.path(), "hook");
    assert!(
        hook["backlog"] == 3 || hook["problem"].is_string(),
        "the backlog is gone from view and nothing says why: {hook}"
    );
}

// ---------------------------------------------------------------------------------------
// Names, listings, files the host points at

#[test]
fn sink_names_like_paths_are_refused_and_status_keeps_to_its_folders() {
    for name in [
        "../../escape",
        "a/b",
        "Upper",
        "x.yaml",
        &"x".repeat(64),
        "-dash",
    ] {
        let repo = common::TestRepo::new();
        repo.write("issuers.yaml", ISSUERS);
        repo.write(
            "sinks.yaml",
            format!(
                "apiVersion: gitward/v1\nkind: Sink\nmetadata: {{name: {:?}}}\nspec: {{type: file, endpoint: audit}}\n",
                name
            ),
        );
        repo.commit("A sink named like a path");
        let run = repo.gitward(&["validate"]);
        assert_eq!(
            run.code, 1,
            "{name:?} is a valid sink name:\n{}",
            run.stdout
        );
    }
    // The longest names there are deliver, and status keeps them in their folder.
    let (name, endpoint) = ("s".repeat(63), "e".repeat(63));
    let host = host_with(&sink(&name, "file", &endpoint, "  minSeverity: info\n"));
    host.config(&format!(
        "endpoints:\n{}",
        file_endpoint(&host, &endpoint, "audit.jsonl")
    ));
    host.reconcile(&[]).expect(0);
    assert_eq!(written(&host, "audit.jsonl").len(), 3);
    host.repo.write(
        "more.yaml",
        certificate("more", "  dnsNames: [more.example.com]\n"),
    );
    host.repo.commit("One more certificate");
    host.reconcile(&[]).expect(0);
    let files = status_files(&host);
    assert!(
        files
            .iter()
            .any(|(path, text)| *path == format!("status/sink/{name}.yaml")
                && text.contains("delivered: 3")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .all(|(path, _)| !path.contains("..") && !path.starts_with('/')),
        "{files:?}"
    );
    let table = gitward(&host, &["sinks", "status"]).expect(0).stdout;
    assert!(table.lines().any(|l| l.starts_with(&name)), "{table}");
}

#[test]
fn events_are_listed_whatever_the_limit_and_date_asked() {
    let host = host_with(&sink("audit", "file", "audit", "  minSeverity: info\n"));
    host.config(&format!(
        "endpoints:\n{}",
        file_endpoint(&host, "audit", "audit.jsonl")
    ));
    host.reconcile(&[]).expect(0);
    let count = |args: &[&str]| {
        let mut all = vec!["events", "--format", "json"];
        all.extend_from_slice(args);
        let run = gitward(&host, &all);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        run.stdout.lines().count()
    };
    assert_eq!(count(&["--limit", "18446744073709551615"]), 3);
    assert_eq!(count(&["--limit", "0"]), 0);
    assert_eq!(count(&["--limit", "2"]), 2);
    assert_eq!(count(&["--since", "9999-12-31T23:59:59Z"]), 0);
    assert_eq!(count(&["--since", "1970-01-01T00:00:00Z"]), 3);
    for wrong in [
        vec!["--limit", "-1"],
        vec!["--limit", "18446744073709551616"],
        vec!["--since", "yesterday"],
        vec!["--since", "+275760-09-13T00:00:00Z"],
    ] {
        let mut all = vec!["events"];
        all.extend(wrong.iter().copied());
        let run = gitward(&host, &all);
        assert_eq!(run.code, 2, "{wrong:?}: {}{}", run.stdout, run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

/// Credential files that are empty, binary, a directory, a dangling link or not a secret:
/// the sink says what is wrong, without the file's content or where it is on the host; a
/// link to a good secret works.
#[test]
fn odd_credential_files_are_told_without_their_content_or_path() {
    let receiver = Hostile::start(|_, _| answer(204, &[], ""));
    let cases = [
        "empty",
        "binary",
        "directory",
        "dangling",
        "wrong",
        "linked",
    ];
    let sinks: Vec<String> = cases
        .iter()
        .map(|c| sink(c, "webhook", c, "  minSeverity: info\n"))
        .collect();
    let host = host_with(&sinks.join("---\n"));
    let dir = host.dir.path().join("secrets");
    std::fs::create_dir_all(&dir).expect("secrets");
    std::fs::write(dir.join("empty"), "").expect("empty");
    std::fs::write(dir.join("binary"), b"whsec_\xff\xfe\x00hunter2\n").expect("binary");
    std::fs::create_dir_all(dir.join("directory")).expect("directory");
    std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("dangling")).expect("link");
    std::fs::write(dir.join("wrong"), "hunter2 is not base64!\n").expect("wrong");
    std::fs::write(dir.join("good"), SECRET).expect("good");
    std::os::unix::fs::symlink(dir.join("good"), dir.join("linked")).expect("link");
    let endpoints: String = cases
        .iter()
        .map(|c| {
            format!(
                "  {c}: {{url: \"{}\", secretFile: secrets/{c}}}\n",
                receiver.url
            )
        })
        .collect();
    host.config(&format!("endpoints:\n{endpoints}"));
    let run = host.reconcile(&[]).expect(0);
    for case in &cases[..5] {
        assert!(
            run.stdout
                .contains(&format!("sink {case}: events kept for later")),
            "{case}: {}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
    assert_eq!(
        receiver.count(),
        3,
        "only the linked secret's sink delivers"
    );
    assert!(receiver.requests().iter().all(|r| signed_with(r, SECRET)));
    host.repo.write(
        "more.yaml",
        certificate("more", "  dnsNames: [more.example.com]\n"),
    );
    host.repo.commit("One more certificate");
    host.reconcile(&[]).expect(0);
    let shown = host.dir.path().display().to_string();
    for (path, text) in status_files(&host) {
        assert!(!text.contains("hunter2"), "{path}: {text}");
        assert!(!text.contains(&shown), "{path}: {text}");
        assert!(!text.contains("secrets/"), "{path}: {text}");
    }
    let table = gitward(&host, &["sinks", "status"]).expect(0).stdout;
    assert!(!table.contains("hunter2"), "{table}");
}

/// Host paths with a space in them are still host paths.
#[test]
fn a_host_path_with_a_space_stays_off_the_status_branch() {
    let host = host_with(&sink("audit", "file", "audit", "  minSeverity: info\n"));
    // A file where the sink's directory should be: appending fails, with the path.
    std::fs::write(host.dir.path().join("log files"), "in the way").expect("blocker");
    host.config(&format!(
        "endpoints:\n{}",
        file_endpoint(&host, "audit", "log files/audit events.jsonl")
    ));
    host.reconcile(&[]).expect(0);
    assert!(
        sink_state(host.dir.path(), "audit")["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("audit events.jsonl")),
        "the host sees the path in full"
    );
    host.repo.write(
        "more.yaml",
        certificate("more", "  dnsNames: [more.example.com]\n"),
    );
    host.repo.commit("One more certificate");
    host.reconcile(&[]).expect(0);
    let record = sink_record(&host, "audit");
    assert!(record.contains("lastError"), "{record}");
    assert!(
        !record.contains("files/audit") && !record.contains("events.jsonl"),
        "{record}"
    );
}

// ---------------------------------------------------------------------------------------
// What receivers get, crashes

/// A webhook receiver gets the event, its id, time and signature: no credential, no path of
/// the host's, whatever headers it echoes back.
#[test]
fn a_webhook_receiver_gets_the_event_and_its_signature_only() {
    let receiver = Hostile::start(|request, _| {
        let echoed: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length"))
            .collect();
        answer(200, &echoed, "echo")
    });
    let host = hooked(&receiver.url, "");
    host.reconcile(&[]).expect(0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    let key = SECRET.trim_start_matches("whsec_");
    let shown = host.dir.path().display().to_string();
    for request in &requests {
        assert_eq!(request.line, "POST /hook HTTP/1.1");
        let mut names: Vec<String> = request
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "accept",
                "content-length",
                "content-type",
                "host",
                "user-agent",
                "webhook-id",
                "webhook-signature",
                "webhook-timestamp"
            ],
            "{request:?}"
        );
        let everything = format!("{request:?}{}", String::from_utf8_lossy(&request.body));
        assert!(
            !everything.contains(key) && !everything.contains(&shown),
            "{everything}"
        );
        assert!(signed_with(request, SECRET));
        assert_eq!(
            request.header("webhook-id"),
            request.json()["id"].as_str(),
            "the id receivers deduplicate on"
        );
    }
    assert_eq!(sink_state(host.dir.path(), "hook")["delivered"], 3);
}

#[test]
fn a_receiver_closing_mid_answer_or_answering_garbage_gets_the_event_again() {
    let receiver = Hostile::start(|_, before| match before {
        0 => Reply::Raw(Vec::new()),
        1 => Reply::Raw(b"NOT HTTP AT ALL\r\n\r\n".to_vec()),
        2 => Reply::Raw(b"HTTP/1.1 204 No Content\r\ncontent-le".to_vec()),
        _ => answer(204, &[], ""),
    });
    let host = hooked(&receiver.url, "");
    for _ in 0..3 {
        let run = host.reconcile(&[]).expect(0);
        assert!(
            run.stdout.contains("sink hook: events kept for later"),
            "{}",
            run.stdout
        );
        assert_eq!(sink_state(host.dir.path(), "hook")["deadLetters"], 0);
    }
    host.reconcile(&[]).expect(0);
    let hook = sink_state(host.dir.path(), "hook");
    assert_eq!(
        (hook["delivered"].as_i64(), hook["backlog"].as_i64()),
        (Some(3), Some(0)),
        "{hook}"
    );
    let first = receiver.requests()[0]
        .header("webhook-id")
        .map(str::to_owned);
    assert!(first.is_some());
    assert_eq!(
        receiver.requests()[3]
            .header("webhook-id")
            .map(str::to_owned),
        first
    );
}

/// `kill -9` of the daemon while a receiver holds a request: after the restart the event
/// goes again under the same `webhook-id` (a receiver that deduplicates keeps it once), and
/// no event is lost.
#[test]
fn a_daemon_killed_mid_delivery_resends_under_the_same_id_and_loses_nothing() {
    let receiver = Hostile::start(|_, before| {
        if before == 0 {
            Reply::Hang
        } else {
            answer(204, &[], "")
        }
    });
    let port = free_port();
    let host = hooked_with(&receiver.url, "", &format!("listen: 127.0.0.1:{port}\n"));
    let mut daemon = Daemon::gitward(host.dir.path());
    daemon.wait_for(port);
    daemon.wait_until("a request is held", || receiver.count() >= 1);
    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    daemon.exit_code();
    let mut daemon = Daemon::gitward(host.dir.path());
    daemon.wait_for(port);
    daemon.wait_until("the backlog is delivered", || receiver.count() >= 4);
    daemon.wait_until("the daemon knows", || {
        http(port, "/metrics", None)
            .1
            .contains("gitward_sink_backlog{sink=\"hook\"} 0")
    });
    daemon.terminate();
    let ids: Vec<String> = receiver
        .requests()
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 4, "the held event once more: {ids:?}");
    assert_eq!(ids[1], ids[0], "sent again first, under the same id");
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3);
}

/// PagerDuty's stand-in answers with the routing key in its text, plain or JSON-escaped: the
/// key appears nowhere an operator or a repository writer reads.
#[test]
fn a_routing_key_echoed_by_the_receiver_is_shown_nowhere() {
    let escaped: String = ROUTING_KEY
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let refusal = format!(
        "{{\"status\":\"invalid event\",\"message\":\"Event object is invalid\",\"errors\":[\"{escaped} is not a thing\"]}}"
    );
    let receiver = Hostile::start(move |_, before| {
        if before % 2 == 0 {
            answer(
                429,
                &[("retry-after", "1")],
                &format!("slow down, {ROUTING_KEY}"),
            )
        } else {
            answer(400, &[("content-type", "application/json")], &refusal)
        }
    });
    let broken = certificate("broken", "  dnsNames: [broken.example.com]\n")
        .replace("target: web", "target: elsewhere");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("broken.yaml", &broken),
        ("sinks.yaml", &sink("pager", "pagerduty", "pd", "")),
    ]);
    std::fs::write(host.dir.path().join("pd-key"), ROUTING_KEY).expect("key");
    host.config(&format!(
        "endpoints:\n  pd: {{url: \"{}\", routingKeyFile: pd-key}}\n",
        receiver.url
    ));
    let mut seen = String::new();
    for _ in 0..2 {
        let run = host.reconcile(&[]).expect(1);
        seen.push_str(&run.stdout);
        seen.push_str(&run.stderr);
        seen.push_str(&gitward(&host, &["sinks", "status"]).stdout);
        seen.push_str(&gitward(&host, &["sinks", "status", "--format", "json"]).stdout);
    }
    let test = gitward(&host, &["sinks", "test", "pager"]);
    seen.push_str(&test.stdout);
    assert!(
        seen.contains("HTTP 429") && seen.contains("HTTP 400"),
        "{seen}"
    );
    host.repo.write(
        "more.yaml",
        certificate("more", "  dnsNames: [more.example.com]\n"),
    );
    host.repo.commit("One more certificate");
    host.reconcile(&[]).expect(1);
    for (path, text) in status_files(&host) {
        seen.push_str(&path);
        seen.push_str(&text);
    }
    seen.push_str(&host.repo.git(&["log", "--notes=gitward", "--all"]));
    assert!(!seen.contains(ROUTING_KEY), "{seen}");
}

/// The daemon's workers record each delivery in the state database while reconciles run:
/// neither may fail for the other ("database is locked").
#[test]
fn deliveries_and_reconciles_at_the_same_time_both_succeed() {
    let receiver = Hostile::start(|_, _| {
        std::thread::sleep(Duration::from_millis(5));
        answer(204, &[], "")
    });
    let port = free_port();
    let host = hooked_with(&receiver.url, "", &format!("listen: 127.0.0.1:{port}\n"));
    let many: Vec<String> = (0..150)
        .map(|i| {
            certificate(
                &format!("c{i}"),
                &format!("  dnsNames: [c{i}.example.com]\n"),
            )
        })
        .collect();
    host.repo.write("many.yaml", many.join("---\n"));
    host.repo.commit("150 certificates");
    let mut daemon = Daemon::gitward(host.dir.path());
    daemon.wait_for(port);
    daemon.wait_until("deliveries start", || receiver.count() >= 1);
    for i in 0..20 {
        host.repo.write(
            &format!("more-{i}.yaml"),
            certificate(
                &format!("more-{i}"),
                &format!("  dnsNames: [more-{i}.example.com]\n"),
            ),
        );
        host.repo.commit("One more certificate");
        std::thread::sleep(Duration::from_millis(100));
    }
    // 153 events of the first commit and 20 more, each once at least.
    daemon.wait_until("every event is delivered", || receiver.count() >= 173);
    daemon.terminate();
    let log = daemon.log();
    let locked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("database is locked"))
        .collect();
    assert!(locked.is_empty(), "{locked:#?}");
}

/// Every problem an event opens is closed by an event when it goes, however it goes: the
/// policy that found it deleted, or the resource it was about. Otherwise receivers keep
/// the incident open for ever, and the host's set of open problems only grows.
#[test]
fn a_violation_closes_when_its_policy_or_its_resource_goes() {
    let audit = sink("audit", "file", "audit", "  minSeverity: info\n");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "web.yaml",
            &certificate("web", "  dnsNames: [legacy.example.com]\n"),
        ),
        (
            "api.yaml",
            &certificate("api", "  dnsNames: [legacy-api.example.com]\n"),
        ),
        ("policy.yaml", LEGACY_POLICY),
        ("legacy.rego", LEGACY_REGO),
        ("sinks.yaml", &audit),
    ]);
    host.config(&format!(
        "endpoints:\n{}",
        file_endpoint(&host, "audit", "audit.jsonl")
    ));
    host.reconcile(&[]).expect(0);
    host.repo.remove("api.yaml");
    host.repo.commit("The API certificate goes");
    host.reconcile(&[]).expect(0);
    host.repo.remove("policy.yaml");
    host.repo.remove("legacy.rego");
    host.repo.commit("The policy goes");
    host.reconcile(&[]).expect(0);
    let mut open = std::collections::BTreeMap::new();
    for event in written(&host, "audit.jsonl") {
        if let Some(key) = event["data"]["condition"]["key"].as_str() {
            open.insert(
                key.to_owned(),
                (
                    event["subject"].clone(),
                    event["data"]["condition"]["open"] == true,
                ),
            );
        }
    }
    assert_eq!(open.len(), 2, "{open:?}");
    let still: Vec<_> = open.iter().filter(|(_, (_, open))| *open).collect();
    assert!(still.is_empty(), "problems never closed: {still:?}");
}

const MANY_POLICY: &str = "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: many}\nspec:\n  module: many.rego\n  rule: data.many.warn\n  appliesTo: {kinds: [Certificate]}\n  enforcement: warn\n  severity: critical\n";
const MANY_REGO: &str = "package many\n\nimport rego.v1\n\nwarn contains sprintf(\"finding %d\", [i]) if {\n\tsome i in numbers.range(1, 100)\n}\n";

/// `reconcile --once` (a cron job) delivers "before it exits and leaves what a receiver
/// cannot take now for the next run". PagerDuty is paced at 2 events a second: a commit with
/// many findings (the repository writes the policies) must not keep the run going for as
/// long as the pace needs (500 findings: over 4 minutes; 20,000: close to 3 hours).
#[test]
fn reconcile_once_does_not_wait_out_a_paced_backlog() {
    let receiver = Hostile::start(|_, _| {
        answer(
            202,
            &[("content-type", "application/json")],
            "{\"status\":\"success\",\"message\":\"Event processed\"}",
        )
    });
    let certificates: Vec<String> = (0..5)
        .map(|i| {
            certificate(
                &format!("c{i}"),
                &format!("  dnsNames: [c{i}.example.com]\n"),
            )
        })
        .collect();
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("certificates.yaml", &certificates.join("---\n")),
        ("policy.yaml", MANY_POLICY),
        ("many.rego", MANY_REGO),
        ("sinks.yaml", &sink("pager", "pagerduty", "pd", "")),
    ]);
    std::fs::write(host.dir.path().join("pd-key"), ROUTING_KEY).expect("key");
    host.config(&format!(
        "endpoints:\n  pd: {{url: \"{}\", routingKeyFile: pd-key}}\n",
        receiver.url
    ));
    let run = reconcile_within(&host, HANG_GUARD);
    let sent = receiver.count();
    let run = run.unwrap_or_else(|| panic!("reconcile --once still pacing after {sent} events"));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let pager = sink_state(host.dir.path(), "pager");
    let told = pager["delivered"].as_i64().unwrap_or(0) + pager["backlog"].as_i64().unwrap_or(0);
    assert!(told >= 500, "{pager}");
}

/// A SIEM that is down holds its backlog; a repository writer who takes the sink out and
/// puts it back (two commits) must not make what it missed meanwhile vanish, or any event
/// can be kept from the SIEM by timing.
#[test]
fn a_sink_taken_out_and_put_back_still_gets_what_it_missed() {
    let receiver = Hostile::start(|_, before| {
        if before < 3 {
            answer(503, &[], "down")
        } else {
            answer(204, &[], "")
        }
    });
    let siem = sink("siem", "webhook", "hook", "  minSeverity: info\n");
    let host = host_with(&siem);
    std::fs::write(host.dir.path().join("hook-secret"), SECRET).expect("secret");
    host.config(&format!(
        "endpoints:\n  hook: {{url: \"{}\", secretFile: hook-secret}}\n",
        receiver.url
    ));
    // While the SIEM is down: a violation.
    host.repo.write("policy.yaml", LEGACY_POLICY);
    host.repo.write("legacy.rego", LEGACY_REGO);
    host.repo.write(
        "legacy.yaml",
        certificate("legacy", "  dnsNames: [legacy.example.com]\n"),
    );
    host.repo.commit("A legacy name");
    host.reconcile(&[]).expect(0);
    host.reconcile(&[]).expect(0);
    assert!(sink_state(host.dir.path(), "siem")["backlog"].as_i64() > Some(0));
    host.repo.remove("sinks.yaml");
    host.repo.commit("No SIEM for a moment");
    host.reconcile(&[]).expect(0);
    host.repo.write("sinks.yaml", &siem);
    host.repo.commit("The SIEM is back");
    host.reconcile(&[]).expect(0);
    host.reconcile(&[]).expect(0);
    let told: Vec<String> = receiver
        .requests()
        .iter()
        .skip(3)
        .filter_map(|r| r.json()["type"].as_str().map(str::to_owned))
        .collect();
    assert!(
        told.iter().any(|t| t == "dev.gitward.policy.violation"),
        "the SIEM never got the violation: {told:?}"
    );
}

/// One endpoint, two sinks of different types: each credential goes only with the requests
/// of the type that needs it.
#[test]
fn an_endpoint_shared_by_two_types_of_sink_sends_each_credential_with_its_type_only() {
    let receiver = Hostile::start(|_, _| answer(202, &[], "{\"status\":\"success\"}"));
    let broken = certificate("broken", "  dnsNames: [broken.example.com]\n")
        .replace("target: web", "target: elsewhere");
    let sinks = [
        sink("hook", "webhook", "shared", "  minSeverity: info\n"),
        sink("pager", "pagerduty", "shared", ""),
    ]
    .join("---\n");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("broken.yaml", &broken),
        ("sinks.yaml", &sinks),
    ]);
    std::fs::write(host.dir.path().join("hook-secret"), SECRET).expect("secret");
    std::fs::write(host.dir.path().join("pd-key"), ROUTING_KEY).expect("key");
    host.config(&format!(
        "endpoints:\n  shared: {{url: \"{}\", secretFile: hook-secret, routingKeyFile: pd-key}}\n",
        receiver.url
    ));
    host.reconcile(&[]).expect(1);
    let requests = receiver.requests();
    let (signed, keyed): (Vec<&Request>, Vec<&Request>) = requests
        .iter()
        .partition(|r| r.header("webhook-signature").is_some());
    assert!(!signed.is_empty() && !keyed.is_empty(), "{requests:?}");
    for request in &signed {
        assert!(
            !String::from_utf8_lossy(&request.body).contains(ROUTING_KEY),
            "{request:?}"
        );
    }
    for request in &keyed {
        assert_eq!(request.json()["routing_key"], ROUTING_KEY);
        assert!(request.header("webhook-id").is_none(), "{request:?}");
    }
}

/// A refusal that quotes the routing key is still a refusal of the event: hiding the key
/// must not make it read as PagerDuty refusing the key, retried for ever.
#[test]
fn a_refusal_quoting_the_routing_key_becomes_a_dead_letter() {
    let refusal = format!(
        "{{\"status\":\"invalid event\",\"message\":\"Event object is invalid\",\"errors\":[\"{ROUTING_KEY}: payload.summary is too long\"]}}"
    );
    let receiver = Hostile::start(move |_, _| answer(400, &[], &refusal));
    let broken = certificate("broken", "  dnsNames: [broken.example.com]\n")
        .replace("target: web", "target: elsewhere");
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("broken.yaml", &broken),
        ("sinks.yaml", &sink("pager", "pagerduty", "pd", "")),
    ]);
    std::fs::write(host.dir.path().join("pd-key"), ROUTING_KEY).expect("key");
    host.config(&format!(
        "endpoints:\n  pd: {{url: \"{}\", routingKeyFile: pd-key}}\n",
        receiver.url
    ));
    host.reconcile(&[]).expect(1);
    let pager = sink_state(host.dir.path(), "pager");
    assert_eq!(pager["deadLetters"], 1, "{pager}");
}
