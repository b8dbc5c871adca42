//! Tickets as Jira issues, against a stand-in for Jira Cloud (REST API v3) and Data Center
//! (v2) on loopback (`fakes/jira.rs`): it checks every request against the documented shapes
//! (`fixtures/jira/`), keeps issues through a workflow, and can answer 429, 5xx, garbage, cut
//! off or endless answers. Each test drives `Jira` through the `TicketSystem` trait and
//! checks what the fake received as well as what came back.

use crate::fakes;
use crate::fakes::jira as jira_fake;

use std::time::Duration;

use chrono::NaiveDate;
use serde_json::{Value, json};

use fakes::guard;
use gitward::config::Endpoint;
use gitward::model::{FindingSeverity, JiraSettings};
use gitward::tickets::jira::{Jira, MAX_TRANSITIONS};
use gitward::tickets::{Description, Failure, Note, Place, Problem, Ticket, TicketSystem};
use jira_fake::{BUG, FakeJira, Request, Status, Trick, adf_errors};

const USER: &str = "bot@example.com";
const TOKEN: &str = "ATATT3xFfGF0-the-api-token-9f8e7d6c";
const PAT: &str = "NjM2OTk5-personal-access-token-Zm9v";
const LINK: &str = "https://git.example.com/ops/pki/blob/0123456789abcdef0123456789abcdef01234567/certificates/web.yaml#L3";
const COMMIT_LINK: &str =
    "https://git.example.com/ops/pki/commit/0123456789abcdef0123456789abcdef01234567";

fn basic() -> String {
    fakes::basic(USER, TOKEN)
}

fn bearer() -> String {
    format!("Bearer {PAT}")
}

/// Sink settings: `SEC`, with `extra` on top.
fn settings(extra: Value) -> JiraSettings {
    let mut value = json!({"project": "SEC"});
    for (key, v) in extra.as_object().expect("an object") {
        value[key] = v.clone();
    }
    serde_json::from_value(value).expect("jira settings")
}

/// An endpoint for `url` with `token` in a file of `dir` (and `user`, for Basic).
fn endpoint(url: &str, dir: &tempfile::TempDir, user: Option<&str>, token: &str) -> Endpoint {
    let file = dir.path().join("jira-token");
    std::fs::write(&file, format!("{token}\n")).expect("a token file");
    let mut value = json!({"url": url, "tokenFile": file});
    if let Some(user) = user {
        value["user"] = json!(user);
    }
    fakes::endpoint(value)
}

struct Site {
    fake: FakeJira,
    jira: Jira,
    _dir: tempfile::TempDir,
}

impl Site {
    /// Jira Cloud and a sink with `extra` settings, its screen read.
    async fn cloud(extra: Value) -> Site {
        let mut site = Site::unprepared(extra).await;
        guard(site.jira.prepare()).await.expect("prepare");
        site
    }

    async fn unprepared(extra: Value) -> Site {
        let fake = FakeJira::cloud(&basic()).await;
        let dir = tempfile::tempdir().expect("a directory");
        let jira = Jira::new(
            &settings(extra),
            &endpoint(&fake.url(), &dir, Some(USER), TOKEN),
        )
        .expect("a jira sink");
        Site {
            fake,
            jira,
            _dir: dir,
        }
    }

    /// Jira Data Center under `/jira`, with a personal access token.
    async fn data_center(extra: Value) -> Site {
        let fake = FakeJira::data_center("/jira", &bearer()).await;
        let dir = tempfile::tempdir().expect("a directory");
        let mut all = json!({"api": "dataCenter"});
        for (key, v) in extra.as_object().expect("an object") {
            all[key] = v.clone();
        }
        let mut jira = Jira::new(&settings(all), &endpoint(&fake.url(), &dir, None, PAT))
            .expect("a jira sink");
        guard(jira.prepare()).await.expect("prepare");
        Site {
            fake,
            jira,
            _dir: dir,
        }
    }

    /// The requests received from `from` on.
    fn since(&self, from: usize) -> Vec<Request> {
        self.fake.log().split_off(from)
    }

    fn count(&self) -> usize {
        self.fake.log().len()
    }

    /// Every request counted, and none the fake found malformed.
    fn check(&self) {
        assert_eq!(self.jira.requests(), self.fake.log().len() as u64);
        assert_eq!(self.fake.invalid(), Vec::<String>::new());
        for request in self.fake.log() {
            assert_eq!(request.authorization, Some(self.auth()));
            if !request.body.is_null() {
                assert_eq!(request.content_type.as_deref(), Some("application/json"));
            }
        }
    }

    fn auth(&self) -> String {
        if self.fake.state().version == "3" {
            basic()
        } else {
            bearer()
        }
    }
}

fn problem(n: usize, severity: FindingSeverity) -> Problem {
    let stored = fakes::event(n, &format!("key of web-{n} is too short: 1024 < 2048"));
    Problem {
        key: format!("finding/fingerprint-{n}"),
        tag: format!("gitward-{n:020x}"),
        severity,
        title: format!("Certificate web-{n}: RSA key of 1024 bits is below 2048"),
        description: Description {
            what: format!("The key of web-{n} is too short: 1024 < 2048.\nIt must be renewed."),
            place: Some(Place {
                text: "certificates/web.yaml:3 at 0123456789ab".to_owned(),
                url: Some(LINK.to_owned()),
            }),
            why: "Policy min-key-size (deny): weak keys can be broken.".to_owned(),
            fix: "Set spec.privateKey.size to 3072 or more.".to_owned(),
            compliance: vec!["PCI-DSS 4.0 4.2.1".to_owned(), "NIST SC-12".to_owned()],
            commit: Some("0123456789ab by Ann Example".to_owned()),
        },
        due: Some(NaiveDate::from_ymd_opt(2026, 2, 1).expect("a date")),
        event: stored.event,
        previous: None,
    }
}

/// `problem(n, severity)` as an update sends it: the ticket had severity `previous`.
fn changed(n: usize, severity: FindingSeverity, previous: FindingSeverity) -> Problem {
    Problem {
        previous: Some(previous),
        ..problem(n, severity)
    }
}

fn note(text: &str) -> Note {
    Note {
        text: text.to_owned(),
        link: Some(COMMIT_LINK.to_owned()),
    }
}

/// The note's comment as Cloud takes it.
fn note_adf(text: &str) -> Value {
    json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [
        {"type": "text", "text": text},
        {"type": "text", "text": " "},
        {"type": "text", "text": COMMIT_LINK, "marks": [{"type": "link", "attrs": {"href": COMMIT_LINK}}]},
    ]}]})
}

fn example(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/jira/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("the example")).expect("JSON")
}

/// Keys of `value` that the documented `example` object does not have.
fn undocumented(value: &Value, example: &Value) -> Vec<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .filter(|k| example.get(k.as_str()).is_none())
        .cloned()
        .collect()
}

fn retry_of(result: Result<impl std::fmt::Debug, Failure>) -> (String, Option<Duration>) {
    match result {
        Err(Failure::Retry { error, after }) => (error, after),
        other => panic!("expected a retry, got {other:?}"),
    }
}

fn refusal_of(result: Result<impl std::fmt::Debug, Failure>) -> String {
    match result {
        Err(Failure::Refused { answer }) => answer,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// prepare

#[tokio::test]
async fn prepare_reads_the_create_screen_page_by_page() {
    let site = Site::cloud(json!({})).await;
    // Three issue types on one page of three; ten fields on four pages of three.
    let log = site.fake.log();
    let calls: Vec<String> = log
        .iter()
        .map(|r| {
            let start = r
                .query
                .iter()
                .find(|(k, _)| k == "startAt")
                .map(|(_, v)| v.as_str());
            format!("{} {} {}", r.method, r.path, start.unwrap_or("-"))
        })
        .collect();
    assert_eq!(
        calls,
        [
            "GET /rest/api/3/issue/createmeta/SEC/issuetypes 0",
            "GET /rest/api/3/issue/createmeta/SEC/issuetypes/10004 0",
            "GET /rest/api/3/issue/createmeta/SEC/issuetypes/10004 3",
            "GET /rest/api/3/issue/createmeta/SEC/issuetypes/10004 6",
            "GET /rest/api/3/issue/createmeta/SEC/issuetypes/10004 9",
        ]
    );
    assert!(log.iter().all(|r| r.body.is_null()));
    site.check();
}

#[tokio::test]
async fn prepare_names_required_fields_nothing_maps() {
    let mut site = Site::unprepared(json!({})).await;
    site.fake.require("customfield_10001", "Team", false);
    site.fake.require("customfield_10002", "Environment", false);
    // Required with a default: Jira fills it.
    site.fake.require("customfield_10003", "Severity", true);
    let answer = refusal_of(guard(site.jira.prepare()).await);
    assert_eq!(
        answer,
        "project SEC requires fields not mapped: Team (customfield_10001), Environment \
         (customfield_10002); map them in the sink's `fields`"
    );

    // Mapped, they pass; and they are sent, rendered from the event.
    let mut site = Site::unprepared(json!({"fields": {
        "customfield_10001": "{{details.rule}}",
        "customfield_10002": {"value": "{{resource.kind}}"},
    }}))
    .await;
    site.fake.require("customfield_10001", "Team", false);
    site.fake.require("customfield_10002", "Environment", false);
    guard(site.jira.prepare()).await.expect("prepare");
    guard(site.jira.create(&problem(1, FindingSeverity::High)))
        .await
        .expect("created");
    let fields = &site.fake.issue("SEC-1").fields;
    assert_eq!(fields["customfield_10001"], "min_key_size");
    assert_eq!(fields["customfield_10002"], json!({"value": "Certificate"}));
    site.check();
}

#[tokio::test]
async fn prepare_refuses_a_mapped_field_the_screen_lacks() {
    let mut site = Site::unprepared(json!({"fields": {"customfield_99999": "x"}})).await;
    let answer = refusal_of(guard(site.jira.prepare()).await);
    assert!(
        answer.contains("the create screen of SEC Bug has no field customfield_99999"),
        "{answer}"
    );
}

#[tokio::test]
async fn prepare_refuses_an_unknown_issue_type_listing_the_project_s() {
    let mut site = Site::unprepared(json!({"issueType": "Incident"})).await;
    let answer = refusal_of(guard(site.jira.prepare()).await);
    assert_eq!(
        answer,
        "project SEC has no issue type `Incident`; it has: Task, Bug, Story"
    );
    // Names compare without case.
    let mut site = Site::unprepared(json!({"issueType": "story"})).await;
    guard(site.jira.prepare()).await.expect("prepare");
    assert!(
        site.fake
            .calls()
            .last()
            .unwrap()
            .ends_with("/issuetypes/10002")
    );
}

#[tokio::test]
async fn prepare_with_a_wrong_credential_is_retried_and_shows_no_secret() {
    let fake = FakeJira::cloud("Basic c29tZW9uZTplbHNl").await;
    let dir = tempfile::tempdir().unwrap();
    let mut jira = Jira::new(
        &settings(json!({})),
        &endpoint(&fake.url(), &dir, Some(USER), TOKEN),
    )
    .unwrap();
    let (error, after) = retry_of(guard(jira.prepare()).await);
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(
        !error.contains(TOKEN) && !error.contains(&basic()),
        "{error}"
    );
    assert_eq!(after, None);
    assert_eq!(fake.log().len(), 1);
}

#[tokio::test]
async fn prepare_refuses_a_project_jira_does_not_have() {
    let fake = FakeJira::cloud(&basic()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut jira = Jira::new(
        &settings(json!({"project": "OPS"})),
        &endpoint(&fake.url(), &dir, Some(USER), TOKEN),
    )
    .unwrap();
    let answer = refusal_of(guard(jira.prepare()).await);
    assert!(
        answer.starts_with("reading the issue types of project OPS: HTTP 404"),
        "{answer}"
    );
}

#[test]
fn settings_gitward_sets_itself_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let at = |url: &str| endpoint(url, &dir, Some(USER), TOKEN);
    let site = "https://example.atlassian.net";
    let problem = |extra: Value, url: &str| match Jira::new(&settings(extra), &at(url)) {
        Ok(_) => panic!("accepted"),
        Err(problem) => problem.0,
    };
    assert!(problem(json!({"fields": {"summary": "x"}}), site).contains("may not set `summary`"));
    assert!(problem(json!({"fields": {"labels": ["x"]}}), site).contains("may not set `labels`"));
    assert!(
        problem(json!({"fields": {"customfield_1": "{{secret}}"}}), site)
            .contains("names secret, which events do not have")
    );
    assert!(problem(json!({"project": "sec"}), site).contains("not a project key"));
    assert!(problem(json!({"labels": ["two words"]}), site).contains("is not one"));
    assert!(problem(json!({}), "https://example.atlassian.net/?x=1").contains("no query"));
    assert!(
        problem(json!({}), "https://bot:pw@example.atlassian.net")
            .contains("carries no credentials")
    );
    assert!(
        Jira::new(
            &settings(json!({"fields": {"priority": {"name": "High"}}})),
            &at(site)
        )
        .is_ok()
    );
}

// ---------------------------------------------------------------------------------------
// create

#[tokio::test]
async fn create_sends_the_documented_fields() {
    let site = Site::cloud(json!({
        "labels": ["pki", "gitward"],
        "fields": {"customfield_10010": "{{resource.kind}}/{{resource.name}} ({{severity}})"},
    }))
    .await;
    let from = site.count();
    let p = problem(7, FindingSeverity::High);
    let ticket = guard(site.jira.create(&p)).await.expect("created");
    assert_eq!(
        ticket,
        Ticket {
            id: "10001".into(),
            key: "SEC-1".into(),
            url: format!("{}/browse/SEC-1", site.fake.url()),
            status: String::new(),
            done: false,
            accepted: false,
            assignee: None,
        }
    );
    let sent = site.since(from);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].method.as_str(), sent[0].path.as_str()),
        ("POST", "/rest/api/3/issue")
    );
    let body = &sent[0].body;
    // Shapes the documented example has.
    let documented = example("create-issue.request.json");
    assert_eq!(undocumented(body, &documented), Vec::<String>::new());
    let fields = &body["fields"];
    for key in fields.as_object().unwrap().keys() {
        assert!(
            documented["fields"].get(key).is_some() || key.starts_with("customfield_"),
            "{key}"
        );
    }
    let mut without_description = fields.clone();
    let description = without_description
        .as_object_mut()
        .unwrap()
        .remove("description")
        .unwrap();
    assert_eq!(
        without_description,
        json!({
            "project": {"key": "SEC"},
            "issuetype": {"id": BUG},
            "summary": p.title,
            "labels": ["gitward", p.tag, "pki"],
            "priority": {"name": "High"},
            "duedate": "2026-02-01",
            "customfield_10010": "Certificate/web-7 (high)",
        })
    );
    assert_eq!(adf_errors(&description), Vec::<String>::new());
    let content = description["content"].as_array().unwrap();
    let headings: Vec<&str> = content
        .iter()
        .filter(|n| n["type"] == "heading")
        .map(|n| n["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        headings,
        ["What", "Where", "Why", "How to fix", "Compliance", "Commit"]
    );
    assert_eq!(
        content[3],
        json!({"type": "paragraph", "content": [{
            "type": "text",
            "text": "certificates/web.yaml:3 at 0123456789ab",
            "marks": [{"type": "link", "attrs": {"href": LINK}}],
        }]})
    );
    assert_eq!(
        content[9]["content"][1],
        json!({"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "NIST SC-12"}]}]})
    );
    let issue = site.fake.issue("SEC-1");
    assert_eq!(issue.status, Status::ToDo);
    assert_eq!(issue.priority.as_deref(), Some("High"));
    site.check();
}

#[tokio::test]
async fn priority_and_due_date_go_only_where_the_screen_has_them() {
    let mut site = Site::unprepared(json!({"priority": {"critical": "P1"}})).await;
    site.fake.remove_field("priority");
    site.fake.remove_field("duedate");
    guard(site.jira.prepare()).await.expect("prepare");
    let from = site.count();
    guard(site.jira.create(&problem(1, FindingSeverity::Critical)))
        .await
        .expect("created without them");
    let fields = &site.since(from)[0].body["fields"];
    assert_eq!(fields.get("priority"), None);
    assert_eq!(fields.get("duedate"), None);

    // Where it has them, the mapping's name (its default for the others), and no due date
    // for a problem without one.
    let site = Site::cloud(json!({"priority": {"critical": "Highest", "info": "Low"}})).await;
    let mut info = problem(2, FindingSeverity::Info);
    info.due = None;
    for (p, priority) in [
        (problem(1, FindingSeverity::Critical), "Highest"),
        (problem(3, FindingSeverity::Medium), "Medium"),
        (info, "Low"),
    ] {
        let from = site.count();
        guard(site.jira.create(&p)).await.expect("created");
        let fields = &site.since(from)[0].body["fields"];
        assert_eq!(fields["priority"], json!({"name": priority}));
        assert_eq!(fields.get("duedate").is_some(), p.due.is_some());
    }
    site.check();
}

#[tokio::test]
async fn the_priority_follows_the_resources_environment_where_the_sink_says() {
    let site = Site::cloud(json!({
        "priority": {"high": "High"},
        "priorityByEnv": {"prod": {"high": "Highest"}},
    }))
    .await;
    let mut prod = problem(1, FindingSeverity::High);
    prod.event.data.details.insert("env".into(), json!("prod"));
    let mut staging = problem(2, FindingSeverity::High);
    staging
        .event
        .data
        .details
        .insert("env".into(), json!("staging"));
    for (p, priority) in [
        (prod, "Highest"),
        (staging, "High"),
        (problem(3, FindingSeverity::High), "High"),
    ] {
        let from = site.count();
        guard(site.jira.create(&p)).await.expect("created");
        assert_eq!(
            site.since(from)[0].body["fields"]["priority"],
            json!({"name": priority})
        );
    }
    site.check();
}

#[tokio::test]
async fn a_create_jira_refuses_says_why_on_one_line() {
    let site = Site::cloud(json!({})).await;
    // The project's admin made a field required since the screen was read.
    site.fake.require("customfield_10020", "Team", false);
    site.fake.remove_field("duedate");
    let answer = refusal_of(guard(site.jira.create(&problem(1, FindingSeverity::High))).await);
    assert_eq!(
        answer,
        "creating an issue: Jira refused it (HTTP 400): duedate: Field 'duedate' cannot be set. \
         It is not on the appropriate screen, or unknown.; customfield_10020: Team is required."
    );
    // The documented answer of a 400.
    site.fake.then(Trick::Answer {
        status: 400,
        body: serde_json::to_string(&example("create-issue.response-400.json")).unwrap(),
        retry_after: None,
    });
    let answer = refusal_of(guard(site.jira.create(&problem(1, FindingSeverity::High))).await);
    assert!(
        answer.ends_with("(HTTP 400): Field 'priority' is required"),
        "{answer}"
    );
    assert!(site.fake.issues().is_empty());
}

#[tokio::test]
async fn before_prepare_the_issue_type_goes_by_name() {
    let site = Site::unprepared(json!({"issueType": "Task"})).await;
    guard(site.jira.create(&problem(1, FindingSeverity::Low)))
        .await
        .expect("created");
    let sent = site.fake.log();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["fields"]["issuetype"], json!({"name": "Task"}));
    assert_eq!(sent[0].body["fields"]["priority"], json!({"name": "Low"}));
    site.check();
}

// ---------------------------------------------------------------------------------------
// find

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_by_its_tag() {
    let site = Site::cloud(json!({})).await;
    let p = problem(1, FindingSeverity::High);
    site.fake.then(Trick::Cut);
    let (error, _) = retry_of(guard(site.jira.create(&p)).await);
    // The connection drops before the answer is complete: nothing tells what was made.
    assert!(error.starts_with("creating an issue: "), "{error}");
    assert_eq!(site.fake.issues().len(), 1, "Jira made it");

    let from = site.count();
    let found = guard(site.jira.find(&p.tag)).await.expect("a search");
    assert_eq!(
        found,
        Some(Ticket {
            id: "10001".into(),
            key: "SEC-1".into(),
            url: format!("{}/browse/SEC-1", site.fake.url()),
            status: "To Do".into(),
            done: false,
            accepted: false,
            assignee: None,
        })
    );
    let sent = site.since(from);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/rest/api/3/search/jql");
    assert_eq!(
        sent[0].body,
        json!({
            "jql": format!("project = \"SEC\" AND labels = \"{}\" AND statusCategory != Done ORDER BY created ASC", p.tag),
            "maxResults": 2,
            "fields": ["status", "resolution", "assignee", "labels"],
        })
    );
    // Nothing else carries the tag; a done issue is not found.
    assert_eq!(guard(site.jira.find("gitward-other")).await, Ok(None));
    site.fake.person_closes("SEC-1", "Done");
    assert_eq!(guard(site.jira.find(&p.tag)).await, Ok(None));
    assert_eq!(site.fake.issues().len(), 1);
    site.check();
}

#[tokio::test]
async fn a_tag_cannot_change_the_query() {
    let site = Site::cloud(json!({})).await;
    site.fake.seed(1, &["gitward", "x"]);
    let hostile = "x\"OR\\\"y";
    assert_eq!(guard(site.jira.find(hostile)).await, Ok(None));
    // The label is looked up as it is, quotes and backslashes included.
    site.fake.seed(1, &["gitward", hostile]);
    let found = guard(site.jira.find(hostile))
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.key, "SEC-2");
    assert_eq!(
        site.fake.log().last().unwrap().body["jql"],
        r#"project = "SEC" AND labels = "x\"OR\\\"y" AND statusCategory != Done ORDER BY created ASC"#
    );
    let answer = refusal_of(guard(site.jira.find("two words")).await);
    assert!(answer.contains("cannot be a Jira label"), "{answer}");
    site.check();
}

#[tokio::test]
async fn rows_that_do_not_match_the_query_are_not_found() {
    let site = Site::cloud(json!({})).await;
    let others = site.fake.seed(2, &["gitward", "gitward-mine"]);
    site.fake.delete(&others[0].key);
    site.fake.delete(&others[1].key);
    // The answer carries an issue of the project without the tag, and one of another
    // project with it, whatever was asked.
    let mut wrong_label = others[0].clone();
    wrong_label.labels = vec!["gitward-theirs".into()];
    let mut other_project = others[1].clone();
    other_project.key = "OPS-9".into();
    site.fake.state().foreign = vec![wrong_label, other_project];
    assert_eq!(guard(site.jira.find("gitward-mine")).await, Ok(None));
    site.check();
}

// ---------------------------------------------------------------------------------------
// update

#[tokio::test]
async fn an_update_is_one_request_with_the_comment_and_a_changed_priority() {
    let site = Site::cloud(json!({})).await;
    let ticket = guard(site.jira.create(&problem(1, FindingSeverity::High)))
        .await
        .unwrap();
    let from = site.count();
    let still = note("Still open in commit 0123456789ab.");
    guard(site.jira.update(
        &ticket,
        &changed(1, FindingSeverity::High, FindingSeverity::High),
        &still,
    ))
    .await
    .expect("updated");
    let rose = note("Severity rose from high to critical.");
    guard(site.jira.update(
        &ticket,
        &changed(1, FindingSeverity::Critical, FindingSeverity::High),
        &rose,
    ))
    .await
    .expect("updated");
    let sent = site.since(from);
    assert_eq!(sent.len(), 2, "one request each");
    assert_eq!(
        (sent[0].method.as_str(), sent[0].path.as_str()),
        ("PUT", "/rest/api/3/issue/10001")
    );
    // Same severity: the priority gitward gave stays alone.
    assert_eq!(
        sent[0].body,
        json!({"update": {"comment": [{"add": {"body": note_adf("Still open in commit 0123456789ab.")}}]}})
    );
    assert_eq!(
        sent[1].body,
        json!({
            "update": {"comment": [{"add": {"body": note_adf("Severity rose from high to critical.")}}]},
            "fields": {"priority": {"name": "Highest"}},
        })
    );
    let issue = site.fake.issue("SEC-1");
    assert_eq!(issue.priority.as_deref(), Some("Highest"));
    assert_eq!(issue.comments.len(), 2);
    site.check();
}

#[tokio::test]
async fn an_update_of_an_issue_that_is_gone_is_refused() {
    let site = Site::cloud(json!({})).await;
    let ticket = guard(site.jira.create(&problem(1, FindingSeverity::High)))
        .await
        .unwrap();
    site.fake.delete("SEC-1");
    let answer = refusal_of(
        guard(
            site.jira
                .update(&ticket, &problem(1, FindingSeverity::High), &note("x")),
        )
        .await,
    );
    assert!(
        answer.starts_with("commenting on SEC-1: HTTP 404"),
        "{answer}"
    );
    let bad = Ticket {
        id: "10001/../../x".into(),
        ..ticket
    };
    let from = site.count();
    let answer = refusal_of(
        guard(
            site.jira
                .update(&bad, &problem(1, FindingSeverity::High), &note("x")),
        )
        .await,
    );
    assert!(answer.contains("is not a Jira issue id"), "{answer}");
    assert_eq!(site.count(), from, "nothing sent");
}

// ---------------------------------------------------------------------------------------
// resolve and reopen

#[tokio::test]
async fn resolve_and_reopen_go_by_where_transitions_lead() {
    let site = Site::cloud(json!({})).await;
    let p = problem(1, FindingSeverity::High);
    let ticket = guard(site.jira.create(&p)).await.unwrap();
    let from = site.count();
    let resolved = guard(site.jira.resolve(&ticket, &note("Resolved by gitward.")))
        .await
        .expect("resolved");
    assert_eq!(
        resolved,
        Ticket {
            status: "Done".into(),
            done: true,
            ..ticket.clone()
        }
    );
    let sent = site.since(from);
    assert_eq!(
        sent.iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>(),
        [
            "GET /rest/api/3/issue/10001/transitions",
            "POST /rest/api/3/issue/10001/transitions"
        ]
    );
    assert_eq!(
        sent[0].query,
        [("expand".to_owned(), "transitions.fields".to_owned())]
    );
    // The first transition into a done status; its screen asks for a resolution.
    assert_eq!(
        sent[1].body,
        json!({
            "transition": {"id": "31"},
            "update": {"comment": [{"add": {"body": note_adf("Resolved by gitward.")}}]},
            "fields": {"resolution": {"name": "Done"}},
        })
    );
    assert_eq!(
        undocumented(&sent[1].body, &example("do-transition.request.json")),
        Vec::<String>::new()
    );
    let issue = site.fake.issue("SEC-1");
    assert_eq!(
        (issue.status, issue.resolution.as_deref()),
        (Status::Done, Some("Done"))
    );

    let from = site.count();
    let reopened = guard(
        site.jira
            .reopen(&resolved, &p, &note("Back in commit 89ab.")),
    )
    .await
    .expect("reopened");
    assert_eq!((reopened.status.as_str(), reopened.done), ("To Do", false));
    let sent = site.since(from);
    assert_eq!(sent.len(), 2);
    // `Reopen` rather than the first transition out of Done, `Back to progress`.
    assert_eq!(
        sent[1].body,
        json!({
            "transition": {"id": "41"},
            "update": {"comment": [{"add": {"body": note_adf("Back in commit 89ab.")}}]},
        })
    );
    let issue = site.fake.issue("SEC-1");
    assert_eq!((issue.status, issue.resolution), (Status::ToDo, None));
    assert_eq!(issue.comments.len(), 2);
    site.check();
}

#[tokio::test]
async fn transitions_named_in_the_settings_are_used() {
    let site =
        Site::cloud(json!({"transitions": {"resolve": "done", "reopen": "Back to Progress"}}))
            .await;
    let p = problem(1, FindingSeverity::High);
    let ticket = guard(site.jira.create(&p)).await.unwrap();
    site.fake.person_moves("SEC-1", Status::InProgress);
    let ticket = Ticket {
        status: "In Progress".into(),
        ..ticket
    };
    let resolved = guard(site.jira.resolve(&ticket, &note("r")))
        .await
        .expect("resolved");
    let reopened = guard(site.jira.reopen(&resolved, &p, &note("o")))
        .await
        .expect("reopened");
    assert_eq!(
        (reopened.status.as_str(), reopened.done),
        ("In Progress", false)
    );
    let ids: Vec<Value> = site
        .fake
        .log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/transitions"))
        .map(|r| r.body["transition"]["id"].clone())
        .collect();
    assert_eq!(ids, [json!("31"), json!("51")]);
    site.check();
}

#[tokio::test]
async fn a_named_transition_that_does_not_exist_is_refused() {
    let site = Site::cloud(json!({"transitions": {"resolve": "Close Issue"}})).await;
    let ticket = guard(site.jira.create(&problem(1, FindingSeverity::High)))
        .await
        .unwrap();
    let ticket = Ticket {
        status: "To Do".into(),
        ..ticket
    };
    let answer = refusal_of(guard(site.jira.resolve(&ticket, &note("r"))).await);
    assert_eq!(
        answer,
        "SEC-1 (status To Do) has no transition `Close Issue`; available: Start, Done"
    );
    assert_eq!(site.fake.issue("SEC-1").status, Status::ToDo);
    site.check();
}

#[tokio::test]
async fn transitions_out_of_a_status_are_remembered_and_checked() {
    let site = Site::cloud(json!({})).await;
    let mut tickets = Vec::new();
    for n in 1..=3 {
        let ticket = guard(site.jira.create(&problem(n, FindingSeverity::High)))
            .await
            .unwrap();
        tickets.push(Ticket {
            status: "To Do".into(),
            ..ticket
        });
    }
    guard(site.jira.resolve(&tickets[0], &note("r")))
        .await
        .expect("resolved");
    let from = site.count();
    guard(site.jira.resolve(&tickets[1], &note("r")))
        .await
        .expect("resolved");
    assert_eq!(
        site.fake.calls().split_off(from),
        ["POST /rest/api/3/issue/10002/transitions"]
    );

    // A person closed the third meanwhile: the remembered transition does not apply, the
    // issue's own are read, and none leads into done.
    site.fake.person_closes("SEC-3", "Won't Fix");
    let from = site.count();
    let answer = refusal_of(guard(site.jira.resolve(&tickets[2], &note("r"))).await);
    assert!(
        answer.contains("no transition into a done status; available: Back to progress, Reopen"),
        "{answer}"
    );
    assert_eq!(
        site.fake.calls().split_off(from),
        [
            "POST /rest/api/3/issue/10003/transitions",
            "GET /rest/api/3/issue/10003/transitions"
        ]
    );
    assert_eq!(
        site.fake.issue("SEC-3").resolution.as_deref(),
        Some("Won't Fix")
    );
}

// ---------------------------------------------------------------------------------------
// observe

#[tokio::test]
async fn observing_250_issues_takes_three_searches() {
    let site = Site::cloud(json!({})).await;
    let issues = site.fake.seed(250, &["gitward"]);
    site.fake.person_closes("SEC-3", "Won't Fix");
    site.fake.person_closes("SEC-4", "Done");
    site.fake.assign("SEC-5", "Bea Example");
    site.fake.delete("SEC-6");
    let ids: Vec<String> = issues.iter().map(|i| i.id.to_string()).collect();
    let from = site.count();
    let tickets = guard(site.jira.observe(&ids)).await.expect("observed");
    let sent = site.since(from);
    assert_eq!(sent.len(), 3);
    for (request, chunk) in sent.iter().zip(ids.chunks(100)) {
        assert_eq!(request.path, "/rest/api/3/search/jql");
        assert_eq!(
            request.body,
            json!({
                "jql": format!("id in ({})", chunk.join(",")),
                "maxResults": 100,
                "fields": ["status", "resolution", "assignee"],
            })
        );
    }
    assert_eq!(tickets.len(), 249, "the deleted one is left out");
    let by_key = |key: &str| tickets.iter().find(|t| t.key == key).cloned();
    assert_eq!(
        by_key("SEC-3"),
        Some(Ticket {
            id: "10003".into(),
            key: "SEC-3".into(),
            url: format!("{}/browse/SEC-3", site.fake.url()),
            status: "Done".into(),
            done: true,
            accepted: true,
            assignee: None,
        })
    );
    let fixed = by_key("SEC-4").unwrap();
    assert!(fixed.done && !fixed.accepted);
    assert_eq!(
        by_key("SEC-5").unwrap().assignee.as_deref(),
        Some("Bea Example")
    );
    assert_eq!(by_key("SEC-6"), None);
    assert_eq!(by_key("SEC-1").unwrap().status, "To Do");
    site.check();
}

#[tokio::test]
async fn observing_follows_pages_and_takes_only_what_was_asked() {
    let site = Site::cloud(json!({"acceptedResolutions": ["Duplicate"]})).await;
    site.fake.state().search_page = 40;
    let issues = site.fake.seed(101, &["gitward"]);
    site.fake.person_closes("SEC-1", "Won't Fix");
    site.fake.person_closes("SEC-2", "Duplicate");
    let mut foreign = issues[100].clone();
    foreign.id = 99_999;
    foreign.key = "SEC-99999".into();
    site.fake.state().foreign = vec![foreign];
    let ids: Vec<String> = issues[..100].iter().map(|i| i.id.to_string()).collect();
    let from = site.count();
    let tickets = guard(site.jira.observe(&ids)).await.expect("observed");
    let sent = site.since(from);
    let tokens: Vec<Option<&str>> = sent
        .iter()
        .map(|r| r.body["nextPageToken"].as_str())
        .collect();
    assert_eq!(tokens, [None, Some("page-40"), Some("page-80")]);
    assert_eq!(tickets.len(), 100);
    assert!(
        tickets
            .iter()
            .all(|t| t.key != "SEC-99999" && t.key != "SEC-101")
    );
    assert!(
        !tickets[0].accepted && tickets[1].accepted,
        "the sink's own won't-fix resolutions"
    );

    let answer = refusal_of(guard(site.jira.observe(&["10001) OR (1=1".to_owned()])).await);
    assert!(answer.contains("is not a Jira issue id"), "{answer}");
    assert_eq!(guard(site.jira.observe(&[])).await, Ok(vec![]));
    assert_eq!(site.count(), from + 3);
    site.check();
}

// ---------------------------------------------------------------------------------------
// Rate limits and failures

#[tokio::test]
async fn retry_after_is_honoured_as_said() {
    let site = Site::cloud(json!({})).await;
    site.fake.then(Trick::Answer {
        status: 429,
        body: r#"{"errorMessages":["Rate limit exceeded."]}"#.into(),
        retry_after: Some(7),
    });
    let (error, after) =
        retry_of(guard(site.jira.create(&problem(1, FindingSeverity::High))).await);
    assert_eq!(after, Some(Duration::from_secs(7)));
    assert!(error.starts_with("creating an issue: HTTP 429"), "{error}");
    site.fake.then(Trick::Answer {
        status: 503,
        body: "down for maintenance".into(),
        retry_after: Some(30),
    });
    let (_, after) = retry_of(guard(site.jira.find("gitward-x")).await);
    assert_eq!(after, Some(Duration::from_secs(30)));
    site.fake.then(Trick::Answer {
        status: 500,
        body: "oops".into(),
        retry_after: None,
    });
    let ticket = Ticket {
        id: "10001".into(),
        key: "SEC-1".into(),
        ..Ticket::default()
    };
    let (_, after) = retry_of(guard(site.jira.resolve(&ticket, &note("r"))).await);
    assert_eq!(after, None);
    // Then Jira is back.
    assert!(site.fake.issues().is_empty());
    guard(site.jira.create(&problem(1, FindingSeverity::High)))
        .await
        .expect("created");
    assert_eq!(site.fake.issues().len(), 1);
    site.check();
}

#[tokio::test]
async fn an_answer_quoting_the_credential_is_shown_without_it() {
    let site = Site::cloud(json!({})).await;
    for status in [500, 400, 404] {
        site.fake.then(Trick::EchoAuthorization(status));
        let text = match guard(site.jira.create(&problem(1, FindingSeverity::High))).await {
            Err(Failure::Retry { error, .. }) => error,
            Err(Failure::Refused { answer }) => answer,
            Ok(ticket) => panic!("{ticket:?}"),
        };
        assert!(text.contains("bad credential: [redacted]"), "{text}");
        assert!(
            !text.contains(TOKEN) && !text.contains(&basic()[6..]),
            "{text}"
        );
    }
}

#[tokio::test]
async fn endless_and_garbage_answers_are_retried() {
    let site = Site::cloud(json!({})).await;
    site.fake.then(Trick::Endless {
        prefix: r#"{"isLast":true,"issues":["#.into(),
        unit: r#"{"id":"10001","key":"SEC-1","fields":{}},"#.into(),
        count: 10_000_000,
        suffix: "{}]}".into(),
    });
    let (error, _) = retry_of(guard(site.jira.observe(&["10001".to_owned()])).await);
    assert!(error.contains("longer than 4194304 bytes"), "{error}");
    site.fake.then(Trick::Answer {
        status: 200,
        body: "<html><body>Atlassian is down</body></html>".into(),
        retry_after: None,
    });
    let (error, _) = retry_of(guard(site.jira.find("gitward-x")).await);
    assert!(error.contains("not what Jira answers"), "{error}");
    site.fake.then(Trick::Answer {
        status: 201,
        body: r#"{"id": 10001, "key": ["SEC-1"]}"#.into(),
        retry_after: None,
    });
    retry_of(guard(site.jira.create(&problem(1, FindingSeverity::High))).await);
}

#[tokio::test]
async fn keys_that_are_not_keys_never_become_links() {
    let site = Site::cloud(json!({})).await;
    let p = problem(1, FindingSeverity::High);
    site.fake.then(Trick::Rewrite(|mut created| {
        created["key"] = json!("SEC-1/../../secure/admin");
        created
    }));
    let (error, _) = retry_of(guard(site.jira.create(&p)).await);
    assert!(error.contains("not one"), "{error}");
    // What was made is found by its tag, under its real key.
    let found = guard(site.jira.find(&p.tag)).await.unwrap().unwrap();
    assert_eq!(found.url, format!("{}/browse/SEC-1", site.fake.url()));

    site.fake.then(Trick::Rewrite(|mut page| {
        page["issues"][0]["key"] = json!("https://evil.example/SEC-1");
        page
    }));
    let (error, _) = retry_of(guard(site.jira.observe(&["10001".to_owned()])).await);
    assert!(error.contains("not one"), "{error}");

    // Long names are cut to size.
    site.fake.then(Trick::Rewrite(|mut page| {
        page["issues"][0]["fields"]["status"]["name"] = json!("S".repeat(10_000));
        page["issues"][0]["fields"]["assignee"] =
            json!({"displayName": format!("Bea\n{}", "e".repeat(10_000))});
        page
    }));
    let tickets = guard(site.jira.observe(&["10001".to_owned()]))
        .await
        .unwrap();
    assert_eq!(tickets[0].status.chars().count(), 100);
    let assignee = tickets[0].assignee.clone().unwrap();
    assert_eq!(assignee.chars().count(), 200);
    assert!(assignee.starts_with("Bea e"));
}

#[tokio::test]
async fn a_million_transitions_are_not_read() {
    let site = Site::cloud(json!({})).await;
    let ticket = guard(site.jira.create(&problem(1, FindingSeverity::High)))
        .await
        .unwrap();
    site.fake.then(Trick::Endless {
        prefix: r#"{"transitions":["#.into(),
        unit: r#"{"id":"31","name":"Done","to":{"name":"Done","statusCategory":{"key":"done"}}},"#
            .into(),
        count: 1_000_000,
        suffix: "{}]}".into(),
    });
    let (error, _) = retry_of(guard(site.jira.resolve(&ticket, &note("r"))).await);
    assert!(error.contains("longer than"), "{error}");

    // Many that fit: only the first ones count, and the refusal lists a few.
    let many: Vec<Value> = (0..5_000)
        .map(|n| {
            let category = if n == 4_999 { "done" } else { "indeterminate" };
            json!({"id": (1000 + n).to_string(), "name": format!("Step {n}"), "to": {"name": "Doing", "statusCategory": {"key": category}}})
        })
        .collect();
    site.fake.then(Trick::Answer {
        status: 200,
        body: json!({"transitions": many}).to_string(),
        retry_after: None,
    });
    let answer = refusal_of(guard(site.jira.resolve(&ticket, &note("r"))).await);
    assert!(
        answer.ends_with(&format!(
            "Step 19, and {} more (name one in the sink's `transitions`)",
            MAX_TRANSITIONS - 20
        )),
        "{answer}"
    );
    assert!(answer.len() < 1000);
    assert_eq!(site.fake.issue("SEC-1").status, Status::ToDo);
}

// ---------------------------------------------------------------------------------------
// Data Center

#[tokio::test]
async fn data_center_takes_v2_shapes_and_wiki_text() {
    let site = Site::data_center(json!({})).await;
    assert!(
        site.fake
            .calls()
            .iter()
            .all(|c| c.starts_with("GET /rest/api/2/issue/createmeta/SEC/issuetypes"))
    );
    let p = problem(1, FindingSeverity::Critical);
    let from = site.count();
    let ticket = guard(site.jira.create(&p)).await.expect("created");
    assert_eq!(ticket.url, format!("{}/browse/SEC-1", site.fake.url()));
    assert!(ticket.url.contains("/jira/browse/"));
    let sent = site.since(from);
    assert_eq!(sent[0].path, "/rest/api/2/issue");
    assert_eq!(
        sent[0].body["fields"]["description"],
        format!(
            "h3. What\n\nThe key of web-1 is too short: 1024 < 2048.\nIt must be renewed.\n\n\
             h3. Where\n\n[certificates/web.yaml:3 at 0123456789ab|{LINK}]\n\n\
             h3. Why\n\nPolicy min-key-size (deny): weak keys can be broken.\n\n\
             h3. How to fix\n\nSet spec.privateKey.size to 3072 or more.\n\n\
             h3. Compliance\n\n* PCI-DSS 4.0 4.2.1\n* NIST SC-12\n\n\
             h3. Commit\n\n0123456789ab by Ann Example"
        )
    );
    assert_eq!(
        sent[0].body["fields"]["priority"],
        json!({"name": "Highest"})
    );

    let from = site.count();
    let found = guard(site.jira.find(&p.tag)).await.unwrap().expect("found");
    assert_eq!(found.key, "SEC-1");
    let sent = site.since(from);
    assert_eq!(sent[0].path, "/rest/api/2/search");
    assert_eq!(sent[0].body["startAt"], 0);
    assert_eq!(sent[0].body["maxResults"], 2);

    let from = site.count();
    let same = Problem {
        previous: Some(p.severity),
        ..p.clone()
    };
    guard(site.jira.update(&found, &same, &note("Still open.")))
        .await
        .expect("updated");
    let resolved = guard(site.jira.resolve(&found, &note("Resolved.")))
        .await
        .expect("resolved");
    assert!(resolved.done);
    let sent = site.since(from);
    assert_eq!(
        sent.iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>(),
        [
            "PUT /rest/api/2/issue/10001",
            "GET /rest/api/2/issue/10001/transitions",
            "POST /rest/api/2/issue/10001/transitions"
        ]
    );
    assert_eq!(
        sent[0].body,
        json!({"update": {"comment": [{"add": {"body": format!("Still open. [{COMMIT_LINK}]")}}]}})
    );
    assert_eq!(
        sent[2].body["update"]["comment"][0]["add"]["body"],
        format!("Resolved. [{COMMIT_LINK}]")
    );
    site.check();
}

#[tokio::test]
async fn data_center_pages_by_offset() {
    let site = Site::data_center(json!({})).await;
    site.fake.state().search_page = 40;
    let issues = site.fake.seed(100, &["gitward"]);
    site.fake.person_closes("SEC-7", "Won't Do");
    let ids: Vec<String> = issues.iter().map(|i| i.id.to_string()).collect();
    let from = site.count();
    let tickets = guard(site.jira.observe(&ids)).await.expect("observed");
    assert_eq!(tickets.len(), 100);
    assert!(tickets[6].accepted);
    let starts: Vec<Value> = site
        .since(from)
        .iter()
        .map(|r| r.body["startAt"].clone())
        .collect();
    assert_eq!(starts, [json!(0), json!(40), json!(80)]);
    site.check();
}

#[tokio::test]
async fn a_jira_that_hangs_up_is_retried() {
    let server = fakes::hang_up().await;
    let dir = tempfile::tempdir().unwrap();
    let mut jira = Jira::new(
        &settings(json!({})),
        &endpoint(&server.url(), &dir, Some(USER), TOKEN),
    )
    .unwrap();
    let (error, after) = retry_of(guard(jira.prepare()).await);
    assert!(
        error.starts_with("reading the issue types of project SEC: "),
        "{error}"
    );
    assert!(!error.contains(TOKEN));
    assert_eq!(after, None);
    let (_, _) = retry_of(guard(jira.observe(&["10001".to_owned()])).await);
    assert_eq!(jira.requests(), 2);
}
