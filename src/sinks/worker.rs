//! One worker per sink: it takes the sink's next batch from the outbox, sends it, and
//! records how the receiver answered — delivered (the cursor moves on), retried after a
//! capped exponential backoff with full jitter (or the receiver's `Retry-After`), or refused
//! for good (dead letters, after the batch is split to find the events the receiver
//! refuses). In order per sink; the outbox survives restarts, so does the backlog.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use rusqlite::Connection;

use super::{Answer, Sink, SinkProblem};
use crate::config::Endpoint;
use crate::events::outbox::{self, Batch, Registered, Stored};
use crate::model::Name;
use crate::store::Store;

/// The first wait after a failed delivery; each next one may be twice as long.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const LONGEST_BACKOFF: Duration = Duration::from_secs(300);
/// How long a worker with nothing to send sleeps before it looks again unwoken.
const IDLE: Duration = Duration::from_secs(60);
/// Longest a whole batch may take, whatever a sink's own timeouts.
const BATCH_DEADLINE: Duration = Duration::from_secs(600);

/// What delivery reports, for metrics.
pub trait Observer: Send + Sync {
    fn delivered(&self, _sink: &str, _events: u64) {}
    fn failed(&self, _sink: &str) {}
    fn dead(&self, _sink: &str, _events: u64) {}
}

/// Nobody listening.
pub struct Unobserved;
impl Observer for Unobserved {}

/// The state database, shared by the workers; each call runs on a blocking thread.
#[derive(Clone)]
pub struct Outbox(Arc<Mutex<Store>>);

impl Outbox {
    pub fn new(store: Store) -> Outbox {
        Outbox(Arc::new(Mutex::new(store)))
    }

    /// The delivery state of every sink.
    pub async fn states(&self) -> Result<Vec<outbox::SinkState>, String> {
        self.with(outbox::states).await
    }

    /// Runs `work` on the database, on a blocking thread.
    pub async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(PoisonError::into_inner);
            work(store.db()).map_err(|error| format!("state database: {error}"))
        })
        .await
        .map_err(|error| format!("state database: {error}"))?
    }
}

/// The wait before attempt `attempts + 1`: a random time up to `FIRST_BACKOFF · 2^attempts`,
/// at most [`LONGEST_BACKOFF`] ("full jitter"), so that many senders do not retry in step.
pub fn backoff(attempts: u32, random: f64) -> Duration {
    let ceiling = FIRST_BACKOFF
        .saturating_mul(1u32 << attempts.min(16))
        .min(LONGEST_BACKOFF);
    ceiling.mul_f64(random.clamp(0.0, 1.0))
}

fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// How a round of delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Nothing (more) to send.
    Idle,
    /// A batch went out (delivered, or refused into dead letters).
    Sent,
    /// The receiver could not take it: wait this long.
    Wait(Duration),
    /// The sink cannot deliver (its endpoint...): wait for a new config.
    Broken(String),
    /// The sink is gone from the repository.
    Gone,
}

/// A sink's delivery, from one round to the next.
pub struct Worker {
    pub name: String,
    outbox: Outbox,
    observer: Arc<dyn Observer>,
    built: Option<(String, Box<dyn Sink>)>,
    attempts: u32,
    /// The problem last logged, so that a lasting one is logged once.
    told: Option<String>,
}

impl Worker {
    pub fn new(name: &str, outbox: Outbox, observer: Arc<dyn Observer>) -> Worker {
        Worker {
            name: name.to_owned(),
            outbox,
            observer,
            built: None,
            attempts: 0,
            told: None,
        }
    }

    /// The sink for `registered` with the host's endpoints, built again when either changed.
    fn sink(
        &mut self,
        registered: &Registered,
        endpoints: &BTreeMap<Name, Endpoint>,
    ) -> Result<&mut Box<dyn Sink>, SinkProblem> {
        let endpoint = endpoints.get(&registered.spec.endpoint);
        // A credential file the host replaced (a fixed token) is read again: the sink is built
        // again when a file it was built from changed.
        let stamps: Vec<String> = endpoint
            .into_iter()
            .flat_map(|e| e.files())
            .map(|file| {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(file).map_or_else(
                    |error| error.to_string(),
                    |m| format!("{}:{}:{}:{}", m.ino(), m.len(), m.mtime(), m.mtime_nsec()),
                )
            })
            .collect();
        let identity = format!("{:?}{:?}{stamps:?}", registered.spec, endpoint);
        if self
            .built
            .as_ref()
            .is_none_or(|(built, _)| *built != identity)
        {
            self.built = None;
            let sink = super::build(&self.name, &registered.spec, endpoint, &self.outbox)?;
            self.built = Some((identity, sink));
        }
        match &mut self.built {
            Some((_, sink)) => Ok(sink),
            None => Err(SinkProblem("not built".to_owned())),
        }
    }

    /// Sends the next batch, if any, and records the answer.
    pub async fn round(&mut self, endpoints: &BTreeMap<Name, Endpoint>) -> Round {
        let name = self.name.clone();
        let registered = match self.outbox.with(move |db| outbox::sink(db, &name)).await {
            Ok(Some(registered)) => registered,
            Ok(None) => return Round::Gone,
            Err(error) => return Round::Broken(error),
        };
        let problem = match &registered.problem {
            Some(problem) => Err(SinkProblem(problem.clone())),
            None => self.sink(&registered, endpoints).map(|_| ()),
        };
        if let Err(SinkProblem(problem)) = problem {
            let name = self.name.clone();
            let said = problem.clone();
            let _ = self
                .outbox
                .with(move |db| outbox::failed(db, &name, &said, Utc::now()))
                .await;
            return Round::Broken(problem);
        }
        let limit = match self.sink(&registered, endpoints) {
            Ok(sink) => sink.batch_size().max(1),
            Err(SinkProblem(problem)) => return Round::Broken(problem),
        };
        let batch = match self
            .outbox
            .with(move |db| outbox::next_batch(db, &registered, limit))
            .await
        {
            Ok(batch) => batch,
            Err(error) => return Round::Broken(error),
        };
        if batch.events.is_empty() {
            // Past events the sink does not take.
            let name = self.name.clone();
            let _ = self
                .outbox
                .with(move |db| outbox::delivered(db, &name, &batch, 0, Utc::now()))
                .await;
            return Round::Idle;
        }
        crate::failpoint::point("sending a batch");
        let answer = self.send(&batch.events).await;
        crate::failpoint::point("batch sent, its answer not recorded");
        self.answered(batch, answer).await
    }

    async fn send(&mut self, events: &[Stored]) -> Answer {
        let Some((_, sink)) = &mut self.built else {
            return Answer::Retry {
                error: "sink not built".to_owned(),
                after: None,
            };
        };
        match tokio::time::timeout(BATCH_DEADLINE, sink.send(events)).await {
            Ok(answer) => answer,
            Err(_) => Answer::Retry {
                error: format!("no answer within {} s", BATCH_DEADLINE.as_secs()),
                after: None,
            },
        }
    }

    async fn answered(&mut self, batch: Batch, answer: Answer) -> Round {
        match answer {
            Answer::Delivered { duplicates } => {
                self.attempts = 0;
                let count = batch.events.len() as u64;
                let name = self.name.clone();
                if let Err(error) = self
                    .outbox
                    .with(move |db| outbox::delivered(db, &name, &batch, duplicates, Utc::now()))
                    .await
                {
                    return Round::Broken(error);
                }
                self.observer.delivered(&self.name, count);
                Round::Sent
            }
            Answer::Retry { error, after } => {
                self.observer.failed(&self.name);
                tracing::warn!(sink = %self.name, %error, "delivery failed; retrying");
                let name = self.name.clone();
                let said = error.clone();
                let _ = self
                    .outbox
                    .with(move |db| outbox::failed(db, &name, &said, Utc::now()))
                    .await;
                // The receiver's `Retry-After`, but never less than the backoff: a receiver
                // saying `0` must not make the worker spin.
                let backoff = backoff(self.attempts, random_unit());
                let wait = after.map_or(backoff, |after| after.max(backoff));
                self.attempts = self.attempts.saturating_add(1);
                Round::Wait(wait)
            }
            Answer::Rejected { answer } if batch.events.len() > 1 => {
                tracing::warn!(sink = %self.name, %answer, "batch refused; sending its events one by one");
                self.one_by_one(batch).await
            }
            Answer::Rejected { answer } => {
                self.attempts = 0;
                tracing::error!(sink = %self.name, %answer, "event refused for good: kept as a dead letter");
                let name = self.name.clone();
                let through = (!batch.redelivery).then_some(batch.through);
                let count = batch.events.len() as u64;
                let result = self
                    .outbox
                    .with(move |db| {
                        let refused: Vec<&Stored> = batch.events.iter().collect();
                        outbox::dead(db, &name, &refused, through, &answer, Utc::now())
                    })
                    .await;
                if let Err(error) = result {
                    return Round::Broken(error);
                }
                self.observer.dead(&self.name, count);
                Round::Sent
            }
        }
    }

    /// A refused batch, sent again event by event: only the events the receiver refuses
    /// become dead letters.
    async fn one_by_one(&mut self, batch: Batch) -> Round {
        let last = batch.events.len().saturating_sub(1);
        for (i, stored) in batch.events.into_iter().enumerate() {
            let single = Batch {
                through: if i == last { batch.through } else { stored.seq },
                events: vec![stored],
                redelivery: batch.redelivery,
            };
            let answer = self.send(&single.events).await;
            match Box::pin(self.answered(single, answer)).await {
                Round::Sent => {}
                other => return other,
            }
        }
        Round::Sent
    }
}

/// What [`drain`] did for one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    pub sink: String,
    /// Why it stopped before the backlog was empty.
    pub stopped: Option<String>,
}

/// How long [`drain`] delivers before it leaves the rest for the next run.
pub const DRAIN_BUDGET: Duration = Duration::from_secs(60);

/// Delivers each sink's backlog, all sinks at once, until it is empty, the receiver cannot
/// take more now (no backoff is waited out) or `budget` is spent: for `reconcile --once`,
/// which leaves the rest to the next run. A receiver that hangs, or one paced to a few events
/// a second, holds up no other sink and the run no longer than the budget.
pub async fn drain(
    outbox: &Outbox,
    endpoints: &BTreeMap<Name, Endpoint>,
    observer: Arc<dyn Observer>,
    budget: Duration,
) -> Result<Vec<Drained>, String> {
    let names: Vec<String> = outbox.states().await?.into_iter().map(|s| s.name).collect();
    let deadline = tokio::time::Instant::now() + budget;
    let endpoints = Arc::new(endpoints.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        let mut worker = Worker::new(&name, outbox.clone(), observer.clone());
        let (endpoints, outbox) = (endpoints.clone(), outbox.clone());
        tasks.spawn(async move {
            let out_of_time = || {
                Some(format!(
                    "not all delivered within {} s; the rest goes with the next run",
                    budget.as_secs()
                ))
            };
            let stopped = loop {
                match tokio::time::timeout_at(deadline, worker.round(&endpoints)).await {
                    Err(_) => break out_of_time(),
                    Ok(Round::Sent) if tokio::time::Instant::now() >= deadline => {
                        break out_of_time();
                    }
                    Ok(Round::Sent) => continue,
                    Ok(Round::Idle | Round::Gone) => break None,
                    Ok(Round::Wait(_)) => {
                        break Some(
                            outbox
                                .last_error(&name)
                                .await
                                .unwrap_or_else(|| "retrying".to_owned()),
                        );
                    }
                    Ok(Round::Broken(problem)) => break Some(problem),
                }
            };
            Drained {
                sink: name,
                stopped,
            }
        });
    }
    let mut drained = Vec::new();
    while let Some(done) = tasks.join_next().await {
        drained.push(done.map_err(|error| format!("delivery stopped: {error}"))?);
    }
    drained.sort_by(|a, b| a.sink.cmp(&b.sink));
    Ok(drained)
}

impl Outbox {
    /// The last error sink `name` met.
    async fn last_error(&self, name: &str) -> Option<String> {
        let name = name.to_owned();
        self.with(move |db| {
            Ok(outbox::states(db)?
                .into_iter()
                .find(|s| s.name == name)
                .and_then(|s| s.last_error))
        })
        .await
        .ok()
        .flatten()
    }
}

impl Worker {
    /// Delivers until `stop` is set: waits for `wake` (new events, a new config) when idle
    /// or broken, and out its backoff when the receiver could not take a batch.
    pub async fn run(
        mut self,
        endpoints: Arc<dyn Fn() -> BTreeMap<Name, Endpoint> + Send + Sync>,
        wake: Arc<tokio::sync::Notify>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.round(&endpoints()).await {
                Round::Sent => {
                    self.told = None;
                    continue;
                }
                Round::Gone => return,
                Round::Idle => IDLE,
                Round::Wait(wait) => wait,
                Round::Broken(problem) => {
                    if self.told.as_ref() != Some(&problem) {
                        tracing::warn!(sink = %self.name, %problem, "sink cannot deliver; its events wait");
                        self.told = Some(problem);
                    }
                    IDLE
                }
            };
            tokio::select! {
                () = wake.notified(), if wait == IDLE => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_and_is_jittered_below_it() {
        assert_eq!(backoff(0, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(40, 1.0), LONGEST_BACKOFF);
        assert_eq!(backoff(40, 0.0), Duration::ZERO);
        assert_eq!(backoff(5, 0.5), Duration::from_secs(16));
    }
}
