//! Tickets: one per open problem, in Jira or ServiceNow, opened when the problem opens,
//! updated when it changes, resolved when it clears and reopened when it comes back.
//!
//! What to do with a ticket is decided from plain values ([`decide`]); the ticket sink
//! ([`sink`]) records each problem's ticket in the state database ([`store`]) and carries the
//! decision out through a [`TicketSystem`], one module per kind ([`jira`], [`servicenow`]).
//! [`sync`] learns of people's changes (won't-fix, reassignment, a manual close) and tells
//! of tickets open past their due date.

pub mod decide;
pub mod jira;
pub mod servicenow;
pub mod sink;
pub mod store;
pub mod sync;
pub mod template;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::model::{BySeverity, FindingSeverity};

/// Most tickets one observing request asks about (Jira's and ServiceNow's page size).
pub const OBSERVE_BATCH: usize = 100;

/// A problem, as a new ticket tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The problem's condition key (`finding/<fingerprint>`, `Certificate/web`...).
    pub key: String,
    /// What finds the ticket again: a Jira label, a ServiceNow `correlation_id`. Derived from
    /// the repository and the key, never from the text, so a reworded finding is the same
    /// problem.
    pub tag: String,
    pub severity: FindingSeverity,
    /// One line, at most [`TITLE_CHARS`] characters.
    pub title: String,
    pub description: Description,
    /// The due date from the sink's SLA days, when its severity has one.
    pub due: Option<NaiveDate>,
    /// The event that opened (or last changed) the problem: templated fields read it.
    pub event: Event,
    /// On an update, the severity the ticket had: its priority (impact, urgency) is set again
    /// only when the severity's differs, so that a person's change of it stands otherwise.
    pub previous: Option<FindingSeverity>,
}

/// Longest ticket title (Jira's `summary` and ServiceNow's `short_description` take 255).
pub const TITLE_CHARS: usize = 250;

/// What a ticket's description says, for each system to lay out its own way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    /// What is wrong: the event's message.
    pub what: String,
    /// Where: `file:line` at a commit, with a link when the repository is on a known forge.
    pub place: Option<Place>,
    /// Why it matters: the policy or check and its enforcement.
    pub why: String,
    /// How to fix it.
    pub fix: String,
    /// Compliance controls the problem touches.
    pub compliance: Vec<String>,
    /// The commit it was seen in, and who made it.
    pub commit: Option<String>,
}

/// A place in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `certificates/web.yaml:12 at 0123abcd4567`.
    pub text: String,
    pub url: Option<String>,
}

/// A comment on a ticket: text, and the commit it names with a link when there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub link: Option<String>,
}

/// A ticket as its system shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// What API calls address: a Jira issue id, a ServiceNow `sys_id`.
    pub id: String,
    /// What people see: `SEC-12`, `INC0010002`.
    pub key: String,
    /// Where people open it.
    pub url: String,
    /// Its status as the system names it (`In Progress`, `Resolved`...).
    pub status: String,
    /// Whether it is closed or resolved.
    pub done: bool,
    /// Whether a person closed it as "won't fix": it is never reopened.
    pub accepted: bool,
    /// Who it is assigned to, as the system shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
}

/// Why a call to a ticket system did not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing is known to have changed, or it cannot be told (network error, 408, 429, 5xx,
    /// 401/403): the same call may be made again, after `after` when the system said.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// The system refused it and will refuse it again (another 4xx; a required field the
    /// sink does not set): what it said.
    Refused { answer: String },
}

impl Failure {
    /// A failure from a sink-level answer of [`crate::sinks::http::classify`].
    pub fn from_answer(answer: crate::sinks::Answer) -> Option<Failure> {
        match answer {
            crate::sinks::Answer::Delivered { .. } => None,
            crate::sinks::Answer::Retry { error, after } => Some(Failure::Retry { error, after }),
            crate::sinks::Answer::Rejected { answer } => Some(Failure::Refused { answer }),
        }
    }
}

/// A call to a ticket system, under way.
pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, Failure>> + Send + 'a>>;

/// A ticket system: how tickets are found, opened, changed and read there.
pub trait TicketSystem: Send + Sync {
    /// Checks what can be checked before tickets are filed — that the credential works,
    /// that the fields the project or table requires are set, which transitions or close
    /// codes exist — and keeps what it learned. A `Refused` failure says what the host or
    /// the repository must fix.
    fn prepare(&mut self) -> Call<'_, ()>;

    /// The open ticket carrying `tag`, if there is one: after a create whose outcome is
    /// unknown, so that it is not created twice.
    fn find<'a>(&'a self, tag: &'a str) -> Call<'a, Option<Ticket>>;

    /// Opens a ticket for `problem`.
    fn create<'a>(&'a self, problem: &'a Problem) -> Call<'a, Ticket>;

    /// Tells `ticket` that its problem changed (a new commit still has it; its severity
    /// rose): a comment, and the new priority or urgency in the same call where the system
    /// allows.
    fn update<'a>(
        &'a self,
        ticket: &'a Ticket,
        problem: &'a Problem,
        note: &'a Note,
    ) -> Call<'a, ()>;

    /// Resolves `ticket` with `note` (naming the commit that cleared its problem).
    fn resolve<'a>(&'a self, ticket: &'a Ticket, note: &'a Note) -> Call<'a, Ticket>;

    /// Reopens `ticket` with `note` (naming the commit that brought its problem back).
    fn reopen<'a>(
        &'a self,
        ticket: &'a Ticket,
        problem: &'a Problem,
        note: &'a Note,
    ) -> Call<'a, Ticket>;

    /// The tickets with these ids as they are now, in one request (at most
    /// [`OBSERVE_BATCH`] ids): tickets deleted there are left out.
    fn observe<'a>(&'a self, ids: &'a [String]) -> Call<'a, Vec<Ticket>>;

    /// Requests made so far, for the benchmark of API calls.
    fn requests(&self) -> u64;

    /// How long after a write its search shows it: a create whose outcome is unknown is
    /// looked up no sooner, lest the lookup miss it and a second ticket be made.
    fn settle(&self) -> Duration {
        Duration::ZERO
    }
}

/// The ticket system a sink of type jira or servicenow files in.
pub fn system(
    spec: &crate::model::SinkSpec,
    endpoint: &crate::config::Endpoint,
) -> Result<Box<dyn TicketSystem>, crate::sinks::SinkProblem> {
    use crate::model::SinkType;
    use crate::sinks::SinkProblem;
    let missing =
        |block: &str| SinkProblem(format!("a {} sink needs a `{block}` block", spec.type_));
    Ok(match spec.type_ {
        SinkType::Jira => Box::new(jira::Jira::new(
            spec.jira.as_ref().ok_or_else(|| missing("jira"))?,
            endpoint,
        )?),
        SinkType::ServiceNow => Box::new(servicenow::ServiceNow::new(
            spec.servicenow
                .as_ref()
                .ok_or_else(|| missing("servicenow"))?,
            endpoint,
        )?),
        other => {
            return Err(SinkProblem(format!("a {other} sink keeps no tickets")));
        }
    })
}

/// Days from a ticket's opening to its due date, by default.
pub fn default_sla() -> BySeverity<u32> {
    BySeverity {
        critical: Some(7),
        high: Some(30),
        medium: Some(90),
        low: Some(120),
        info: None,
    }
}
