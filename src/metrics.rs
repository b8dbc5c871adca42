//! The daemon's Prometheus metrics, served at `/metrics` in the text exposition format.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::gate::GateOutcome;
use crate::model::Kind;
use crate::reconcile::Report;
use crate::remote::Exchange;
use crate::status::Outcome;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    reconcile_seconds: Histogram,
    reconciles: Family<Labels, Counter>,
    last_commit: Family<Labels, Gauge>,
    last_reconcile: Gauge<f64, AtomicU64>,
    expiry: Family<Labels, Gauge<f64, AtomicU64>>,
    webhooks: Family<Labels, Counter>,
    push_retries: Counter,
    remote_errors: Family<Labels, Counter>,
    remote_up: Gauge,
    gate_decisions: Family<Labels, Counter>,
    pending_commits: Gauge,
    open_override_reviews: Family<Labels, Gauge>,
    sink_events: Family<Labels, Counter>,
    sink_backlog: Family<Labels, Gauge>,
    sink_oldest_pending: Family<Labels, Gauge>,
    sink_dead_letters: Family<Labels, Gauge>,
    /// When each certificate and CA in force expires; turned into seconds left at each scrape.
    not_after: Mutex<Vec<(Kind, String, DateTime<Utc>)>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("gitward");
        let reconcile_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take",
            reconcile_seconds.clone(),
        );
        let reconciles = Family::<Labels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by what they did: the result they recorded (applied, blocked, failed), unchanged when nothing was new or due, error when one stopped before recording a result",
            reconciles.clone(),
        );
        let last_commit = Family::<Labels, Gauge>::default();
        registry.register(
            "last_reconciled_commit",
            "The commit last reconciled (value 1, the commit as a label)",
            last_commit.clone(),
        );
        let last_reconcile = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_reconcile_timestamp_seconds",
            "When the last reconcile finished (Unix time)",
            last_reconcile.clone(),
        );
        let expiry = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until each certificate and CA in force expires",
            expiry.clone(),
        );
        let webhooks = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook deliveries by provider and outcome",
            webhooks.clone(),
        );
        let push_retries = Counter::default();
        registry.register(
            "push_retries",
            "Status pushes the remote rejected because it had moved, merged and pushed again",
            push_retries.clone(),
        );
        let remote_errors = Family::<Labels, Counter>::default();
        registry.register(
            "remote_errors",
            "Fetches and pushes that failed, by operation",
            remote_errors.clone(),
        );
        let remote_up = Gauge::default();
        registry.register(
            "remote_up",
            "1 when the last fetch and push succeeded (always 1 for a local repository)",
            remote_up.clone(),
        );
        let gate_decisions = Family::<Labels, Counter>::default();
        registry.register(
            "gate_decisions",
            "Decisions of gates on changes, by gate and outcome (pass, fail, pending, overridden)",
            gate_decisions.clone(),
        );
        let pending_commits = Gauge::default();
        registry.register(
            "pending_commits",
            "Commits waiting for a gate's window to open (0 or 1: a newer head supersedes one)",
            pending_commits.clone(),
        );
        let open_override_reviews = Family::<Labels, Gauge>::default();
        registry.register(
            "open_override_reviews",
            "Gate overrides whose review by another principal is open, by whether it is overdue",
            open_override_reviews.clone(),
        );
        let sink_events = Family::<Labels, Counter>::default();
        registry.register(
            "sink_events",
            "Events sent to each sink, by outcome: delivered, failed (a try that is retried), dead (refused for good)",
            sink_events.clone(),
        );
        let sink_backlog = Family::<Labels, Gauge>::default();
        registry.register(
            "sink_backlog",
            "Events waiting to be delivered to each sink",
            sink_backlog.clone(),
        );
        let sink_oldest_pending = Family::<Labels, Gauge>::default();
        registry.register(
            "sink_oldest_pending_seconds",
            "How long the oldest event waiting for each sink has waited (0 without backlog)",
            sink_oldest_pending.clone(),
        );
        let sink_dead_letters = Family::<Labels, Gauge>::default();
        registry.register(
            "sink_dead_letters",
            "Events each sink's receiver refused for good, kept until retried or discarded",
            sink_dead_letters.clone(),
        );
        Metrics {
            registry,
            sink_events,
            sink_backlog,
            sink_oldest_pending,
            sink_dead_letters,
            gate_decisions,
            pending_commits,
            open_override_reviews,
            push_retries,
            remote_errors,
            remote_up,
            reconcile_seconds,
            reconciles,
            last_commit,
            last_reconcile,
            expiry,
            webhooks,
            not_after: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Records a finished reconcile.
    pub fn reconciled(&self, report: &Report, seconds: f64, now: DateTime<Utc>) {
        self.ran(report.result.as_str(), seconds);
        self.last_commit.clear();
        self.last_commit
            .get_or_create(&vec![("commit".to_owned(), report.source.clone())])
            .set(1);
        self.last_reconcile.set(now.timestamp() as f64);
        *self
            .not_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = report.expiries.clone();
        for gate in &report.gates {
            if gate.outcome != GateOutcome::NotApplicable {
                self.gate_decisions
                    .get_or_create(&vec![
                        ("gate".to_owned(), gate.name.clone()),
                        ("outcome".to_owned(), gate.outcome.as_str().to_owned()),
                    ])
                    .inc();
            }
        }
        self.pending_commits
            .set(i64::from(report.result == Outcome::Pending));
        for overdue in [false, true] {
            let count = report
                .open_reviews
                .iter()
                .filter(|r| r.overdue == overdue)
                .count();
            self.open_override_reviews
                .get_or_create(&vec![("overdue".to_owned(), overdue.to_string())])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Records a reconcile that found nothing new and nothing due, and so did nothing.
    pub fn unchanged(&self, seconds: f64, now: DateTime<Utc>) {
        self.ran("unchanged", seconds);
        self.last_reconcile.set(now.timestamp() as f64);
    }

    /// Records a reconcile that stopped with an error.
    pub fn reconcile_failed(&self, seconds: f64) {
        self.ran("error", seconds);
    }

    fn ran(&self, result: &str, seconds: f64) {
        self.reconcile_seconds.observe(seconds);
        self.reconciles
            .get_or_create(&vec![("result".to_owned(), result.to_owned())])
            .inc();
    }

    /// Records how fetching and pushing went.
    pub fn exchanged(&self, exchange: &Exchange) {
        self.push_retries.inc_by(u64::from(exchange.push_retries));
        for (operation, error) in [
            ("fetch", &exchange.fetch_error),
            ("push", &exchange.push_error),
        ] {
            if error.is_some() {
                self.remote_errors
                    .get_or_create(&vec![("operation".to_owned(), operation.to_owned())])
                    .inc();
            }
        }
        self.remote_up.set(i64::from(exchange.healthy()));
    }

    /// Records a webhook delivery and how it was answered.
    pub fn webhook(&self, provider: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&vec![
                ("provider".to_owned(), provider.to_owned()),
                ("outcome".to_owned(), outcome.to_owned()),
            ])
            .inc();
    }

    /// Sets the delivery state of the sinks, as the outbox tells it at a scrape.
    pub fn sinks(&self, states: &[crate::events::outbox::SinkState]) {
        for family in [
            &self.sink_backlog,
            &self.sink_oldest_pending,
            &self.sink_dead_letters,
        ] {
            family.clear();
        }
        for state in states {
            let labels = vec![("sink".to_owned(), state.name.clone())];
            self.sink_backlog.get_or_create(&labels).set(state.backlog);
            self.sink_oldest_pending
                .get_or_create(&labels)
                .set(state.oldest_pending_seconds.unwrap_or(0));
            self.sink_dead_letters
                .get_or_create(&labels)
                .set(state.dead_letters);
        }
    }

    fn sink_event(&self, sink: &str, outcome: &str, events: u64) {
        self.sink_events
            .get_or_create(&vec![
                ("sink".to_owned(), sink.to_owned()),
                ("outcome".to_owned(), outcome.to_owned()),
            ])
            .inc_by(events);
    }

    /// The metrics in Prometheus text format, expiries as of `now`.
    pub fn render(&self, now: DateTime<Utc>) -> String {
        self.expiry.clear();
        for (kind, name, not_after) in self
            .not_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let left = (*not_after - now).num_milliseconds() as f64 / 1000.0;
            self.expiry
                .get_or_create(&vec![
                    ("kind".to_owned(), kind.to_string()),
                    ("name".to_owned(), name.clone()),
                ])
                .set(left);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl crate::sinks::worker::Observer for Metrics {
    fn delivered(&self, sink: &str, events: u64) {
        self.sink_event(sink, "delivered", events);
    }

    fn failed(&self, sink: &str) {
        self.sink_event(sink, "failed", 1);
    }

    fn dead(&self, sink: &str, events: u64) {
        self.sink_event(sink, "dead", events);
    }
}
