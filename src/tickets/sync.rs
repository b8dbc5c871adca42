//! Keeping tickets in step both ways: the tickets a sink owns are read back in pages of
//! [`OBSERVE_BATCH`] (never a scan of the project), so that what people did — closed one as
//! won't-fix, reassigned it, closed it by hand — is known; and open tickets past their due
//! date are told once as `ticket.sla_breached` through the other sinks.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::decide::{self, TicketState};
use super::store::{self, Record};
use super::{Failure, OBSERVE_BATCH, TicketSystem};
use crate::events::outbox;
use crate::events::{Draft, EventData};
use crate::model::EventType;
use crate::sinks::worker::Outbox;

/// Most tickets of one sink read back in one synchronization: the ones read longest ago
/// come first, so all of them are read in turn.
pub const MOST_WATCHED: usize = 10_000;

/// What one synchronization did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Synced {
    /// Tickets read back.
    pub observed: usize,
    /// Tickets whose state changed there (`SEC-12: open → accepted`).
    pub changed: Vec<String>,
    /// `ticket.sla_breached` events added.
    pub breached: usize,
}

/// Tells the open tickets of sink `name` past their due date, once each: events of
/// repository `source`, straight into the outbox. Needs no call to the ticket system.
pub async fn breaches(
    outbox: &Outbox,
    name: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<usize, String> {
    let (name, source) = (name.to_owned(), source.to_owned());
    outbox
        .with(move |db| {
            let transaction = crate::store::write_transaction(db)?;
            let mut told = 0;
            for record in store::breaching(&transaction, now.date_naive())?
                .into_iter()
                .filter(|r| r.sink == name)
            {
                outbox::add(&transaction, &breach_event(&record, &source, now))?;
                store::put(
                    &transaction,
                    &Record {
                        breached: true,
                        updated_at: now,
                        ..record
                    },
                )?;
                told += 1;
            }
            transaction.commit()?;
            Ok(told)
        })
        .await
}

/// The event that tells `record`'s ticket is open past its due date.
pub fn breach_event(record: &Record, source: &str, now: DateTime<Utc>) -> crate::events::Event {
    let ticket = record.ticket.clone().unwrap_or_default();
    let due = record
        .due
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    Draft {
        kind: EventType::TicketSlaBreached,
        anchor: format!("{}@{due}", ticket.key),
        subject: record.subject.clone(),
        data: EventData {
            severity: record.severity,
            resource: None,
            commit: None,
            message: format!(
                "ticket {} ({}) is open past its due date {due}",
                ticket.key, record.title
            ),
            details: match json!({
                "sink": record.sink,
                "ticket": ticket.key,
                "url": ticket.url,
                "status": ticket.status,
                "assignee": ticket.assignee,
                "due": due,
                "problem": record.key,
                "openedAt": record.opened_at,
            }) {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            compliance: Vec::new(),
            fingerprint: record.tag.clone(),
            condition: None,
        },
    }
    .seal(source, now)
}

/// Reads back the tickets of sink `name` that people may change, and records what they did.
pub async fn observe(
    outbox: &Outbox,
    name: &str,
    system: &dyn TicketSystem,
    now: DateTime<Utc>,
) -> Result<Synced, Failure> {
    let sink = name.to_owned();
    let watched = outbox
        .with(move |db| store::watched(db, &sink, MOST_WATCHED, now))
        .await
        .map_err(|error| Failure::Retry { error, after: None })?;
    let mut synced = Synced::default();
    for page in watched.chunks(OBSERVE_BATCH) {
        let ids: Vec<String> = page
            .iter()
            .filter_map(|r| r.ticket.as_ref().map(|t| t.id.clone()))
            .collect();
        let seen: HashMap<String, super::Ticket> = system
            .observe(&ids)
            .await?
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        synced.observed += seen.len();
        let mut updated = Vec::new();
        for record in page {
            let Some(before) = &record.ticket else {
                continue;
            };
            let (state, ticket) = match seen.get(&before.id) {
                Some(now_there) => (
                    decide::observed(record.state, now_there.done, now_there.accepted),
                    super::Ticket {
                        // Its key and link stay as recorded: they were checked when made.
                        id: before.id.clone(),
                        key: before.key.clone(),
                        url: before.url.clone(),
                        ..now_there.clone()
                    },
                ),
                // Deleted, or moved where the credential cannot see it.
                None => (
                    TicketState::Closed,
                    super::Ticket {
                        status: "not found".to_owned(),
                        done: true,
                        ..before.clone()
                    },
                ),
            };
            if state != record.state {
                synced.changed.push(format!(
                    "{}: {} → {}",
                    before.key,
                    record.state.as_str(),
                    state.as_str()
                ));
            }
            updated.push(Record {
                state,
                ticket: Some(ticket),
                synced_at: Some(now),
                ..record.clone()
            });
        }
        outbox
            .with(move |db| {
                let transaction = crate::store::write_transaction(db)?;
                for record in &updated {
                    // Only if no event changed it meanwhile: the event's change wins.
                    let current = store::get(&transaction, &record.place, &record.key)?;
                    if current.is_some_and(|c| c.last_seq == record.last_seq) {
                        store::put(&transaction, record)?;
                    }
                }
                transaction.commit()
            })
            .await
            .map_err(|error| Failure::Retry { error, after: None })?;
    }
    Ok(synced)
}

/// How the daemon keeps one ticket sink in step.
pub struct Follow {
    pub name: String,
    pub outbox: Outbox,
    /// The repository's event source and the poll interval, as the config in force says.
    pub settings: std::sync::Arc<dyn Fn() -> (String, Duration) + Send + Sync>,
    pub endpoints: crate::daemon::delivery::Endpoints,
    /// Called when a synchronization changed what is recorded of tickets: the status branch
    /// is written again.
    pub changed: std::sync::Arc<dyn Fn() + Send + Sync>,
}

impl Follow {
    /// Synchronizes every poll interval until `stop` is set or the sink is gone.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut told: Option<String> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let (source, interval) = (self.settings)();
            let mut wait = interval.max(Duration::from_secs(1));
            match self.round(&source).await {
                Ok(None) => return,
                Ok(Some(synced)) => {
                    told = None;
                    if !synced.changed.is_empty() || synced.breached > 0 {
                        tracing::info!(sink = %self.name, changed = ?synced.changed, breached = synced.breached, "tickets synchronized");
                        (self.changed)();
                    }
                }
                Err((problem, after)) => {
                    // The system said how long to leave it alone: never sooner.
                    wait = wait.max(after.unwrap_or_default());
                    if told.as_ref() != Some(&problem) {
                        tracing::warn!(sink = %self.name, %problem, "tickets not synchronized");
                        told = Some(problem);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One synchronization; `None` when the sink is gone from the repository or keeps no
    /// tickets. Why it failed, and how long the system asked to be left alone.
    async fn round(&self, source: &str) -> Result<Option<Synced>, (String, Option<Duration>)> {
        let name = self.name.clone();
        let gone = |error: String| (error, None);
        let Some(registered) = self
            .outbox
            .with(move |db| outbox::sink(db, &name))
            .await
            .map_err(gone)?
        else {
            return Ok(None);
        };
        if registered.retired
            || !matches!(
                registered.spec.type_,
                crate::model::SinkType::Jira | crate::model::SinkType::ServiceNow
            )
        {
            return Ok(None);
        }
        let now = Utc::now();
        let breached = breaches(&self.outbox, &self.name, source, now)
            .await
            .map_err(gone)?;
        let endpoints = (self.endpoints)();
        let endpoint = endpoints.get(&registered.spec.endpoint).ok_or_else(|| {
            gone(format!(
                "endpoint `{}` is not defined",
                registered.spec.endpoint
            ))
        })?;
        let system = super::system(&registered.spec, endpoint).map_err(|p| gone(p.0))?;
        let mut synced = observe(&self.outbox, &self.name, system.as_ref(), now)
            .await
            .map_err(|failure| match failure {
                Failure::Retry { error, after } => (error, after),
                Failure::Refused { answer } => (answer, None),
            })?;
        synced.breached = breached;
        Ok(Some(synced))
    }
}
