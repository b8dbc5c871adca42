//! The outbox: events in the state database until every sink that takes them has them.
//!
//! A reconcile *holds* its events before it writes its status commit and *releases* them in
//! the transaction that records its outcome, as the issuance journal stages keys: a crash
//! between the two finds the events held and releases them once status shows the reconcile
//! was recorded, or drops them when it was not (the reconcile is redone, and makes them
//! again with the same ids). Released events get a sequence number; each sink keeps a
//! cursor, the last sequence number it has delivered or passed over, so delivery is in
//! order and the backlog of a sink is what lies beyond its cursor. Events a receiver refused
//! for good are dead letters, kept with its answer until an operator retries or discards
//! them.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Event, passes_sql, rank};
use crate::model::SinkSpec;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS held_events (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    opens TEXT,
    kind TEXT NOT NULL,
    severity INTEGER NOT NULL,
    clears INTEGER NOT NULL,
    time INTEGER NOT NULL,
    status_tip TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    severity INTEGER NOT NULL,
    clears INTEGER NOT NULL,
    time INTEGER NOT NULL,
    body TEXT NOT NULL,
    opens TEXT
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_opens ON events (opens);
CREATE TABLE IF NOT EXISTS sinks (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    last_delivered INTEGER,
    last_error TEXT,
    last_error_at INTEGER,
    problem TEXT,
    retired INTEGER NOT NULL DEFAULT 0,
    until_seq INTEGER
);
CREATE TABLE IF NOT EXISTS dead_letters (
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    answer TEXT NOT NULL,
    at INTEGER NOT NULL,
    queued INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sink, seq)
);
";

/// How long delivered events stay readable (`gitward events`) and keep their ids from being
/// sent again.
pub const RETENTION_SECONDS: i64 = 90 * 24 * 3600;

/// Holds a reconcile's events until its outcome is recorded (forgetting events held
/// before), and makes the sinks table the sinks in force: they are what the status commit
/// reports on.
pub fn hold(
    db: &Connection,
    events: &[Event],
    sinks: &[Declared],
    status_tip: &str,
    source: &str,
) -> rusqlite::Result<()> {
    let transaction = crate::store::write_transaction(db)?;
    for (sink, undelivered) in declare(&transaction, sinks)? {
        tracing::info!(%sink, undelivered, "sink removed from the repository: it delivers what it owes, then goes");
    }
    crate::tickets::store::forget_unfiled(&transaction)?;
    transaction.execute("DELETE FROM held_events", [])?;
    {
        let mut insert = transaction.prepare(
            "INSERT OR IGNORE INTO held_events \
             (id, body, kind, severity, clears, time, status_tip, source, opens) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for event in events {
            let body = serde_json::to_string(event).unwrap_or_default();
            insert.execute(params![
                event.id,
                body,
                event
                    .type_
                    .strip_prefix(super::TYPE_PREFIX)
                    .unwrap_or(&event.type_),
                rank(event.data.severity),
                event.clears(),
                event.time.timestamp(),
                status_tip,
                source,
                opened(event),
            ])?;
        }
    }
    transaction.commit()
}

/// The problem `event` opens, if it starts one (an event that tells a problem lasts does
/// not count as another occurrence).
fn opened(event: &Event) -> Option<&str> {
    event
        .data
        .condition
        .as_ref()
        .filter(|c| c.open && event.starts)
        .map(|c| c.key.as_str())
}

/// How many events in the outbox opened each of `keys`: the occurrence of a problem that
/// comes back after it cleared is the next one, and its events get ids of their own.
pub fn openings(
    db: &Connection,
    keys: &[&str],
) -> rusqlite::Result<std::collections::HashMap<String, i64>> {
    let mut counts = std::collections::HashMap::new();
    let mut statement = db.prepare_cached("SELECT COUNT(*) FROM events WHERE opens = ?1")?;
    for key in keys {
        if !counts.contains_key(*key) {
            let count: i64 = statement.query_row(params![key], |row| row.get(0))?;
            counts.insert((*key).to_owned(), count);
        }
    }
    Ok(counts)
}

/// The status tip and the source commit of the held events, if any are held.
pub fn held(db: &Connection) -> rusqlite::Result<Option<(String, String)>> {
    db.query_row(
        "SELECT status_tip, source FROM held_events LIMIT 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
}

pub fn drop_held(db: &Connection) -> rusqlite::Result<()> {
    db.execute("DELETE FROM held_events", []).map(|_| ())
}

/// Makes the held events deliverable (in the caller's transaction); an id already in the
/// outbox is not added again. Returns how many were added.
pub fn release(db: &Connection, now: DateTime<Utc>) -> rusqlite::Result<usize> {
    let added = db.execute(
        "INSERT OR IGNORE INTO events (id, type, severity, clears, time, body, opens) \
         SELECT id, kind, severity, clears, time, body, opens FROM held_events ORDER BY rowid",
        [],
    )?;
    db.execute("DELETE FROM held_events", [])?;
    db.execute(
        "UPDATE sinks SET until_seq = (SELECT COALESCE(MAX(seq), 0) FROM events) \
         WHERE retired = 1 AND until_seq IS NULL",
        [],
    )?;
    // Old events every sink that can deliver is past, and that are no dead letter: a sink
    // that cannot (its endpoint is not defined) does not keep them for ever.
    db.execute(
        "DELETE FROM events WHERE time < ?1 \
         AND seq <= COALESCE((SELECT MIN(cursor) FROM sinks WHERE problem IS NULL), seq) \
         AND seq NOT IN (SELECT seq FROM dead_letters)",
        params![now.timestamp() - RETENTION_SECONDS],
    )?;
    Ok(added)
}

/// Adds events straight to the outbox (a `sink.test`), outside any reconcile.
pub fn add(db: &Connection, event: &Event) -> rusqlite::Result<i64> {
    let body = serde_json::to_string(event).unwrap_or_default();
    db.execute(
        "INSERT OR IGNORE INTO events (id, type, severity, clears, time, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            event.id,
            event
                .type_
                .strip_prefix(super::TYPE_PREFIX)
                .unwrap_or(&event.type_),
            rank(event.data.severity),
            event.clears(),
            event.time.timestamp(),
            body
        ],
    )?;
    db.query_row(
        "SELECT seq FROM events WHERE id = ?1",
        params![event.id],
        |row| row.get(0),
    )
}

/// A sink of the commit in force, with the problem that keeps it from delivering (an
/// endpoint the host does not define), if any.
pub struct Declared<'a> {
    pub name: &'a str,
    pub spec: &'a SinkSpec,
    pub problem: Option<String>,
}

/// Makes the sinks table the sinks in force (in the caller's transaction): a new sink starts
/// after the events already in the outbox, so it receives the held events on; a sink gone
/// from the repository is dropped with its backlog, which is returned (name, undelivered
/// events) to be logged.
fn declare(db: &Connection, sinks: &[Declared]) -> rusqlite::Result<Vec<(String, i64)>> {
    let last: i64 = db.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
    for sink in sinks {
        let before: Option<Option<String>> = db
            .query_row(
                "SELECT problem FROM sinks WHERE name = ?1",
                params![sink.name],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(problem) = &sink.problem
            && before.as_ref() != Some(&sink.problem)
        {
            tracing::warn!(sink = sink.name, %problem, "sink cannot deliver; its events wait");
        }
        let spec = serde_json::to_string(sink.spec).unwrap_or_default();
        db.execute(
            "INSERT INTO sinks (name, spec, cursor, problem) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, problem = excluded.problem, \
             retired = 0, until_seq = NULL",
            params![sink.name, spec, last, sink.problem],
        )?;
    }
    let mut gone = Vec::new();
    for state in states(db)? {
        if sinks.iter().any(|s| s.name == state.name) {
            continue;
        }
        if state.retired && state.backlog == 0 && state.dead_letters == 0 {
            db.execute("DELETE FROM sinks WHERE name = ?1", params![state.name])?;
        } else if !state.retired {
            // Gone from the repository: it still gets what it was owed, up to the events of
            // the reconcile that removes it, and goes once it has them.
            db.execute(
                "UPDATE sinks SET retired = 1, until_seq = NULL WHERE name = ?1",
                params![state.name],
            )?;
            gone.push((state.name, state.backlog + state.dead_letters));
        }
    }
    Ok(gone)
}

/// A sink as the outbox knows it.
#[derive(Debug, Clone)]
pub struct Registered {
    pub name: String,
    pub spec: SinkSpec,
    pub problem: Option<String>,
    /// Gone from the repository: it delivers what it owes, then goes.
    pub retired: bool,
}

pub fn sink(db: &Connection, name: &str) -> rusqlite::Result<Option<Registered>> {
    db.query_row(
        "SELECT spec, problem, retired FROM sinks WHERE name = ?1",
        params![name],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, bool>(2)?,
            ))
        },
    )
    .optional()
    .map(|found| {
        found.and_then(|(spec, problem, retired)| {
            Some(Registered {
                name: name.to_owned(),
                spec: serde_json::from_str(&spec).ok()?,
                problem,
                retired,
            })
        })
    })
}

/// An event as stored, with its sequence number.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: i64,
    pub event: Event,
    /// The event as JSON, as the outbox keeps it.
    pub json: String,
}

/// What a sink sends next.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Stored>,
    /// Dead letters an operator queued again: on success they leave the dead letters.
    pub redelivery: bool,
    /// The sequence number the cursor moves to once the batch is delivered (past events the
    /// sink does not take, too).
    pub through: i64,
}

fn stored(seq: i64, json: String) -> Option<Stored> {
    let event = serde_json::from_str(&json).ok()?;
    Some(Stored { seq, event, json })
}

/// The next events for a sink, at most `limit`: queued dead letters first, then what lies
/// beyond its cursor and passes its filter.
pub fn next_batch(db: &Connection, sink: &Registered, limit: usize) -> rusqlite::Result<Batch> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut queued = db.prepare_cached(
        "SELECT e.seq, e.body FROM dead_letters d JOIN events e ON e.seq = d.seq \
         WHERE d.sink = ?1 AND d.queued = 1 ORDER BY d.seq LIMIT ?2",
    )?;
    let events: Vec<Stored> = queued
        .query_map(params![sink.name, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .filter_map(|row| row.ok().and_then(|(seq, json)| stored(seq, json)))
        .collect();
    if !events.is_empty() {
        return Ok(Batch {
            events,
            redelivery: true,
            through: 0,
        });
    }
    let (cursor, until): (i64, Option<i64>) = db.query_row(
        "SELECT cursor, CASE WHEN retired = 1 THEN COALESCE(until_seq, -1) END \
         FROM sinks WHERE name = ?1",
        params![sink.name],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    // Read first: events released while this batch is read are for the next one. A sink
    // removed from the repository gets no event released after its removal.
    let last = match until {
        Some(until) => until.max(cursor),
        None => last_seq(db)?,
    };
    let filter = passes_sql(&sink.spec);
    let mut pending = db.prepare_cached(&format!(
        "SELECT seq, body FROM events WHERE seq > ?1 AND seq <= ?2 AND {filter} \
         ORDER BY seq LIMIT ?3"
    ))?;
    let events: Vec<Stored> = pending
        .query_map(params![cursor, last, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .filter_map(|row| row.ok().and_then(|(seq, json)| stored(seq, json)))
        .collect();
    let through = match events.last() {
        Some(final_one) if events.len() as i64 == limit => final_one.seq,
        // Everything there is: the cursor moves past the events the sink does not take.
        _ => last,
    };
    Ok(Batch {
        events,
        redelivery: false,
        through: through.max(cursor),
    })
}

/// The receiver has `batch`.
pub fn delivered(
    db: &Connection,
    sink: &str,
    batch: &Batch,
    duplicates: u64,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let transaction = crate::store::write_transaction(db)?;
    if batch.redelivery {
        for stored in &batch.events {
            transaction.execute(
                "DELETE FROM dead_letters WHERE sink = ?1 AND seq = ?2",
                params![sink, stored.seq],
            )?;
        }
    } else {
        transaction.execute(
            "UPDATE sinks SET cursor = MAX(cursor, ?2) WHERE name = ?1",
            params![sink, batch.through],
        )?;
    }
    if !batch.events.is_empty() {
        transaction.execute(
            "UPDATE sinks SET delivered = delivered + ?2, duplicates = duplicates + ?3, \
             last_delivered = ?4, last_error = NULL WHERE name = ?1",
            params![
                sink,
                batch.events.len() as i64,
                i64::try_from(duplicates).unwrap_or(i64::MAX),
                now.timestamp()
            ],
        )?;
    }
    transaction.commit()
}

/// The receiver could not take the batch now; it is sent again later.
pub fn failed(
    db: &Connection,
    sink: &str,
    error: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    db.execute(
        "UPDATE sinks SET last_error = ?2, last_error_at = ?3 WHERE name = ?1",
        params![
            sink,
            crate::diag::bounded(error.to_owned(), 1024),
            now.timestamp()
        ],
    )
    .map(|_| ())
}

/// The receiver refused `events` for good: they become dead letters with its answer, and
/// the cursor moves past them (or, for a redelivery, they stay dead letters).
pub fn dead(
    db: &Connection,
    sink: &str,
    events: &[&Stored],
    through: Option<i64>,
    answer: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let transaction = crate::store::write_transaction(db)?;
    let answer = crate::diag::bounded(answer.to_owned(), 2048);
    for stored in events {
        transaction.execute(
            "INSERT INTO dead_letters (sink, seq, answer, at, queued) VALUES (?1, ?2, ?3, ?4, 0) \
             ON CONFLICT (sink, seq) DO UPDATE SET answer = excluded.answer, at = excluded.at, \
             queued = 0",
            params![sink, stored.seq, answer, now.timestamp()],
        )?;
    }
    if let Some(through) = through {
        transaction.execute(
            "UPDATE sinks SET cursor = MAX(cursor, ?2) WHERE name = ?1",
            params![sink, through],
        )?;
    }
    transaction.execute(
        "UPDATE sinks SET last_error = ?2, last_error_at = ?3 WHERE name = ?1",
        params![sink, answer, now.timestamp()],
    )?;
    transaction.commit()
}

/// Queues a sink's dead letters again. Returns how many.
pub fn retry(db: &Connection, sink: &str) -> rusqlite::Result<usize> {
    db.execute(
        "UPDATE dead_letters SET queued = 1 WHERE sink = ?1",
        params![sink],
    )
}

/// Forgets a sink's dead letters. Returns how many.
pub fn discard(db: &Connection, sink: &str) -> rusqlite::Result<usize> {
    db.execute("DELETE FROM dead_letters WHERE sink = ?1", params![sink])
}

/// The delivery state of a sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SinkState {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub endpoint: String,
    /// Events the receiver has.
    pub delivered: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// Events waiting to be delivered.
    pub backlog: i64,
    /// How long the oldest of them has waited, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_pending_seconds: Option<i64>,
    /// Events the receiver refused for good; `gitward sinks retry|discard` decides.
    pub dead_letters: i64,
    /// Events sent again after their acknowledgement did not come: the receiver may hold
    /// them twice.
    pub possible_duplicates: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<DateTime<Utc>>,
    /// What keeps the sink from delivering at all (its endpoint is not defined...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Removed from the repository: it delivers what it owes, then goes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

fn at(seconds: Option<i64>) -> Option<DateTime<Utc>> {
    seconds.and_then(|s| DateTime::from_timestamp(s, 0))
}

/// A row of the sinks table.
struct SinkRow {
    name: String,
    spec: String,
    cursor: i64,
    delivered: i64,
    duplicates: i64,
    last_delivered: Option<i64>,
    last_error: Option<String>,
    last_error_at: Option<i64>,
    problem: Option<String>,
    /// For a sink removed from the repository: the last event it is owed (-1 until known).
    until: Option<i64>,
}

/// The state of every sink, by name.
pub fn states(db: &Connection) -> rusqlite::Result<Vec<SinkState>> {
    let now = Utc::now().timestamp();
    let mut statement = db.prepare(
        "SELECT name, spec, cursor, delivered, duplicates, last_delivered, last_error, \
         last_error_at, problem, CASE WHEN retired = 1 THEN COALESCE(until_seq, -1) END \
         FROM sinks ORDER BY name",
    )?;
    let rows: Vec<SinkRow> = statement
        .query_map([], |row| {
            Ok(SinkRow {
                name: row.get(0)?,
                spec: row.get(1)?,
                cursor: row.get(2)?,
                delivered: row.get(3)?,
                duplicates: row.get(4)?,
                last_delivered: row.get(5)?,
                last_error: row.get(6)?,
                last_error_at: row.get(7)?,
                problem: row.get(8)?,
                until: row.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut states = Vec::with_capacity(rows.len());
    for row in rows {
        let spec: Option<SinkSpec> = serde_json::from_str(&row.spec).ok();
        // A row that does not read (tampered with) still shows what waits, unfiltered.
        let filter = spec.as_ref().map_or_else(|| "1".to_owned(), passes_sql);
        let (backlog, oldest) = db.query_row(
            &format!(
                "SELECT COUNT(*), MIN(time) FROM events WHERE seq > ?1 AND seq <= ?2 AND {filter}"
            ),
            params![row.cursor, row.until.unwrap_or(i64::MAX)],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
        )?;
        let dead_letters: i64 = db.query_row(
            "SELECT COUNT(*) FROM dead_letters WHERE sink = ?1",
            params![row.name],
            |r| r.get(0),
        )?;
        let problem = match &spec {
            Some(_) => row.problem,
            None => Some(
                "its recorded spec does not read; the next reconcile records it again".to_owned(),
            ),
        };
        states.push(SinkState {
            type_: spec
                .as_ref()
                .map(|s| s.type_.to_string())
                .unwrap_or_default(),
            endpoint: spec
                .as_ref()
                .map(|s| s.endpoint.to_string())
                .unwrap_or_default(),
            name: row.name,
            delivered: row.delivered,
            last_delivered_at: at(row.last_delivered),
            backlog,
            oldest_pending_seconds: oldest.map(|t| (now - t).max(0)),
            dead_letters,
            possible_duplicates: row.duplicates,
            last_error: row.last_error,
            last_error_at: at(row.last_error_at),
            problem,
            retired: row.until.is_some(),
        });
    }
    Ok(states)
}

/// Events in the outbox, oldest first: since `since`, of type `kind` when given, at most
/// `limit` (the newest ones).
pub fn list(
    db: &Connection,
    since: Option<DateTime<Utc>>,
    kind: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<Event>> {
    let mut statement = db.prepare(
        "SELECT body FROM (SELECT seq, body FROM events WHERE time >= ?1 \
         AND (?2 IS NULL OR type = ?2) ORDER BY seq DESC LIMIT ?3) ORDER BY seq",
    )?;
    let rows = statement.query_map(
        params![
            since.map_or(i64::MIN, |s| s.timestamp()),
            kind,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |row| row.get::<_, String>(0),
    )?;
    Ok(rows
        .filter_map(|row| row.ok().and_then(|json| serde_json::from_str(&json).ok()))
        .collect())
}

/// The highest sequence number in the outbox: workers wait for it to move.
pub fn last_seq(db: &Connection) -> rusqlite::Result<i64> {
    db.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Draft, EventData};
    use crate::model::{EventType, FindingSeverity};

    fn db() -> Connection {
        let db = Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        db.execute_batch(SCHEMA)
            .and_then(|()| db.execute_batch(crate::tickets::store::SCHEMA))
            .unwrap_or_else(|e| panic!("{e}"));
        db
    }

    fn event(kind: EventType, subject: &str, severity: FindingSeverity) -> Event {
        Draft {
            kind,
            anchor: "c0ffee".into(),
            subject: subject.into(),
            data: EventData {
                severity,
                resource: None,
                commit: None,
                message: subject.into(),
                details: Default::default(),
                compliance: Vec::new(),
                fingerprint: subject.into(),
                condition: None,
            },
        }
        .seal("file:///srv/pki", Utc::now())
    }

    use crate::events::test_sink as spec;

    fn held_then_released(db: &Connection, events: &[Event], sinks: &[Declared]) {
        hold(db, events, sinks, "tip", "c0ffee").unwrap_or_else(|e| panic!("{e}"));
        release(db, Utc::now()).unwrap_or_else(|e| panic!("{e}"));
    }

    fn subjects(batch: &Batch) -> Vec<&str> {
        batch
            .events
            .iter()
            .map(|s| s.event.subject.as_str())
            .collect()
    }

    #[test]
    fn a_sink_gets_what_it_asks_for_in_order_and_once() {
        let db = db();
        let all = spec(EventType::ALL, FindingSeverity::Info);
        let failures = spec(&[EventType::CertificateFailed], FindingSeverity::High);
        let sinks = [
            Declared {
                name: "all",
                spec: &all,
                problem: None,
            },
            Declared {
                name: "failures",
                spec: &failures,
                problem: None,
            },
        ];
        let events = [
            event(
                EventType::CertificateIssued,
                "Certificate/a",
                FindingSeverity::Low,
            ),
            event(
                EventType::CertificateFailed,
                "Certificate/b",
                FindingSeverity::High,
            ),
            event(
                EventType::CertificateIssued,
                "Certificate/c",
                FindingSeverity::Low,
            ),
        ];
        // Held events are nobody's until released.
        hold(&db, &events, &sinks, "tip", "c0ffee").unwrap_or_else(|e| panic!("{e}"));
        let registered = |name: &str| {
            sink(&db, name)
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("{name}"))
        };
        assert!(
            next_batch(&db, &registered("all"), 10)
                .map(|b| b.events.is_empty())
                .unwrap_or(false)
        );
        release(&db, Utc::now()).unwrap_or_else(|e| panic!("{e}"));
        // The same events again (a reconcile redone) add nothing.
        held_then_released(&db, &events, &sinks);
        let batch = next_batch(&db, &registered("all"), 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(subjects(&batch), ["Certificate/a", "Certificate/b"]);
        delivered(&db, "all", &batch, 0, Utc::now()).unwrap_or_else(|e| panic!("{e}"));
        let rest = next_batch(&db, &registered("all"), 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(subjects(&rest), ["Certificate/c"]);
        let only = next_batch(&db, &registered("failures"), 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(subjects(&only), ["Certificate/b"]);
        delivered(&db, "failures", &only, 0, Utc::now()).unwrap_or_else(|e| panic!("{e}"));
        let state = |name: &str| {
            states(&db)
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        assert_eq!((state("all").delivered, state("all").backlog), (2, 1));
        assert_eq!(
            (state("failures").delivered, state("failures").backlog),
            (1, 0)
        );
        // Past the events it does not take, too.
        assert!(
            next_batch(&db, &registered("failures"), 10)
                .map(|b| b.events.is_empty())
                .unwrap_or(false)
        );
    }

    #[test]
    fn a_new_sink_starts_with_the_events_of_the_reconcile_that_adds_it() {
        let db = db();
        let all = spec(EventType::ALL, FindingSeverity::Info);
        let first = [Declared {
            name: "first",
            spec: &all,
            problem: None,
        }];
        held_then_released(
            &db,
            &[event(
                EventType::CertificateIssued,
                "Certificate/old",
                FindingSeverity::Low,
            )],
            &first,
        );
        let both = [
            Declared {
                name: "first",
                spec: &all,
                problem: None,
            },
            Declared {
                name: "second",
                spec: &all,
                problem: None,
            },
        ];
        held_then_released(
            &db,
            &[event(
                EventType::CertificateIssued,
                "Certificate/new",
                FindingSeverity::Low,
            )],
            &both,
        );
        let second = sink(&db, "second")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("second"));
        let batch = next_batch(&db, &second, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(subjects(&batch), ["Certificate/new"]);
        // A sink gone from the repository still gets what it is owed, then goes.
        held_then_released(
            &db,
            &[event(
                EventType::CertificateIssued,
                "Certificate/last",
                FindingSeverity::Low,
            )],
            &both[1..],
        );
        let first = sink(&db, "first")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("first"));
        let owed = next_batch(&db, &first, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            subjects(&owed),
            ["Certificate/old", "Certificate/new", "Certificate/last"]
        );
        held_then_released(
            &db,
            &[event(
                EventType::CertificateIssued,
                "Certificate/later",
                FindingSeverity::Low,
            )],
            &both[1..],
        );
        let owed = next_batch(&db, &first, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            subjects(&owed).len(),
            3,
            "nothing released after its removal"
        );
        assert!(states(&db).unwrap_or_default()[0].retired);
        delivered(&db, "first", &owed, 0, Utc::now()).unwrap_or_else(|e| panic!("{e}"));
        held_then_released(&db, &[], &both[1..]);
        assert!(sink(&db, "first").ok().flatten().is_none());
    }

    #[test]
    fn dead_letters_wait_for_an_operator() {
        let db = db();
        let all = spec(EventType::ALL, FindingSeverity::Info);
        let sinks = [Declared {
            name: "hook",
            spec: &all,
            problem: None,
        }];
        held_then_released(
            &db,
            &[
                event(
                    EventType::CertificateIssued,
                    "Certificate/a",
                    FindingSeverity::Low,
                ),
                event(
                    EventType::CertificateIssued,
                    "Certificate/b",
                    FindingSeverity::Low,
                ),
            ],
            &sinks,
        );
        let hook = sink(&db, "hook")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("hook"));
        let batch = next_batch(&db, &hook, 10).unwrap_or_else(|e| panic!("{e}"));
        let refused: Vec<&Stored> = batch.events.iter().take(1).collect();
        dead(
            &db,
            "hook",
            &refused,
            Some(batch.events[0].seq),
            "HTTP 400: bad",
            Utc::now(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let rest = next_batch(&db, &hook, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(subjects(&rest), ["Certificate/b"]);
        assert_eq!(retry(&db, "hook").unwrap_or_default(), 1);
        let again = next_batch(&db, &hook, 10).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.redelivery);
        assert_eq!(subjects(&again), ["Certificate/a"]);
        delivered(&db, "hook", &again, 0, Utc::now()).unwrap_or_else(|e| panic!("{e}"));
        let state = &states(&db).unwrap_or_default()[0];
        assert_eq!((state.dead_letters, state.backlog), (0, 1));
        assert_eq!(discard(&db, "hook").unwrap_or(9), 0);
    }

    #[test]
    fn held_events_of_a_reconcile_that_was_not_recorded_are_dropped() {
        let db = db();
        let all = spec(EventType::ALL, FindingSeverity::Info);
        let sinks = [Declared {
            name: "all",
            spec: &all,
            problem: None,
        }];
        hold(
            &db,
            &[event(
                EventType::CertificateIssued,
                "Certificate/a",
                FindingSeverity::Low,
            )],
            &sinks,
            "tip-1",
            "c0ffee",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            held(&db).ok().flatten(),
            Some(("tip-1".to_owned(), "c0ffee".to_owned()))
        );
        drop_held(&db).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(release(&db, Utc::now()).unwrap_or(9), 0);
        assert_eq!(last_seq(&db).unwrap_or(9), 0);
    }
}
