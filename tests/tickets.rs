//! Ticket sinks through the binary: a real repository and `gitward reconcile --once` against
//! stateful stand-ins of ServiceNow and Jira. A problem opens a ticket, its end resolves it,
//! a crash between a create and its record makes no second ticket, `gitward tickets` and the
//! status branch show them.

use crate::common;
use crate::fakes;
use crate::fakes::servicenow as servicenow_fake;

use std::path::Path;

use common::host::{Host, ISSUERS, certificate};
use servicenow_fake::FakeServiceNow;

const USER: &str = "gitward.bot";
const PASSWORD: &str = "s3cret-password";

fn basic() -> String {
    fakes::basic(USER, PASSWORD)
}

async fn gitward(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> common::Run {
    common::gitward_beside(dir, args, env).await
}

const RECONCILE: [&str; 4] = ["reconcile", "--once", "--config", "gitward.yaml"];

/// A host whose repository has a ServiceNow sink told of failed certificates.
fn servicenow_host(fake: &FakeServiceNow) -> Host {
    let sink = "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: incidents}\nspec:\n  type: servicenow\n  endpoint: snow\n  events: [certificate.failed]\n  minSeverity: high\n  servicenow:\n    sla: {high: 3}\n    fields: {u_resource: \"{{resource.kind}}/{{resource.name}}\"}\n";
    let host = Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "web.yaml",
            &certificate("web", "  dnsNames: [web.example.com]\n"),
        ),
        ("sinks.yaml", sink),
    ]);
    let password = host.dir.path().join("snow-password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    host.config(&format!(
        "endpoints:\n  snow: {{url: \"{}\", user: {USER}, tokenFile: {}}}\n",
        fake.url(),
        password.display()
    ));
    fake.add_column("incident", "u_resource");
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

fn status_file(host: &Host, path: &str) -> String {
    host.repo.git(&["show", &format!("gitward/status:{path}")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_certificate_opens_an_incident_and_its_removal_resolves_it() {
    let fake = FakeServiceNow::start(&basic()).await;
    let host = servicenow_host(&fake);
    let dir = host.dir.path();
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    assert!(fake.records("incident").is_empty(), "no problem, no ticket");

    break_a_certificate(&host);
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    let records = fake.records("incident");
    assert_eq!(records.len(), 1, "{records:?}");
    let incident = &records[0];
    assert!(
        incident["short_description"]
            .starts_with("[high] Certificate/broken: Certificate broken failed"),
        "{incident:?}"
    );
    assert_eq!(incident["correlation_display"], "gitward");
    assert!(incident["correlation_id"].starts_with("gitward-"));
    assert_eq!(incident["u_resource"], "Certificate/broken");
    assert_eq!(
        (incident["impact"].as_str(), incident["urgency"].as_str()),
        ("1", "2")
    );
    assert!(
        incident["description"].contains("broken.yaml"),
        "{}",
        incident["description"]
    );
    let number = incident["number"].clone();
    // Events carry the resource's environment, for receivers that rank by it.
    let events = gitward(
        dir,
        &[
            "events",
            "--config",
            "gitward.yaml",
            "--format",
            "json",
            "--type",
            "certificate.failed",
        ],
        &[],
    )
    .await
    .expect(0);
    let failed: serde_json::Value =
        serde_json::from_str(events.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(failed["data"]["details"]["env"], "prod", "{failed}");

    // `gitward tickets` lists it with its SLA; the same commit again files nothing new.
    let tickets = gitward(dir, &["tickets", "--config", "gitward.yaml"], &[])
        .await
        .expect(0);
    assert!(tickets.stdout.contains(&number), "{}", tickets.stdout);
    assert!(tickets.stdout.contains("incidents"), "{}", tickets.stdout);
    let due = (chrono::Utc::now().date_naive() + chrono::Days::new(3)).to_string();
    assert!(tickets.stdout.contains(&due), "{}", tickets.stdout);
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    assert_eq!(fake.records("incident").len(), 1);

    // The next status commit records the ticket on the status branch.
    host.repo.write("note.txt", "another change");
    host.repo
        .commit("Another change, the certificate still broken");
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    let sys_id = fake.records("incident")[0]["sys_id"].clone();
    let noted = fake.journal(&sys_id).len();
    assert_eq!(noted, 1, "a new commit that still fails: one work note");
    // Retries of the same commit tell nothing new: no second note.
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    assert_eq!(fake.journal(&sys_id).len(), noted);
    let recorded = status_file(&host, "status/tickets/incidents.yaml");
    assert!(recorded.contains(&number), "{recorded}");
    assert!(recorded.contains("state: open"), "{recorded}");
    assert!(!recorded.contains(PASSWORD) && !recorded.contains(dir.to_str().unwrap()));

    // Removing the certificate clears the problem: the incident is resolved with a close
    // code from the instance's choices and notes naming the commit.
    host.repo.remove("broken.yaml");
    let fix = host
        .repo
        .commit("Remove the certificate that cannot be written");
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    let records = fake.records("incident");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["state"], "6", "{:?}", records[0]);
    assert_eq!(records[0]["close_code"], "Solution provided");
    assert!(
        records[0]["close_notes"].contains(&fix[..12]),
        "{:?}",
        records[0]
    );
    let tickets = gitward(dir, &["tickets", "--config", "gitward.yaml"], &[])
        .await
        .expect(0);
    assert!(!tickets.stdout.contains(&number), "{}", tickets.stdout);
    assert!(fake.invalid().is_empty(), "{:?}", fake.invalid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_create_and_its_record_makes_no_second_ticket() {
    let fake = FakeServiceNow::start(&basic()).await;
    let host = servicenow_host(&fake);
    let dir = host.dir.path();
    gitward(dir, &RECONCILE, &[]).await.expect(0);
    break_a_certificate(&host);
    // Crash at each point until the run passes the one after the create: the reconcile's
    // own points come first, then the sink's.
    let mut crashed_after_create = false;
    for point in 1..60 {
        let point = point.to_string();
        let run = gitward(dir, &RECONCILE, &[("GITWARD_FAILPOINT", &point)]).await;
        if run.stderr.contains("ticket created, not recorded") {
            crashed_after_create = true;
            break;
        }
        assert!(
            fake.records("incident").len() <= 1,
            "crash at point {point}: {:?}",
            fake.records("incident")
        );
    }
    assert!(
        crashed_after_create,
        "the crash point after a create was reached"
    );
    assert_eq!(fake.records("incident").len(), 1, "created once");
    gitward(dir, &RECONCILE, &[]).await.expect(1);
    assert_eq!(
        fake.records("incident").len(),
        1,
        "looked up by correlation_id, not created again"
    );
    let lookups = fake
        .log()
        .iter()
        .filter(|l| {
            l.method == "GET"
                && l.param("sysparm_query")
                    .is_some_and(|q| q.contains("correlation_id="))
        })
        .count();
    assert!(lookups >= 1, "{:?}", fake.log());
    let tickets = gitward(
        dir,
        &["tickets", "--config", "gitward.yaml", "--format", "json"],
        &[],
    )
    .await
    .expect(0);
    let listed: serde_json::Value = serde_json::from_str(&tickets.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["state"], "open");
    assert_eq!(
        listed[0]["ticket"]["key"],
        fake.records("incident")[0]["number"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_blocking_longer_than_its_open_after_gets_a_ticket_until_it_lets_through() {
    let fake = FakeServiceNow::start(&basic()).await;
    let host = servicenow_host(&fake);
    host.repo.write(
        "sinks.yaml",
        "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: incidents}\nspec:\n  type: servicenow\n  endpoint: snow\n  events: [gate.blocked]\n  servicenow: {}\n",
    );
    host.repo.write(
        "gate.yaml",
        "apiVersion: gitward/v1\nkind: Gate\nmetadata: {name: signed-only}\nspec:\n  appliesTo: {kinds: [Certificate], selector: {owner: payments}}\n  require:\n    signedBy: [alice@example.com]\n  openAfter: 4h\n",
    );
    host.repo.commit(
        "Payments certificates only from signed commits; a ticket when that blocks 4 hours",
    );
    let dir = host.dir.path();
    let start = chrono::Utc::now();
    let reconcile_at = |hours: i64| {
        let at = (start + chrono::Duration::hours(hours)).to_rfc3339();
        async move {
            gitward(
                dir,
                &[
                    "reconcile",
                    "--once",
                    "--config",
                    "gitward.yaml",
                    "--now",
                    &at,
                ],
                &[],
            )
            .await
        }
    };
    reconcile_at(0).await.expect(0);
    let payments = certificate("pay", "  dnsNames: [pay.example.com]\n")
        .replace("owner: web", "owner: payments");
    host.repo.write("pay.yaml", payments);
    host.repo.commit("A payments certificate, unsigned");
    reconcile_at(1).await.expect(1);
    reconcile_at(2).await.expect(1);
    assert!(
        fake.records("incident").is_empty(),
        "blocked, not for long yet"
    );
    reconcile_at(6).await.expect(1);
    let records = fake.records("incident");
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0]["short_description"].contains("gate signed-only has blocked the branch since"),
        "{:?}",
        records[0]
    );
    // Still blocked an hour later: the same problem, no second ticket and no comment.
    reconcile_at(7).await.expect(1);
    assert_eq!(fake.records("incident").len(), 1);
    assert!(fake.journal(&records[0]["sys_id"]).is_empty());

    host.repo.remove("pay.yaml");
    host.repo.commit("No payments certificate after all");
    reconcile_at(8).await.expect(0);
    let records = fake.records("incident");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["state"], "6", "{:?}", records[0]);
    assert!(
        records[0]["close_notes"].contains("no longer blocks"),
        "{:?}",
        records[0]
    );
}
