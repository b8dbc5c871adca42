//! ServiceNow tickets against a stateful stand-in for the Table API on loopback
//! (`fakes/servicenow.rs`): close codes read from the instance's choice list, records filed
//! with the fields the documentation names, found again by `correlation_id` after a lost
//! answer (and never believed when the instance ignored the query), changed, resolved and
//! reopened with one PATCH each, read back a hundred at a time, and hostile answers.

use crate::fakes;
use crate::fakes::servicenow as servicenow_fake;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::NaiveDate;
use serde_json::{Value, json};

use fakes::guard;
use gitward::config::Endpoint;
use gitward::model::{FindingSeverity, ServiceNowSettings};
use gitward::tickets::servicenow::{PAUSE_AFTER_429, ServiceNow};
use gitward::tickets::{Description, Failure, Note, Place, Problem, Ticket, TicketSystem};
use servicenow_fake::{BOT_ID, FakeServiceNow, GROUP_ID, GROUP_NAME, Trick};

const USER: &str = "gitward.bot";
const PASSWORD: &str = "Tr0ub4dor-and-3";

fn basic() -> String {
    fakes::basic(USER, PASSWORD)
}

/// A fake instance and what the host gives a sink for it.
struct Setup {
    fake: FakeServiceNow,
    endpoint: Endpoint,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_with(USER, PASSWORD, "2s").await
}

async fn setup_with(user: &str, password: &str, timeout: &str) -> Setup {
    let fake = FakeServiceNow::start(&basic()).await;
    let dir = tempfile::tempdir().expect("a directory");
    let token = dir.path().join("servicenow-password");
    std::fs::write(&token, format!("{password}\n")).expect("the password file");
    let endpoint = fakes::endpoint(json!({
        "url": format!("{}/", fake.url()),
        "user": user,
        "tokenFile": token,
        "timeout": timeout,
    }));
    Setup {
        fake,
        endpoint,
        _dir: dir,
    }
}

impl Setup {
    fn system(&self, settings: Value) -> ServiceNow {
        let settings: ServiceNowSettings = serde_json::from_value(settings).expect("settings");
        ServiceNow::new(&settings, &self.endpoint).expect("a ServiceNow system")
    }

    async fn prepared(&self, settings: Value) -> ServiceNow {
        let mut system = self.system(settings);
        guard(system.prepare()).await.expect("prepared");
        self.fake.clear_log();
        system
    }

    /// Where people open record `id`.
    fn link(&self, id: &str) -> String {
        format!(
            "{}/nav_to.do?uri=incident.do%3Fsys_id%3D{id}",
            self.fake.url()
        )
    }
}

fn tag(n: usize) -> String {
    format!("gitward-{n:04}-9f1c2e7d")
}

fn problem(n: usize, severity: FindingSeverity) -> Problem {
    let mut event = fakes::event(n, "RSA key of web is 1024 bits, below 2048").event;
    event.data.severity = severity;
    Problem {
        key: format!("finding/fingerprint-{n}"),
        tag: tag(n),
        severity,
        title: format!("web-{n}: RSA key below 2048 bits"),
        description: Description {
            what: "RSA key of web is 1024 bits, below 2048".into(),
            place: Some(Place {
                text: "certificates/web.yaml:3 at 0123456789ab".into(),
                url: Some(
                    "https://git.example.com/ops/pki/blob/0123456789ab/certificates/web.yaml#L3"
                        .into(),
                ),
            }),
            why: "policy min-key-size (deny)".into(),
            fix: "set privateKey.size to 3072".into(),
            compliance: vec!["PCI-DSS 4.0 4.2.1".into()],
            commit: Some("0123456789ab by Ann Example".into()),
        },
        due: Some(NaiveDate::from_ymd_opt(2026, 2, 1).expect("a date")),
        event,
        previous: None,
    }
}

fn note(text: &str) -> Note {
    Note {
        text: text.into(),
        link: Some("https://git.example.com/ops/pki/commit/89abcdef0123".into()),
    }
}

fn retry(result: Result<impl std::fmt::Debug, Failure>) -> (String, Option<Duration>) {
    match result {
        Err(Failure::Retry { error, after }) => (error, after),
        other => panic!("expected a retry, got {other:?}"),
    }
}

fn refused(result: Result<impl std::fmt::Debug, Failure>) -> String {
    match result {
        Err(Failure::Refused { answer }) => answer,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The ids of `count` incidents made on the instance directly.
fn seeded(fake: &FakeServiceNow, count: usize) -> Vec<String> {
    (0..count)
        .map(|n| fake.seed("incident", &[("correlation_id", &tag(n))]))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The stand-in itself

#[tokio::test]
async fn the_fake_answers_a_create_as_the_documented_example() {
    let setup = setup().await;
    let answer = reqwest::Client::new()
        .post(format!("{}/api/now/table/incident", setup.fake.url()))
        .header("Authorization", basic())
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .body(
            json!({"short_description": "Unable to connect to office wifi",
                   "assignment_group": GROUP_ID, "urgency": "2", "impact": "2"})
            .to_string(),
        )
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 201);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = answer.json().await.expect("JSON");
    let example: Value =
        serde_json::from_str(servicenow_fake::CREATED_EXAMPLE).expect("the example");
    let (ours, theirs) = (
        body["result"].as_object().unwrap(),
        example["result"].as_object().unwrap(),
    );
    assert_eq!(
        ours.keys().collect::<BTreeSet<_>>(),
        theirs.keys().collect::<BTreeSet<_>>()
    );
    for (name, value) in theirs {
        let kind = |v: &Value| match v {
            Value::Object(o) => format!("{:?}", o.keys().collect::<BTreeSet<_>>()),
            Value::String(_) => "string".to_owned(),
            other => format!("{other}"),
        };
        assert_eq!(kind(&ours[name]), kind(value), "{name}");
    }
    assert_eq!(
        ours["priority"], "3",
        "urgency 2 and impact 2 give priority 3"
    );
    assert!(location.ends_with(ours["sys_id"].as_str().unwrap()));
    assert!(
        setup.fake.invalid().is_empty(),
        "{:?}",
        setup.fake.invalid()
    );
}

// ---------------------------------------------------------------------------------------
// prepare

#[tokio::test]
async fn prepare_reads_the_close_codes_and_picks_a_preferred_one() {
    let setup = setup().await;
    setup
        .fake
        .add_choice("incident", "close_code", "Closed/Resolved by Caller", true);
    let mut system = setup.system(json!({}));
    guard(system.prepare()).await.expect("prepared");
    // "Duplicate" comes first in the list; "Solution provided" is preferred.
    assert_eq!(system.close_code(), Some("Solution provided"));
    let log = setup.fake.log();
    assert_eq!(log.len(), 1, "{log:?}");
    let read = &log[0];
    assert_eq!(
        (read.method.as_str(), read.path.as_str()),
        ("GET", "/api/now/table/sys_choice")
    );
    assert_eq!(
        read.param("sysparm_query"),
        Some("name=incident^element=close_code^inactive=false^ORDERBYsequence")
    );
    assert_eq!(read.param("sysparm_limit"), Some("100"));
    let fields: BTreeSet<&str> = read.param("sysparm_fields").unwrap().split(',').collect();
    assert!(fields.is_superset(&BTreeSet::from(["value", "label", "language"])));
    assert_eq!(read.authorization.as_deref(), Some(basic().as_str()));
    assert_eq!(read.accept.as_deref(), Some("application/json"));
    assert_eq!(system.requests(), 1);
    assert!(
        setup.fake.invalid().is_empty(),
        "{:?}",
        setup.fake.invalid()
    );

    // Without a preferred code, the instance's first.
    let setup = self::setup().await;
    setup.fake.add_table("u_compliance", &["correlation_id"]);
    setup
        .fake
        .add_choices("u_compliance", &["Fixed by gitward", "Wontfix"]);
    let mut system = setup.system(json!({"table": "u_compliance"}));
    guard(system.prepare()).await.expect("prepared");
    assert_eq!(system.close_code(), Some("Fixed by gitward"));
}

#[tokio::test]
async fn a_close_code_the_instance_lacks_is_refused_naming_the_allowed_ones() {
    let setup = setup().await;
    setup
        .fake
        .add_choice("incident", "close_code", "Closed/Resolved by Caller", true);
    let mut system = setup.system(json!({"closeCode": "Fixed"}));
    let answer = refused(guard(system.prepare()).await);
    assert!(answer.contains("close code `Fixed`"), "{answer}");
    for allowed in ["`Duplicate`", "`Solution provided`", "`User error`"] {
        assert!(answer.contains(allowed), "{answer}");
    }
    assert!(!answer.contains("Closed/Resolved by Caller"), "{answer}");

    let mut system = setup.system(json!({"closeCode": "Workaround provided"}));
    guard(system.prepare()).await.expect("prepared");
    assert_eq!(system.close_code(), Some("Workaround provided"));
}

#[tokio::test]
async fn a_custom_table_takes_task_s_close_codes() {
    let setup = setup().await;
    setup.fake.add_table("u_findings", &["correlation_id"]);
    setup
        .fake
        .add_choices("task", &["Solved (Work Around)", "Solved (Permanently)"]);
    let mut system = setup.system(json!({"table": "u_findings"}));
    guard(system.prepare()).await.expect("prepared");
    assert_eq!(system.close_code(), Some("Solved (Permanently)"));
    let queries: Vec<String> = setup
        .fake
        .log()
        .iter()
        .map(|r| r.param("sysparm_query").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        queries,
        [
            "name=u_findings^element=close_code^inactive=false^ORDERBYsequence",
            "name=task^element=close_code^inactive=false^ORDERBYsequence",
        ]
    );
}

#[tokio::test]
async fn close_codes_of_other_lists_are_not_believed() {
    let setup = setup().await;
    setup
        .fake
        .add_choice("incident", "category", "Network", false);
    setup
        .fake
        .add_choice("problem", "close_code", "Fix Applied", false);
    setup.fake.then(Trick::IgnoreQuery);
    let mut system = setup.system(json!({"closeCode": "Fix Applied"}));
    let answer = refused(guard(system.prepare()).await);
    assert!(answer.contains("`Solution provided`"), "{answer}");
    assert!(!answer.contains("`Network`"), "{answer}");
}

#[tokio::test]
async fn a_refused_credential_is_retried_with_a_hint_and_without_the_secret() {
    let setup = setup_with(USER, "wrong-password-123", "2s").await;
    let mut system = setup.system(json!({}));
    let (error, _) = retry(guard(system.prepare()).await);
    assert!(
        error.starts_with("HTTP 401: User Not Authenticated"),
        "{error}"
    );
    assert!(error.contains("tokenFile"), "{error}");
    assert!(!error.contains("wrong-password-123"), "{error}");
}

#[tokio::test]
async fn an_oauth_token_goes_as_a_bearer() {
    let fake = FakeServiceNow::start("Bearer oauth-access-token-0123").await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "oauth-access-token-0123\n").unwrap();
    let endpoint = fakes::endpoint(json!({"url": fake.url(), "tokenFile": token}));
    let settings: ServiceNowSettings = serde_json::from_value(json!({})).unwrap();
    let mut system = ServiceNow::new(&settings, &endpoint).expect("a system");
    guard(system.prepare()).await.expect("prepared");
    assert_eq!(
        fake.log()[0].authorization.as_deref(),
        Some("Bearer oauth-access-token-0123")
    );
}

// ---------------------------------------------------------------------------------------
// create and find

#[tokio::test]
async fn create_files_the_problem_with_its_levels_tag_due_date_and_fields() {
    let setup = setup().await;
    setup.fake.add_column("incident", "u_source");
    let system = setup
        .prepared(json!({
            "assignmentGroup": GROUP_NAME,
            "caller": BOT_ID,
            "fields": {"u_source": "{{source}} {{resource.name}}"},
        }))
        .await;
    let levels = [
        (FindingSeverity::Critical, "1", "1"),
        (FindingSeverity::High, "1", "2"),
        (FindingSeverity::Medium, "2", "2"),
        (FindingSeverity::Low, "3", "3"),
        (FindingSeverity::Info, "3", "3"),
    ];
    for (n, (severity, impact, urgency)) in levels.into_iter().enumerate() {
        let mut problem = problem(n, severity);
        if severity == FindingSeverity::Info {
            problem.due = None;
        }
        let ticket = guard(system.create(&problem)).await.expect("created");
        let record = setup.fake.record(&ticket.id).expect("the record");
        assert_eq!(
            ticket,
            Ticket {
                id: record["sys_id"].clone(),
                key: record["number"].clone(),
                url: setup.link(&ticket.id),
                status: "New".into(),
                done: false,
                accepted: false,
                assignee: None,
            }
        );
        assert!(ticket.key.starts_with("INC00100"), "{}", ticket.key);
        let sent = setup.fake.log().last().cloned().expect("a request");
        assert_eq!(
            (sent.method.as_str(), sent.path.as_str()),
            ("POST", "/api/now/table/incident")
        );
        assert_eq!(sent.content_type.as_deref(), Some("application/json"));
        assert_eq!(sent.param("sysparm_exclude_reference_link"), Some("true"));
        let fields = sent.param("sysparm_fields").unwrap_or_default();
        assert!(fields.starts_with("sys_id,number,state"), "{fields}");
        let due = (severity != FindingSeverity::Info).then_some("2026-02-01 23:59:59");
        let mut expected = json!({
            "short_description": format!("web-{n}: RSA key below 2048 bits"),
            "description": record["description"],
            "correlation_id": tag(n),
            "correlation_display": "gitward",
            "impact": impact,
            "urgency": urgency,
            "assignment_group": GROUP_NAME,
            "caller_id": BOT_ID,
            "u_source": format!("https://git.example.com/ops/pki.git web-{n}"),
        });
        if let Some(due) = due {
            expected["due_date"] = json!(due);
        }
        assert_eq!(sent.body, Some(expected), "{severity}");
        assert_eq!(record["impact"], impact);
        assert_eq!(record["urgency"], urgency);
        assert_eq!(record["assignment_group"], GROUP_ID);
        assert_eq!(record["due_date"], due.unwrap_or_default());
    }
    let record = &setup.fake.records("incident")[0];
    let description = &record["description"];
    for part in [
        "RSA key of web is 1024 bits, below 2048\n\n",
        "Where: certificates/web.yaml:3 at 0123456789ab\nhttps://git.example.com/ops/pki/blob/",
        "Why it matters: policy min-key-size (deny)",
        "How to fix: set privateKey.size to 3072",
        "Compliance: PCI-DSS 4.0 4.2.1",
        "Commit: 0123456789ab by Ann Example",
        "(correlation id gitward-0000-9f1c2e7d)",
    ] {
        assert!(description.contains(part), "{part}: {description}");
    }
    assert_eq!(
        system.requests(),
        1 + 5,
        "the close codes, then one request a record"
    );
    assert!(
        setup.fake.invalid().is_empty(),
        "{:?}",
        setup.fake.invalid()
    );
}

#[tokio::test]
async fn impact_and_urgency_follow_the_sink_s_mapping() {
    let setup = setup().await;
    let system = setup
        .prepared(json!({"impact": {"high": "2"}, "urgency": {"low": "2"}}))
        .await;
    let high = guard(system.create(&problem(1, FindingSeverity::High)))
        .await
        .expect("created");
    let low = guard(system.create(&problem(2, FindingSeverity::Low)))
        .await
        .expect("created");
    let levels = |id: &str| {
        let r = setup.fake.record(id).unwrap();
        (r["impact"].clone(), r["urgency"].clone())
    };
    assert_eq!(levels(&high.id), ("2".into(), "2".into()));
    assert_eq!(levels(&low.id), ("3".into(), "2".into()));
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_not_made_again() {
    let setup = setup().await;
    let system = setup.prepared(json!({})).await;
    setup.fake.then(Trick::ActThenDrop);
    let problem = problem(7, FindingSeverity::High);
    let (error, _) = retry(guard(system.create(&problem)).await);
    assert!(!error.is_empty());
    let records = setup.fake.records("incident");
    assert_eq!(records.len(), 1, "the create was carried out");

    let found = guard(system.find(&problem.tag))
        .await
        .expect("searched")
        .expect("found");
    assert_eq!(found.id, records[0]["sys_id"]);
    assert_eq!(found.key, records[0]["number"]);
    assert_eq!(found.url, setup.link(&found.id));
    let search = setup.fake.log().last().cloned().unwrap();
    assert_eq!(
        (search.method.as_str(), search.path.as_str()),
        ("GET", "/api/now/table/incident")
    );
    assert_eq!(
        search.param("sysparm_query"),
        Some("correlation_id=gitward-0007-9f1c2e7d^active=true^ORDERBYsys_created_on")
    );
    assert_eq!(search.param("sysparm_limit"), Some("1"));
    assert!(
        search
            .param("sysparm_fields")
            .unwrap_or_default()
            .contains("correlation_id")
    );

    assert_eq!(guard(system.find(&tag(8))).await.expect("searched"), None);
    assert_eq!(setup.fake.records("incident").len(), 1);
    assert_eq!(system.requests(), 1 + 3);
}

#[tokio::test]
async fn find_passes_over_inactive_records_and_takes_the_oldest() {
    let setup = setup().await;
    let system = setup.prepared(json!({})).await;
    let closed = setup.fake.seed("incident", &[("correlation_id", &tag(1))]);
    setup.fake.person_closes(&closed, "Solution provided");
    let first = setup.fake.seed("incident", &[("correlation_id", &tag(1))]);
    let _second = setup.fake.seed("incident", &[("correlation_id", &tag(1))]);
    let found = guard(system.find(&tag(1))).await.unwrap().unwrap();
    assert_eq!(found.id, first);
}

#[tokio::test]
async fn find_refuses_a_row_that_does_not_carry_the_tag() {
    // A table without `correlation_id`: the instance ignores the query and answers every row.
    let setup = setup().await;
    setup.fake.add_table("u_findings", &["short_description"]);
    setup.fake.add_choices("u_findings", &["Done"]);
    setup
        .fake
        .seed("u_findings", &[("short_description", "someone else's")]);
    let system = setup.prepared(json!({"table": "u_findings"})).await;
    let answer = refused(guard(system.find(&tag(1))).await);
    assert!(answer.contains("does not carry it"), "{answer}");
    assert!(answer.contains("u_findings"), "{answer}");

    // An instance ignoring the query for its own reasons.
    let setup = self::setup().await;
    let system = setup.prepared(json!({})).await;
    seeded(&setup.fake, 3);
    setup.fake.then(Trick::IgnoreQuery);
    let answer = refused(guard(system.find(&tag(9))).await);
    assert!(answer.contains("gitward-0009-9f1c2e7d"), "{answer}");
}

#[tokio::test]
async fn values_from_the_repository_cannot_change_a_query() {
    let setup = setup().await;
    let system = setup.prepared(json!({})).await;
    for hostile in [
        "x^ORactive=false",
        "x\nORDERBYnumber",
        "javascript:gs.getUserID()",
        "",
    ] {
        let answer = refused(guard(system.find(hostile)).await);
        assert!(
            answer.contains("cannot go into a ServiceNow query"),
            "{answer}"
        );
        let mut problem = problem(1, FindingSeverity::Low);
        problem.tag = hostile.to_owned();
        refused(guard(system.create(&problem)).await);
    }
    let mut long = problem(1, FindingSeverity::Low);
    long.tag = "t".repeat(101);
    refused(guard(system.create(&long)).await);
    let ticket = Ticket {
        id: "../sys_user/6816f79cc0a8016401c5a33be04be441".into(),
        ..Ticket::default()
    };
    refused(guard(system.resolve(&ticket, &note("gone"))).await);
    refused(guard(system.observe(std::slice::from_ref(&ticket.id))).await);
    assert!(setup.fake.log().is_empty(), "{:?}", setup.fake.log());
    assert_eq!(system.requests(), 1, "the close codes only");
}

// ---------------------------------------------------------------------------------------
// update, resolve, reopen

#[tokio::test]
async fn update_is_one_patch_with_the_note_and_the_new_levels() {
    let setup = setup().await;
    let system = setup.prepared(json!({})).await;
    let ticket = guard(system.create(&problem(1, FindingSeverity::Medium)))
        .await
        .unwrap();
    setup.fake.clear_log();
    let worse = problem(1, FindingSeverity::Critical);
    guard(system.update(
        &ticket,
        &worse,
        &note("Still present at 89abcdef0123; now critical"),
    ))
    .await
    .expect("updated");
    let log = setup.fake.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].method, "PATCH");
    assert_eq!(
        log[0].path,
        format!("/api/now/table/incident/{}", ticket.id)
    );
    assert_eq!(
        log[0].body,
        Some(json!({
            "work_notes": "Still present at 89abcdef0123; now critical\nhttps://git.example.com/ops/pki/commit/89abcdef0123",
            "impact": "1",
            "urgency": "1",
        }))
    );
    let record = setup.fake.record(&ticket.id).unwrap();
    assert_eq!(
        (
            record["impact"].as_str(),
            record["urgency"].as_str(),
            record["priority"].as_str()
        ),
        ("1", "1", "1")
    );
    assert_eq!(
        setup.fake.journal(&ticket.id),
        [(
            "work_notes".to_owned(),
            "Still present at 89abcdef0123; now critical\nhttps://git.example.com/ops/pki/commit/89abcdef0123".to_owned()
        )]
    );
    assert!(
        setup.fake.invalid().is_empty(),
        "{:?}",
        setup.fake.invalid()
    );
}

#[tokio::test]
async fn resolve_sets_the_state_close_code_and_notes_and_reopen_brings_it_back() {
    let setup = setup().await;
    let system = setup.prepared(json!({})).await;
    let problem = problem(1, FindingSeverity::High);
    let ticket = guard(system.create(&problem)).await.unwrap();
    setup.fake.clear_log();

    let resolved = guard(system.resolve(&ticket, &note("Cleared by 89abcdef0123")))
        .await
        .expect("resolved");
    assert_eq!(
        resolved,
        Ticket {
            status: "Resolved".into(),
            done: true,
            ..ticket.clone()
        }
    );
    let log = setup.fake.log();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].method.as_str(), log[0].path.clone()),
        ("PATCH", format!("/api/now/table/incident/{}", ticket.id))
    );
    assert_eq!(
        log[0].body,
        Some(json!({
            "state": "6",
            "close_notes": "Cleared by 89abcdef0123\nhttps://git.example.com/ops/pki/commit/89abcdef0123",
            "close_code": "Solution provided",
        }))
    );
    let record = setup.fake.record(&ticket.id).unwrap();
    assert_eq!(record["state"], "6");
    assert_eq!(record["close_code"], "Solution provided");

    setup.fake.clear_log();
    let reopened = guard(system.reopen(&resolved, &problem, &note("Back in 0badc0ffee00")))
        .await
        .expect("reopened");
    assert_eq!(
        (reopened.status.as_str(), reopened.done, reopened.accepted),
        ("In Progress", false, false)
    );
    let log = setup.fake.log();
    assert_eq!(log.len(), 1);
    let body = log[0].body.clone().unwrap();
    assert_eq!(body["state"], "2");
    assert!(
        body["work_notes"]
            .as_str()
            .unwrap()
            .starts_with("Back in 0badc0ffee00\n")
    );
    assert_eq!(setup.fake.record(&ticket.id).unwrap()["state"], "2");
    assert!(
        setup.fake.invalid().is_empty(),
        "{:?}",
        setup.fake.invalid()
    );
}

#[tokio::test]
async fn a_record_the_instance_will_not_change_is_refused() {
    let setup = setup().await;
    let system = setup.prepared(json!({})).await;
    let problem = problem(1, FindingSeverity::High);
    let ticket = guard(system.create(&problem)).await.unwrap();
    setup.fake.person_closes(&ticket.id, "Solution provided");
    let answer = refused(guard(system.reopen(&ticket, &problem, &note("back"))).await);
    assert!(answer.contains(&ticket.key), "{answer}");
    assert!(answer.contains("read-only"), "{answer}");

    // Resolving without a close code breaks the instance's data policy.
    let unprepared = setup.system(json!({}));
    let other = guard(unprepared.create(&self::problem(2, FindingSeverity::Low)))
        .await
        .unwrap();
    let answer = refused(guard(unprepared.resolve(&other, &note("gone"))).await);
    assert!(answer.contains("Resolution code"), "{answer}");

    // A record deleted there.
    let gone = Ticket {
        id: "0123456789abcdef0123456789abcdef".into(),
        ..ticket.clone()
    };
    let answer = refused(guard(system.update(&gone, &problem, &note("x"))).await);
    assert!(answer.starts_with("HTTP 404: No Record found"), "{answer}");
}

// ---------------------------------------------------------------------------------------
// observe

#[tokio::test]
async fn observe_asks_for_a_hundred_records_a_request() {
    let setup = setup().await;
    let system = setup.prepared(json!({})).await;
    let mut ids = seeded(&setup.fake, 250);
    ids.push("0123456789abcdef0123456789abcdef".into()); // deleted there
    let tickets = guard(system.observe(&ids)).await.expect("observed");
    assert_eq!(tickets.len(), 250);
    assert_eq!(
        tickets.iter().map(|t| &t.id).collect::<Vec<_>>(),
        ids[..250].iter().collect::<Vec<_>>()
    );
    let log = setup.fake.log();
    assert_eq!(log.len(), 3, "{} requests", log.len());
    for (request, chunk) in log.iter().zip(ids.chunks(100)) {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("GET", "/api/now/table/incident")
        );
        assert_eq!(
            request.param("sysparm_query"),
            Some(format!("sys_idIN{}", chunk.join(",")).as_str())
        );
        assert_eq!(
            request.param("sysparm_limit"),
            Some(chunk.len().to_string().as_str())
        );
        let fields: BTreeSet<&str> = request
            .param("sysparm_fields")
            .unwrap()
            .split(',')
            .collect();
        assert!(fields.is_superset(&BTreeSet::from([
            "sys_id",
            "number",
            "state",
            "active",
            "close_code",
            "assigned_to"
        ])));
        assert_eq!(request.param("sysparm_display_value"), Some("all"));
    }
    assert_eq!(system.requests(), 1 + 3);
    assert_eq!(guard(system.observe(&[])).await.expect("observed"), []);
    assert_eq!(system.requests(), 1 + 3);
}

#[tokio::test]
async fn observe_refuses_an_answer_with_records_not_asked_for() {
    // With the query ignored, records left out of the answer are not known to be deleted.
    let setup = setup().await;
    let system = setup.prepared(json!({})).await;
    let ids = seeded(&setup.fake, 5);
    setup.fake.then(Trick::IgnoreQuery);
    let answer = refused(guard(system.observe(&ids[1..3])).await);
    assert!(answer.contains("ignored the query"), "{answer}");
    assert!(answer.contains("INC0010001"), "{answer}");
    let tickets = guard(system.observe(&ids[1..3])).await.expect("observed");
    assert_eq!(
        tickets.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [ids[1].as_str(), ids[2].as_str()]
    );
}

#[tokio::test]
async fn a_person_s_changes_show_when_observed() {
    let setup = setup().await;
    setup
        .fake
        .add_choices("incident", &["Not Solved (Too Costly)"]);
    let system = setup.prepared(json!({})).await;
    let ids = seeded(&setup.fake, 5);
    setup.fake.person_cancels(&ids[0]);
    setup.fake.person_closes(&ids[1], "Not Solved (Too Costly)");
    setup.fake.person_closes(&ids[2], "Solution provided");
    setup.fake.person_assigns(&ids[3], "Beth Admin");
    setup.fake.person_sets(
        &ids[4],
        &[("state", "6"), ("close_code", "Not Solved (Too Costly)")],
    );
    let tickets = guard(system.observe(&ids)).await.expect("observed");
    let seen: Vec<(&str, bool, bool, Option<&str>)> = tickets
        .iter()
        .map(|t| (t.status.as_str(), t.done, t.accepted, t.assignee.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("Canceled", true, true, None),
            ("Closed", true, true, None),
            ("Closed", true, false, None),
            ("New", false, false, Some("Beth Admin")),
            ("Resolved", true, true, None),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Rate limits and hostile answers

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_with_servicenow_s_words() {
    let setup = setup().await;
    let system = setup.prepared(json!({})).await;
    let problem = problem(1, FindingSeverity::High);
    setup.fake.then(Trick::TooMany {
        retry_after: Some(7),
    });
    let (error, after) = retry(guard(system.create(&problem)).await);
    assert_eq!(after, Some(Duration::from_secs(7)));
    assert_eq!(
        error,
        "HTTP 429: Rate limit exceeded: Rate limit of 10 requests per hour for Table API exceeded"
    );
    assert!(setup.fake.records("incident").is_empty());

    setup.fake.then(Trick::TooMany { retry_after: None });
    let (_, after) = retry(guard(system.create(&problem)).await);
    assert_eq!(after, Some(PAUSE_AFTER_429));

    guard(system.create(&problem)).await.expect("created");
    assert_eq!(setup.fake.records("incident").len(), 1);
    assert_eq!(system.requests(), 1 + 3);
}

#[tokio::test]
async fn a_server_error_is_retried_and_then_the_call_goes_through() {
    let setup = setup().await;
    let system = setup.prepared(json!({})).await;
    let ids = seeded(&setup.fake, 2);
    setup
        .fake
        .then(Trick::Answer(503, "<html>maintenance</html>".into()));
    let (error, after) = retry(guard(system.observe(&ids)).await);
    assert_eq!(
        (error.as_str(), after),
        ("HTTP 503: <html>maintenance</html>", None)
    );
    assert_eq!(
        guard(system.observe(&ids)).await.expect("observed").len(),
        2
    );
}

#[tokio::test]
async fn hostile_answers_are_failures_not_panics() {
    let setup = setup_with(USER, PASSWORD, "1s").await;
    let system = setup.prepared(json!({})).await;
    let id = "c537bae64f411200adf9f8e18110c76e";
    let retried = [
        ("not json", "not JSON"),
        (r#"{"result": 5}"#, "no `result` list"),
        (
            r#"{"result": [{"sys_id": "nope", "number": "INC1", "correlation_id": "gitward-0001-9f1c2e7d"}]}"#,
            "readable record",
        ),
    ];
    for (body, says) in retried {
        setup.fake.then(Trick::Answer(200, body.into()));
        let (error, _) = retry(guard(system.find(&tag(1))).await);
        assert!(error.contains(says), "{body}: {error}");
    }
    // Longer than anything asked for.
    let huge = format!(r#"{{"result": [{}]}}"#, "{},".repeat(2_000_000));
    setup.fake.then(Trick::Answer(200, huge));
    let (error, _) = retry(guard(system.find(&tag(1))).await);
    assert!(error.contains("longer than"), "{error}");
    // A record number that is not one, a record without its id.
    let odd = json!({"result": {"sys_id": id, "number": "N".repeat(41), "state": "1"}});
    setup.fake.then(Trick::Answer(201, odd.to_string()));
    retry(guard(system.create(&problem(1, FindingSeverity::Low))).await);
    setup.fake.then(Trick::Answer(
        201,
        json!({"result": {"number": "INC1"}}).to_string(),
    ));
    retry(guard(system.create(&problem(1, FindingSeverity::Low))).await);
    // An answer quoting the credential back.
    setup.fake.then(Trick::Answer(
        400,
        format!("bad request from {} ({PASSWORD})", basic()),
    ));
    let answer = refused(guard(system.find(&tag(1))).await);
    assert!(!answer.contains(PASSWORD), "{answer}");
    assert!(!answer.contains(&basic()[6..]), "{answer}");
    assert!(
        answer.starts_with("HTTP 400: bad request from ***"),
        "{answer}"
    );
    // No answer at all.
    setup.fake.then(Trick::Hang);
    retry(guard(system.observe(&[id.to_owned()])).await);
    // Reference fields as plain strings and odd state values.
    let plain = json!({"result": [{
        "sys_id": id, "number": "INC0000042", "state": "42", "active": "true",
        "assigned_to": "6816f79cc0a8016401c5a33be04be441", "close_code": 3,
    }]});
    setup.fake.then(Trick::Answer(200, plain.to_string()));
    let tickets = guard(system.observe(&[id.to_owned()]))
        .await
        .expect("observed");
    assert_eq!(
        tickets,
        [Ticket {
            id: id.into(),
            key: "INC0000042".into(),
            url: setup.link(id),
            status: "42".into(),
            done: false,
            accepted: false,
            assignee: Some("6816f79cc0a8016401c5a33be04be441".into()),
        }]
    );
}
