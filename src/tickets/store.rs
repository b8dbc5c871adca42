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
    PRIMARY KEY (sink, key)
);
";

/// A problem of a ticket sink and its ticket.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
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

const COLUMNS: &str = "sink, key, tag, state, problem_open, severity, last_seq, ticket, \
                       subject, title, commit_sha, opened_at, due, breached, synced_at, updated_at";

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

fn record(row: &rusqlite::Row) -> rusqlite::Result<Option<Record>> {
    let state: String = row.get(3)?;
    let severity: String = row.get(5)?;
    let ticket: Option<String> = row.get(7)?;
    let due: Option<String> = row.get(12)?;
    let synced: Option<i64> = row.get(14)?;
    let (Some(state), Ok(severity)) = (
        TicketState::parse(&state),
        serde_json::from_value(serde_json::Value::String(severity)),
    ) else {
        return Ok(None);
    };
    Ok(Some(Record {
        sink: row.get(0)?,
        key: row.get(1)?,
        tag: row.get(2)?,
        state,
        problem_open: row.get(4)?,
        severity,
        last_seq: row.get(6)?,
        ticket: ticket.and_then(|t| serde_json::from_str(&t).ok()),
        subject: row.get(8)?,
        title: row.get(9)?,
        commit: row.get(10)?,
        opened_at: time(row.get(11)?),
        due: due.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
        breached: row.get(13)?,
        synced_at: synced.map(time),
        updated_at: time(row.get(15)?),
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

/// The record of problem `key` of sink `sink`.
pub fn get(db: &Connection, sink: &str, key: &str) -> rusqlite::Result<Option<Record>> {
    db.query_row(
        &format!("SELECT {COLUMNS} FROM tickets WHERE sink = ?1 AND key = ?2"),
        params![sink, key],
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
        ),
        params![
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

/// The tickets of sink `sink` that a person may still change: open ones, and closed ones of
/// problems still open. Those synchronized longest ago first, at most `limit`.
pub fn watched(db: &Connection, sink: &str, limit: usize) -> rusqlite::Result<Vec<Record>> {
    let mut records = select(
        db,
        "sink = ?1 AND ticket IS NOT NULL \
         AND (state = 'open' OR (problem_open = 1 AND state IN ('accepted', 'closed')))",
        &[&sink],
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

/// Forgets the records of sinks no longer declared.
pub fn forget_sinks(db: &Connection, kept: &[&str]) -> rusqlite::Result<usize> {
    let mut gone = 0;
    let sinks: Vec<String> = {
        let mut statement = db.prepare("SELECT DISTINCT sink FROM tickets")?;
        statement
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    for sink in sinks.iter().filter(|s| !kept.contains(&s.as_str())) {
        gone += db.execute("DELETE FROM tickets WHERE sink = ?1", params![sink])?;
    }
    Ok(gone)
}
