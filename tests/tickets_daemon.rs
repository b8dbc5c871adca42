//! Tickets kept in step by the daemon (`gitward run`), end to end: a real repository, the
//! binary, and stateful stand-ins of Jira Cloud and ServiceNow on loopback. Commits open,
//! update, resolve and reopen tickets; what people do there (won't-fix, a reassignment, a
//! manual close) comes back within the ticket poll interval and shows in `gitward tickets`,
//! `gitward status` and `/status`; polling reads a hundred tickets a request, and only the
//! sink's own.
//!
//! The stand-ins run on a runtime of their own, so that each test drives the daemon and the
//! CLI from its own thread as a user would. Waits are bounded (a hang guard of a minute), and
//! no duration is measured.

use crate::common;
use crate::fakes;
use crate::fakes::jira as jira_fake;
use crate::fakes::servicenow as servicenow_fake;

use std::collections::BTreeSet;

use serde_json::Value;

use common::host::{Host, ISSUERS, certificate};
use common::peers::{Daemon, free_port, http};
use jira_fake::{FakeJira, Status};
use servicenow_fake::FakeServiceNow;

const JIRA_USER: &str = "bot@example.com";
const JIRA_TOKEN: &str = "ATATT3xFfGF0-daemon-api-token-5e4d3c";
const SNOW_USER: &str = "gitward.bot";
const SNOW_PASSWORD: &str = "s3cret-daemon-password";

const SEARCH: &str = "/rest/api/3/search/jql";

const MAX_VALIDITY: &str = include_str!("fixtures/tickets-daemon/max-validity.yaml");
const VALIDITY_REGO: &str = include_str!("fixtures/tickets-daemon/validity.rego");
const LEGACY_NAMES: &str = include_str!("fixtures/tickets-daemon/legacy-names.yaml");
const LEGACY_REGO: &str = include_str!("fixtures/tickets-daemon/legacy.rego");
const FINDINGS_JIRA: &str = include_str!("fixtures/tickets-daemon/findings-jira.yaml");
const FAILURES_JIRA: &str = include_str!("fixtures/tickets-daemon/failures-jira.yaml");
const INCIDENTS_SERVICENOW: &str =
    include_str!("fixtures/tickets-daemon/incidents-servicenow.yaml");

fn basic(user: &str, secret: &str) -> String {
    fakes::basic(user, secret)
}

/// The stand-ins' runtime: it serves them while the test's thread waits on the daemon.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The web certificate valid for `days`.
fn web(days: u32) -> String {
    certificate(
        "web",
        &format!("  dnsNames: [web.example.com]\n  duration: {days}d\n"),
    )
}

/// The host config: the daemon listening on `port`, tickets read back every second, and
/// `endpoints` (YAML lines under `endpoints:`).
fn configure(host: &Host, port: u16, endpoints: &str) {
    host.config(&format!(
        "listen: 127.0.0.1:{port}\ntickets: {{pollInterval: 1s}}\nendpoints:\n{endpoints}"
    ));
}

/// The Jira endpoint line, its API token in a file of the host.
fn jira_endpoint(host: &Host, fake: &FakeJira) -> String {
    let token = host.dir.path().join("jira-token");
    std::fs::write(&token, format!("{JIRA_TOKEN}\n")).expect("a token file");
    format!(
        "  jira: {{url: \"{}\", user: {JIRA_USER}, tokenFile: {}}}\n",
        fake.url(),
        token.display()
    )
}

/// `gitward run` on the host, once its first reconcile is done.
fn start(host: &Host, port: u16) -> Daemon {
    let mut daemon = Daemon::gitward(host.dir.path());
    daemon.wait_for(port);
    daemon.wait_until("the daemon becomes ready", || {
        http(port, "/readyz", None).0 == 200
    });
    daemon
}

fn gitward(host: &Host, args: &[&str]) -> common::Run {
    common::gitward_in(host.dir.path(), args)
}

/// `gitward tickets` as people read it.
fn tickets_text(host: &Host) -> String {
    gitward(host, &["tickets", "--config", "gitward.yaml"])
        .expect(0)
        .stdout
}

/// `gitward tickets --format json`.
fn tickets(host: &Host) -> Vec<Value> {
    let run = gitward(
        host,
        &["tickets", "--config", "gitward.yaml", "--format", "json"],
    )
    .expect(0);
    match serde_json::from_str(&run.stdout) {
        Ok(Value::Array(records)) => records,
        other => panic!("not a list: {other:?}\n{}", run.stdout),
    }
}

/// The state `gitward tickets --format json` shows for the ticket `key`.
fn state_of(host: &Host, key: &str) -> Option<String> {
    tickets(host)
        .iter()
        .find(|r| r["ticket"]["key"] == key)
        .and_then(|r| r["state"].as_str().map(str::to_owned))
}

/// Whether the daemon has recorded the outcome of commit `sha` on the status branch.
fn reconciled(host: &Host, sha: &str) -> bool {
    host.repo
        .git(&["show", "gitward/status:summary.yaml"])
        .contains(sha)
}

/// The daemon's `/status`.
fn status(port: u16) -> Value {
    let (code, body) = http(port, "/status", None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// The state of sink `name` in `/status`.
fn sink_state(port: u16, name: &str) -> Value {
    status(port)["sinks"]
        .as_array()
        .and_then(|sinks| sinks.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// Every text of an Atlassian document, a line per block.
fn adf_text(node: &Value) -> String {
    let mut out = String::new();
    collect_text(node, &mut out);
    out
}

fn collect_text(node: &Value, out: &mut String) {
    if let Some(text) = node["text"].as_str() {
        out.push_str(text);
    }
    if let Some(children) = node["content"].as_array() {
        for child in children {
            collect_text(child, out);
        }
        if node["type"] != "text" && children.iter().all(|c| c["type"] == "text") {
            out.push('\n');
        }
    }
}

/// `METHOD path` of the requests that are not searches: what changes or prepares issues.
fn not_searches(log: &[jira_fake::Request]) -> Vec<String> {
    log.iter()
        .filter(|r| !(r.method == "POST" && r.path == SEARCH))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn searches(log: &[jira_fake::Request]) -> usize {
    log.iter()
        .filter(|r| r.method == "POST" && r.path == SEARCH)
        .count()
}

/// The 1-based line of `file_text` that starts with `prefix`.
fn line_of(file_text: &str, prefix: &str) -> usize {
    file_text
        .lines()
        .position(|l| l.starts_with(prefix))
        .map(|n| n + 1)
        .expect("the line")
}

/// A Jira host with the `max-validity` policy (warn) and a Jira sink for its violations.
fn findings_host(fake: &FakeJira, port: u16) -> Host {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web(90)),
        ("max-validity.yaml", MAX_VALIDITY),
        ("validity.rego", VALIDITY_REGO),
        ("sinks.yaml", FINDINGS_JIRA),
    ]);
    configure(&host, port, &jira_endpoint(&host, fake));
    host
}

/// Commits a certificate for a target the host does not grant: it fails on every commit.
fn break_a_certificate(host: &Host) -> String {
    let broken = certificate("broken", "  dnsNames: [broken.example.com]\n");
    host.repo.write(
        "broken.yaml",
        broken.replace("target: web", "target: elsewhere"),
    );
    host.repo
        .commit("A certificate for a target the host lacks")
}

/// A commit that changes nothing the policies or the certificates see.
fn unrelated_commit(host: &Host, n: usize) -> String {
    host.repo.write("notes.txt", format!("note {n}\n"));
    host.repo.commit(&format!("Note {n}"))
}

/// A violation opens an issue; a person closes it as "Won't Fix" and the daemon learns it is
/// accepted; neither a commit that still has the violation nor the one that fixes it
/// reopens or comments on it, and once fixed the problem is no longer listed.
#[test]
fn a_wont_fix_is_learned_by_polling_and_never_reopened_nor_commented() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)));
    let port = free_port();
    let host = findings_host(&fake, port);
    let daemon = start(&host, port);
    assert!(fake.issues().is_empty(), "no problem, no issue");

    // A certificate valid for longer than the policy allows.
    let violating = web(400);
    host.repo.write("web.yaml", &violating);
    let sha = host.repo.commit("The web certificate for 400 days");
    daemon.wait_until("an issue is created", || fake.issues().len() == 1);
    let issue = fake.issue("SEC-1");
    let record = daemon_record(&host, &daemon, "SEC-1");
    let tag = record["tag"].as_str().expect("a tag").to_owned();
    assert!(
        tag.starts_with("gitward-") && tag.len() == 28,
        "the problem's tag: {tag}"
    );
    assert_eq!(issue.labels, ["gitward", tag.as_str(), "pki"]);
    assert_eq!(issue.fields["project"], serde_json::json!({"key": "SEC"}));
    let summary = issue.fields["summary"].as_str().expect("a summary");
    assert!(
        summary.starts_with(
            "[high] Certificate/web: web is valid for 400d; prod serverAuth certificates"
        ),
        "{summary}"
    );
    assert_eq!(issue.priority.as_deref(), Some("High"));
    let due = (chrono::Utc::now().date_naive() + chrono::Days::new(30)).to_string();
    assert_eq!(
        issue.fields["duedate"],
        due.as_str(),
        "the default SLA of high"
    );
    let description = &issue.fields["description"];
    assert!(
        jira_fake::adf_errors(description).is_empty(),
        "{description}"
    );
    let text = adf_text(description);
    let place = format!(
        "web.yaml:{} at {}",
        line_of(&violating, "  duration:"),
        &sha[..12]
    );
    for expected in [
        "What\n",
        "web is valid for 400d",
        "Where\n",
        place.as_str(),
        "Policy max-validity (warn enforcement)",
        "PCI-DSS:4.2.1",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }

    // `gitward tickets` lists it, with its link and due date.
    let listed = tickets_text(&host);
    for expected in [
        "security-jira",
        "SEC-1",
        "open",
        due.as_str(),
        &format!("{}/browse/SEC-1", fake.url()),
    ] {
        assert!(listed.contains(expected), "{expected:?} in:\n{listed}");
    }

    // A person closes it as "Won't Fix": within a poll it is accepted.
    fake.person_closes("SEC-1", "Won't Fix");
    daemon.wait_until("the won't-fix is learned", || {
        state_of(&host, "SEC-1").as_deref() == Some("accepted")
    });
    assert!(tickets_text(&host).contains("accepted"));
    let before = fake.log().len();

    // A new commit still has the violation: nothing is sent but searches.
    let still = unrelated_commit(&host, 1);
    daemon.wait_until("the commit is reconciled and the sink idle", || {
        reconciled(&host, &still) && sink_state(port, "security-jira")["backlog"] == 0
    });
    let polls = searches(&fake.log());
    daemon.wait_until("two more polls", || searches(&fake.log()) >= polls + 2);
    assert_eq!(not_searches(&fake.log()[before..]), Vec::<String>::new());
    assert_eq!(state_of(&host, "SEC-1").as_deref(), Some("accepted"));

    // The fix clears the problem: still nothing but searches, and it is no longer listed.
    let delivered = sink_state(port, "security-jira")["delivered"]
        .as_i64()
        .expect("delivered");
    host.repo.write("web.yaml", web(90));
    let fix = host.repo.commit("The web certificate for 90 days");
    daemon.wait_until("the clearing is applied", || {
        reconciled(&host, &fix)
            && sink_state(port, "security-jira")["delivered"].as_i64() > Some(delivered)
            && tickets(&host).is_empty()
    });
    assert!(
        tickets_text(&host).contains("no open problems have tickets"),
        "{}",
        tickets_text(&host)
    );
    assert_eq!(not_searches(&fake.log()[before..]), Vec::<String>::new());
    let issue = fake.issue("SEC-1");
    assert_eq!(
        (issue.status, issue.resolution.as_deref()),
        (Status::Done, Some("Won't Fix"))
    );
    assert!(issue.comments.is_empty(), "{:?}", issue.comments);
    // The whole conversation: the create screen read, one create, and searches.
    only_creates(&fake, 1);

    // Once it cleared, its return is a new problem: a new issue, the won't-fix one left be.
    host.repo.write("web.yaml", &violating);
    host.repo.commit("The web certificate for 400 days again");
    daemon.wait_until("a new issue is created", || fake.issues().len() == 2);
    let again = fake.issue("SEC-2");
    assert_eq!(
        again.labels,
        ["gitward", tag.as_str(), "pki"],
        "the same tag"
    );
    assert_eq!(daemon_record(&host, &daemon, "SEC-2")["state"], "open");
    let old = fake.issue("SEC-1");
    assert_eq!(
        (old.status, old.resolution.as_deref(), old.comments.len()),
        (Status::Done, Some("Won't Fix"), 0)
    );
    only_creates(&fake, 2);
    assert!(fake.invalid().is_empty(), "{:?}", fake.invalid());
    let log = daemon.log();
    assert!(!log.contains(JIRA_TOKEN), "the token is never logged");
}

/// Asserts that Jira was asked for `creates` new issues and its create screen, and for
/// nothing else but searches: no comment, no transition.
fn only_creates(fake: &FakeJira, creates: usize) {
    let writes = not_searches(&fake.log());
    let made = writes
        .iter()
        .filter(|w| *w == "POST /rest/api/3/issue")
        .count();
    let others: Vec<&String> = writes
        .iter()
        .filter(|w| {
            *w != "POST /rest/api/3/issue"
                && !w.starts_with("GET /rest/api/3/issue/createmeta/SEC/issuetypes")
        })
        .collect();
    assert_eq!((made, others), (creates, Vec::new()), "{writes:?}");
}

/// The record `gitward tickets --format json` shows for ticket `key`, once there is one.
fn daemon_record(host: &Host, daemon: &Daemon, key: &str) -> Value {
    let mut found = Value::Null;
    daemon.wait_until("the ticket is recorded", || {
        found = tickets(host)
            .into_iter()
            .find(|r| r["ticket"]["key"] == key)
            .unwrap_or(Value::Null);
        !found.is_null()
    });
    found
}

/// The comments of issue `key`, as text.
fn comments(fake: &FakeJira, key: &str) -> Vec<String> {
    fake.issue(key).comments.iter().map(adf_text).collect()
}

/// A person reassigns the issue and `gitward tickets` follows; a new commit that still has
/// the problem comments; a person closes it as Done while it lasts, and the next commit
/// that still has it reopens it; the fix resolves it.
#[test]
fn a_reassignment_and_a_manual_close_are_followed_and_the_problem_reopens_its_issue() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)));
    let port = free_port();
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web(90)),
        ("sinks.yaml", FAILURES_JIRA),
    ]);
    configure(&host, port, &jira_endpoint(&host, &fake));
    let daemon = start(&host, port);

    break_a_certificate(&host);
    daemon.wait_until("an issue is created", || fake.issues().len() == 1);
    assert_eq!(
        daemon_record(&host, &daemon, "SEC-1")["state"],
        "open",
        "opened"
    );

    // A person takes it.
    fake.assign("SEC-1", "Ada Lovelace");
    daemon.wait_until("the assignee is learned", || {
        tickets_text(&host).contains("Ada Lovelace")
    });
    let record = daemon_record(&host, &daemon, "SEC-1");
    assert_eq!(record["ticket"]["assignee"], "Ada Lovelace");
    assert_eq!(record["state"], "open");

    // A new commit still fails the certificate: a comment naming it, nothing else.
    let still = unrelated_commit(&host, 1);
    daemon.wait_until("the issue is commented", || {
        fake.issue("SEC-1").comments.len() == 1
    });
    let said = comments(&fake, "SEC-1");
    assert!(
        said[0].contains(&format!("Still open in commit {}", &still[..12])),
        "{said:?}"
    );
    assert_eq!(fake.issue("SEC-1").status, Status::ToDo);

    // A person closes it as Done while the certificate still fails: closed.
    fake.person_closes("SEC-1", "Done");
    daemon.wait_until("the manual close is learned", || {
        state_of(&host, "SEC-1").as_deref() == Some("closed")
    });
    assert!(tickets_text(&host).contains("closed"));

    // The next commit that still has the problem reopens the issue.
    let again = unrelated_commit(&host, 2);
    daemon.wait_until("the issue is reopened", || {
        fake.issue("SEC-1").status != Status::Done
    });
    let issue = fake.issue("SEC-1");
    assert_eq!(
        (issue.status, issue.resolution.as_deref()),
        (Status::ToDo, None)
    );
    let said = comments(&fake, "SEC-1");
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(
        said[1].contains(&format!(
            "Reopened by gitward: the problem is still there in commit {}",
            &again[..12]
        )),
        "{said:?}"
    );
    let reopen = fake
        .log()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/transitions"))
        .map(|r| r.body["transition"].clone())
        .collect::<Vec<_>>();
    assert_eq!(
        reopen,
        [serde_json::json!({"id": "41"})],
        "through `Reopen`"
    );
    daemon.wait_until("the reopening is recorded", || {
        state_of(&host, "SEC-1").as_deref() == Some("open")
    });
    assert_eq!(fake.issues().len(), 1, "no second issue");

    // The fix resolves it through the transition into Done, naming the commit.
    host.repo.remove("broken.yaml");
    let fix = host
        .repo
        .commit("Remove the certificate that cannot be written");
    daemon.wait_until("the issue is resolved", || {
        fake.issue("SEC-1").status == Status::Done
    });
    let issue = fake.issue("SEC-1");
    assert_eq!(issue.resolution.as_deref(), Some("Done"));
    let said = comments(&fake, "SEC-1");
    assert!(
        said[2].contains(&format!(
            "Resolved by gitward: the problem cleared in commit {}",
            &fix[..12]
        )),
        "{said:?}"
    );
    daemon.wait_until("the problem is no longer listed", || {
        tickets(&host).is_empty()
    });
    assert!(fake.invalid().is_empty(), "{:?}", fake.invalid());
}

/// A person reopens an issue gitward resolved: gitward follows it (lists it as open, its
/// problem cleared, theirs to close), and when the problem comes back it comments on the
/// open issue instead of moving it through a reopening transition.
#[test]
fn a_person_reopening_a_resolved_issue_is_followed() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)));
    let port = free_port();
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web(90)),
        ("sinks.yaml", FAILURES_JIRA),
    ]);
    configure(&host, port, &jira_endpoint(&host, &fake));
    let daemon = start(&host, port);
    break_a_certificate(&host);
    daemon.wait_until("an issue is created", || fake.issues().len() == 1);
    host.repo.remove("broken.yaml");
    host.repo
        .commit("Remove the certificate that cannot be written");
    daemon.wait_until("the issue is resolved", || {
        fake.issue("SEC-1").status == Status::Done && tickets(&host).is_empty()
    });

    fake.person_moves("SEC-1", Status::InProgress);
    daemon.wait_until("the person's reopening is learned", || {
        tickets_text(&host).contains("open (problem cleared)")
    });
    assert!(tickets_text(&host).contains("In Progress"));

    // The problem comes back while the issue is open: a comment, the person's status kept.
    break_a_certificate(&host);
    daemon.wait_until("the issue is commented", || {
        comments(&fake, "SEC-1").len() == 2
    });
    assert_eq!(fake.issue("SEC-1").status, Status::InProgress);
    assert_eq!(fake.issues().len(), 1);
}

/// A host whose repository has a ServiceNow sink told of failed certificates.
fn servicenow_host(fake: &FakeServiceNow, port: u16) -> Host {
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web(90)),
        ("sinks.yaml", INCIDENTS_SERVICENOW),
    ]);
    let password = host.dir.path().join("snow-password");
    std::fs::write(&password, format!("{SNOW_PASSWORD}\n")).expect("a password file");
    configure(
        &host,
        port,
        &format!(
            "  snow: {{url: \"{}\", user: {SNOW_USER}, tokenFile: {}}}\n",
            fake.url(),
            password.display()
        ),
    );
    host
}

/// The `ticket` lines of `gitward status REV`.
fn status_tickets(host: &Host, rev: &str) -> Vec<String> {
    host.repo
        .gitward(&["status", rev])
        .expect(0)
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("ticket "))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// ServiceNow through the daemon: a failing certificate opens an incident, `gitward status`
/// and `/status` show it while it is open, and the fix resolves it.
#[test]
fn servicenow_incidents_open_show_in_status_and_resolve_on_the_fix() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeServiceNow::start(&basic(SNOW_USER, SNOW_PASSWORD)));
    let port = free_port();
    let host = servicenow_host(&fake, port);
    let daemon = start(&host, port);
    assert!(fake.records("incident").is_empty());

    let broke = break_a_certificate(&host);
    daemon.wait_until("an incident is opened", || {
        fake.records("incident").len() == 1
    });
    let incident = fake.records("incident")[0].clone();
    let number = incident["number"].clone();
    assert!(
        incident["short_description"]
            .starts_with("[high] Certificate/broken: Certificate broken failed"),
        "{incident:?}"
    );
    assert_eq!(incident["correlation_display"], "gitward");
    assert!(incident["correlation_id"].starts_with("gitward-"));
    assert!(
        incident["description"].contains(&broke[..12]),
        "{incident:?}"
    );
    let record = daemon_record(&host, &daemon, &number);
    assert_eq!(record["state"], "open");
    assert_eq!(record["tag"], incident["correlation_id"].as_str());
    let due = (chrono::Utc::now().date_naive() + chrono::Days::new(3)).to_string();
    assert_eq!(record["due"], due.as_str());

    // `/status` has the ticket.
    let shown = status(port)["tickets"].clone();
    let shown = shown.as_array().expect("tickets in /status");
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["sink"], "incidents");
    assert_eq!(shown[0]["state"], "open");
    assert_eq!(shown[0]["ticket"]["key"], number.as_str());
    assert_eq!(shown[0]["ticket"]["id"], incident["sys_id"].as_str());

    // The next commit's status records the open ticket: `gitward status` lists it.
    let next = unrelated_commit(&host, 1);
    daemon.wait_until("the status of the next commit names the ticket", || {
        reconciled(&host, &next) && !status_tickets(&host, "HEAD").is_empty()
    });
    let lines = status_tickets(&host, "HEAD");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "ticket incidents {number} open due {due}: [high] Certificate/broken"
        )),
        "{lines:?}"
    );

    // The fix resolves it with a close code of the instance, naming the commit.
    host.repo.remove("broken.yaml");
    let fix = host
        .repo
        .commit("Remove the certificate that cannot be written");
    daemon.wait_until("the incident is resolved", || {
        fake.records("incident")[0]["state"] == "6"
    });
    let incident = fake.records("incident")[0].clone();
    assert_eq!(incident["close_code"], "Solution provided");
    assert!(incident["close_notes"].contains(&fix[..12]), "{incident:?}");
    daemon.wait_until("the problem is no longer listed", || {
        tickets(&host).is_empty()
    });
    assert!(!tickets_text(&host).contains(&number));
    assert_eq!(status(port)["tickets"], serde_json::json!([]));
    assert_eq!(fake.records("incident").len(), 1, "one incident");
    assert!(fake.invalid().is_empty(), "{:?}", fake.invalid());
    assert!(!daemon.log().contains(SNOW_PASSWORD));
}

/// The ids a search of `id in (...)` asks about.
fn asked(request: &jira_fake::Request) -> Vec<String> {
    let jql = request.body["jql"].as_str().unwrap_or_default();
    jql.strip_prefix("id in (")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a search by ids: {jql}"))
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Checks that `pages` (the searches of one sink, in order) go round its `ids` a whole
/// round after another, `per_round` searches a round, at most 100 ids each; the last round
/// may be under way. Returns the number of whole rounds.
fn rounds(pages: &[Vec<String>], ids: &BTreeSet<String>, per_round: usize) -> usize {
    let mut whole = 0;
    for round in pages.chunks(per_round) {
        let mut seen = BTreeSet::new();
        for page in round {
            assert!(page.len() <= 100, "{} ids in one search", page.len());
            for id in page {
                assert!(ids.contains(id), "{id} is not a ticket of this sink");
                assert!(seen.insert(id.clone()), "{id} asked twice in a round");
            }
        }
        if round.len() == per_round {
            assert_eq!(&seen, ids, "a round reads every ticket once");
            whole += 1;
        }
    }
    whole
}

/// With 150 open tickets of one sink and one of another on the same Jira, each poll reads
/// the first in two searches and the second in one: no search asks about a ticket of the
/// other sink, and a restart reads them again without any other request.
#[test]
fn polling_reads_a_hundred_tickets_a_search_and_only_the_sink_s_own() {
    const MANY: usize = 150;
    let runtime = runtime();
    let fake = runtime.block_on(FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)));
    let port = free_port();
    // Two certificates of 75 legacy names each: a policy may find at most 100 problems in
    // one resource.
    let legacy = |part: usize| {
        let names: Vec<String> = (0..MANY / 2)
            .map(|n| format!("legacy-{part}-{n}.example.com"))
            .collect();
        certificate(
            &format!("legacy-{part}"),
            &format!("  dnsNames: [{}]\n", names.join(", ")),
        )
    };
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web(90)),
        ("legacy-names.yaml", LEGACY_NAMES),
        ("legacy.rego", LEGACY_REGO),
        (
            "sinks.yaml",
            &format!("{FINDINGS_JIRA}---\n{FAILURES_JIRA}"),
        ),
    ]);
    configure(&host, port, &jira_endpoint(&host, &fake));
    let mut daemon = start(&host, port);
    host.repo.write("legacy-1.yaml", legacy(1));
    host.repo.write("legacy-2.yaml", legacy(2));
    host.repo.commit("Certificates with legacy names");
    break_a_certificate(&host);
    daemon.wait_until("every problem has its issue", || {
        let records = tickets(&host);
        records.len() == MANY + 1
            && records
                .iter()
                .all(|r| r["state"] == "open" && r["ticket"]["id"].is_string())
    });
    assert_eq!(fake.issues().len(), MANY + 1, "one issue per problem");
    let of_sink = |sink: &str| -> BTreeSet<String> {
        tickets(&host)
            .iter()
            .filter(|r| r["sink"] == sink)
            .filter_map(|r| r["ticket"]["id"].as_str().map(str::to_owned))
            .collect()
    };
    let findings = of_sink("security-jira");
    let failures = of_sink("failures-jira");
    assert_eq!((findings.len(), failures.len()), (MANY, 1));

    // A restart: the first poll of each sink starts the log afresh.
    daemon.terminate();
    drop(daemon);
    let from = fake.log().len();
    let daemon = start(&host, port);
    let since = || fake.log()[from..].to_vec();
    let pages_of = |ids: &BTreeSet<String>| -> Vec<Vec<String>> {
        since()
            .iter()
            .filter(|r| r.method == "POST" && r.path == SEARCH)
            .map(asked)
            .filter(|asked| asked.iter().any(|id| ids.contains(id)))
            .collect()
    };
    daemon.wait_until("three polls of each sink", || {
        pages_of(&findings).len() >= 6 && !pages_of(&failures).is_empty()
    });
    daemon.wait_until("three polls of the small sink", || {
        pages_of(&failures).len() >= 3
    });
    let log = since();
    assert_eq!(
        not_searches(&log),
        Vec::<String>::new(),
        "a restart with nothing new makes no other request"
    );
    for request in &log {
        let ids = asked(request);
        let mine = ids.iter().all(|id| findings.contains(id))
            || ids.iter().all(|id| failures.contains(id));
        assert!(mine, "a search mixes sinks or asks of others: {ids:?}");
        assert!(request.body["maxResults"].as_u64() <= Some(100));
    }
    assert!(rounds(&pages_of(&findings), &findings, 2) >= 2);
    assert!(rounds(&pages_of(&failures), &failures, 1) >= 3);
    assert!(fake.invalid().is_empty(), "{:?}", fake.invalid());
}

/// Two Jira sites: `first` takes the violations of `max-validity` (the web certificate
/// violates it), `second` the failed certificates (one fails); each has its issue, and has
/// been read back at least once.
struct TwoSites {
    // Dropped in this order: the daemon before the stand-ins and the host's files.
    daemon: Daemon,
    first: FakeJira,
    second: FakeJira,
    host: Host,
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

fn two_sites() -> TwoSites {
    let runtime = runtime();
    let first = runtime.block_on(FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)));
    let second = runtime.block_on(FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)));
    let port = free_port();
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web(400)),
        ("max-validity.yaml", MAX_VALIDITY),
        ("validity.rego", VALIDITY_REGO),
        (
            "sinks.yaml",
            &format!(
                "{FINDINGS_JIRA}---\n{}",
                FAILURES_JIRA.replace("endpoint: jira", "endpoint: second")
            ),
        ),
    ]);
    let endpoints = format!(
        "{}{}",
        jira_endpoint(&host, &first),
        jira_endpoint(&host, &second).replace("  jira:", "  second:")
    );
    configure(&host, port, &endpoints);
    let daemon = start(&host, port);
    break_a_certificate(&host);
    daemon.wait_until("each site has its issue, read back", || {
        first.issues().len() == 1
            && second.issues().len() == 1
            && searches(&first.log()) > 0
            && searches(&second.log()) > 0
    });
    TwoSites {
        daemon,
        first,
        second,
        host,
        port,
        _runtime: runtime,
    }
}

/// A 429 with `Retry-After` on a poll holds that site's polls for as long as it says: while
/// another Jira site is polled three times, the one that asked to wait an hour hears nothing.
#[test]
fn a_poll_answered_429_waits_as_long_as_retry_after_says() {
    let sites = two_sites();
    let (daemon, limited, other) = (&sites.daemon, &sites.first, &sites.second);
    limited.then(jira_fake::Trick::Answer {
        status: 429,
        body: r#"{"errorMessages":["Rate limit exceeded."]}"#.into(),
        retry_after: Some(3600),
    });
    daemon.wait_until("a poll is answered 429", || {
        limited.state().tricks.is_empty()
    });
    let asked = limited.log().len();
    assert_eq!(
        limited.log().last().map(|r| r.path.as_str()),
        Some(SEARCH),
        "the 429 answered a poll"
    );
    let polled = searches(&other.log());
    daemon.wait_until("the other site is polled three times", || {
        searches(&other.log()) >= polled + 3
    });
    assert_eq!(
        limited.log().len(),
        asked,
        "the site that said to wait an hour was asked again: {:?}",
        &limited.calls()[asked - 1..]
    );
}

/// The state database of the host, as the daemon keeps it.
fn state_db(host: &Host) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(host.dir.path().join("state/gitward.db"))
        .expect("the state database");
    db.busy_timeout(std::time::Duration::from_secs(10))
        .expect("a busy timeout");
    db
}

/// An open ticket past its due date is told once, as `ticket.sla_breached`, through the
/// other sinks, and `gitward tickets` and `/status` show it breached.
#[test]
fn an_sla_breach_is_told_once_through_the_other_sinks() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)));
    let port = free_port();
    let audit = "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: audit}\nspec:\n  type: file\n  endpoint: audit\n  events: [ticket.sla_breached]\n  minSeverity: info\n";
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web(90)),
        ("sinks.yaml", &format!("{FAILURES_JIRA}---\n{audit}")),
    ]);
    let audit_file = host.dir.path().join("audit.jsonl");
    configure(
        &host,
        port,
        &format!(
            "{}  audit: {{url: \"file://{}\"}}\n",
            jira_endpoint(&host, &fake),
            audit_file.display()
        ),
    );
    let daemon = start(&host, port);
    break_a_certificate(&host);
    daemon.wait_until("an issue is created", || fake.issues().len() == 1);
    daemon_record(&host, &daemon, "SEC-1");
    let breaches = || -> Vec<Value> {
        std::fs::read_to_string(&audit_file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON event"))
            .filter(|e| e["type"] == "dev.gitward.ticket.sla_breached")
            .collect()
    };
    assert!(breaches().is_empty());

    // The days pass: its due date is behind. (Set again until the daemon tells it, as a
    // poll under way writes back the record it read.)
    let db = state_db(&host);
    daemon.wait_until("the breach is told", || {
        db.execute(
            "UPDATE tickets SET due = '2020-01-02' WHERE sink = 'failures-jira'",
            [],
        )
        .expect("the update");
        !breaches().is_empty()
    });
    let told = breaches();
    let event = &told[0];
    assert_eq!(event["subject"], "Certificate/broken");
    assert_eq!(event["data"]["severity"], "high");
    assert_eq!(event["data"]["details"]["ticket"], "SEC-1");
    assert_eq!(event["data"]["details"]["sink"], "failures-jira");
    assert_eq!(event["data"]["details"]["due"], "2020-01-02");
    assert_eq!(
        event["data"]["details"]["url"],
        format!("{}/browse/SEC-1", fake.url()).as_str()
    );
    assert!(
        event["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("SEC-1") && m.contains("2020-01-02")),
        "{event}"
    );
    assert!(tickets_text(&host).contains("2020-01-02 (breached)"));
    let shown = status(port)["tickets"].clone();
    assert_eq!(shown[0]["breached"], true, "{shown}");

    // Told once: three more polls tell nothing new.
    let polled = searches(&fake.log());
    daemon.wait_until("three more polls", || searches(&fake.log()) >= polled + 3);
    assert_eq!(breaches().len(), 1, "{:?}", breaches());
    only_creates(&fake, 1);
}

/// ServiceNow: a reassignment is followed; a record a person closes while the certificate
/// still fails is read-only, so the next commit opens a new one; a canceled record counts as
/// won't-fix and is left alone until the problem clears.
#[test]
fn servicenow_people_reassign_close_and_cancel_incidents() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeServiceNow::start(&basic(SNOW_USER, SNOW_PASSWORD)));
    let port = free_port();
    let host = servicenow_host(&fake, port);
    let daemon = start(&host, port);
    break_a_certificate(&host);
    daemon.wait_until("an incident is opened", || {
        fake.records("incident").len() == 1
    });
    let first = fake.records("incident")[0].clone();
    let (first_id, first_number) = (first["sys_id"].clone(), first["number"].clone());
    daemon_record(&host, &daemon, &first_number);

    fake.person_assigns(&first_id, "Grace Hopper");
    daemon.wait_until("the assignee is learned", || {
        tickets_text(&host).contains("Grace Hopper")
    });

    // Closed by a person while the problem lasts: closed, then a new incident on the next
    // commit, as a closed record cannot be reopened.
    fake.person_closes(&first_id, "Solution provided");
    daemon.wait_until("the close is learned", || {
        state_of(&host, &first_number).as_deref() == Some("closed")
    });
    unrelated_commit(&host, 1);
    daemon.wait_until("a new incident is opened", || {
        fake.records("incident").len() == 2
    });
    let second = fake
        .records("incident")
        .into_iter()
        .find(|r| r["sys_id"] != first_id)
        .expect("the new incident");
    assert_eq!(second["correlation_id"], first["correlation_id"]);
    let second_number = second["number"].clone();
    daemon.wait_until("the new incident is recorded", || {
        state_of(&host, &second_number).as_deref() == Some("open")
    });
    assert_eq!(fake.record(&first_id).expect("the first")["state"], "7");
    assert!(!tickets_text(&host).contains(&first_number));

    // Canceled: accepted; the next commit that still has the problem changes nothing.
    fake.person_cancels(&second["sys_id"]);
    daemon.wait_until("the cancel is learned", || {
        state_of(&host, &second_number).as_deref() == Some("accepted")
    });
    fake.clear_log();
    let still = unrelated_commit(&host, 2);
    daemon.wait_until("the commit is reconciled and the sink idle", || {
        reconciled(&host, &still) && sink_state(port, "incidents")["backlog"] == 0
    });
    let reads = |log: &[servicenow_fake::Logged]| log.iter().filter(|l| l.method == "GET").count();
    let polled = reads(&fake.log());
    daemon.wait_until("two more polls", || reads(&fake.log()) >= polled + 2);
    let writes: Vec<String> = fake
        .log()
        .iter()
        .filter(|l| l.method != "GET")
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "nothing but reads");
    assert_eq!(fake.records("incident").len(), 2);
    assert_eq!(state_of(&host, &second_number).as_deref(), Some("accepted"));

    // The fix clears it: nothing is sent, and it is no longer listed.
    host.repo.remove("broken.yaml");
    host.repo
        .commit("Remove the certificate that cannot be written");
    daemon.wait_until("the problem is no longer listed", || {
        tickets(&host).is_empty()
    });
    assert!(
        fake.log().iter().all(|l| l.method == "GET"),
        "nothing but reads"
    );
    assert_eq!(
        fake.record(&second["sys_id"]).expect("the second")["state"],
        "8"
    );
    assert!(fake.invalid().is_empty(), "{:?}", fake.invalid());
}

/// An issue gone from Jira (deleted, or moved where the credential cannot see it) is learned
/// by polling; the next commit that still has its problem opens a new issue.
#[test]
fn an_issue_gone_from_jira_is_replaced_on_the_next_commit() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeJira::cloud(&basic(JIRA_USER, JIRA_TOKEN)));
    let port = free_port();
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        ("web.yaml", &web(90)),
        ("sinks.yaml", FAILURES_JIRA),
    ]);
    configure(&host, port, &jira_endpoint(&host, &fake));
    let daemon = start(&host, port);
    break_a_certificate(&host);
    daemon.wait_until("an issue is created", || fake.issues().len() == 1);
    daemon_record(&host, &daemon, "SEC-1");

    // Gone from sight: moved to a project the credential cannot see (the stand-in numbers
    // issues by count, so a deletion would give the next one the same key).
    {
        let mut state = fake.state();
        let issue = state
            .issues
            .iter_mut()
            .find(|i| i.key == "SEC-1")
            .expect("the issue");
        issue.key = "HIDDEN-1".to_owned();
        issue.id = 90_001;
    }
    daemon.wait_until("the deletion is learned", || {
        state_of(&host, "SEC-1").as_deref() == Some("closed")
    });
    let record = daemon_record(&host, &daemon, "SEC-1");
    assert_eq!(record["ticket"]["status"], "not found");

    unrelated_commit(&host, 1);
    daemon.wait_until("a new issue is created", || {
        fake.issues().iter().any(|i| i.key == "SEC-2")
    });
    daemon.wait_until("the new issue is recorded", || {
        state_of(&host, "SEC-2").as_deref() == Some("open")
    });
    let listed = tickets_text(&host);
    assert!(!listed.contains("SEC-1 "), "{listed}");
    assert!(fake.invalid().is_empty(), "{:?}", fake.invalid());
}

/// The status branch records each problem's ticket as it stands: once an incident is opened
/// its number is there without another commit, and the status of the commit that fixed the
/// problem does not list its ticket as open.
#[test]
fn the_status_branch_follows_the_tickets() {
    let runtime = runtime();
    let fake = runtime.block_on(FakeServiceNow::start(&basic(SNOW_USER, SNOW_PASSWORD)));
    let port = free_port();
    let host = servicenow_host(&fake, port);
    let daemon = start(&host, port);
    break_a_certificate(&host);
    daemon.wait_until("an incident is opened", || {
        fake.records("incident").len() == 1
    });
    let number = fake.records("incident")[0]["number"].clone();
    daemon_record(&host, &daemon, &number);
    // One read of the branch, which the daemon may move meanwhile: absent is empty.
    let recorded = || {
        std::process::Command::new("git")
            .arg("-C")
            .arg(host.repo.path())
            .args(["show", "gitward/status:status/tickets/incidents.yaml"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    };
    daemon.wait_until("the status branch records the incident", || {
        recorded().contains(&number)
    });

    host.repo.remove("broken.yaml");
    let fix = host
        .repo
        .commit("Remove the certificate that cannot be written");
    daemon.wait_until("the incident is resolved", || {
        fake.records("incident")[0]["state"] == "6"
    });
    daemon.wait_until("the status branch records it resolved", || {
        let now = recorded();
        !now.contains("state: open") && reconciled(&host, &fix)
    });
    let lines = status_tickets(&host, &fix);
    assert!(
        lines.iter().all(|l| !l.contains(&number)),
        "the commit that fixed the problem lists its ticket: {lines:?}"
    );
}

/// Waits until the other site of `sites` has been polled three times more, and asserts that
/// `quiet` heard nothing meanwhile.
fn quiet_while_the_other_polls(sites: &TwoSites, quiet: &FakeJira, other: &FakeJira) {
    let asked = quiet.log().len();
    let polled = searches(&other.log());
    sites
        .daemon
        .wait_until("the other site is polled three times", || {
            searches(&other.log()) >= polled + 3
        });
    assert_eq!(
        quiet.log().len(),
        asked,
        "the site of the sink taken out was asked: {:?}",
        &quiet.calls()[asked..]
    );
}

/// Takes the sink of the first site out of the repository; the commit's sha.
fn take_the_first_sink_out(sites: &TwoSites) -> String {
    sites.host.repo.write(
        "sinks.yaml",
        FAILURES_JIRA.replace("endpoint: jira", "endpoint: second"),
    );
    let without = sites.host.repo.commit("No Jira sink for violations");
    sites.daemon.wait_until("the removal is reconciled", || {
        reconciled(&sites.host, &without)
    });
    without
}

/// A sink taken out of the repository goes once it owes nothing (at the reconcile after
/// the one that retires it), and from then on its tickets are not read back: while the
/// other site is polled three times, its site hears nothing.
#[test]
fn a_sink_taken_out_stops_polling_its_tickets() {
    let sites = two_sites();
    let (daemon, host) = (&sites.daemon, &sites.host);
    take_the_first_sink_out(&sites);
    // Retired, or already gone: a reconcile that writes the tickets' status may follow at once.
    let state = sink_state(sites.port, "security-jira");
    assert!(state.is_null() || state["retired"] == true, "{state}");
    let next = unrelated_commit(host, 1);
    daemon.wait_until("the retired sink is gone", || {
        reconciled(host, &next) && sink_state(sites.port, "security-jira").is_null()
    });
    quiet_while_the_other_polls(&sites, &sites.first, &sites.second);
    assert!(sites.first.invalid().is_empty() && sites.second.invalid().is_empty());
}

/// Once the commit that takes a sink out is applied, its problems are no longer listed
/// (`gitward tickets`, `/status`) and its tickets are no longer read back.
#[test]
fn a_sink_taken_out_forgets_its_problems_at_once() {
    let sites = two_sites();
    take_the_first_sink_out(&sites);
    let listed = tickets(&sites.host);
    assert!(
        listed.iter().all(|r| r["sink"] == "failures-jira"),
        "a removed sink's problems are listed: {listed:?}"
    );
    let shown = status(sites.port)["tickets"].clone();
    assert!(
        shown
            .as_array()
            .is_some_and(|t| t.iter().all(|r| r["sink"] == "failures-jira")),
        "{shown}"
    );
    quiet_while_the_other_polls(&sites, &sites.first, &sites.second);
}
