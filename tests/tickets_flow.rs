//! The life of tickets as a ticket sink leads it, against a ticket system kept in memory:
//! one ticket per problem through open, update, resolve and reopen; won't-fix respected; a
//! reworded finding is the same problem; a create whose answer was lost is looked up, not
//! made twice; an event sent again is not applied twice; SLA breaches are told once.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use gitward::events::outbox::Stored;
use gitward::events::{CommitRef, ConditionChange, Draft, EventData, ResourceRef};
use gitward::model::{EventType, FindingSeverity, SinkSpec};
use gitward::sinks::worker::Outbox;
use gitward::sinks::{Answer, Sink};
use gitward::store::Store;
use gitward::tickets::decide::TicketState;
use gitward::tickets::sink::TicketSink;
use gitward::tickets::store;
use gitward::tickets::{Call, Failure, Note, Problem, Ticket, TicketSystem};

const SOURCE: &str = "https://github.com/ops/pki.git";

/// What the memory system holds and was asked.
#[derive(Default)]
struct Tracker {
    tickets: Vec<(Ticket, String, Vec<String>)>,
    calls: Vec<String>,
    /// The next create makes the ticket but its answer is lost.
    lose_next_create: bool,
    /// How long the search takes to show a new ticket.
    settle: std::time::Duration,
}

#[derive(Clone, Default)]
struct Memory(Arc<Mutex<Tracker>>);

impl Memory {
    fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().calls.clone()
    }

    fn tickets(&self) -> Vec<(Ticket, String, Vec<String>)> {
        self.0.lock().unwrap().tickets.clone()
    }

    /// A person closes ticket `key`, as won't-fix or not.
    fn close(&self, key: &str, wont_fix: bool) {
        let mut tracker = self.0.lock().unwrap();
        let ticket = &mut tracker
            .tickets
            .iter_mut()
            .find(|(t, _, _)| t.key == key)
            .unwrap()
            .0;
        ticket.done = true;
        ticket.accepted = wont_fix;
        ticket.status = if wont_fix { "Won't Fix" } else { "Done" }.into();
    }

    /// Moves `ticket` with `change`, noting `note` on it, as call `what`.
    fn transition(
        &self,
        what: &str,
        ticket: &Ticket,
        note: &Note,
        change: impl FnOnce(&mut Ticket),
    ) -> Result<Ticket, Failure> {
        let mut tracker = self.0.lock().unwrap();
        tracker.calls.push(format!("{what} {}", ticket.key));
        let (held, _, notes) = tracker
            .tickets
            .iter_mut()
            .find(|(t, _, _)| t.id == ticket.id)
            .ok_or(Failure::Refused {
                answer: "no such issue".into(),
            })?;
        change(held);
        notes.push(note.text.clone());
        Ok(held.clone())
    }
}

fn done<'a, T: Send + 'a>(value: Result<T, Failure>) -> Call<'a, T> {
    Box::pin(async move { value })
}

impl TicketSystem for Memory {
    fn prepare(&mut self) -> Call<'_, ()> {
        self.0.lock().unwrap().calls.push("prepare".into());
        done(Ok(()))
    }

    fn find<'a>(&'a self, tag: &'a str) -> Call<'a, Option<Ticket>> {
        let mut tracker = self.0.lock().unwrap();
        tracker.calls.push(format!("find {tag}"));
        let found = tracker
            .tickets
            .iter()
            .find(|(t, label, _)| label == tag && !t.done)
            .map(|(t, _, _)| t.clone());
        done(Ok(found))
    }

    fn create<'a>(&'a self, problem: &'a Problem) -> Call<'a, Ticket> {
        let mut tracker = self.0.lock().unwrap();
        let n = tracker.tickets.len() + 1;
        tracker.calls.push(format!("create SEC-{n}"));
        let ticket = Ticket {
            id: format!("{}", 10_000 + n),
            key: format!("SEC-{n}"),
            url: format!("https://jira.example/browse/SEC-{n}"),
            status: "To Do".into(),
            ..Ticket::default()
        };
        tracker
            .tickets
            .push((ticket.clone(), problem.tag.clone(), Vec::new()));
        if std::mem::take(&mut tracker.lose_next_create) {
            return done(Err(Failure::Retry {
                error: "connection closed before the answer".into(),
                after: None,
            }));
        }
        done(Ok(ticket))
    }

    fn update<'a>(&'a self, ticket: &'a Ticket, _: &'a Problem, note: &'a Note) -> Call<'a, ()> {
        let mut tracker = self.0.lock().unwrap();
        tracker.calls.push(format!("update {}", ticket.key));
        if let Some(entry) = tracker
            .tickets
            .iter_mut()
            .find(|(t, _, _)| t.id == ticket.id)
        {
            entry.2.push(note.text.clone());
        }
        done(Ok(()))
    }

    fn resolve<'a>(&'a self, ticket: &'a Ticket, note: &'a Note) -> Call<'a, Ticket> {
        done(self.transition("resolve", ticket, note, |t| {
            t.done = true;
            t.status = "Done".into();
        }))
    }

    fn reopen<'a>(
        &'a self,
        ticket: &'a Ticket,
        _: &'a Problem,
        note: &'a Note,
    ) -> Call<'a, Ticket> {
        done(self.transition("reopen", ticket, note, |t| {
            t.done = false;
            t.accepted = false;
            t.status = "Reopened".into();
        }))
    }

    fn observe<'a>(&'a self, ids: &'a [String]) -> Call<'a, Vec<Ticket>> {
        let mut tracker = self.0.lock().unwrap();
        tracker.calls.push(format!("observe {}", ids.len()));
        let seen = tracker
            .tickets
            .iter()
            .filter(|(t, _, _)| ids.contains(&t.id))
            .map(|(t, _, _)| t.clone())
            .collect();
        done(Ok(seen))
    }

    fn requests(&self) -> u64 {
        self.0.lock().unwrap().calls.len() as u64
    }

    fn settle(&self) -> std::time::Duration {
        self.0.lock().unwrap().settle
    }
}

fn spec() -> SinkSpec {
    serde_json::from_value(serde_json::json!({
        "type": "jira",
        "endpoint": "jira-cloud",
        "jira": {"project": "SEC"},
    }))
    .unwrap()
}

struct Bench {
    _dir: tempfile::TempDir,
    outbox: Outbox,
    memory: Memory,
    sink: TicketSink,
    seq: i64,
}

impl Bench {
    fn new() -> Bench {
        Bench::with(spec())
    }

    fn with(spec: SinkSpec) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(Store::open(dir.path()).unwrap());
        let memory = Memory::default();
        let sink = TicketSink::new(
            "security-jira",
            &spec,
            Box::new(memory.clone()),
            outbox.clone(),
        );
        Bench {
            _dir: dir,
            outbox,
            memory,
            sink,
            seq: 0,
        }
    }

    /// An event about problem `key` at commit `sha`, next in the outbox.
    fn event(
        &mut self,
        key: &str,
        open: bool,
        sha: &str,
        message: &str,
        severity: FindingSeverity,
    ) -> Stored {
        self.seq += 1;
        let kind = if open {
            EventType::PolicyViolation
        } else {
            EventType::PolicyResolved
        };
        let event = Draft {
            kind,
            anchor: format!("{sha}#{}", self.seq),
            subject: "Certificate/web".into(),
            data: EventData {
                severity,
                resource: Some(ResourceRef {
                    kind: "Certificate".into(),
                    name: "web".into(),
                    file: Some("certificates/web.yaml".into()),
                    line: Some(7),
                }),
                commit: Some(CommitRef {
                    sha: sha.into(),
                    author: "Ann <ann@example.com>".into(),
                }),
                message: message.into(),
                details: serde_json::Map::from_iter([
                    ("policy".into(), serde_json::json!("key-size")),
                    ("enforcement".into(), serde_json::json!("deny")),
                ]),
                compliance: vec!["PCI-DSS 4.0 4.2.1".into()],
                fingerprint: key.trim_start_matches("finding/").into(),
                condition: Some(ConditionChange {
                    key: key.into(),
                    open,
                }),
            },
        }
        .seal(SOURCE, Utc::now());
        let json = serde_json::to_string(&event).unwrap();
        Stored {
            seq: self.seq,
            event,
            json,
        }
    }

    async fn send(&mut self, events: &[Stored]) -> Answer {
        self.sink.send(events).await
    }

    async fn record(&self, key: &str) -> Option<store::Record> {
        let key = key.to_owned();
        self.outbox
            .with(move |db| store::get(db, "jira:jira-cloud:SEC", &key))
            .await
            .unwrap()
    }
}

const A: &str = "a000000000000000000000000000000000000000";
const B: &str = "b000000000000000000000000000000000000000";
const C: &str = "c000000000000000000000000000000000000000";
const D: &str = "d000000000000000000000000000000000000000";

#[tokio::test]
async fn a_problem_opens_changes_clears_and_comes_back_on_one_ticket() {
    use FindingSeverity::{Critical, High};
    let mut bench = Bench::new();
    let opened = bench.event("finding/f1", true, A, "key of web is 1024 bits", High);
    assert_eq!(
        bench.send(&[opened]).await,
        Answer::Delivered { duplicates: 0 }
    );
    let changed = bench.event("finding/f1", true, B, "key of web is 1024 bits", Critical);
    let cleared = bench.event("finding/f1", false, C, "key of web is 2048 bits", High);
    assert_eq!(
        bench.send(&[changed, cleared]).await,
        Answer::Delivered { duplicates: 0 }
    );
    let back = bench.event("finding/f1", true, D, "key of web is 1024 bits again", High);
    assert_eq!(
        bench.send(&[back]).await,
        Answer::Delivered { duplicates: 0 }
    );
    assert_eq!(
        bench.memory.calls(),
        [
            "prepare",
            "create SEC-1",
            "update SEC-1",
            "resolve SEC-1",
            "reopen SEC-1"
        ]
    );
    let tickets = bench.memory.tickets();
    assert_eq!(tickets.len(), 1, "one ticket for one problem");
    let notes = &tickets[0].2;
    assert!(
        notes[0].contains("Still open in commit b00000000000"),
        "{notes:?}"
    );
    assert!(
        notes[0].contains("Severity rose from high to critical"),
        "{notes:?}"
    );
    assert!(
        notes[1].contains("cleared in commit c00000000000"),
        "{notes:?}"
    );
    assert!(
        notes[2].contains("came back in commit d00000000000"),
        "{notes:?}"
    );
    let record = bench.record("finding/f1").await.unwrap();
    assert_eq!(record.state, TicketState::Open);
    assert!(record.problem_open);
    assert_eq!(record.ticket.unwrap().key, "SEC-1");
}

#[tokio::test]
async fn a_returning_problem_gets_a_new_ticket_when_the_sink_says_so() {
    let mut spec = spec();
    spec.jira.as_mut().unwrap().on_return = gitward::model::OnReturn::New;
    let mut bench = Bench::with(spec);
    let events = [
        bench.event("finding/f1", true, A, "m", FindingSeverity::High),
        bench.event("finding/f1", false, B, "m", FindingSeverity::High),
        bench.event("finding/f1", true, C, "m", FindingSeverity::High),
    ];
    bench.send(&events).await;
    assert_eq!(
        bench.memory.calls(),
        ["prepare", "create SEC-1", "resolve SEC-1", "create SEC-2"]
    );
}

#[tokio::test]
async fn a_wont_fix_is_never_reopened_and_its_problem_is_accepted_until_it_clears() {
    let mut bench = Bench::new();
    let opened = bench.event("finding/f1", true, A, "m", FindingSeverity::High);
    bench.send(&[opened]).await;
    bench.memory.close("SEC-1", true);
    let synced =
        gitward::tickets::sync::observe(&bench.outbox, "security-jira", &bench.memory, Utc::now())
            .await
            .unwrap();
    assert_eq!(synced.changed, ["SEC-1: open → accepted"]);
    let still = bench.event("finding/f1", true, B, "m", FindingSeverity::Critical);
    bench.send(&[still]).await;
    let record = bench.record("finding/f1").await.unwrap();
    assert_eq!(
        (record.state, record.problem_open),
        (TicketState::Accepted, true)
    );
    let cleared = bench.event("finding/f1", false, C, "m", FindingSeverity::High);
    bench.send(&[cleared]).await;
    assert!(
        !bench.memory.calls().iter().any(|c| c.starts_with("reopen")
            || c.starts_with("update")
            || c.starts_with("resolve")),
        "{:?}",
        bench.memory.calls()
    );
    // Once it cleared, its return is a new problem: a new ticket, the won't-fix stays closed.
    let back = bench.event("finding/f1", true, D, "m", FindingSeverity::High);
    bench.send(&[back]).await;
    assert_eq!(bench.memory.calls().last().unwrap(), "create SEC-2");
}

#[tokio::test]
async fn a_ticket_a_person_closed_while_its_problem_lasts_is_reopened_by_the_next_change() {
    let mut bench = Bench::new();
    let opened = bench.event("finding/f1", true, A, "m", FindingSeverity::High);
    bench.send(&[opened]).await;
    bench.memory.close("SEC-1", false);
    gitward::tickets::sync::observe(&bench.outbox, "security-jira", &bench.memory, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        bench.record("finding/f1").await.unwrap().state,
        TicketState::Closed
    );
    let still = bench.event("finding/f1", true, B, "m", FindingSeverity::High);
    bench.send(&[still]).await;
    assert_eq!(bench.memory.calls().last().unwrap(), "reopen SEC-1");
    let notes = &bench.memory.tickets()[0].2;
    assert!(
        notes[0].contains("still there in commit b00000000000"),
        "{notes:?}"
    );
}

#[tokio::test]
async fn a_reworded_finding_is_the_same_problem() {
    let mut bench = Bench::new();
    let first = bench.event(
        "finding/f1",
        true,
        A,
        "key is 1024 bits (line 7)",
        FindingSeverity::High,
    );
    bench.send(&[first]).await;
    let reworded = bench.event(
        "finding/f1",
        true,
        B,
        "RSA key has only 1024 bits",
        FindingSeverity::High,
    );
    bench.send(&[reworded]).await;
    assert_eq!(bench.memory.tickets().len(), 1);
    assert_eq!(
        bench.memory.calls(),
        ["prepare", "create SEC-1", "update SEC-1"]
    );
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_looked_up_not_made_again() {
    let mut bench = Bench::new();
    bench.memory.0.lock().unwrap().lose_next_create = true;
    let opened = bench.event("finding/f1", true, A, "m", FindingSeverity::High);
    let answer = bench.send(std::slice::from_ref(&opened)).await;
    assert!(matches!(answer, Answer::Retry { .. }), "{answer:?}");
    assert_eq!(
        bench.record("finding/f1").await.unwrap().state,
        TicketState::Creating
    );
    // The worker sends the same batch again.
    assert_eq!(
        bench.send(&[opened]).await,
        Answer::Delivered { duplicates: 0 }
    );
    let calls = bench.memory.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[2].starts_with("find gitward-"), "{calls:?}");
    assert_eq!(bench.memory.tickets().len(), 1);
    assert_eq!(
        bench
            .record("finding/f1")
            .await
            .unwrap()
            .ticket
            .unwrap()
            .key,
        "SEC-1"
    );
}

#[tokio::test]
async fn a_batch_sent_again_applies_nothing_twice() {
    let mut bench = Bench::new();
    let events = [
        bench.event("finding/f1", true, A, "m", FindingSeverity::High),
        bench.event("finding/f2", true, A, "m", FindingSeverity::High),
        bench.event("finding/f1", false, B, "m", FindingSeverity::High),
    ];
    bench.send(&events).await;
    let before = bench.memory.calls();
    bench.send(&events).await;
    assert_eq!(bench.memory.calls(), before);
}

#[tokio::test]
async fn events_that_open_or_clear_no_problem_make_no_call() {
    let mut bench = Bench::new();
    let mut plain = bench.event("finding/f1", true, A, "m", FindingSeverity::High);
    plain.event.data.condition = None;
    bench.send(&[plain]).await;
    assert!(
        bench.memory.calls().is_empty(),
        "{:?}",
        bench.memory.calls()
    );
}

#[tokio::test]
async fn an_open_ticket_past_its_due_date_is_told_once_as_breached() {
    let mut bench = Bench::new();
    let opened = bench.event("finding/f1", true, A, "m", FindingSeverity::Critical);
    bench.send(&[opened]).await;
    let record = bench.record("finding/f1").await.unwrap();
    let due = record.due.unwrap();
    assert_eq!(due, Utc::now().date_naive() + chrono::Days::new(7));
    let later = Utc::now() + chrono::Duration::days(9);
    let told = gitward::tickets::sync::breaches(&bench.outbox, "security-jira", SOURCE, later)
        .await
        .unwrap();
    assert_eq!(told, 1);
    let again = gitward::tickets::sync::breaches(&bench.outbox, "security-jira", SOURCE, later)
        .await
        .unwrap();
    assert_eq!(again, 0);
    let events = bench
        .outbox
        .with(|db| gitward::events::outbox::list(db, None, Some("ticket.sla_breached"), 10))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.details["ticket"], "SEC-1");
    assert!(events[0].data.message.contains("past its due date"));
    assert!(bench.record("finding/f1").await.unwrap().breached);
}

#[tokio::test]
async fn a_lost_create_is_looked_up_only_once_the_search_can_show_it() {
    let mut bench = Bench::new();
    {
        let mut tracker = bench.memory.0.lock().unwrap();
        tracker.lose_next_create = true;
        tracker.settle = std::time::Duration::from_secs(60);
    }
    let opened = bench.event("finding/f1", true, A, "m", FindingSeverity::High);
    bench.send(std::slice::from_ref(&opened)).await;
    let answer = bench.send(&[opened]).await;
    let Answer::Retry {
        after: Some(after), ..
    } = answer
    else {
        panic!("{answer:?}");
    };
    assert!(after > std::time::Duration::from_secs(50), "{after:?}");
    assert_eq!(
        bench.memory.calls(),
        ["prepare", "create SEC-1"],
        "no lookup yet"
    );
}
