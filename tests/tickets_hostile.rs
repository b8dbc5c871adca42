//! Attacks on the ticket sinks: a hostile repository (anyone who can open a pull request or
//! push) and hostile ticket systems (a compromised or buggy Jira or ServiceNow, a man in the
//! middle) against gitward, through the binary where the path is the user's and through the
//! `TicketSystem` and the ticket sink where the attack is an answer.
//!
//! A test that passes shows a defence. A test marked `#[ignore = "finding: ..."]` shows a
//! defect and fails (run with `--ignored`) until it is fixed.

use crate::common;
use crate::fakes;
use crate::fakes::jira as jira_fake;
use crate::fakes::servicenow as servicenow_fake;

use std::path::Path;

use base64::Engine;
use common::host::{Host, ISSUERS, certificate};
use servicenow_fake::FakeServiceNow;

const USER: &str = "gitward.bot";
const PASSWORD: &str = "s3cret-password-4f9a";

fn basic() -> String {
    fakes::basic(USER, PASSWORD)
}

async fn gitward(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> common::Run {
    common::gitward_beside(dir, args, env).await
}

const RECONCILE: [&str; 4] = ["reconcile", "--once", "--config", "gitward.yaml"];
const TICKETS: [&str; 3] = ["tickets", "--config", "gitward.yaml"];

/// A ServiceNow sink named `name` told of failed certificates, with `extra` lines in its
/// `servicenow` block.
fn servicenow_sink(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: gitward/v1\nkind: Sink\nmetadata: {{name: {name}}}\nspec:\n  type: servicenow\n  endpoint: snow\n  events: [certificate.failed]\n  minSeverity: high\n  servicenow:\n    sla: {{high: 3}}\n{extra}"
    )
}

/// A host whose repository holds `sinks` (YAML) and a certificate that works.
fn servicenow_host(fake: &FakeServiceNow, sinks: &str, host_extra: &str) -> Host {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "web.yaml",
            &certificate("web", "  dnsNames: [web.example.com]\n"),
        ),
        ("sinks.yaml", sinks),
    ]);
    let password = host.dir.path().join("snow-password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    host.config(&format!(
        "endpoints:\n  snow: {{url: \"{}\", user: {USER}, tokenFile: {}}}\n{host_extra}",
        fake.url(),
        password.display()
    ));
    host
}

/// Commits a certificate for a target the host does not grant: it cannot be written.
fn break_a_certificate(host: &Host) {
    let broken = certificate("broken", "  dnsNames: [broken.example.com]\n");
    host.repo.write(
        "broken.yaml",
        broken.replace("target: web", "target: elsewhere"),
    );
    host.repo
        .commit("A certificate for a target the host lacks");
}

fn mend_the_certificate(host: &Host) -> String {
    host.repo.remove("broken.yaml");
    host.repo
        .commit("Remove the certificate that cannot be written")
}

/// The records of `table` a person would still see as open.
/// The records of `table` still open: active, and neither resolved (6), closed (7) nor
/// canceled (8) — a resolved incident stays active until it is closed.
fn active(fake: &FakeServiceNow, table: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    fake.records(table)
        .into_iter()
        .filter(|r| r.get("active").map(String::as_str) == Some("true"))
        .filter(|r| !matches!(r.get("state").map(String::as_str), Some("6" | "7" | "8")))
        .collect()
}

/// The numbers of `records`.
fn numbers_of(records: &[std::collections::BTreeMap<String, String>]) -> Vec<String> {
    records.iter().map(|r| r["number"].clone()).collect()
}

/// The numbers of the incidents the instance holds.
fn numbers(fake: &FakeServiceNow) -> Vec<String> {
    numbers_of(&fake.records("incident"))
}

// ---------------------------------------------------------------------------------------
// The repository renames a sink.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_sink_leaves_no_ticket_open_behind() {
    let fake = FakeServiceNow::start(&basic()).await;
    let host = servicenow_host(&fake, &servicenow_sink("incidents", ""), "");
    let dir = host.dir.path();
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    break_a_certificate(&host);
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    assert_eq!(fake.records("incident").len(), 1);

    // A pull request renames the sink; the problem is still there.
    host.repo
        .write("sinks.yaml", servicenow_sink("security-incidents", ""));
    host.repo.commit("Rename the incident sink");
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    let after_rename = numbers(&fake);

    // The problem clears: nothing about it may stay open, in ServiceNow or in gitward.
    mend_the_certificate(&host);
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    let tickets = gitward(dir, &TICKETS, &[]).await.expect(0);
    assert_eq!(
        after_rename.len(),
        1,
        "one problem, one incident, whatever the sink is called: {after_rename:?}"
    );
    assert_eq!(
        numbers_of(&active(&fake, "incident")),
        Vec::<String>::new(),
        "the problem cleared, yet an incident stays open"
    );
    assert!(
        tickets.stdout.starts_with("no open problems"),
        "{}",
        tickets.stdout
    );
}

// ---------------------------------------------------------------------------------------
// The repository plants another problem's tag as a label.

/// A Jira Data Center sink told of failed certificates, with `labels`.
fn jira_sink(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: gitward/v1\nkind: Sink\nmetadata: {{name: {name}}}\nspec:\n  type: jira\n  endpoint: jira\n  events: [certificate.failed]\n  minSeverity: high\n  jira:\n    project: SEC\n    api: dataCenter\n{extra}"
    )
}

const PAT: &str = "NjM2OTk5-personal-access-token-Zm9v";

fn bearer() -> String {
    format!("Bearer {PAT}")
}

/// A host whose repository holds `sinks` and a certificate that works, filing in `fake`.
fn jira_host(fake: &jira_fake::FakeJira, sinks: &str) -> Host {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "web.yaml",
            &certificate("web", "  dnsNames: [web.example.com]\n"),
        ),
        ("sinks.yaml", sinks),
    ]);
    let token = host.dir.path().join("jira-pat");
    std::fs::write(&token, format!("{PAT}\n")).unwrap();
    host.config(&format!(
        "endpoints:\n  jira: {{url: \"{}\", tokenFile: {}}}\n",
        fake.url(),
        token.display()
    ));
    host
}

/// Makes the next run's create go through in Jira with its answer lost: the run reads the
/// create screen (one page of issue types, one of fields), then creates.
fn lose_the_next_create(fake: &jira_fake::FakeJira) {
    fake.state().meta_page = 100;
    fake.then(jira_fake::Trick::Rewrite(|answer| answer));
    fake.then(jira_fake::Trick::Rewrite(|answer| answer));
    fake.then(jira_fake::Trick::Cut);
}

/// The problems `gitward tickets --format json` lists.
async fn listed(dir: &Path) -> Vec<serde_json::Value> {
    let run = gitward(dir, &[&TICKETS[..], &["--format", "json"]].concat(), &[])
        .await
        .expect(0);
    serde_json::from_str::<Vec<serde_json::Value>>(&run.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_cannot_claim_another_repository_s_problem() {
    let fake = jira_fake::FakeJira::data_center("/jira", &bearer()).await;
    // The victim: a repository whose tickets go to project SEC.
    let victim = jira_host(&fake, &jira_sink("security-jira", ""));
    let victim_source = gitward::events::source_of(&victim.repo.path().display().to_string());
    let victim_tag =
        gitward::tickets::sink::tag(&victim_source, "jira:jira:SEC", "Certificate/broken");

    // Another repository on the same Jira project labels its issues with the victim's tag.
    let attacker = jira_host(
        &fake,
        &jira_sink("ours", &format!("    labels: [{victim_tag}]\n")),
    );
    // Refused where it is written: such a label is gitward's own.
    let refused = gitward(attacker.dir.path(), &RECONCILE, &[])
        .await
        .expect(1);
    assert!(
        refused.stdout.contains("starts with `gitward-`"),
        "{}",
        refused.stdout
    );
    break_a_certificate(&attacker);
    gitward(attacker.dir.path(), &RECONCILE, &[])
        .await
        .expect(1);
    assert!(fake.issues().is_empty(), "{:?}", fake.issues());

    // The victim's problem opens; the answer to its create is lost, so it is looked up.
    let dir = victim.dir.path();
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    break_a_certificate(&victim);
    lose_the_next_create(&fake);
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    assert_eq!(fake.issues().len(), 1, "the victim's create went through");
    assert_eq!(
        listed(dir).await[0]["state"],
        "creating",
        "its answer was lost"
    );
    let own = fake.issues()[0].key.clone();
    gitward(dir, &RECONCILE, &[]).await.expect(1);

    let problems = listed(dir).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0]["ticket"]["key"], own,
        "the victim's problem is tracked on the issue another repository planted: {problems:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Two ticket sinks of one repository on one table.

mod problem_events {
    use gitward::events::outbox::Stored;
    use gitward::events::{CommitRef, ConditionChange, Draft, EventData, ResourceRef};
    use gitward::model::{EventType, FindingSeverity};

    pub const SOURCE: &str = "https://github.com/ops/pki.git";

    /// Event `seq` about problem `key`: it opens (a policy violation) or clears it.
    pub fn event(seq: i64, key: &str, open: bool) -> Stored {
        let kind = if open {
            EventType::PolicyViolation
        } else {
            EventType::PolicyResolved
        };
        let sha = format!("{seq:040x}");
        let event = Draft {
            kind,
            anchor: format!("{sha}#{seq}"),
            subject: "Certificate/web".into(),
            data: EventData {
                severity: FindingSeverity::High,
                resource: Some(ResourceRef {
                    kind: "Certificate".into(),
                    name: "web".into(),
                    file: Some("certificates/web.yaml".into()),
                    line: Some(7),
                }),
                commit: Some(CommitRef {
                    sha,
                    author: "Ann <ann@example.com>".into(),
                }),
                message: "key of web is 1024 bits".into(),
                details: serde_json::Map::from_iter([
                    ("policy".into(), serde_json::json!("key-size")),
                    ("enforcement".into(), serde_json::json!("deny")),
                ]),
                compliance: vec!["PCI-DSS 4.0 4.2.1".into()],
                fingerprint: key.into(),
                condition: Some(ConditionChange {
                    key: key.into(),
                    open,
                }),
            },
        }
        .seal(SOURCE, chrono::Utc::now());
        let json = serde_json::to_string(&event).unwrap();
        Stored { seq, event, json }
    }

    /// A `sink.test` event: it makes a ticket sink prepare, and files nothing.
    pub fn sink_test(seq: i64) -> Stored {
        let event = Draft {
            kind: EventType::SinkTest,
            anchor: format!("test-{seq}"),
            subject: "Sink/test".into(),
            data: EventData {
                severity: FindingSeverity::Info,
                resource: None,
                commit: None,
                message: "test".into(),
                details: serde_json::Map::new(),
                compliance: Vec::new(),
                fingerprint: format!("test-{seq}"),
                condition: None,
            },
        }
        .seal(SOURCE, chrono::Utc::now());
        let json = serde_json::to_string(&event).unwrap();
        Stored { seq, event, json }
    }
}

fn servicenow_endpoint(
    fake: &FakeServiceNow,
    dir: &tempfile::TempDir,
) -> gitward::config::Endpoint {
    let file = dir.path().join("snow-password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    fakes::endpoint(serde_json::json!({"url": fake.url(), "user": USER, "tokenFile": file}))
}

fn servicenow_spec() -> gitward::model::SinkSpec {
    fakes::spec(serde_json::json!({
        "type": "servicenow",
        "endpoint": "snow",
        "servicenow": {},
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sinks_on_one_table_share_and_never_orphan_a_ticket() {
    use gitward::sinks::Sink;
    use gitward::sinks::worker::Outbox;
    use gitward::tickets::sink::TicketSink;
    use gitward::tickets::store;

    let fake = FakeServiceNow::start(&basic()).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(gitward::store::Store::open(dir.path()).unwrap());
    let endpoint = servicenow_endpoint(&fake, &dir);
    let spec = servicenow_spec();
    let system = || {
        Box::new(
            gitward::tickets::servicenow::ServiceNow::new(
                spec.servicenow.as_deref().unwrap(),
                &endpoint,
            )
            .unwrap(),
        )
    };
    let mut first = TicketSink::new("security", &spec, system(), outbox.clone());
    let mut second = TicketSink::new("operations", &spec, system(), outbox.clone());

    let opens = problem_events::event(2, "finding/key-size", true);
    fakes::guard(first.send(std::slice::from_ref(&opens))).await;
    fakes::guard(second.send(&[problem_events::sink_test(1)])).await;
    // The second sink's create goes through, but its answer is lost.
    fake.then(servicenow_fake::Trick::ActThenDrop);
    fakes::guard(second.send(std::slice::from_ref(&opens))).await;
    fakes::guard(second.send(std::slice::from_ref(&opens))).await;
    assert_eq!(
        numbers(&fake).len(),
        1,
        "sinks filing in one table keep one ticket per problem between them"
    );

    let held = outbox
        .with(move |db| store::get(db, "servicenow:snow:incident", "finding/key-size"))
        .await
        .unwrap()
        .and_then(|r| r.ticket)
        .map(|t| t.key);

    // The problem clears: both sinks resolve what they hold.
    let clears = problem_events::event(3, "finding/key-size", false);
    fakes::guard(first.send(std::slice::from_ref(&clears))).await;
    fakes::guard(second.send(std::slice::from_ref(&clears))).await;
    assert_eq!(held, Some(numbers(&fake)[0].clone()));
    assert_eq!(
        numbers_of(&active(&fake, "incident")),
        Vec::<String>::new(),
        "an incident no sink holds stays open"
    );
}

// ---------------------------------------------------------------------------------------
// Templates and YAML that grow.

/// A receiver that takes bodies of any size, notes each request's size, and answers like a
/// Jira create.
async fn measuring_receiver() -> (
    fakes::Server,
    std::sync::Arc<std::sync::Mutex<Vec<(String, usize)>>>,
) {
    use axum::body::Bytes;
    use axum::http::{Method, StatusCode, Uri};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    let router = axum::Router::new()
        .fallback(move |method: Method, uri: Uri, body: Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock()
                    .unwrap()
                    .push((format!("{method} {}", uri.path()), body.len()));
                (
                    StatusCode::CREATED,
                    axum::Json(serde_json::json!({"id": "10001", "key": "SEC-1"})),
                )
            }
        })
        .layer(axum::extract::DefaultBodyLimit::disable());
    (fakes::Server::start(router).await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templated_fields_cannot_make_a_huge_request() {
    use gitward::tickets::TicketSystem;
    let (server, seen) = measuring_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("jira-pat");
    std::fs::write(&token, format!("{PAT}\n")).unwrap();
    let endpoint = fakes::endpoint(serde_json::json!({"url": server.url(), "tokenFile": token}));
    // What a repository's sink file of well under 1 MiB can hold: one placeholder 20,000
    // times, each the event's message (a policy's finding text runs to 1,000 characters).
    let settings: gitward::model::JiraSettings = serde_json::from_value(serde_json::json!({
        "project": "SEC",
        "api": "dataCenter",
        "fields": {"customfield_10010": vec!["{{message}}"; 20_000]},
    }))
    .unwrap();
    let jira = match gitward::tickets::jira::Jira::new(&settings, &endpoint) {
        Ok(jira) => jira,
        Err(_) => return, // refused before any ticket: a defence
    };
    let mut stored = problem_events::event(1, "finding/key-size", true);
    stored.event.data.message = "m".repeat(1000);
    let rules = gitward::tickets::sink::Rules {
        on_return: gitward::model::OnReturn::Reopen,
        sla: Default::default(),
    };
    let problem = gitward::tickets::sink::problem(
        &stored.event,
        "finding/key-size",
        "gitward-0123456789abcdef0123",
        &rules,
        chrono::Utc::now(),
    );
    let _ = fakes::guard(jira.create(&problem)).await;
    let largest = seen.lock().unwrap().iter().map(|(_, size)| *size).max();
    if let Some(largest) = largest {
        assert!(
            largest <= 1 << 20,
            "a create request of {largest} bytes for one ticket"
        );
    }
}

/// `gitward validate` of a repository holding `files`, in 2 GiB of address space.
fn validate_in_2_gib(files: &[(&str, String)]) -> common::Run {
    let repo = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(repo.path().join(name), text).unwrap();
    }
    in_2_gib(repo.path(), &["validate", "--repo", "."])
}

#[test]
fn a_sink_file_of_ordinary_size_validates_within_the_memory_limit() {
    // The control for the test below: the limit leaves room for a normal validate.
    let sink = "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: tickets}\nspec:\n  type: jira\n  endpoint: jira\n  events: [certificate.failed]\n  jira:\n    project: SEC\n    fields:\n      customfield_10010: &a \"{{resource.name}}\"\n      customfield_10011: [*a, *a]\n";
    let run = validate_in_2_gib(&[("sinks.yaml", sink.to_owned())]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn aliases_in_ticket_fields_cannot_exhaust_memory() {
    // One 500 KB string, referred to 16,000 times: 8 GB once expanded.
    let big = "x".repeat(500_000);
    let aliases = vec!["*a"; 16_000].join(", ");
    let sink = format!(
        "apiVersion: gitward/v1\nkind: Sink\nmetadata: {{name: tickets}}\nspec:\n  type: jira\n  endpoint: jira\n  events: [certificate.failed]\n  jira:\n    project: SEC\n    fields:\n      customfield_10010: &a \"{big}\"\n      customfield_10011: [{aliases}]\n"
    );
    assert!(
        sink.len() < 1 << 20,
        "within the size of a file gitward reads"
    );
    let run = validate_in_2_gib(&[("sinks.yaml", sink)]);
    assert!(
        run.code == 0 || run.code == 1,
        "validate ended with {} instead of an answer: {}",
        run.code,
        run.stderr.lines().take(3).collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// What tickets may say.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_field_does_not_carry_the_host_s_paths() {
    let fake = FakeServiceNow::start(&basic()).await;
    fake.add_column("incident", "u_source");
    let host = servicenow_host(
        &fake,
        &servicenow_sink("incidents", "    fields: {u_source: \"{{source}}\"}\n"),
        "",
    );
    let dir = host.dir.path();
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    break_a_certificate(&host);
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    let records = fake.records("incident");
    assert_eq!(records.len(), 1);
    let repo = host.repo.path().display().to_string();
    for (field, value) in &records[0] {
        assert!(
            !value.contains(&repo) && !value.contains(&dir.display().to_string()),
            "{field} holds a host path: {value}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_s_host_paths_stay_out_of_the_ticket() {
    // The target directory is a file: writing the certificate fails with an error about a
    // path on the host, which the ticket's description must not quote.
    let fake = FakeServiceNow::start(&basic()).await;
    let host = servicenow_host(&fake, &servicenow_sink("incidents", ""), "");
    let dir = host.dir.path();
    std::fs::write(dir.join("out"), "not a directory").unwrap();
    host.repo.write("note.txt", "a change");
    host.repo.commit("A change");
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    let records = fake.records("incident");
    assert_eq!(records.len(), 1, "the failed write opened an incident");
    assert!(
        records[0]["short_description"].contains("Certificate/web"),
        "{:?}",
        records[0]["short_description"]
    );
    for (field, value) in &records[0] {
        assert!(
            !value.contains(&dir.display().to_string()) && !value.contains("/tmp"),
            "{field} holds a host path: {value}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Answers about other records.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_about_another_record_does_not_become_the_ticket() {
    use gitward::tickets::{Note, TicketSystem};
    let fake = FakeServiceNow::start(&basic()).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = servicenow_endpoint(&fake, &dir);
    let settings = serde_json::from_value(serde_json::json!({})).unwrap();
    let mut now = gitward::tickets::servicenow::ServiceNow::new(&settings, &endpoint).unwrap();
    fakes::guard(now.prepare()).await.expect("prepare");
    let ours = fake.seed(
        "incident",
        &[("correlation_id", "gitward-00000000000000000001")],
    );
    let theirs = fake.seed(
        "incident",
        &[("correlation_id", "gitward-ffffffffffffffffffff")],
    );
    let ticket = fakes::guard(now.observe(std::slice::from_ref(&ours)))
        .await
        .expect("observed")
        .remove(0);
    // Whoever answers shows another repository's record, resolved.
    let answer = serde_json::json!({"result": {
        "sys_id": theirs,
        "number": fake.record(&theirs).unwrap()["number"],
        "state": {"value": "6", "display_value": "Resolved"},
        "active": "false",
        "correlation_id": "gitward-ffffffffffffffffffff",
    }});
    fake.then(servicenow_fake::Trick::Answer(200, answer.to_string()));
    let note = Note {
        text: "Resolved by gitward".into(),
        link: None,
    };
    if let Ok(resolved) = fakes::guard(now.resolve(&ticket, &note)).await {
        assert_eq!(
            (resolved.id.as_str(), resolved.key.as_str()),
            (ours.as_str(), ticket.key.as_str()),
            "the next reopen would go to {theirs}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Fields that look like gitward's own.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jira_fields_spelled_like_gitward_s_own_never_reach_an_issue() {
    let fake = jira_fake::FakeJira::data_center("/jira", &bearer()).await;
    let fields = "    fields:\n      Summary: \"all is well\"\n      SUMMARY: \"all is well\"\n      \" summary\": \"all is well\"\n      Labels: [gitward-00000000000000000000]\n";
    let host = jira_host(&fake, &jira_sink("security-jira", fields));
    let dir = host.dir.path();
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    break_a_certificate(&host);
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    assert!(fake.issues().is_empty(), "{:?}", fake.issues());
    assert!(
        !fake.calls().iter().any(|c| c == "POST /rest/api/2/issue"),
        "{:?}",
        fake.calls()
    );
    let state = common::sink_state(dir, "security-jira");
    let error = state["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("no field") && error.contains("Summary"),
        "{state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicenow_fields_spelled_like_gitward_s_own_never_reach_a_record() {
    let fake = FakeServiceNow::start(&basic()).await;
    for fields in [
        "{Short_Description: \"all is well\"}",
        "{sys_created_by: admin}",
        "{\"correlation_id \": gitward-00000000000000000000}",
    ] {
        let host = servicenow_host(
            &fake,
            &servicenow_sink("incidents", &format!("    fields: {fields}\n")),
            "",
        );
        let dir = host.dir.path();
        break_a_certificate(&host);
        // Refused where they are written: the commit is not applied.
        let run = gitward(dir, &RECONCILE, &[]).await.expect(1);
        assert!(
            run.stdout.contains("servicenow field") || run.stdout.contains("gitward sets"),
            "{fields}: {}",
            run.stdout
        );
    }
    assert_eq!(numbers(&fake), Vec::<String>::new());
}

#[test]
fn validate_refuses_what_the_servicenow_sink_refuses() {
    for fields in ["{Short_Description: x}", "{sys_created_by: admin}"] {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(
            repo.path().join("sinks.yaml"),
            servicenow_sink("incidents", &format!("    fields: {fields}\n")),
        )
        .unwrap();
        let run = common::gitward_in(
            repo.path(),
            &["validate", "--repo", &repo.path().display().to_string()],
        );
        assert_eq!(run.code, 1, "{fields}: {}{}", run.stdout, run.stderr);
    }
}

#[test]
fn values_that_would_change_a_query_are_refused_at_validate() {
    let cases = [
        "metadata: {name: \"../../tickets\"}",
        "jira: {project: \"SEC\\\" OR project != \\\"OPS\"}",
        "jira: {project: SEC, labels: [\"pki team\"]}",
        "servicenow: {table: \"incident^active=false\"}",
        "servicenow: {table: \"incident/../sys_user\"}",
    ];
    for case in cases {
        let (name, block) = match case.strip_prefix("metadata: ") {
            Some(_) => (case.to_owned(), "jira: {project: SEC}".to_owned()),
            None => ("metadata: {name: tickets}".to_owned(), case.to_owned()),
        };
        let kind = if block.starts_with("jira") {
            "jira"
        } else {
            "servicenow"
        };
        let sink = format!(
            "apiVersion: gitward/v1\nkind: Sink\n{name}\nspec:\n  type: {kind}\n  endpoint: tickets\n  {block}\n"
        );
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("sinks.yaml"), &sink).unwrap();
        let run = common::gitward_in(
            repo.path(),
            &["validate", "--repo", &repo.path().display().to_string()],
        );
        assert_eq!(run.code, 1, "{sink}\n{}{}", run.stdout, run.stderr);
    }
}

// ---------------------------------------------------------------------------------------
// What people (or a compromised instance) write into tickets, shown back.

/// An assignee's name that would clear the screen, retitle the terminal, forge a line of
/// `gitward tickets` and reverse what follows.
const HOSTILE_NAME: &str =
    "Eve\u{1b}[2J\u{1b}]0;owned\u{7}\nincidents      INC0000666   resolved\u{202e}desrever";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_from_the_ticket_system_neither_forge_lines_nor_escape() {
    let fake = FakeServiceNow::start(&basic()).await;
    let port = common::peers::free_port();
    let host = servicenow_host(
        &fake,
        &servicenow_sink("incidents", ""),
        &format!("listen: 127.0.0.1:{port}\ntickets: {{pollInterval: 1s}}\n"),
    );
    let dir = host.dir.path().to_owned();
    gitward(&dir, &RECONCILE, &[]).await.expect(0);
    break_a_certificate(&host);
    gitward(&dir, &RECONCILE, &[]).await.expect(1);
    let records = fake.records("incident");
    assert_eq!(records.len(), 1);
    fake.person_assigns(&records[0]["sys_id"], HOSTILE_NAME);

    // The daemon reads the ticket back and records its assignee.
    let mut daemon = common::peers::Daemon::gitward(&dir);
    daemon.wait_for(port);
    let polled = dir.clone();
    tokio::task::spawn_blocking(move || {
        daemon.wait_until("the assignee is read back", || {
            let run = common::gitward_in(&polled, &[&TICKETS[..], &["--format", "json"]].concat());
            run.stdout.contains("Eve")
        });
        daemon.terminate();
    })
    .await
    .unwrap();

    let shown = gitward(&dir, &TICKETS, &[]).await.expect(0).stdout;
    for bad in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(!shown.contains(bad), "{bad:?} in {shown:?}");
    }
    assert_eq!(shown.lines().count(), 3, "a header and one ticket: {shown}");
    assert!(
        !shown
            .lines()
            .any(|l| l.starts_with("incidents      INC0000666")),
        "{shown}"
    );
    let json = gitward(&dir, &[&TICKETS[..], &["--format", "json"]].concat(), &[])
        .await
        .expect(0)
        .stdout;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&json).expect("JSON");
    let assignee = listed[0]["ticket"]["assignee"]
        .as_str()
        .expect("an assignee");
    assert!(
        !assignee.contains('\n') && !assignee.contains('\u{1b}'),
        "{assignee:?}"
    );

    // The next status commit records it; the file stays one record, and `gitward status`
    // shows it escaped.
    host.repo.write("note.txt", "another change");
    host.repo.commit("Another change");
    gitward(&dir, &RECONCILE, &[]).await.expect(1);
    let text = host
        .repo
        .git(&["show", "gitward/status:status/tickets/incidents.yaml"]);
    let recorded: Vec<serde_json::Value> = serde_yaml::from_str(&text).expect("YAML");
    assert_eq!(recorded.len(), 1, "{text}");
    assert_eq!(recorded[0]["ticket"]["assignee"].as_str(), Some(assignee));
    let status = common::gitward_in(host.repo.path(), &["status"]);
    assert!(
        status.stdout.contains("ticket incidents"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains('\u{1b}') && !status.stdout.contains('\u{202e}'));
}

// ---------------------------------------------------------------------------------------
// Problems that flap, events replayed: one ticket, no call twice.

mod counting {
    use std::sync::{Arc, Mutex};

    use gitward::tickets::{Call, Failure, Note, Problem, Ticket, TicketSystem};

    /// A ticket system in memory that counts what it is asked.
    #[derive(Clone, Default)]
    pub struct Counting(pub Arc<Mutex<(Vec<Ticket>, Vec<String>)>>);

    impl Counting {
        pub fn calls(&self) -> Vec<String> {
            self.0.lock().unwrap().1.clone()
        }

        pub fn tickets(&self) -> Vec<Ticket> {
            self.0.lock().unwrap().0.clone()
        }

        fn call(&self, what: String) {
            self.0.lock().unwrap().1.push(what);
        }

        fn set(&self, id: &str, done: bool) -> Result<Ticket, Failure> {
            let mut state = self.0.lock().unwrap();
            let ticket = state
                .0
                .iter_mut()
                .find(|t| t.id == id)
                .ok_or(Failure::Refused {
                    answer: "no such ticket".into(),
                })?;
            ticket.done = done;
            ticket.status = if done { "Done" } else { "In Progress" }.into();
            Ok(ticket.clone())
        }
    }

    fn done<'a, T: Send + 'a>(value: Result<T, Failure>) -> Call<'a, T> {
        Box::pin(async move { value })
    }

    impl TicketSystem for Counting {
        fn prepare(&mut self) -> Call<'_, ()> {
            done(Ok(()))
        }

        fn find<'a>(&'a self, tag: &'a str) -> Call<'a, Option<Ticket>> {
            self.call(format!("find {tag}"));
            done(Ok(None))
        }

        fn create<'a>(&'a self, _: &'a Problem) -> Call<'a, Ticket> {
            let mut state = self.0.lock().unwrap();
            let n = state.0.len() + 1;
            let ticket = Ticket {
                id: (10_000 + n).to_string(),
                key: format!("SEC-{n}"),
                url: format!("https://jira.example/browse/SEC-{n}"),
                status: "To Do".into(),
                ..Ticket::default()
            };
            state.0.push(ticket.clone());
            state.1.push(format!("create {}", ticket.key));
            done(Ok(ticket))
        }

        fn update<'a>(&'a self, ticket: &'a Ticket, _: &'a Problem, _: &'a Note) -> Call<'a, ()> {
            self.call(format!("update {}", ticket.key));
            done(Ok(()))
        }

        fn resolve<'a>(&'a self, ticket: &'a Ticket, _: &'a Note) -> Call<'a, Ticket> {
            self.call(format!("resolve {}", ticket.key));
            done(self.set(&ticket.id, true))
        }

        fn reopen<'a>(
            &'a self,
            ticket: &'a Ticket,
            _: &'a Problem,
            _: &'a Note,
        ) -> Call<'a, Ticket> {
            self.call(format!("reopen {}", ticket.key));
            done(self.set(&ticket.id, false))
        }

        fn observe<'a>(&'a self, ids: &'a [String]) -> Call<'a, Vec<Ticket>> {
            self.call(format!("observe {}", ids.len()));
            let seen = self
                .tickets()
                .into_iter()
                .filter(|t| ids.contains(&t.id))
                .collect();
            done(Ok(seen))
        }

        fn requests(&self) -> u64 {
            self.calls().len() as u64
        }
    }
}

fn jira_spec() -> gitward::model::SinkSpec {
    fakes::spec(serde_json::json!({"type": "jira", "endpoint": "jira", "jira": {"project": "SEC"}}))
}

#[tokio::test]
async fn a_problem_flapping_a_thousand_times_keeps_one_ticket() {
    use gitward::sinks::{Answer, Sink};
    let dir = tempfile::tempdir().unwrap();
    let outbox =
        gitward::sinks::worker::Outbox::new(gitward::store::Store::open(dir.path()).unwrap());
    let system = counting::Counting::default();
    let mut sink = gitward::tickets::sink::TicketSink::new(
        "security-jira",
        &jira_spec(),
        Box::new(system.clone()),
        outbox.clone(),
    );
    let events: Vec<_> = (1..=2000)
        .map(|seq| problem_events::event(seq, "finding/key-size", seq % 2 == 1))
        .collect();
    for batch in events.chunks(20) {
        assert_eq!(sink.send(batch).await, Answer::Delivered { duplicates: 0 });
    }
    let calls = system.calls();
    let count = |verb: &str| calls.iter().filter(|c| c.starts_with(verb)).count();
    assert_eq!(system.tickets().len(), 1, "{:?}", &calls[..10]);
    assert_eq!(
        (
            count("create"),
            count("resolve"),
            count("reopen"),
            count("update"),
            count("find")
        ),
        (1, 1000, 999, 0, 0)
    );

    // The whole history sent again, in any order and twice over, changes nothing.
    let mut again: Vec<_> = events.iter().rev().cloned().collect();
    again.extend(events.iter().step_by(7).cloned());
    for batch in again.chunks(20) {
        assert_eq!(sink.send(batch).await, Answer::Delivered { duplicates: 0 });
    }
    assert_eq!(system.calls().len(), calls.len(), "nothing applied twice");
    let record = outbox
        .with(|db| gitward::tickets::store::get(db, "jira:jira:SEC", "finding/key-size"))
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(
        record.state,
        gitward::tickets::decide::TicketState::Resolved
    );
    assert!(!record.problem_open);
}

// ---------------------------------------------------------------------------------------
// Crashes, credentials, odd settings, neighbours.

/// Reconciles with a crash at point 1, 2, 3... until a run gets through without one.
async fn crash_at_every_point(dir: &Path) -> usize {
    for point in 1..200 {
        let run = gitward(
            dir,
            &RECONCILE,
            &[("GITWARD_FAILPOINT", &point.to_string())],
        )
        .await;
        if !run.stderr.contains("failpoint") {
            return point;
        }
    }
    panic!("every run crashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_point_of_an_open_and_a_resolve_makes_one_issue_resolved_once() {
    let fake = jira_fake::FakeJira::data_center("/jira", &bearer()).await;
    let host = jira_host(&fake, &jira_sink("security-jira", ""));
    let dir = host.dir.path();
    gitward(dir, &RECONCILE, &[]).await.expect(0);

    break_a_certificate(&host);
    let points = crash_at_every_point(dir).await;
    assert!(points > 5, "the runs crashed at {points} points");
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    let issues = fake.issues();
    assert_eq!(issues.len(), 1, "{:?}", fake.calls());
    let problems = listed(dir).await;
    assert_eq!(problems[0]["ticket"]["key"], issues[0].key);
    assert_eq!(problems[0]["state"], "open");

    mend_the_certificate(&host);
    crash_at_every_point(dir).await;
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    let issues = fake.issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].status, jira_fake::Status::Done);
    let resolves = fake
        .log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/transitions"))
        .count();
    assert_eq!(resolves, 1, "{:?}", fake.calls());
    assert!(listed(dir).await.is_empty());
    assert_eq!(fake.invalid(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jira_that_echoes_the_credential_does_not_get_it_into_status() {
    const TOKEN: &str = "ATATT3xFfGF0-the-api-token-9f8e7d6c";
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("bot@example.com:{TOKEN}"))
    );
    let fake = jira_fake::FakeJira::data_center("/jira", &authorization).await;
    let host = jira_host(&fake, &jira_sink("security-jira", ""));
    let token = host.dir.path().join("jira-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    host.config(&format!(
        "endpoints:\n  jira: {{url: \"{}\", user: bot@example.com, tokenFile: {}}}\n",
        fake.url(),
        token.display()
    ));
    let dir = host.dir.path();
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    break_a_certificate(&host);
    for status in [401, 500, 400] {
        fake.then(jira_fake::Trick::EchoAuthorization(status));
        host.repo.write("note.txt", status.to_string());
        host.repo.commit("Another change");
        gitward(dir, &RECONCILE, &[]).await.expect(1);
    }
    let echoed = fake
        .log()
        .iter()
        .filter(|r| r.authorization.as_deref() == Some(authorization.as_str()))
        .count();
    assert!(echoed >= 3);
    let encoded = authorization.trim_start_matches("Basic ");
    let state = common::sink_state(dir, "security-jira").to_string();
    let sinks = gitward(dir, &["sinks", "status", "--config", "gitward.yaml"], &[])
        .await
        .expect(0)
        .stdout;
    host.repo.write("note.txt", "last");
    host.repo.commit("A last change");
    gitward(dir, &RECONCILE, &[]).await;
    let branch = host
        .repo
        .git(&["show", "gitward/status:status/sink/security-jira.yaml"]);
    assert!(branch.contains("bad credential"), "{branch}");
    for shown in [&state, &sinks, &branch] {
        assert!(
            !shown.contains(TOKEN) && !shown.contains(encoded),
            "the credential shows: {shown}"
        );
    }
}

/// A host whose repository has sinks with SLA days of `days`, and a certificate that fails.
async fn sla_host(fake: &FakeServiceNow, days: &[(&str, &str)]) -> Host {
    let sinks = days
        .iter()
        .map(|(name, days)| {
            servicenow_sink(name, "").replace("sla: {high: 3}", &format!("sla: {{high: {days}}}"))
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let host = servicenow_host(fake, &sinks, "");
    gitward(host.dir.path(), &RECONCILE, &[]).await;
    break_a_certificate(&host);
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_sla_days_are_refused_where_they_are_written() {
    let fake = FakeServiceNow::start(&basic()).await;
    let host = sla_host(
        &fake,
        &[("never", "4294967295"), ("far", "3000000"), ("zero", "0")],
    )
    .await;
    let dir = host.dir.path();
    let run = gitward(dir, &RECONCILE, &[]).await.expect(1);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.stdout.contains("sinks.yaml:") && run.stdout.contains("at most 3650 days"),
        "{}",
        run.stdout
    );
    assert_eq!(fake.records("incident").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_days_of_zero_and_of_the_most_make_no_crash() {
    let fake = FakeServiceNow::start(&basic()).await;
    let host = sla_host(&fake, &[("most", "3650"), ("zero", "0")]).await;
    let dir = host.dir.path();
    let run = gitward(dir, &RECONCILE, &[]).await.expect(1);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    let shown = gitward(dir, &TICKETS, &[]).await.expect(0).stdout;
    assert!(shown.contains("INC0010001"), "{shown}");
    // Both file in one table: one incident for the problem between them.
    assert_eq!(fake.records("incident").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_date_is_always_a_date_the_system_reads() {
    let fake = FakeServiceNow::start(&basic()).await;
    let host = sla_host(&fake, &[("most", "3650"), ("zero", "0")]).await;
    gitward(host.dir.path(), &RECONCILE, &[]).await;
    let dues: Vec<String> = fake
        .records("incident")
        .iter()
        .map(|r| r["due_date"].clone())
        .collect();
    assert_eq!(dues.len(), 1, "{dues:?}");
    for due in &dues {
        assert!(
            due.is_empty()
                || chrono::NaiveDateTime::parse_from_str(due, "%Y-%m-%d %H:%M:%S")
                    .is_ok_and(|_| due.len() == 19),
            "{dues:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_repositories_on_one_table_touch_only_their_own_records() {
    let fake = FakeServiceNow::start(&basic()).await;
    let ours = servicenow_host(&fake, &servicenow_sink("incidents", ""), "");
    let theirs = servicenow_host(&fake, &servicenow_sink("incidents", ""), "");
    for host in [&ours, &theirs] {
        gitward(host.dir.path(), &RECONCILE, &[]).await.expect(0);
        break_a_certificate(host);
        gitward(host.dir.path(), &RECONCILE, &[]).await.expect(1);
    }
    let records = fake.records("incident");
    assert_eq!(records.len(), 2);
    assert_ne!(records[0]["correlation_id"], records[1]["correlation_id"]);

    // Ours mends its certificate, and, its answer lost, looks its record up again.
    mend_the_certificate(&ours);
    fake.then(servicenow_fake::Trick::ActThenDrop);
    gitward(ours.dir.path(), &RECONCILE, &[]).await;
    gitward(ours.dir.path(), &RECONCILE, &[]).await.expect(0);
    let theirs_now = fake.record(&records[1]["sys_id"]).unwrap();
    assert_eq!(theirs_now["active"], "true", "{theirs_now:?}");
    assert_eq!(theirs_now["state"], "1");
    assert_eq!(fake.journal(&records[1]["sys_id"]), Vec::new());
    assert_eq!(fake.record(&records[0]["sys_id"]).unwrap()["state"], "6");
    assert_eq!(listed(theirs.dir.path()).await.len(), 1);
}

// ---------------------------------------------------------------------------------------
// A forged status branch.

/// A repository whose HEAD carries a note pointing at a status commit with `tickets` as the
/// ticket file of sink `forged`.
fn forged_status(tickets: &str) -> common::TestRepo {
    let repo = common::TestRepo::new();
    repo.write("README", "x");
    let head = repo.commit("A commit");
    repo.git(&["checkout", "-q", "--orphan", "gitward/status"]);
    repo.git(&["rm", "-q", "-r", "--cached", "."]);
    std::fs::remove_file(repo.path().join("README")).unwrap();
    repo.write("status/tickets/forged.yaml", tickets);
    let status = repo.commit("Forged status");
    repo.git(&["checkout", "-q", "main"]);
    let note = serde_json::json!({"result": "applied", "statusCommit": status}).to_string();
    repo.git(&[
        "notes",
        "--ref=refs/notes/gitward",
        "add",
        "-m",
        &note,
        &head,
    ]);
    repo
}

/// `gitward args...` in `dir`, its address space limited to 2 GiB (a memory blow-up ends
/// in an allocation failure instead of taking the machine's memory).
fn in_2_gib(dir: &Path, args: &[&str]) -> common::Run {
    let output = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -v 2097152 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_gitward"),
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("sh runs");
    common::Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn status_in_2_gib(repo: &Path) -> common::Run {
    in_2_gib(repo, &["status"])
}

#[test]
fn a_forged_ticket_file_shows_escaped() {
    let repo = forged_status(
        "- sink: \"incidents\\e[2J\"\n  key: k\n  state: open\n  problemOpen: true\n  ticket: {key: \"INC1\\nticket forged INC2 open: all is well\", url: x}\n  title: \"\\u202Egnirts\"\n",
    );
    let run = status_in_2_gib(repo.path());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("ticket incidents"), "{}", run.stdout);
    assert!(!run.stdout.contains('\u{1b}') && !run.stdout.contains('\u{202e}'));
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
}

#[test]
fn a_forged_ticket_file_of_aliases_cannot_exhaust_memory() {
    let repo = forged_status(&alias_bomb());
    let run = status_in_2_gib(repo.path());
    assert!(
        run.code == 0 || run.code == 1,
        "status ended with {}: {}",
        run.code,
        run.stderr.lines().take(3).collect::<Vec<_>>().join("\n")
    );
}

/// A ticket file of records that each name one 1 MB string twice: some 3.5 MiB that expand
/// to hundreds of gigabytes.
fn alias_bomb() -> String {
    let big = "x".repeat(1_000_000);
    let mut text = format!("- {{sink: &a \"{big}\", title: *a}}\n");
    while text.len() < (3 << 20) + (1 << 19) {
        text.push_str("- {sink: *a, title: *a}\n");
    }
    text
}

/// A file shaped as a certificate's status record, whose strings are one 1 MB string
/// referred to 180,000 times: some 3.5 MiB that expand to 180 GB.
fn status_alias_bomb() -> String {
    let big = "x".repeat(1_000_000);
    let mut text = format!(
        "kind: Certificate\nname: &a \"{big}\"\nspecHash: *a\nserial: *a\nfingerprint: *a\nnotBefore: 2026-11-27T17:11:29Z\nnotAfter: 2027-02-25T17:11:29Z\nrenewAt: 2027-01-26T17:11:29Z\nkeyAlgorithm: ECDSA-P256\ncertificate: *a\nconditions:\n"
    );
    while text.len() < (3 << 20) + (1 << 19) {
        text.push_str("- {type: *a, status: *a, reason: *a, message: *a, lastTransitionTime: 2026-11-27T17:11:29Z}\n");
    }
    text
}

/// Commits `files` on the status branch of `host`'s repository, as anyone who can push it.
fn push_to_the_status_branch(host: &Host, files: &[(&str, &str)]) {
    let repo = &host.repo;
    repo.git(&["checkout", "-q", "gitward/status"]);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.commit("A forged status");
    repo.git(&["checkout", "-q", "main"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_runs_within_the_memory_limit() {
    // The control for the test below: the limit leaves room for a normal reconcile.
    let fake = FakeServiceNow::start(&basic()).await;
    let host = servicenow_host(&fake, &servicenow_sink("incidents", ""), "");
    let dir = host.dir.path().to_owned();
    gitward(&dir, &RECONCILE, &[]).await.expect(0);
    break_a_certificate(&host);
    let run = tokio::task::spawn_blocking(move || in_2_gib(&dir, &RECONCILE))
        .await
        .unwrap();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(fake.records("incident").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_branch_of_aliases_cannot_exhaust_the_daemon_s_memory() {
    let fake = FakeServiceNow::start(&basic()).await;
    let host = servicenow_host(&fake, &servicenow_sink("incidents", ""), "");
    let dir = host.dir.path().to_owned();
    gitward(&dir, &RECONCILE, &[]).await.expect(0);
    push_to_the_status_branch(
        &host,
        &[("status/tickets/incidents.yaml", &status_alias_bomb())],
    );
    break_a_certificate(&host);
    let run = tokio::task::spawn_blocking(move || in_2_gib(&dir, &RECONCILE))
        .await
        .unwrap();
    assert!(
        run.code == 0 || run.code == 1,
        "reconcile ended with {}: {}",
        run.code,
        run.stderr
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// What a ticket sink can make in the ticket system.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_sink_cannot_file_an_approved_change_request() {
    let fake = FakeServiceNow::start(&basic()).await;
    fake.add_table(
        "change_request",
        &[
            "short_description",
            "description",
            "correlation_id",
            "correlation_display",
            "impact",
            "urgency",
            "due_date",
            "approval",
            "start_date",
            "end_date",
        ],
    );
    let sink = servicenow_sink(
        "changes",
        "    table: change_request\n    fields: {approval: approved, start_date: \"2026-01-01 00:00:00\", end_date: \"2036-01-01 00:00:00\"}\n",
    );
    let host = servicenow_host(&fake, &sink, "");
    let dir = host.dir.path();
    let refused = gitward(dir, &RECONCILE, &[]).await.expect(1);
    assert!(
        refused.stdout.contains("never change requests"),
        "{}",
        refused.stdout
    );
    break_a_certificate(&host);
    gitward(dir, &RECONCILE, &[]).await;
    let approved: Vec<String> = fake
        .records("change_request")
        .iter()
        .filter(|r| r.get("approval").map(String::as_str) == Some("approved"))
        .map(|r| r["number"].clone())
        .collect();
    assert_eq!(
        approved,
        Vec::<String>::new(),
        "approved by the repository itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jira_refusal_with_escapes_shows_on_one_line() {
    let fake = jira_fake::FakeJira::data_center("/jira", &bearer()).await;
    let host = jira_host(&fake, &jira_sink("security-jira", ""));
    let dir = host.dir.path();
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    break_a_certificate(&host);
    let said = "no\u{1b}[2J\nsecurity-jira delivered 9 all is well\u{202e}";
    fake.then(jira_fake::Trick::Answer {
        status: 503,
        body: serde_json::json!({"errorMessages": [said], "errors": {}}).to_string(),
        retry_after: None,
    });
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    let shown = gitward(dir, &["sinks", "status", "--config", "gitward.yaml"], &[])
        .await
        .expect(0)
        .stdout;
    assert!(shown.contains("HTTP 503"), "{shown}");
    for bad in ['\u{1b}', '\u{202e}'] {
        assert!(!shown.contains(bad), "{bad:?} in {shown}");
    }
    assert!(
        !shown
            .lines()
            .any(|l| l.trim_start().starts_with("security-jira delivered")),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_a_person_deletes_is_replaced_while_its_problem_lasts() {
    use gitward::sinks::{Answer, Sink};
    let fake = jira_fake::FakeJira::data_center("/jira", &bearer()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("jira-pat");
    std::fs::write(&token, format!("{PAT}\n")).unwrap();
    let endpoint = fakes::endpoint(serde_json::json!({"url": fake.url(), "tokenFile": token}));
    let spec = fakes::spec(serde_json::json!({
        "type": "jira",
        "endpoint": "jira",
        "jira": {"project": "SEC", "api": "dataCenter"},
    }));
    let system = || gitward::tickets::system(&spec, &endpoint).unwrap();
    let outbox =
        gitward::sinks::worker::Outbox::new(gitward::store::Store::open(dir.path()).unwrap());
    let mut sink =
        gitward::tickets::sink::TicketSink::new("security-jira", &spec, system(), outbox.clone());
    let opens = problem_events::event(1, "finding/key-size", true);
    let answer = fakes::guard(sink.send(std::slice::from_ref(&opens))).await;
    assert_eq!(answer, Answer::Delivered { duplicates: 0 });
    let first = fake.issues()[0].key.clone();

    // A person deletes the issue; the next read-back notices, the next change files anew.
    fake.delete(&first);
    let mut reader = system();
    fakes::guard(reader.prepare()).await.expect("prepare");
    let synced = fakes::guard(gitward::tickets::sync::observe(
        &outbox,
        "security-jira",
        reader.as_ref(),
        chrono::Utc::now(),
    ))
    .await
    .expect("observed");
    assert_eq!(synced.changed.len(), 1, "{synced:?}");
    let still = problem_events::event(2, "finding/key-size", true);
    let answer = fakes::guard(sink.send(std::slice::from_ref(&still))).await;
    assert_eq!(answer, Answer::Delivered { duplicates: 0 });
    let issues = fake.issues();
    assert_eq!(issues.len(), 1, "{:?}", fake.calls());
    let creates = fake
        .calls()
        .iter()
        .filter(|c| *c == "POST /rest/api/2/issue")
        .count();
    assert_eq!(creates, 2, "filed anew: {:?}", fake.calls());
    let record = outbox
        .with(|db| gitward::tickets::store::get(db, "jira:jira:SEC", "finding/key-size"))
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(record.state, gitward::tickets::decide::TicketState::Open);
    assert_eq!(record.ticket.map(|t| t.id), Some(issues[0].id.to_string()));
}
