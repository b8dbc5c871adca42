//! The daemon's sink workers: one per sink in force, started when a reconcile declares the
//! sink, woken when a reconcile releases events, stopped with the daemon.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::Endpoint;
use crate::model::{Name, SinkType};
use crate::sinks::worker::{Observer, Outbox, Worker};
use crate::tickets::sync::Follow;

/// The host's endpoints as the config in force has them (a SIGHUP may change them).
pub type Endpoints = Arc<dyn Fn() -> BTreeMap<Name, Endpoint> + Send + Sync>;

/// The repository's event source and the ticket poll interval, as the config in force says.
pub type TicketSettings = Arc<dyn Fn() -> (String, std::time::Duration) + Send + Sync>;

pub struct Deliveries {
    outbox: Outbox,
    observer: Arc<dyn Observer>,
    endpoints: Endpoints,
    tickets: TicketSettings,
    /// Called when what is recorded of tickets changed: the status branch is written again.
    tickets_changed: Arc<dyn Fn() + Send + Sync>,
    stop: watch::Receiver<bool>,
    workers: HashMap<String, (Arc<Notify>, JoinHandle<()>)>,
    /// What keeps each ticket sink's tickets in step.
    follows: HashMap<String, JoinHandle<()>>,
}

impl Deliveries {
    pub fn new(
        outbox: Outbox,
        observer: Arc<dyn Observer>,
        endpoints: Endpoints,
        tickets: TicketSettings,
        tickets_changed: Arc<dyn Fn() + Send + Sync>,
        stop: watch::Receiver<bool>,
    ) -> Deliveries {
        Deliveries {
            outbox,
            observer,
            endpoints,
            tickets,
            tickets_changed,
            stop,
            workers: HashMap::new(),
            follows: HashMap::new(),
        }
    }

    /// A worker for each sink the outbox has (a reconcile or a restart may have added some),
    /// each woken to look for new events; workers of sinks gone have ended on their own.
    pub async fn wake(&mut self) {
        self.workers.retain(|_, (_, task)| !task.is_finished());
        self.follows.retain(|_, task| !task.is_finished());
        let sinks = match self.outbox.states().await {
            Ok(states) => states,
            Err(error) => {
                tracing::error!(%error, "sinks not read; deliveries wait for the next reconcile");
                return;
            }
        };
        for sink in sinks {
            let keeps_tickets = sink.type_ == SinkType::Jira.as_str()
                || sink.type_ == SinkType::ServiceNow.as_str();
            if keeps_tickets && !self.follows.contains_key(&sink.name) {
                let follow = Follow {
                    name: sink.name.clone(),
                    outbox: self.outbox.clone(),
                    settings: self.tickets.clone(),
                    endpoints: self.endpoints.clone(),
                    changed: self.tickets_changed.clone(),
                };
                self.follows.insert(
                    sink.name.clone(),
                    tokio::spawn(follow.run(self.stop.clone())),
                );
            }
            let (wake, _) = self.workers.entry(sink.name.clone()).or_insert_with(|| {
                let wake = Arc::new(Notify::new());
                let worker = Worker::new(&sink.name, self.outbox.clone(), self.observer.clone());
                let task = tokio::spawn(worker.run(
                    self.endpoints.clone(),
                    wake.clone(),
                    self.stop.clone(),
                ));
                (wake, task)
            });
            wake.notify_one();
        }
    }
}
