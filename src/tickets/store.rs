//! Each ticket sink's problems and their tickets, in the state database: what finds a ticket
//! again without asking its system, and what `gitward tickets` and the status branch show.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Ticket;
use super::decide::{Standing, TicketState};
use crate::model::FindingSeverity;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tickets (
    place TEXT NOT NULL,
    sink TEXT NOT NULL,
    key TEXT NOT NULL,
    tag TEXT NOT NULL,
    state TEXT NOT NULL,
    problem_open INTEGER NOT NULL,
    severity TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    ticket TEXT,
    subject TEXT NOT NULL,
    title TEXT NOT NULL,
    commit_sha TEXT,
    opened_at INTEGER NOT NULL,
    due TEXT,
    breached INTEGER NOT NULL DEFAULT 0,
    synced_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (place, key)
);
";

/// A problem of a ticket sink and its ticket.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Where its ticket is filed: the ticket system, the endpoint and the project or table.
    /// Sinks filing in the same place share one ticket per problem, and a sink renamed keeps
    /// its tickets.
    pub place: String,
    /// The sink that last acted on it.
    pub sink: String,
    /// The problem's condition key.
    pub key: String,
    pub tag: String,
    #[serde(serialize_with = "state_name")]
    pub state: TicketState,
    pub problem_open: bool,
    pub severity: FindingSeverity,
    #[serde(skip)]
    pub last_seq: i64,
    /// The ticket, once its system said what it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Ticket>,
    /// What the problem is about (`Certificate/web`).
    pub subject: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub opened_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<NaiveDate>,
    /// Open past its due date.
    pub breached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

fn state_name<S: serde::Serializer>(state: &TicketState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

impl Record {
    pub fn standing(&self) -> Standing {
        Standing {
            state: self.state,
            problem_open: self.problem_open,
            severity: self.severity,
            last_seq: self.last_seq,
        }
    }
}

const COLUMNS: &str = "place, sink, key, tag, state, problem_open, severity, last_seq, \
                       ticket, subject, title, commit_sha, opened_at, due, breached, synced_at, \
                       updated_at";

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

fn record(row: &rusqlite::Row) -> rusqlite::Result<Option<Record>> {
    let state: String = row.get(4)?;
    let severity: String = row.get(6)?;
    let ticket: Option<String> = row.get(8)?;
    let due: Option<String> = row.get(13)?;
    let synced: Option<i64> = row.get(15)?;
    let (Some(state), Ok(severity)) = (
        TicketState::parse(&state),
        serde_json::from_value(serde_json::Value::String(severity)),
    ) else {
        return Ok(None);
    };
    Ok(Some(Record {
        place: row.get(0)?,
        sink: row.get(1)?,
        key: row.get(2)?,
        tag: row.get(3)?,
        state,
        problem_open: row.get(5)?,
        severity,
        last_seq: row.get(7)?,
        ticket: ticket.and_then(|t| serde_json::from_str(&t).ok()),
        subject: row.get(9)?,
        title: row.get(10)?,
        commit: row.get(11)?,
        opened_at: time(row.get(12)?),
        due: due.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
        breached: row.get(14)?,
        synced_at: synced.map(time),
        updated_at: time(row.get(16)?),
    }))
}

fn select(
    db: &Connection,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<Record>> {
    let mut statement = db.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tickets WHERE {filter} ORDER BY sink, opened_at, key"
    ))?;
    let rows = statement.query_map(args, record)?;
    let mut records = Vec::new();
    for row in rows {
        records.extend(row?);
    }
    Ok(records)
}

/// The record of problem `key` filed in `place`.
pub fn get(db: &Connection, place: &str, key: &str) -> rusqlite::Result<Option<Record>> {
    db.query_row(
        &format!("SELECT {COLUMNS} FROM tickets WHERE place = ?1 AND key = ?2"),
        params![place, key],
        record,
    )
    .optional()
    .map(Option::flatten)
}

/// Writes `record`, replacing what was recorded of its problem.
pub fn put(db: &Connection, record: &Record) -> rusqlite::Result<()> {
    db.execute(
        &format!(
            "INSERT OR REPLACE INTO tickets ({COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ),
        params![
            record.place,
            record.sink,
            record.key,
            record.tag,
            record.state.as_str(),
            record.problem_open,
            record.severity.to_string(),
            record.last_seq,
            record
                .ticket
                .as_ref()
                .and_then(|t| serde_json::to_string(t).ok()),
            record.subject,
            record.title,
            record.commit,
            record.opened_at.timestamp(),
            record.due.map(|d| d.format("%Y-%m-%d").to_string()),
            record.breached,
            record.synced_at.map(|t| t.timestamp()),
            record.updated_at.timestamp(),
        ],
    )?;
    Ok(())
}

/// The records of sink `sink` (all sinks when `None`) whose problem is open or whose ticket
/// is open: what `gitward tickets` and the status branch show.
pub fn current(db: &Connection, sink: Option<&str>) -> rusqlite::Result<Vec<Record>> {
    match sink {
        Some(sink) => select(
            db,
            "sink = ?1 AND (problem_open = 1 OR state IN ('open', 'creating'))",
            &[&sink],
        ),
        None => select(db, "problem_open = 1 OR state IN ('open', 'creating')", &[]),
    }
}

/// How long a ticket gitward resolved is still read back: a person may reopen it.
pub const RESOLVED_WATCHED_SECONDS: i64 = 14 * 24 * 3600;

/// The tickets of sink `sink` that a person may still change: open ones, closed ones of
/// problems still open, and ones gitward resolved lately (as of `now`). Those synchronized
/// longest ago first, at most `limit`.
pub fn watched(
    db: &Connection,
    sink: &str,
    limit: usize,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<Record>> {
    let since = now.timestamp() - RESOLVED_WATCHED_SECONDS;
    let mut records = select(
        db,
        "sink = ?1 AND ticket IS NOT NULL \
         AND (state = 'open' OR (problem_open = 1 AND state IN ('accepted', 'closed')) \
              OR (state = 'resolved' AND updated_at > ?2))",
        &[&sink, &since],
    )?;
    records.sort_by_key(|r| r.synced_at.map_or(i64::MIN, |t| t.timestamp()));
    records.truncate(limit);
    Ok(records)
}

/// Open tickets of problems still open whose due date has passed by `today` and that have
/// not been told as breached yet.
pub fn breaching(db: &Connection, today: NaiveDate) -> rusqlite::Result<Vec<Record>> {
    select(
        db,
        "state = 'open' AND problem_open = 1 AND breached = 0 AND due IS NOT NULL AND due < ?1",
        &[&today.format("%Y-%m-%d").to_string()],
    )
}

/// Forgets the records of places no sink of the sinks table files in any more (a sink removed
/// from the repository stays there until it delivered what it owes): their tickets are
/// nobody's to follow.
pub fn forget_unfiled(db: &Connection) -> rusqlite::Result<usize> {
    let places: Vec<String> = {
        let mut statement = db.prepare("SELECT spec FROM sinks")?;
        statement
            .query_map([], |row| row.get::<_, String>(0))?
            .filter_map(|spec| serde_json::from_str(&spec.ok()?).ok())
            .map(|spec: crate::model::SinkSpec| super::place_of(&spec))
            .collect()
    };
    let held: Vec<String> = {
        let mut statement = db.prepare("SELECT DISTINCT place FROM tickets")?;
        statement
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut gone = 0;
    for place in held.iter().filter(|p| !places.contains(p)) {
        gone += db.execute("DELETE FROM tickets WHERE place = ?1", params![place])?;
    }
    Ok(gone)
}
