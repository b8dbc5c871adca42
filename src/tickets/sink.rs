//! The ticket sink: events that open, change or clear a problem become ticket calls. Each
//! problem's ticket is recorded in the state database before and after every call that
//! changes it, so that an event sent again (after a crash, a retry, a split batch) is not
//! applied twice, and a create whose answer was lost is looked up before it is made again.

use chrono::{DateTime, Days, Utc};

use super::decide::{self, Change, Standing, Step, TicketState};
use super::store::{self, Record};
use super::{Description, Failure, Note, Place, Problem, TITLE_CHARS, Ticket, TicketSystem};
use crate::events::Event;
use crate::events::outbox::Stored;
use crate::model::{BySeverity, EventType, OnReturn, SinkSpec};
use crate::sinks::worker::Outbox;
use crate::sinks::{Answer, Sending, Sink};

/// Events one batch takes: each may be a few calls, paced.
const BATCH: usize = 20;

/// What a sink's settings say about the life of its tickets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub on_return: OnReturn,
    pub sla: BySeverity<u32>,
}

impl Rules {
    pub fn of(spec: &SinkSpec) -> Rules {
        let (on_return, sla) = match (&spec.jira, &spec.servicenow) {
            (Some(jira), _) => (jira.on_return, jira.sla.clone()),
            (_, Some(now)) => (now.on_return, now.sla.clone()),
            _ => (OnReturn::Reopen, BySeverity::default()),
        };
        Rules { on_return, sla }
    }
}

pub struct TicketSink {
    name: String,
    system: Box<dyn TicketSystem>,
    prepared: bool,
    rules: Rules,
    outbox: Outbox,
}

impl TicketSink {
    pub fn new(
        name: &str,
        spec: &SinkSpec,
        system: Box<dyn TicketSystem>,
        outbox: Outbox,
    ) -> TicketSink {
        TicketSink {
            name: name.to_owned(),
            system,
            prepared: false,
            rules: Rules::of(spec),
            outbox,
        }
    }

    /// Prepares the system before its first call. What it refuses then (a required field
    /// not mapped, a close code it does not have) is the sink's to fix, not the events': they
    /// wait, and the sink's status says why.
    async fn prepare(&mut self) -> Result<(), Failure> {
        if !self.prepared {
            self.system
                .prepare()
                .await
                .map_err(|failure| match failure {
                    Failure::Refused { answer } => Failure::Retry {
                        error: answer,
                        after: None,
                    },
                    retry => retry,
                })?;
            self.prepared = true;
        }
        Ok(())
    }

    async fn record(&self, sink: &str, key: &str) -> Result<Option<Record>, Failure> {
        let (sink, key) = (sink.to_owned(), key.to_owned());
        self.outbox
            .with(move |db| store::get(db, &sink, &key))
            .await
            .map_err(database)
    }

    async fn put(&self, record: Record) -> Result<(), Failure> {
        self.outbox
            .with(move |db| store::put(db, &record))
            .await
            .map_err(database)
    }

    async fn forget(&self, key: &str) -> Result<(), Failure> {
        let (sink, key) = (self.name.clone(), key.to_owned());
        self.outbox
            .with(move |db| {
                db.execute(
                    "DELETE FROM tickets WHERE sink = ?1 AND key = ?2",
                    rusqlite::params![sink, key],
                )
                .map(|_| ())
            })
            .await
            .map_err(database)
    }

    /// Applies one event; the system is prepared before the first event that needs a call,
    /// so that a batch with nothing for tickets makes none.
    async fn apply(&mut self, stored: &Stored) -> Result<(), Failure> {
        let event = &stored.event;
        let Some(condition) = &event.data.condition else {
            return Ok(());
        };
        let recorded = self.record(&self.name, &condition.key).await?;
        let change = Change {
            open: condition.open,
            severity: event.data.severity,
            seq: stored.seq,
        };
        let step = decide::decide(
            recorded.as_ref().map(Record::standing).as_ref(),
            &change,
            self.rules.on_return,
        );
        if !matches!(step, Step::Skip | Step::Record) {
            self.prepare().await?;
        }
        let now = Utc::now();
        if let (Step::FindThenCreate | Step::FindThenResolve, Some(record)) = (step, &recorded) {
            let waited = (now - record.updated_at).to_std().unwrap_or_default();
            if let Some(left) = self
                .system
                .settle()
                .checked_sub(waited)
                .filter(|l| !l.is_zero())
            {
                return Err(Failure::Retry {
                    error: "a create's answer was lost; the ticket is looked up once the \
                            system's search shows it"
                        .to_owned(),
                    after: Some(left),
                });
            }
        }
        let problem = problem(event, &condition.key, &self.rules, now);
        match (step, recorded) {
            (Step::Skip, _) => Ok(()),
            (Step::Create | Step::Replace, _) | (_, None) => {
                self.create(stored, &problem, now).await
            }
            (Step::FindThenCreate, Some(record)) => match self.system.find(&problem.tag).await? {
                Some(ticket) => self.opened(record, stored, ticket, now).await,
                None => self.create(stored, &problem, now).await,
            },
            (Step::Update, Some(record)) => self.update(record, stored, &problem, now).await,
            (Step::Resolve, Some(record)) => self.resolve(record, stored, now).await,
            (Step::FindThenResolve, Some(record)) => match self.system.find(&problem.tag).await? {
                Some(ticket) => {
                    let record = Record {
                        ticket: Some(ticket),
                        state: TicketState::Open,
                        ..record
                    };
                    self.resolve(record, stored, now).await
                }
                None => self.forget(&condition.key).await,
            },
            (Step::Reopen, Some(record)) => self.reopen(record, stored, &problem, now).await,
            (Step::Record, Some(record)) => {
                self.put(Record {
                    problem_open: change.open,
                    severity: change.severity,
                    last_seq: stored.seq,
                    updated_at: now,
                    ..record
                })
                .await
            }
        }
    }

    /// Opens a ticket: recorded as being created before the call, so that a crash or a lost
    /// answer leads to a lookup, not to a second ticket.
    async fn create(
        &self,
        stored: &Stored,
        problem: &Problem,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        let creating = new_record(&self.name, stored, problem, now);
        self.put(creating.clone()).await?;
        crate::failpoint::point("creating a ticket");
        match self.system.create(problem).await {
            Ok(ticket) => {
                crate::failpoint::point("ticket created, not recorded");
                self.opened(creating, stored, ticket, now).await
            }
            Err(Failure::Refused { answer }) => {
                // Known not to exist: nothing to look up later.
                self.forget(&problem.key).await?;
                Err(Failure::Refused { answer })
            }
            Err(retry) => Err(retry),
        }
    }

    async fn opened(
        &self,
        record: Record,
        stored: &Stored,
        ticket: Ticket,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        self.put(Record {
            state: TicketState::Open,
            problem_open: true,
            ticket: Some(ticket),
            last_seq: stored.seq,
            updated_at: now,
            ..record
        })
        .await
    }

    async fn update(
        &self,
        record: Record,
        stored: &Stored,
        problem: &Problem,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        let Some(ticket) = &record.ticket else {
            return self.create(stored, problem, now).await;
        };
        let note = update_note(&record.standing(), &stored.event);
        let problem = Problem {
            previous: Some(record.severity),
            ..problem.clone()
        };
        self.system.update(ticket, &problem, &note).await?;
        self.put(Record {
            problem_open: true,
            severity: stored.event.data.severity,
            commit: commit_of(&stored.event).or(record.commit.clone()),
            last_seq: stored.seq,
            updated_at: now,
            ..record
        })
        .await
    }

    async fn resolve(
        &self,
        record: Record,
        stored: &Stored,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        let Some(ticket) = &record.ticket else {
            return self.forget(&record.key).await;
        };
        let note = resolve_note(&stored.event);
        let ticket = self.system.resolve(ticket, &note).await?;
        self.put(Record {
            state: TicketState::Resolved,
            problem_open: false,
            ticket: Some(ticket),
            last_seq: stored.seq,
            updated_at: now,
            ..record
        })
        .await
    }

    async fn reopen(
        &self,
        record: Record,
        stored: &Stored,
        problem: &Problem,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        let Some(ticket) = &record.ticket else {
            return self.create(stored, problem, now).await;
        };
        let note = reopen_note(&stored.event, record.problem_open);
        let ticket = match self.system.reopen(ticket, problem, &note).await {
            Ok(ticket) => ticket,
            // The system will not reopen it (a closed ServiceNow record is read-only; the
            // workflow has no way back): the problem gets a new ticket.
            Err(Failure::Refused { answer }) => {
                tracing::info!(sink = %self.name, ticket = %ticket.key, %answer, "ticket cannot be reopened; opening a new one");
                return self.create(stored, problem, now).await;
            }
            Err(retry) => return Err(retry),
        };
        // A problem that came back is timed afresh; one a person closed while it lasted
        // keeps its due date.
        let (opened_at, due, breached) = if record.problem_open {
            (record.opened_at, record.due, record.breached)
        } else {
            (now, problem.due, false)
        };
        self.put(Record {
            state: TicketState::Open,
            problem_open: true,
            ticket: Some(ticket),
            severity: stored.event.data.severity,
            commit: commit_of(&stored.event),
            opened_at,
            due,
            breached,
            last_seq: stored.seq,
            updated_at: now,
            ..record
        })
        .await
    }
}

fn database(error: String) -> Failure {
    Failure::Retry { error, after: None }
}

impl Sink for TicketSink {
    fn batch_size(&self) -> usize {
        BATCH
    }

    fn send<'a>(&'a mut self, events: &'a [Stored]) -> Sending<'a> {
        Box::pin(async move {
            for stored in events {
                let applied = if stored.event.kind() == Some(EventType::SinkTest) {
                    // Preparing proves the credential and the project; a test files nothing.
                    self.prepare().await
                } else {
                    self.apply(stored).await
                };
                match applied {
                    Ok(()) => {}
                    Err(Failure::Retry { error, after }) => return Answer::Retry { error, after },
                    Err(Failure::Refused { answer }) => return Answer::Rejected { answer },
                }
            }
            Answer::Delivered { duplicates: 0 }
        })
    }
}

/// The record of a problem whose ticket is being created.
fn new_record(sink: &str, stored: &Stored, problem: &Problem, now: DateTime<Utc>) -> Record {
    Record {
        sink: sink.to_owned(),
        key: problem.key.clone(),
        tag: problem.tag.clone(),
        state: TicketState::Creating,
        problem_open: true,
        severity: problem.severity,
        last_seq: stored.seq - 1,
        ticket: None,
        subject: stored.event.subject.clone(),
        title: problem.title.clone(),
        commit: commit_of(&stored.event),
        opened_at: now,
        due: problem.due,
        breached: false,
        synced_at: None,
        updated_at: now,
    }
}

fn commit_of(event: &Event) -> Option<String> {
    event.data.commit.as_ref().map(|c| c.sha.clone())
}

/// The tag of problem `key` of the repository `source`: a Jira label and a ServiceNow
/// correlation id (letters, digits and `-`, no spaces), the same whatever the problem's text.
pub fn tag(source: &str, key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(source.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    format!("gitward-{}", hex::encode(&digest[..10]))
}

/// Sha to show: its first 12 characters.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// `text` on one line, at most `chars` characters.
fn line(text: &str, chars: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= chars {
        return flat.to_owned();
    }
    let mut cut: String = flat.chars().take(chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The link to `file` at line `line` of commit `sha`, when the repository is on a forge whose
/// links are known.
pub fn forge_link(source: &str, sha: &str, file: &str, line: Option<u32>) -> Option<String> {
    let base = source.strip_suffix(".git").unwrap_or(source);
    let host = base.strip_prefix("https://")?.split('/').next()?;
    if !sha.bytes().all(|b| b.is_ascii_hexdigit()) || sha.is_empty() {
        return None;
    }
    let file: String = file
        .split('/')
        .map(|part| percent_encoding::utf8_percent_encode(part, PATH).to_string())
        .collect::<Vec<_>>()
        .join("/");
    let line = line.unwrap_or(1);
    match host {
        "github.com" => Some(format!("{base}/blob/{sha}/{file}#L{line}")),
        "gitlab.com" => Some(format!("{base}/-/blob/{sha}/{file}#L{line}")),
        "bitbucket.org" => Some(format!("{base}/src/{sha}/{file}#lines-{line}")),
        "codeberg.org" => Some(format!("{base}/src/commit/{sha}/{file}#L{line}")),
        _ => None,
    }
}

/// Characters escaped in a path segment of a link.
const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn commit_link(event: &Event) -> Option<String> {
    let sha = &event.data.commit.as_ref()?.sha;
    let base = event.source.strip_suffix(".git").unwrap_or(&event.source);
    forge_link(&event.source, sha, "x", None).map(|_| match base {
        b if b.starts_with("https://gitlab.com/") => format!("{b}/-/commit/{sha}"),
        b if b.starts_with("https://bitbucket.org/") => format!("{b}/commits/{sha}"),
        b => format!("{b}/commit/{sha}"),
    })
}

/// What a new ticket says about the problem `key` that `event` opens.
pub fn problem(event: &Event, key: &str, rules: &Rules, now: DateTime<Utc>) -> Problem {
    let data = &event.data;
    let place = data.resource.as_ref().and_then(|resource| {
        let file = resource.file.as_ref()?;
        let at = match resource.line {
            Some(line) => format!("{file}:{line}"),
            None => file.clone(),
        };
        let sha = data.commit.as_ref().map(|c| c.sha.as_str());
        Some(Place {
            text: match sha {
                Some(sha) => format!("{at} at {}", short(sha)),
                None => at,
            },
            url: sha.and_then(|sha| forge_link(&event.source, sha, file, resource.line)),
        })
    });
    let due = rules
        .sla
        .get(data.severity, &super::default_sla())
        .and_then(|days| {
            now.date_naive()
                .checked_add_days(Days::new(u64::from(days)))
        });
    Problem {
        key: key.to_owned(),
        tag: tag(&event.source, key),
        severity: data.severity,
        title: line(
            &format!("[{}] {}: {}", data.severity, event.subject, data.message),
            TITLE_CHARS,
        ),
        description: Description {
            what: line(&data.message, 4000),
            place,
            why: why(event),
            fix: fix(event),
            compliance: data.compliance.iter().map(|c| line(c, 200)).collect(),
            commit: data
                .commit
                .as_ref()
                .map(|c| format!("{} by {}", short(&c.sha), line(&c.author, 200))),
        },
        due,
        event: event.clone(),
        previous: None,
    }
}

fn detail<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event.data.details.get(key).and_then(|v| v.as_str())
}

fn why(event: &Event) -> String {
    match event.kind() {
        Some(EventType::PolicyViolation) => format!(
            "Policy {} ({} enforcement) does not pass for {}.",
            line(detail(event, "policy").unwrap_or("?"), 200),
            line(detail(event, "enforcement").unwrap_or("?"), 20),
            line(&event.subject, 300)
        ),
        Some(EventType::CertificateFailed) => format!(
            "{} could not be issued or written: services that use it keep the certificate they \
             have until it expires.",
            line(&event.subject, 300)
        ),
        Some(EventType::CertificateExpiring) => format!(
            "{} expires soon and has not been renewed: services that use it stop working \
             when it does.",
            line(&event.subject, 300)
        ),
        Some(EventType::GateOverrideOverdue) => "A gate was overridden and no second principal \
             has reviewed the override in time: separation of duties is not shown."
            .to_owned(),
        _ => format!("gitward reported {}.", line(&event.type_, 100)),
    }
}

fn fix(event: &Event) -> String {
    match event.kind() {
        Some(EventType::PolicyViolation) => "Change the resource so that the policy passes, or \
             add an exception with an owner and an expiry date to the policy, by pull request. \
             The ticket resolves itself once the change is applied."
            .to_owned(),
        Some(EventType::CertificateFailed | EventType::CertificateExpiring) => format!(
            "Run `gitward explain {}` and see the issuer's answer in the status branch; gitward \
             retries by itself. The ticket resolves itself once the certificate is in place.",
            event.data.commit.as_ref().map_or("HEAD", |c| short(&c.sha))
        ),
        Some(EventType::GateOverrideOverdue) => "Have another principal review the override: a \
             signed commit with `Override-Reviewed: <sha>`. The ticket then resolves itself."
            .to_owned(),
        _ => "The ticket resolves itself when the problem clears.".to_owned(),
    }
}

fn in_commit(event: &Event) -> String {
    event
        .data
        .commit
        .as_ref()
        .map_or_else(String::new, |c| format!(" in commit {}", short(&c.sha)))
}

fn update_note(before: &Standing, event: &Event) -> Note {
    let mut text = format!(
        "Still open{}: {}",
        in_commit(event),
        line(&event.data.message, 2000)
    );
    if decide::rose(before.severity, event.data.severity) {
        text.push_str(&format!(
            " Severity rose from {} to {}.",
            before.severity, event.data.severity
        ));
    }
    Note {
        text,
        link: commit_link(event),
    }
}

fn resolve_note(event: &Event) -> Note {
    Note {
        text: format!(
            "Resolved by gitward: the problem cleared{}. {}",
            in_commit(event),
            line(&event.data.message, 2000)
        ),
        link: commit_link(event),
    }
}

fn reopen_note(event: &Event, lasted: bool) -> Note {
    let text = if lasted {
        format!(
            "Reopened by gitward: the problem is still there{}. {}",
            in_commit(event),
            line(&event.data.message, 2000)
        )
    } else {
        format!(
            "Reopened by gitward: the problem came back{}. {}",
            in_commit(event),
            line(&event.data.message, 2000)
        )
    };
    Note {
        text,
        link: commit_link(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_point_at_the_line_on_known_forges_only() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            forge_link(
                "https://github.com/ops/pki.git",
                sha,
                "certificates/web app.yaml",
                Some(4)
            )
            .as_deref(),
            Some(
                "https://github.com/ops/pki/blob/0123456789abcdef0123456789abcdef01234567/\
                 certificates/web%20app.yaml#L4"
            )
        );
        assert_eq!(
            forge_link("https://gitlab.com/ops/pki", sha, "a.yaml", Some(2)).as_deref(),
            Some(
                "https://gitlab.com/ops/pki/-/blob/0123456789abcdef0123456789abcdef01234567/\
                 a.yaml#L2"
            )
        );
        assert_eq!(
            forge_link("https://git.example.com/ops/pki", sha, "a", None),
            None
        );
        assert_eq!(forge_link("file:///srv/pki", sha, "a", None), None);
        assert_eq!(
            forge_link("https://github.com/o/r", "x/../y", "a", None),
            None
        );
    }

    #[test]
    fn the_tag_names_the_problem_not_its_text() {
        let one = tag("https://github.com/ops/pki", "finding/abc");
        assert_eq!(one, tag("https://github.com/ops/pki", "finding/abc"));
        assert_ne!(one, tag("https://github.com/ops/other", "finding/abc"));
        assert!(one.starts_with("gitward-") && one.len() == 28, "{one}");
        assert!(one.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }

    #[test]
    fn a_title_is_one_bounded_line() {
        assert_eq!(line(" a\nb\tc ", 10), "a b c");
        let long = line(&"x".repeat(300), TITLE_CHARS);
        assert_eq!(long.chars().count(), TITLE_CHARS);
        assert!(long.ends_with('…'));
    }
}
