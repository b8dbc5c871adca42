//! Tickets: the API calls a ticket sink makes, counted by the stand-ins of Jira and ServiceNow
//! (`tests/fakes/`), with the real `Jira` and `ServiceNow` systems and the real `TicketSink`
//! over a real state database.
//!
//!     cargo bench --bench tickets          # GITWARD_BENCH_TICKETS=N for other than 1,000
//!
//! 1. N new problems, delivered in the worker's batch size through `TicketSink::send`: the
//!    requests made against the N creates they need at least (target ≤ 1.1×). Requests are
//!    paced (Jira 10 a second, ServiceNow 5), so the wall time is the pace; both systems run
//!    at once (their buckets are their own). Then creates whose answer is lost (the
//!    connection drops after the ticket was made): each is one search, and no duplicate — in
//!    Jira Data Center and ServiceNow, whose searches show a record at once, and in Jira
//!    Cloud, where the sink waits 30 seconds before that search (its search lags).
//! 2. `gitward reconcile --once` around a commit that changes nothing a ticket is about (a
//!    new certificate that issues fine, the sinks subscribed to `certificate.issued` too):
//!    the ticket requests it makes (target 0).
//! 3. Reading back the N open tickets (`tickets::sync::observe`): requests per 100 tickets
//!    (target ≤ 1).
//!
//! Counts are exact; times are single runs and say only what the pacing allows.

mod common;
// The bench uses a part of the tests' fakes and harness.
#[allow(dead_code)]
#[path = "../tests/fakes/mod.rs"]
mod fakes;
#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use fakes::jira::FakeJira;
use fakes::servicenow::FakeServiceNow;
use gitward::config::Endpoint;
use gitward::events::outbox::Stored;
use gitward::events::{CommitRef, ConditionChange, Draft, EventData, ResourceRef};
use gitward::model::{EventType, FindingSeverity, SinkSpec};
use gitward::sinks::worker::Outbox;
use gitward::sinks::{Answer, Sink};
use gitward::store::Store;
use gitward::tickets::decide::TicketState;
use gitward::tickets::sink::TicketSink;
use gitward::tickets::{store, sync};
use serde_json::{Value, json};

const SOURCE: &str = "https://git.example.com/ops/pki.git";
const JIRA_USER: &str = "bot@example.com";
const JIRA_TOKEN: &str = "ATATT3xFfGF0-bench-token";
const DC_TOKEN: &str = "NjM2OTk5-bench-personal-access-token";
const SNOW_USER: &str = "gitward.bot";
const SNOW_PASSWORD: &str = "bench-password";
/// Problems of the lost-answer runs, and the creates among them whose answer is lost.
const LOST_RUN: usize = 200;
const LOST: usize = 5;

fn basic(user: &str, secret: &str) -> String {
    fakes::basic(user, secret)
}

/// An endpoint for `url` whose secret is in a file of `dir`.
fn endpoint(url: &str, dir: &Path, user: Option<&str>, secret: &str) -> Endpoint {
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("secret-{n}"));
    std::fs::write(&file, format!("{secret}\n")).expect("a secret file");
    let mut value = json!({"url": url, "tokenFile": file});
    if let Some(user) = user {
        value["user"] = json!(user);
    }
    fakes::endpoint(value)
}

/// The opening event of problem `n`, `seq` in the outbox.
fn opening(n: usize, seq: i64) -> Stored {
    let event = Draft {
        kind: EventType::PolicyViolation,
        anchor: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        subject: format!("Certificate/svc-{n:05}"),
        data: EventData {
            severity: FindingSeverity::High,
            resource: Some(ResourceRef {
                kind: "Certificate".to_owned(),
                name: format!("svc-{n:05}"),
                file: Some(format!("certificates/svc-{n:05}.yaml")),
                line: Some(7),
            }),
            commit: Some(CommitRef {
                sha: "0123456789abcdef0123456789abcdef01234567".to_owned(),
                author: "Ann Example <ann@example.com>".to_owned(),
            }),
            message: format!("key of svc-{n:05} is 1024 bits, below 2048"),
            details: serde_json::Map::from_iter([
                ("policy".to_owned(), json!("min-key-size")),
                ("enforcement".to_owned(), json!("deny")),
            ]),
            compliance: vec!["PCI-DSS 4.0 4.2.1".to_owned()],
            fingerprint: format!("fp-{n:05}"),
            condition: Some(ConditionChange {
                key: format!("finding/fp-{n:05}"),
                open: true,
            }),
        },
    }
    .seal(SOURCE, Utc::now());
    let json = serde_json::to_string(&event).expect("an event serializes");
    Stored { seq, event, json }
}

/// Requests by kind.
type Kinds = BTreeMap<&'static str, usize>;

fn shown(kinds: &Kinds) -> String {
    kinds
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn total(kinds: &Kinds) -> usize {
    kinds.values().sum()
}

/// Jira's stand-in serving its create screen in pages of 50 (Jira's default page size; the
/// tests page it by 3 to exercise paging), so that preparing costs what it costs on a site.
fn paged_as_jira(fake: FakeJira) -> FakeJira {
    fake.state().meta_page = 50;
    fake
}

/// What a Jira request does, from its method, path and search.
fn jira_kind(request: &fakes::jira::Request) -> &'static str {
    let path = request.path.as_str();
    let jql = request.body["jql"].as_str().unwrap_or_default();
    match request.method.as_str() {
        "GET" if path.contains("/issue/createmeta/") => "prepare",
        "POST" if path.ends_with("/issue") => "create",
        "POST" if path.ends_with("/search/jql") || path.ends_with("/search") => {
            if jql.starts_with("id in") {
                "observe"
            } else {
                "search"
            }
        }
        "PUT" => "update",
        "GET" if path.ends_with("/transitions") => "transitions",
        "POST" if path.ends_with("/transitions") => "transition",
        _ => "other",
    }
}

fn jira_kinds(fake: &FakeJira, from: usize) -> Kinds {
    let mut kinds = Kinds::new();
    for request in fake.log().iter().skip(from) {
        *kinds.entry(jira_kind(request)).or_default() += 1;
    }
    kinds
}

/// What a ServiceNow request does, from its method, table and query.
fn servicenow_kind(request: &fakes::servicenow::Logged) -> &'static str {
    let query = request.param("sysparm_query").unwrap_or_default();
    match request.method.as_str() {
        "GET" if request.path.ends_with("/sys_choice") => "prepare",
        "POST" => "create",
        "GET" if query.starts_with("correlation_id=") => "search",
        "GET" if query.starts_with("sys_idIN") => "observe",
        "PATCH" | "PUT" => "update",
        _ => "other",
    }
}

fn servicenow_kinds(fake: &FakeServiceNow, from: usize) -> Kinds {
    let mut kinds = Kinds::new();
    for request in fake.log().iter().skip(from) {
        *kinds.entry(servicenow_kind(request)).or_default() += 1;
    }
    kinds
}

/// A ticket sink over a state database of its own.
struct Filing {
    _dir: tempfile::TempDir,
    outbox: Outbox,
    sink: TicketSink,
    name: &'static str,
    spec: SinkSpec,
    endpoint: Endpoint,
}

impl Filing {
    fn new(name: &'static str, spec: Value, endpoint: Endpoint) -> Filing {
        let dir = tempfile::tempdir().expect("a state directory");
        let outbox = Outbox::new(Store::open(dir.path()).expect("a state database"));
        let spec: SinkSpec = serde_json::from_value(spec).expect("a sink spec");
        let system = gitward::tickets::system(&spec, &endpoint).expect("a ticket system");
        let sink = TicketSink::new(name, &spec, system, outbox.clone());
        Filing {
            _dir: dir,
            outbox,
            sink,
            name,
            spec,
            endpoint,
        }
    }

    /// Sends `events` as the worker does: a batch at a time, a batch answered "retry" sent
    /// again (after the wait the sink asks for; the worker's backoff is left out). Before
    /// each batch whose index `lose` holds, `arm` makes the stand-in lose the next answer.
    /// The seconds it took and the batches sent again.
    async fn deliver(
        &mut self,
        events: &[Stored],
        lose: &BTreeSet<usize>,
        arm: &dyn Fn(),
    ) -> (f64, usize) {
        let size = self.sink.batch_size();
        let started = std::time::Instant::now();
        let mut again = 0;
        for (index, batch) in events.chunks(size).enumerate() {
            if lose.contains(&index) {
                arm();
            }
            for attempt in 0.. {
                assert!(attempt < 10, "batch {index} is never delivered");
                match self.sink.send(batch).await {
                    Answer::Delivered { .. } => break,
                    Answer::Retry { after, .. } => {
                        again += 1;
                        tokio::time::sleep(after.unwrap_or(Duration::ZERO)).await;
                    }
                    Answer::Rejected { answer } => panic!("batch {index} refused: {answer}"),
                }
            }
        }
        (started.elapsed().as_secs_f64(), again)
    }

    /// Problems recorded with an open ticket, and the distinct tickets among them.
    async fn open_tickets(&self) -> (usize, usize) {
        let name = self.name;
        let records = self
            .outbox
            .with(move |db| store::current(db, Some(name)))
            .await
            .expect("the records");
        let open: Vec<_> = records
            .iter()
            .filter(|r| r.state == TicketState::Open)
            .filter_map(|r| r.ticket.as_ref().map(|t| t.id.clone()))
            .collect();
        let distinct: BTreeSet<_> = open.iter().collect();
        (open.len(), distinct.len())
    }

    /// Reads back the sink's tickets with a system of its own, as the daemon does.
    async fn observe(&self) -> sync::Synced {
        let system = gitward::tickets::system(&self.spec, &self.endpoint).expect("a system");
        sync::observe(&self.outbox, self.name, system.as_ref(), Utc::now())
            .await
            .expect("observed")
    }
}

/// What one system's run measured.
struct Measured {
    system: &'static str,
    problems: usize,
    rate: f64,
    burst: f64,
    batch: usize,
    filing: Kinds,
    seconds: f64,
    observed: usize,
    observing: Kinds,
}

/// Jira Cloud: `count` new problems, then their tickets read back.
async fn jira_cloud(count: usize, dir: &Path) -> Measured {
    let fake = paged_as_jira(FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)).await);
    let spec = json!({"type": "jira", "endpoint": "jira", "jira": {"project": "SEC"}});
    let endpoint = endpoint(&fake.url(), dir, Some(JIRA_USER), JIRA_TOKEN);
    let mut filing = Filing::new("security-jira", spec, endpoint);
    let events: Vec<Stored> = (0..count).map(|n| opening(n, n as i64 + 1)).collect();
    let (seconds, again) = filing.deliver(&events, &BTreeSet::new(), &|| {}).await;
    assert_eq!(again, 0, "no batch is sent again without a lost answer");
    let kinds = jira_kinds(&fake, 0);
    check_jira(&fake, count);
    assert_eq!(filing.open_tickets().await, (count, count));
    let from = fake.log().len();
    let synced = filing.observe().await;
    assert_eq!(fake.invalid(), Vec::<String>::new());
    Measured {
        system: "Jira Cloud",
        problems: count,
        rate: gitward::tickets::jira::RATE_PER_SECOND,
        burst: gitward::tickets::jira::BURST,
        batch: filing.sink.batch_size(),
        filing: kinds,
        seconds,
        observed: synced.observed,
        observing: jira_kinds(&fake, from),
    }
}

/// ServiceNow: `count` new problems, then their tickets read back.
async fn servicenow(count: usize, dir: &Path) -> Measured {
    let fake = FakeServiceNow::start(&basic(SNOW_USER, SNOW_PASSWORD)).await;
    let spec = json!({"type": "servicenow", "endpoint": "snow", "servicenow": {}});
    let endpoint = endpoint(&fake.url(), dir, Some(SNOW_USER), SNOW_PASSWORD);
    let mut filing = Filing::new("incidents", spec, endpoint);
    let events: Vec<Stored> = (0..count).map(|n| opening(n, n as i64 + 1)).collect();
    let (seconds, again) = filing.deliver(&events, &BTreeSet::new(), &|| {}).await;
    assert_eq!(again, 0, "no batch is sent again without a lost answer");
    let kinds = servicenow_kinds(&fake, 0);
    check_servicenow(&fake, count);
    assert_eq!(filing.open_tickets().await, (count, count));
    let from = fake.log().len();
    let synced = filing.observe().await;
    assert_eq!(fake.invalid(), Vec::<String>::new());
    Measured {
        system: "ServiceNow",
        problems: count,
        rate: gitward::tickets::servicenow::RATE_PER_SECOND,
        burst: gitward::tickets::servicenow::BURST,
        batch: filing.sink.batch_size(),
        filing: kinds,
        seconds,
        observed: synced.observed,
        observing: servicenow_kinds(&fake, from),
    }
}

/// `count` issues, one per problem: no tag on two of them.
fn check_jira(fake: &FakeJira, count: usize) {
    assert_eq!(fake.invalid(), Vec::<String>::new());
    let issues = fake.issues();
    let tags: BTreeSet<String> = issues
        .iter()
        .flat_map(|i| {
            i.labels
                .iter()
                .filter(|l| l.starts_with("gitward-"))
                .cloned()
        })
        .collect();
    assert_eq!(
        (issues.len(), tags.len()),
        (count, count),
        "one issue a problem"
    );
}

/// `count` incidents, one per problem: no correlation id on two of them.
fn check_servicenow(fake: &FakeServiceNow, count: usize) {
    assert_eq!(fake.invalid(), Vec::<String>::new());
    let records = fake.records("incident");
    let tags: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.get("correlation_id").map(String::as_str))
        .collect();
    assert_eq!(
        (records.len(), tags.len()),
        (count, count),
        "one incident a problem"
    );
}

/// What a run with lost answers measured.
struct Lost {
    system: &'static str,
    seconds: f64,
    lost: usize,
    searches: usize,
    kinds: Kinds,
    tickets: usize,
    duplicates: usize,
}

/// The batches whose first create loses its answer: every other one from the second on
/// (the first starts with the preparation, whose first request is no create).
fn losing(batch: usize) -> BTreeSet<usize> {
    let losing: BTreeSet<usize> = (0..LOST).map(|k| 1 + 2 * k).collect();
    assert!(
        losing.iter().all(|b| b * batch < LOST_RUN),
        "each within the run"
    );
    losing
}

/// Creates whose answer is lost, in Jira Data Center, whose search shows an issue at once,
/// or in Jira Cloud, whose search may not show it for a while: the sink waits before it
/// looks a lost create up there.
async fn jira_lost(dir: &Path, cloud: bool) -> Lost {
    let (fake, settings, user, secret) = if cloud {
        let fake = FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)).await;
        (fake, json!({"project": "SEC"}), Some(JIRA_USER), JIRA_TOKEN)
    } else {
        let fake = FakeJira::data_center("/jira", &format!("Bearer {DC_TOKEN}")).await;
        let settings = json!({"project": "SEC", "api": "dataCenter"});
        (fake, settings, None, DC_TOKEN)
    };
    let fake = paged_as_jira(fake);
    let spec = json!({"type": "jira", "endpoint": "jira", "jira": settings});
    let endpoint = endpoint(&fake.url(), dir, user, secret);
    let mut filing = Filing::new("security-jira", spec, endpoint);
    let events: Vec<Stored> = (0..LOST_RUN).map(|n| opening(n, n as i64 + 1)).collect();
    let arm = || fake.then(fakes::jira::Trick::Cut);
    let losing = losing(filing.sink.batch_size());
    let (seconds, again) = filing.deliver(&events, &losing, &arm).await;
    // Once when the answer is lost; on Cloud once more, told to wait for the search.
    let sends = if cloud { 2 } else { 1 };
    assert_eq!(again, sends * LOST, "batches sent again");
    let kinds = jira_kinds(&fake, 0);
    let issues = fake.issues();
    let tags: BTreeSet<&String> = issues
        .iter()
        .flat_map(|i| i.labels.iter().filter(|l| l.starts_with("gitward-")))
        .collect();
    assert_eq!(filing.open_tickets().await, (LOST_RUN, LOST_RUN));
    assert_eq!(fake.invalid(), Vec::<String>::new());
    Lost {
        system: if cloud {
            "Jira Cloud"
        } else {
            "Jira Data Center"
        },
        seconds,
        lost: LOST,
        searches: kinds.get("search").copied().unwrap_or(0),
        kinds,
        tickets: issues.len(),
        duplicates: issues.len() - tags.len(),
    }
}

/// ServiceNow: creates whose answer is lost.
async fn servicenow_lost(dir: &Path) -> Lost {
    let fake = FakeServiceNow::start(&basic(SNOW_USER, SNOW_PASSWORD)).await;
    let spec = json!({"type": "servicenow", "endpoint": "snow", "servicenow": {}});
    let endpoint = endpoint(&fake.url(), dir, Some(SNOW_USER), SNOW_PASSWORD);
    let mut filing = Filing::new("incidents", spec, endpoint);
    let events: Vec<Stored> = (0..LOST_RUN).map(|n| opening(n, n as i64 + 1)).collect();
    let arm = || fake.then(fakes::servicenow::Trick::ActThenDrop);
    let losing = losing(filing.sink.batch_size());
    let (seconds, again) = filing.deliver(&events, &losing, &arm).await;
    assert_eq!(again, LOST, "each lost answer is one batch sent again");
    let kinds = servicenow_kinds(&fake, 0);
    let records = fake.records("incident");
    let tags: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.get("correlation_id").map(String::as_str))
        .collect();
    assert_eq!(filing.open_tickets().await, (LOST_RUN, LOST_RUN));
    assert_eq!(fake.invalid(), Vec::<String>::new());
    Lost {
        system: "ServiceNow",
        seconds,
        lost: LOST,
        searches: kinds.get("search").copied().unwrap_or(0),
        kinds,
        tickets: records.len(),
        duplicates: records.len() - tags.len(),
    }
}

/// Runs `gitward` off the runtime's threads, which serve the stand-ins meanwhile.
async fn gitward(dir: &Path, args: &[&str]) -> harness::Run {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        harness::gitward_in(&dir, &args)
    })
    .await
    .expect("gitward ran")
}

const RECONCILE: [&str; 4] = ["reconcile", "--once", "--config", "gitward.yaml"];

/// The ticket requests of each reconcile through the binary: (ServiceNow, Jira).
struct Quiet {
    finding: (Kinds, Kinds),
    same_commit: (Kinds, Kinds),
    new_certificate: (Kinds, Kinds),
    failing: (Kinds, Kinds),
    failing_new_certificate: (Kinds, Kinds),
}

/// A policy that warns of certificates for `legacy*` names.
const LEGACY_POLICY: &str = "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: no-legacy}\nspec:\n  module: legacy.rego\n  rule: data.legacy.warn\n  appliesTo: {kinds: [Certificate]}\n  enforcement: warn\n  severity: high\n";
const LEGACY_REGO: &str = "package legacy\n\nimport rego.v1\n\nwarn contains \"a legacy name\" if {\n\tsome name in input.resource.spec.dnsNames\n\tstartswith(name, \"legacy\")\n}\n";

/// ServiceNow and Jira Cloud sinks told of findings and of failed and issued certificates.
fn sinks() -> String {
    let events = "[policy.violation, policy.resolved, certificate.failed, certificate.issued]";
    format!(
        "apiVersion: gitward/v1\nkind: Sink\nmetadata: {{name: incidents}}\nspec:\n  type: servicenow\n  endpoint: snow\n  events: {events}\n  minSeverity: info\n  servicenow: {{}}\n---\napiVersion: gitward/v1\nkind: Sink\nmetadata: {{name: security-jira}}\nspec:\n  type: jira\n  endpoint: jira\n  events: {events}\n  minSeverity: info\n  jira: {{project: SEC}}\n"
    )
}

/// `gitward reconcile --once` through the binary, the requests of each run counted: a
/// repository whose warn-level finding has its tickets open, reconciled again at the same
/// commit, then after a commit adding a certificate that issues fine; then with a
/// certificate that cannot be written (its tickets open too), after another such commit.
async fn quiet_reconcile() -> Quiet {
    use harness::host::{Host, ISSUERS, certificate};
    let snow = FakeServiceNow::start(&basic(SNOW_USER, SNOW_PASSWORD)).await;
    let jira = paged_as_jira(FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)).await);
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "web.yaml",
            &certificate("web", "  dnsNames: [web.example.com]\n"),
        ),
        (
            "legacy.yaml",
            &certificate("legacy", "  dnsNames: [legacy.example.com]\n"),
        ),
        ("policy.yaml", LEGACY_POLICY),
        ("legacy.rego", LEGACY_REGO),
        ("sinks.yaml", &sinks()),
    ]);
    let dir = host.dir.path();
    let snow_endpoint = endpoint(&snow.url(), dir, Some(SNOW_USER), SNOW_PASSWORD);
    let jira_endpoint = endpoint(&jira.url(), dir, Some(JIRA_USER), JIRA_TOKEN);
    let file = |e: &Endpoint| e.token_file.clone().expect("a token file");
    host.config(&format!(
        "endpoints:\n  snow: {{url: \"{}\", user: {SNOW_USER}, tokenFile: {}}}\n  jira: {{url: \"{}\", user: {JIRA_USER}, tokenFile: {}}}\n",
        snow.url(),
        file(&snow_endpoint).display(),
        jira.url(),
        file(&jira_endpoint).display(),
    ));
    let tickets = || (snow.records("incident").len(), jira.issues().len());
    // One reconcile, its exit code checked; the requests it made.
    let reconcile = |code: i32| {
        let before = (snow.log().len(), jira.log().len());
        let (snow, jira) = (&snow, &jira);
        async move {
            gitward(dir, &RECONCILE).await.expect(code);
            (servicenow_kinds(snow, before.0), jira_kinds(jira, before.1))
        }
    };
    let issuing = |name: &str| {
        host.repo.write(
            &format!("{name}.yaml"),
            certificate(name, &format!("  dnsNames: [{name}.example.com]\n")),
        );
        host.repo.commit("A certificate that issues fine");
    };

    let finding = reconcile(0).await;
    assert_eq!(tickets(), (1, 1), "the finding's tickets");
    let same_commit = reconcile(0).await;
    issuing("api");
    let new_certificate = reconcile(0).await;
    assert_eq!(tickets(), (1, 1));

    let broken = certificate("broken", "  dnsNames: [broken.example.com]\n")
        .replace("target: web", "target: elsewhere");
    host.repo.write("broken.yaml", broken);
    host.repo
        .commit("A certificate for a target the host lacks");
    let failing = reconcile(1).await;
    assert_eq!(tickets(), (2, 2), "and the failed certificate's");
    issuing("mail");
    let failing_new_certificate = reconcile(1).await;
    assert_eq!(tickets(), (2, 2));
    assert_eq!(snow.invalid(), Vec::<String>::new());
    assert_eq!(jira.invalid(), Vec::<String>::new());
    Quiet {
        finding,
        same_commit,
        new_certificate,
        failing,
        failing_new_certificate,
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

fn report_filing(m: &Measured) {
    let requests = total(&m.filing);
    let ratio = requests as f64 / m.problems as f64;
    println!(
        "  {:<16} {requests} requests ({}) for {} creates = {ratio:.3}×   (target ≤ 1.1×: {})",
        m.system,
        shown(&m.filing),
        m.problems,
        verdict(ratio <= 1.1)
    );
    println!(
        "  {:<16} {:.1} s: the pace, {} requests a second after a burst of {} ({:.1} s for {requests})",
        "",
        m.seconds,
        m.rate,
        m.burst,
        requests.saturating_sub(m.burst as usize) as f64 / m.rate
    );
}

fn report_observing(m: &Measured) {
    let requests = total(&m.observing);
    let allowed = m.observed.div_ceil(100);
    println!(
        "  {:<16} {} tickets read back in {requests} requests ({})   (target ≤ 1 per 100 = {allowed}: {})",
        m.system,
        m.observed,
        shown(&m.observing),
        verdict(requests <= allowed)
    );
}

fn report_quiet(what: &str, (snow, jira): &(Kinds, Kinds), target: bool) {
    let requests = total(snow) + total(jira);
    let target = if target {
        format!("   (target 0: {})", verdict(requests == 0))
    } else {
        String::new()
    };
    println!(
        "  {what:<48} ServiceNow {} ({}), Jira {} ({}){target}",
        total(snow),
        shown(snow),
        total(jira),
        shown(jira)
    );
}

fn main() {
    // `cargo test --all-targets` runs benches too: this one takes minutes at the systems' pace.
    if !std::env::args().any(|arg| arg == "--bench") {
        eprintln!("run it with `cargo bench --bench tickets`");
        return;
    }
    let count: usize = std::env::var("GITWARD_BENCH_TICKETS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let scratch = tempfile::tempdir().expect("scratch");
    let dir = scratch.path();
    runtime.block_on(async {
        eprintln!("reconciling through the binary...");
        let quiet = quiet_reconcile().await;
        eprintln!(
            "filing {count} problems in Jira Cloud and in ServiceNow, and {LOST_RUN} with {LOST} lost answers in Jira Data Center, Jira Cloud and ServiceNow, at once (paced)..."
        );
        let (cloud, snow, dc_lost, cloud_lost, snow_lost) = tokio::join!(
            jira_cloud(count, dir),
            servicenow(count, dir),
            jira_lost(dir, false),
            jira_lost(dir, true),
            servicenow_lost(dir)
        );
        println!(
            "{count} new problems, {} events a batch through TicketSink::send, state in SQLite:",
            cloud.batch
        );
        report_filing(&cloud);
        report_filing(&snow);
        println!(
            "{LOST_RUN} new problems, {LOST} creates whose answer is lost (made, then the connection drops):"
        );
        for lost in [&dc_lost, &cloud_lost, &snow_lost] {
            println!(
                "  {:<16} {} searches for {} lost answers ({}); {} tickets, {} duplicates; {:.1} s   ({})",
                lost.system,
                lost.searches,
                lost.lost,
                shown(&lost.kinds),
                lost.tickets,
                lost.duplicates,
                lost.seconds,
                verdict(lost.searches == lost.lost && lost.duplicates == 0)
            );
        }
        println!("gitward reconcile --once, ticket requests (ServiceNow and Jira Cloud sinks):");
        report_quiet("a warn finding: its tickets open", &quiet.finding, false);
        report_quiet("again at the same commit", &quiet.same_commit, true);
        report_quiet(
            "a commit adding a certificate that issues fine",
            &quiet.new_certificate,
            true,
        );
        report_quiet(
            "a certificate fails: its tickets open",
            &quiet.failing,
            false,
        );
        report_quiet(
            "another new certificate, that one still failing",
            &quiet.failing_new_certificate,
            false,
        );
        println!("reading back the open tickets (tickets::sync::observe):");
        report_observing(&cloud);
        report_observing(&snow);
    });
}
