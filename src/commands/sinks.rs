//! `gitward sinks status|test|retry|discard` and `gitward events`: the outbox as an operator
//! sees it, from the state database.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{ValidateFormat, exit, write_out};
use crate::config::HostConfig;
use crate::diag::escaped;
use crate::error::{Error, Result};
use crate::events::outbox::{self, SinkState, Stored};
use crate::events::{Draft, EventData};
use crate::model::{EventType, FindingSeverity};
use crate::sinks::worker::{DRAIN_BUDGET, Drained, Outbox, Unobserved, drain};
use crate::sinks::{Answer, build};
use crate::store::Store;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("<tokio runtime>"))
}

/// Delivers each sink's backlog as far as the receivers take it now; what `reconcile
/// --once` does before it exits.
pub fn deliver(config: &HostConfig) -> Result<Vec<Drained>> {
    let outbox = Outbox::new(Store::open(&config.state_dir)?);
    runtime()?
        .block_on(drain(
            &outbox,
            &config.endpoints,
            Arc::new(Unobserved),
            DRAIN_BUDGET,
        ))
        .map_err(Error::Usage)
}

/// Lines telling which sinks still hold events, and why.
pub fn undelivered_lines(drained: &[Drained]) -> String {
    drained
        .iter()
        .filter_map(|d| {
            d.stopped.as_ref().map(|why| {
                format!(
                    "  sink {}: events kept for later: {}\n",
                    escaped(&d.sink),
                    escaped(why)
                )
            })
        })
        .collect()
}

fn states(config: &HostConfig) -> Result<Vec<SinkState>> {
    let store = Store::open(&config.state_dir)?;
    outbox::states(store.db()).map_err(|e| store.db_error()(e).into())
}

fn age(seconds: Option<i64>) -> String {
    match seconds {
        None => "-".to_owned(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86400),
    }
}

/// `gitward sinks status`.
pub fn status(config: &Path, format: ValidateFormat, out: &mut dyn Write) -> Result<u8> {
    let config = HostConfig::load(config)?;
    let states = states(&config)?;
    if format == ValidateFormat::Json {
        let json = serde_json::to_string_pretty(&states).unwrap_or_default();
        write_out(out, &format!("{json}\n"))?;
        return Ok(exit::OK);
    }
    if states.is_empty() {
        write_out(
            out,
            "no sinks in force (sinks are `kind: Sink` resources of the commit in force)\n",
        )?;
        return Ok(exit::OK);
    }
    let mut text = format!(
        "{:<20} {:<11} {:>10} {:>8} {:>7} {:>5}  {}\n",
        "SINK", "TYPE", "DELIVERED", "BACKLOG", "OLDEST", "DEAD", "LAST ERROR"
    );
    for s in &states {
        let error = s
            .problem
            .as_deref()
            .or(s.last_error.as_deref())
            .map_or_else(|| "-".to_owned(), |e| escaped(e).into_owned());
        text.push_str(&format!(
            "{:<20} {:<11} {:>10} {:>8} {:>7} {:>5}  {}\n",
            escaped(&s.name),
            s.type_,
            s.delivered,
            s.backlog,
            age(s.oldest_pending_seconds),
            s.dead_letters,
            error
        ));
        if s.possible_duplicates > 0 {
            text.push_str(&format!(
                "{:<20} {} events sent again after their acknowledgement did not come: the receiver may hold them twice\n",
                "", s.possible_duplicates
            ));
        }
    }
    write_out(out, &text)?;
    Ok(exit::OK)
}

fn known_sink(store: &Store, name: &str) -> Result<outbox::Registered> {
    match outbox::sink(store.db(), name).map_err(store.db_error())? {
        Some(sink) => Ok(sink),
        None => {
            let names: Vec<String> = outbox::states(store.db())
                .map_err(store.db_error())?
                .into_iter()
                .map(|s| s.name)
                .collect();
            Err(Error::Usage(format!(
                "no sink `{}` in force; the sinks in force are: {}",
                escaped(name),
                if names.is_empty() {
                    "none (reconcile a commit with `kind: Sink` resources first)".to_owned()
                } else {
                    names.join(", ")
                }
            )))
        }
    }
}

/// `gitward sinks test NAME`: a `sink.test` event straight to the sink's receiver (not
/// through the outbox: no other sink gets it), and the receiver's answer.
pub fn test(config: &Path, name: &str, out: &mut dyn Write) -> Result<u8> {
    let config = HostConfig::load(config)?;
    let store = Store::open(&config.state_dir)?;
    let registered = known_sink(&store, name)?;
    let outbox = crate::sinks::worker::Outbox::new(store);
    let mut sink = match build(
        name,
        &registered.spec,
        config.endpoints.get(&registered.spec.endpoint),
        &outbox,
    ) {
        Ok(sink) => sink,
        Err(problem) => {
            write_out(out, &format!("sink {}: {problem}\n", escaped(name)))?;
            return Ok(exit::FAILED);
        }
    };
    let now = Utc::now();
    let event = Draft {
        kind: EventType::SinkTest,
        anchor: now.to_rfc3339(),
        subject: format!("Sink/{name}"),
        data: EventData {
            severity: FindingSeverity::Info,
            resource: None,
            commit: None,
            message: format!("a test event from `gitward sinks test {name}`"),
            details: Default::default(),
            compliance: Vec::new(),
            fingerprint: format!("Sink/{name}"),
            condition: None,
        },
    }
    .seal(&crate::events::source_of(&config.repo.url), now);
    let json = serde_json::to_string(&event).unwrap_or_default();
    let stored = [Stored {
        seq: 0,
        event,
        json,
    }];
    let answer = runtime()?.block_on(sink.send(&stored));
    let (line, code) = match answer {
        Answer::Delivered { .. } => ("delivered".to_owned(), exit::OK),
        Answer::Retry { error, after } => (
            format!(
                "not delivered, a retry could succeed: {error}{}",
                after.map_or(String::new(), |a| format!(
                    " (retry after {} s)",
                    a.as_secs()
                ))
            ),
            exit::FAILED,
        ),
        Answer::Rejected { answer } => (format!("refused: {answer}"), exit::FAILED),
    };
    write_out(
        out,
        &format!(
            "sink {} ({} via endpoint {}): {}\n",
            escaped(name),
            registered.spec.type_,
            registered.spec.endpoint,
            escaped(&line)
        ),
    )?;
    Ok(code)
}

/// `gitward sinks retry NAME`: the sink's dead letters go back to its queue.
pub fn retry(config: &Path, name: &str, out: &mut dyn Write) -> Result<u8> {
    let config = HostConfig::load(config)?;
    let store = Store::open(&config.state_dir)?;
    known_sink(&store, name)?;
    let queued = outbox::retry(store.db(), name).map_err(store.db_error())?;
    write_out(
        out,
        &format!(
            "sink {}: {queued} dead letters queued again; they are delivered before its backlog\n",
            escaped(name)
        ),
    )?;
    Ok(exit::OK)
}

/// `gitward sinks discard NAME`: the sink's dead letters are dropped.
pub fn discard(config: &Path, name: &str, out: &mut dyn Write) -> Result<u8> {
    let config = HostConfig::load(config)?;
    let store = Store::open(&config.state_dir)?;
    known_sink(&store, name)?;
    let dropped = outbox::discard(store.db(), name).map_err(store.db_error())?;
    write_out(
        out,
        &format!("sink {}: {dropped} dead letters discarded\n", escaped(name)),
    )?;
    Ok(exit::OK)
}

/// Options of `gitward events`.
pub struct EventsOptions<'a> {
    pub config: &'a Path,
    pub since: Option<DateTime<Utc>>,
    pub type_: Option<EventType>,
    pub limit: usize,
    pub format: ValidateFormat,
}

/// `gitward events`: the events in the outbox, oldest first.
pub fn events(options: &EventsOptions, out: &mut dyn Write) -> Result<u8> {
    let config = HostConfig::load(options.config)?;
    let store = Store::open(&config.state_dir)?;
    let events = outbox::list(
        store.db(),
        options.since,
        options.type_.map(EventType::as_str),
        options.limit,
    )
    .map_err(store.db_error())?;
    let mut text = String::new();
    for event in &events {
        if options.format == ValidateFormat::Json {
            text.push_str(&serde_json::to_string(event).unwrap_or_default());
            text.push('\n');
        } else {
            text.push_str(&format!(
                "{} {:<8} {:<26} {:<32} {}\n",
                event
                    .time
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                event.data.severity.as_str(),
                event.type_.trim_start_matches(crate::events::TYPE_PREFIX),
                escaped(&event.subject),
                escaped(&crate::diag::bounded(event.data.message.clone(), 200))
            ));
        }
    }
    write_out(out, &text)?;
    Ok(exit::OK)
}
