//! `gitward run`: reconciles the tracked branch whenever a trigger says so — a webhook
//! delivery, the poll interval, or the earliest renewal coming due — and serves health,
//! readiness, the last outcome and the webhook endpoints on `listen`.
//!
//! One daemon per state directory (an exclusive lock on `stateDir/gitward.lock`). SIGTERM
//! and SIGINT stop it after the reconcile in progress; it then exits 0.

pub mod delivery;
pub mod pulls;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use tokio::sync::Notify;

use crate::config::{HostConfig, WebhookSecrets};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::reconcile::{Scope, Silent, Warm, reconcile_warm};
use crate::server;
use crate::store::Store;
use crate::webhook::{self, Outcome, Provider, Rejection};

/// Largest webhook body accepted; GitHub's push payloads stay well below.
const BODY_LIMIT: usize = 5 * 1024 * 1024;
/// How long a webhook body may take to arrive, all of it: forges send it at once.
const BODY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the files and keys of unchanged certificates are compared with status: a
/// reconcile in between looks only at what changed or is due.
const FULL_CHECK_EVERY: Duration = Duration::from_secs(15 * 60);
/// How long a trigger waits for the ones right behind it.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// How long delivery ids are remembered to ignore replays; forges redeliver within days.
const REMEMBERED_DELIVERIES_SECONDS: i64 = 30 * 24 * 3600;

/// The host config and the secrets it names, as loaded at start or at the last SIGHUP.
struct Loaded {
    config: HostConfig,
    secrets: WebhookSecrets,
}

impl Loaded {
    fn read(path: &Path) -> Result<Loaded> {
        let (config, secrets) = HostConfig::load_with_secrets(path)?;
        Ok(Loaded { config, secrets })
    }
}

struct Daemon {
    /// Fixed at start: what cannot change under a running daemon (listen address, state
    /// directory, the watched repository).
    config: HostConfig,
    /// Reloaded on SIGHUP: targets, ACME accounts, webhook secrets, branch, poll interval.
    loaded: std::sync::RwLock<Arc<Loaded>>,
    metrics: Metrics,
    trigger: Notify,
    ready: AtomicBool,
    /// What is recorded of tickets changed since the last reconcile (a delivery, a poll).
    tickets_changed: AtomicBool,
    last: Mutex<serde_json::Value>,
    /// The last failure to reach the remote and since when it lasts; `None` while it answers.
    remote_trouble: Mutex<Option<(String, chrono::DateTime<Utc>)>>,
    /// Delivery ids seen, in the state database so a restart does not forget them.
    deliveries: Mutex<Store>,
    /// Authentic deliveries per source, apart from the rest so that a flood of forged ones
    /// cannot use up the tokens of the real ones.
    authentic_limit: Mutex<webhook::RateLimit>,
    /// Deliveries that failed to authenticate or to parse, per source.
    rejected_limit: Mutex<webhook::RateLimit>,
    /// Pull request deliveries, per source: anyone may cause them on a public repository
    /// (a fork's pushes, a review), and they must not use up the tokens of pushes.
    pull_limit: Mutex<webhook::RateLimit>,
    /// Pull requests waiting to be planned.
    pulls: Arc<pulls::Queue>,
    /// The last `gitward/apply` status set: (commit, status), not set again.
    apply_status: Mutex<Option<(String, crate::forge::Check)>>,
}

impl Daemon {
    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether `delivery` was seen before; remembers it. When the database cannot say, the
    /// delivery counts as new: a reconcile too many changes nothing.
    fn replayed(&self, provider: &str, delivery: &str) -> bool {
        let store = self
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match store.first_delivery(
            provider,
            delivery,
            Utc::now().timestamp(),
            REMEMBERED_DELIVERIES_SECONDS,
        ) {
            Ok(first) => !first,
            Err(error) => {
                tracing::error!(%error, "delivery ids not recorded");
                false
            }
        }
    }

    fn remote_answered(&self, exchange: &crate::remote::Exchange) {
        let mut trouble = self
            .remote_trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match exchange
            .fetch_error
            .as_ref()
            .or(exchange.push_error.as_ref())
        {
            None => *trouble = None,
            Some(error) => {
                let since = trouble.as_ref().map_or_else(Utc::now, |(_, since)| *since);
                *trouble = Some((error.clone(), since));
            }
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT; logs through `tracing`.
pub fn run(config_path: &Path) -> Result<u8> {
    // A long-lived process that keeps thousands of small objects: transparent huge pages
    // would make every 2 MiB region its allocator touches resident in full (~10 % of the RSS
    // with 10,000 resources). Without them it only costs some TLB misses.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let loaded = Loaded::read(config_path)?;
    let config = loaded.config.clone();
    let _lock = crate::store::lock_state_dir(&config.state_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::io("<tokio runtime>"))?;
    let deliveries = Mutex::new(Store::open(&config.state_dir)?);
    let daemon = Arc::new(Daemon {
        config,
        loaded: std::sync::RwLock::new(Arc::new(loaded)),
        metrics: Metrics::default(),
        trigger: Notify::new(),
        ready: AtomicBool::new(false),
        tickets_changed: AtomicBool::new(false),
        last: Mutex::new(serde_json::Value::Null),
        remote_trouble: Mutex::default(),
        deliveries,
        authentic_limit: Mutex::default(),
        rejected_limit: Mutex::default(),
        pull_limit: Mutex::default(),
        pulls: Arc::default(),
        apply_status: Mutex::default(),
    });
    runtime.block_on(serve(daemon, config_path))
}

async fn serve(daemon: Arc<Daemon>, config_path: &Path) -> Result<u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::io("<signal handler>"))?;
    let mut hangup = signal(SignalKind::hangup()).map_err(Error::io("<signal handler>"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::io("<signal handler>"))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = match &daemon.config.listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(Error::io(format!("listen {address}")))?;
            let app = Router::new()
                .route("/healthz", get(healthz))
                .route("/readyz", get(readyz))
                .route("/status", get(last_status))
                .route("/metrics", get(metrics))
                .route("/hooks/{provider}", post(hook))
                .with_state(daemon.clone());
            let limits = server::Limits::for_fd_limit(server::raise_fd_limit());
            Some(tokio::spawn(server::serve(
                listener,
                app,
                limits,
                stopped.clone(),
            )))
        }
        None => None,
    };
    // A local repository is watched: a new commit on the branch starts a reconcile at once.
    let _watcher = match daemon.config.local_repo() {
        Some(path) => watch_branch(&path, &daemon.config.repo.branch, daemon.clone())?,
        None => None,
    };
    if let Some(interval) = sd_notify::watchdog_enabled() {
        // Pinged from the runtime, so a wedged runtime is restarted by systemd.
        tokio::spawn(async move {
            loop {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                tokio::time::sleep(interval / 2).await;
            }
        });
    }
    let endpoints_of = daemon.clone();
    let tickets_of = daemon.clone();
    let status_of = daemon.clone();
    let mut deliveries = delivery::Deliveries::new(
        crate::sinks::worker::Outbox::new(Store::open(&daemon.config.state_dir)?),
        Arc::new(Observed(daemon.clone())),
        Arc::new(move || endpoints_of.current().config.endpoints.clone()),
        Arc::new(move || {
            let config = &tickets_of.current().config;
            (
                crate::events::source_of(&config.repo.url),
                Duration::from_secs(config.tickets.poll_interval.as_secs()),
            )
        }),
        Arc::new(move || {
            status_of.tickets_changed.store(true, Ordering::SeqCst);
            status_of.trigger.notify_one();
        }),
        stopped.clone(),
    );
    // A backlog left by the last run goes out before the first reconcile ends.
    deliveries.wake().await;
    let config_of = daemon.clone();
    tokio::spawn(pulls::plan_queued(
        daemon.pulls.clone(),
        Arc::new(move || config_of.current().config.clone()),
        stopped.clone(),
    ));
    // Reconciles in a row that could not reach the remote; retried sooner than the poll
    // interval, with doubling pauses up to a minute.
    let mut remote_failures: u32 = 0;
    let mut warm = Warm::default();
    // A trigger reconciles what changed; the start and the timers check everything.
    let mut scope = Scope::Everything;
    let mut checked_everything = std::time::Instant::now();
    loop {
        if checked_everything.elapsed() >= FULL_CHECK_EVERY {
            scope = Scope::Everything;
        }
        if scope == Scope::Everything {
            checked_everything = std::time::Instant::now();
        }
        let current = daemon.current();
        let config = current.config.clone();
        let started = std::time::Instant::now();
        // The reconcile in progress always finishes: signals are looked at between reconciles.
        if daemon.tickets_changed.swap(false, Ordering::SeqCst) {
            warm.tickets_changed();
        }
        let mut kept = std::mem::take(&mut warm);
        let report = tokio::task::spawn_blocking(move || {
            // On a thread that ends with the reconcile: the allocator gives back the free
            // memory of a finished thread, which a pooled one would keep (~8 MiB with
            // 10,000 resources).
            let report = std::thread::scope(|threads| {
                threads
                    .spawn(|| {
                        let report = reconcile_warm(&config, Utc::now(), &Silent, &mut kept, scope);
                        give_back_free_memory();
                        report
                    })
                    .join()
            })
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (report, kept)
        })
        .await
        .map(|(report, kept)| {
            warm = kept;
            report
        });
        let seconds = started.elapsed().as_secs_f64();
        deliveries.wake().await;
        let mut wait = Duration::from_secs(current.config.repo.poll_interval.as_secs().max(1));
        // The next full check is a due time like a renewal.
        wait = wait.min(
            FULL_CHECK_EVERY
                .saturating_sub(checked_everything.elapsed())
                .max(Duration::from_secs(1)),
        );
        let exchange = match &report {
            Ok(Ok(report)) => report.exchange.clone(),
            Ok(Err(error @ Error::Remote { .. })) => crate::remote::Exchange {
                fetch_error: Some(error.to_string()),
                ..Default::default()
            },
            _ => crate::remote::Exchange::default(),
        };
        daemon.remote_answered(&exchange);
        daemon.metrics.exchanged(&exchange);
        if exchange.healthy() {
            remote_failures = 0;
        } else {
            remote_failures = remote_failures.saturating_add(1);
            wait = wait.min(Duration::from_secs(1 << remote_failures.min(6)));
        }
        match report {
            // Nothing new and nothing due: the last outcome stands, nothing was done.
            Ok(Ok(report)) if report.stood => {
                daemon.metrics.unchanged(seconds, Utc::now());
                tracing::debug!(commit = %report.source, "nothing new");
                if let Some(until) = report.stands_until {
                    wait = wait.min(time_until(until));
                }
            }
            Ok(Ok(report)) => {
                daemon.metrics.reconciled(&report, seconds, Utc::now());
                log_outcome(&report, seconds);
                set_apply_status(&daemon, &current.config, &report);
                if let Some(until) = report.stands_until {
                    wait = wait.min(time_until(until));
                }
                if !daemon.ready.swap(true, Ordering::SeqCst) {
                    // Under systemd (Type=notify), start-up is finished now.
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
                *daemon.last.lock().unwrap_or_else(PoisonError::into_inner) = serde_json::json!({
                    "source": report.source,
                    "result": report.result.as_str(),
                    "problems": report.problems,
                    "statusCommit": report.status_commit,
                    "nextRenewal": report.next_renewal,
                    "retryAt": report.retry_at,
                    // A pending commit is applied, without a new commit, at this time.
                    "pendingUntil": (report.result == crate::status::Outcome::Pending)
                        .then_some(report.retry_at)
                        .flatten(),
                    "gates": report
                        .gates
                        .iter()
                        .map(|g| serde_json::json!({
                            "name": g.name,
                            "outcome": g.outcome.as_str(),
                            "summary": g.line(),
                        }))
                        .collect::<Vec<_>>(),
                    "openOverrideReviews": report.open_reviews,
                    "remote": {
                        "fetchError": report.exchange.fetch_error,
                        "pushError": report.exchange.push_error,
                        "pushRetries": report.exchange.push_retries,
                    },
                });
            }
            Ok(Err(error)) => {
                daemon.metrics.reconcile_failed(seconds);
                tracing::error!(%error, "reconcile failed");
            }
            Err(error) => {
                daemon.metrics.reconcile_failed(seconds);
                tracing::error!(%error, "reconcile stopped");
            }
        }
        tokio::select! {
            () = daemon.trigger.notified() => {
                // A ref update is several file events, a push often several deliveries:
                // what arrives within the pause is one trigger.
                tokio::time::sleep(DEBOUNCE).await;
                let _ = tokio::time::timeout(Duration::ZERO, daemon.trigger.notified()).await;
                scope = Scope::Changes;
            }
            () = tokio::time::sleep(wait) => scope = Scope::Changes,
            _ = hangup.recv() => {
                scope = Scope::Everything;
                warm.forget_failures();
                // A broken config leaves the one in force; the reconcile after a reload uses
                // the new one.
                match Loaded::read(config_path) {
                    Ok(loaded) => {
                        *daemon.loaded.write().unwrap_or_else(PoisonError::into_inner) =
                            Arc::new(loaded);
                        tracing::info!(config = %config_path.display(), "host config reloaded");
                    }
                    Err(error) => {
                        tracing::error!(%error, "host config not reloaded");
                    }
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop.send(true);
    if let Some(server) = server {
        let _ = server.await;
    }
    Ok(0)
}

/// Sets the `gitward/apply` status of the commit `report` reconciled through the host's
/// forge, unless it says what it said last; in the background, logged when it fails.
fn set_apply_status(daemon: &Arc<Daemon>, config: &HostConfig, report: &crate::reconcile::Report) {
    if config.forge.is_none() {
        return;
    }
    let check = pulls::apply_check(report);
    let key = (report.source.clone(), check);
    {
        let mut last = daemon
            .apply_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.as_ref() == Some(&key) {
            return;
        }
        *last = Some(key);
    }
    let (config, report) = (config.clone(), report.clone());
    tokio::task::spawn_blocking(move || {
        if let Err(error) = pulls::post_apply_status(&config, &report) {
            tracing::warn!(commit = %report.source, %error, "gitward/apply status not set");
        }
    });
}

/// Returns the pages a reconcile freed to the system. The allocator (mimalloc, the global
/// allocator regorus installs) keeps freed pages for reuse; after the first reconcile of
/// 10,000 certificates, whose events alone take ~30 MiB while they are told, that kept the
/// idle daemon ~35 MiB larger than what it holds.
fn give_back_free_memory() {
    unsafe extern "C" {
        fn mi_collect(force: bool);
    }
    // SAFETY: `mi_collect` only frees memory the allocator holds unused; it is safe to call
    // from any thread at any time.
    unsafe { mi_collect(true) }
}

/// How long until `time`, at least a second: a due time that keeps failing does not spin.
fn time_until(time: chrono::DateTime<Utc>) -> Duration {
    (time - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1))
}

/// Problems of a commit that did not apply logged one by one, at most this many.
const LOGGED_PROBLEMS: usize = 20;

/// Logs a reconcile that ran: its result, and each problem of one that did not apply (what
/// each resource became is logged by the reconcile itself).
fn log_outcome(report: &crate::reconcile::Report, seconds: f64) {
    let result = report.result.as_str();
    if report.result == crate::status::Outcome::Applied {
        tracing::info!(
            commit = %report.source,
            result,
            wrote_status = report.wrote_status,
            seconds,
            "reconciled"
        );
        return;
    }
    tracing::warn!(
        commit = %report.source,
        result,
        wrote_status = report.wrote_status,
        seconds,
        problems = report.problems.len(),
        retry_at = report
            .retry_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .as_deref(),
        "reconciled"
    );
    for problem in report.problems.iter().take(LOGGED_PROBLEMS) {
        tracing::warn!(commit = %report.source, %problem, "problem");
    }
    if let Some(more) = report
        .problems
        .len()
        .checked_sub(LOGGED_PROBLEMS)
        .filter(|n| *n > 0)
    {
        tracing::warn!(commit = %report.source, more, "more problems, in the commit's note");
    }
}

/// `gitward healthcheck`: asks the daemon configured in `config_path` for `/healthz` and
/// prints its answer; 0 when it answers 200. Needs no HTTP client in the image it runs in.
pub fn healthcheck(config_path: &Path, out: &mut dyn std::io::Write) -> Result<u8> {
    use std::io::{Read, Write};
    let config = HostConfig::load(config_path)?;
    let Some(listen) = config.listen else {
        return Err(Error::Usage(format!(
            "{}: no `listen` address to ask",
            config_path.display()
        )));
    };
    let address: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| Error::Usage(format!("listen `{listen}`: {e}")))?;
    // A daemon listening on every address answers on loopback.
    let address = match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            std::net::SocketAddr::from(([127, 0, 0, 1], address.port()))
        }
        ip if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, address.port()))
        }
        _ => address,
    };
    let url = format!("http://{address}/healthz");
    let timeout = Duration::from_secs(5);
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, timeout).map_err(Error::io(&url))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| {
            stream.write_all(format!("GET /healthz HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        })
        .map_err(Error::io(&url))?;
    let mut response = String::new();
    stream
        .take(64 * 1024)
        .read_to_string(&mut response)
        .map_err(Error::io(&url))?;
    let healthy = response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    out.write_all(body.as_bytes())
        .map_err(Error::io("<stdout>"))?;
    Ok(if healthy { 0 } else { 1 })
}

/// Watches the refs of the local repository at `path` and triggers a reconcile when `branch`
/// or the approvals move. Other refs (the status branch, the status notes) are ignored, so
/// gitward's own writes do not wake it.
fn watch_branch(
    path: &Path,
    branch: &str,
    daemon: Arc<Daemon>,
) -> Result<Option<notify::RecommendedWatcher>> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let Ok(repo) = git2::Repository::open(path) else {
        return Ok(None);
    };
    let git_dir = repo.path().to_path_buf();
    let branch_ref = git_dir.join("refs/heads").join(branch);
    let packed = git_dir.join("packed-refs");
    let approvals = git_dir.join(crate::trust::approvals::APPROVALS_REF);
    let watched = [branch_ref.clone(), approvals.clone()];
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        // git writes `<ref>.lock` and renames it over the ref.
        let moved = event.paths.iter().any(|p| {
            watched
                .iter()
                .any(|w| p.starts_with(w) || p.with_extension("") == *w)
                || *p == packed
        });
        if moved {
            daemon.trigger.notify_one();
        }
    })
    .map_err(|e| Error::Usage(format!("watching {}: {e}", git_dir.display())))?;
    let refs = branch_ref.parent().unwrap_or(&git_dir).to_path_buf();
    let notes = approvals.parent().unwrap_or(&git_dir).to_path_buf();
    for dir in [&refs, &notes] {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    for (dir, mode) in [
        (refs.as_path(), RecursiveMode::NonRecursive),
        (notes.as_path(), RecursiveMode::NonRecursive),
        (git_dir.as_path(), RecursiveMode::NonRecursive),
    ] {
        watcher
            .watch(dir, mode)
            .map_err(|e| Error::Usage(format!("watching {}: {e}", dir.display())))?;
    }
    Ok(Some(watcher))
}

/// Alive as long as it answers; a remote that does not is reported, not fatal: restarting
/// the daemon would not bring the remote back.
async fn healthz(State(daemon): State<Arc<Daemon>>) -> String {
    match &*daemon
        .remote_trouble
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
    {
        None => "ok\n".to_owned(),
        Some((error, since)) => format!(
            "ok, degraded: remote unreachable since {}: {error}\n",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    }
}

async fn readyz(State(daemon): State<Arc<Daemon>>) -> impl IntoResponse {
    if daemon.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no reconcile has finished yet\n",
        )
    }
}

/// Tells the daemon's metrics how deliveries go.
struct Observed(Arc<Daemon>);

impl crate::sinks::worker::Observer for Observed {
    fn delivered(&self, sink: &str, events: u64) {
        self.0.metrics.delivered(sink, events);
        // What a ticket sink did goes on the status branch: a reconcile writes it.
        let keeps_tickets = self.0.sinks().iter().any(|s| {
            s.name == sink
                && (s.type_ == crate::model::SinkType::Jira.as_str()
                    || s.type_ == crate::model::SinkType::ServiceNow.as_str())
        });
        if keeps_tickets && events > 0 {
            self.0.tickets_changed.store(true, Ordering::SeqCst);
            self.0.trigger.notify_one();
        }
    }

    fn failed(&self, sink: &str) {
        crate::sinks::worker::Observer::failed(&self.0.metrics, sink);
    }

    fn dead(&self, sink: &str, events: u64) {
        self.0.metrics.dead(sink, events);
    }
}

impl Daemon {
    /// The delivery state of the sinks, from the state database.
    fn sinks(&self) -> Vec<crate::events::outbox::SinkState> {
        let store = self
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        crate::events::outbox::states(store.db()).unwrap_or_else(|error| {
            tracing::error!(%error, "sink states not read");
            Vec::new()
        })
    }

    /// The problems of the ticket sinks and their tickets.
    fn tickets(&self) -> Vec<crate::tickets::store::Record> {
        let store = self
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        crate::tickets::store::current(store.db(), None).unwrap_or_else(|error| {
            tracing::error!(%error, "tickets not read");
            Vec::new()
        })
    }
}

async fn metrics(State(daemon): State<Arc<Daemon>>) -> impl IntoResponse {
    daemon.metrics.sinks(&daemon.sinks());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        daemon.metrics.render(Utc::now()),
    )
}

async fn last_status(State(daemon): State<Arc<Daemon>>) -> impl IntoResponse {
    let mut last = daemon
        .last
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(last) = last.as_object_mut() {
        last.insert("sinks".to_owned(), serde_json::json!(daemon.sinks()));
        last.insert("tickets".to_owned(), serde_json::json!(daemon.tickets()));
    }
    axum::Json(last)
}

async fn hook(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    UrlPath(provider): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let current = daemon.current();
    let (provider, secret) = match provider.as_str() {
        "github" => (Provider::GitHub, &current.secrets.github),
        "gitlab" => (Provider::GitLab, &current.secrets.gitlab),
        "generic" => (Provider::Generic, &current.secrets.generic),
        _ => return (StatusCode::NOT_FOUND, "no such hook\n").into_response(),
    };
    let label = format!("{provider:?}").to_lowercase();
    let Some(secret) = secret else {
        daemon.metrics.webhook(&label, "not_configured");
        return (
            StatusCode::NOT_FOUND,
            "this hook is not configured on this host\n",
        )
            .into_response();
    };
    // The permit is held while the delivery is judged: until then its body is in memory.
    let (body, _budget) = match read_body(&headers, body, peer.ip()).await {
        Ok(read) => read,
        Err((outcome, status, text)) => {
            daemon.metrics.webhook(&label, outcome);
            return (status, text).into_response();
        }
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let judged = webhook::judge(provider, secret, header, &body, &current.config.repo.branch);
    // Judged before it is counted, each kind in buckets of its own: forged deliveries must not
    // use up the tokens of authentic ones from the same address (a forge's, or a proxy's). What
    // a delivery costs before it is judged is bounded by the body limit, the read deadline and
    // the connection caps.
    let limit = match judged {
        Ok(Outcome::PullRequest { .. }) => &daemon.pull_limit,
        Ok(_) => &daemon.authentic_limit,
        Err(_) => &daemon.rejected_limit,
    };
    let allowed = limit
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take(peer.ip(), std::time::Instant::now());
    if let Err(wait) = allowed {
        daemon.metrics.webhook(&label, "rate_limited");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(
                axum::http::header::RETRY_AFTER,
                wait.as_secs().max(1).to_string(),
            )],
            "too many deliveries from this source\n".to_owned(),
        )
            .into_response();
    }
    let (outcome, status, text) = match judged {
        Err(Rejection::Unauthenticated(why)) => {
            ("unauthenticated", StatusCode::UNAUTHORIZED, why.to_owned())
        }
        Err(Rejection::Malformed(why)) => ("malformed", StatusCode::BAD_REQUEST, why),
        Ok(outcome) => act_on(&daemon, &current.config, &label, outcome),
    };
    daemon.metrics.webhook(&label, outcome);
    (status, format!("{text}\n")).into_response()
}

/// What an authentic delivery makes the daemon do, and its answer: (the metric's outcome,
/// the status, the text).
fn act_on(
    daemon: &Daemon,
    config: &HostConfig,
    label: &str,
    outcome: Outcome,
) -> (&'static str, StatusCode, String) {
    let acts = matches!(
        outcome,
        Outcome::Reconcile { .. } | Outcome::PullRequest { .. }
    );
    if acts
        && outcome
            .delivery()
            .is_some_and(|d| daemon.replayed(label, d))
    {
        return (
            "replayed",
            StatusCode::OK,
            "delivery seen before: ignored".to_owned(),
        );
    }
    match outcome {
        Outcome::Ping => ("ping", StatusCode::OK, "pong".to_owned()),
        Outcome::Ignored { why, .. } => {
            ("ignored", StatusCode::ACCEPTED, format!("ignored: {why}"))
        }
        Outcome::PullRequest { request, .. } => {
            if !config.forge.as_ref().is_some_and(|f| f.plan_pull_requests) {
                (
                    "ignored",
                    StatusCode::ACCEPTED,
                    "ignored: this host plans no pull requests (no `forge`, or forge.planPullRequests is false)".to_owned(),
                )
            } else if daemon.pulls.push(request) {
                (
                    "planned",
                    StatusCode::ACCEPTED,
                    "pull request plan queued".to_owned(),
                )
            } else {
                (
                    "busy",
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many pull requests waiting to be planned".to_owned(),
                )
            }
        }
        Outcome::Reconcile { .. } => {
            daemon.trigger.notify_one();
            (
                "triggered",
                StatusCode::ACCEPTED,
                "reconcile queued".to_owned(),
            )
        }
    }
}

/// What deliveries being read may hold at once, in KiB. Each takes its announced length (or
/// the most a body may be) before its body is read, so that clients sending large bodies
/// slowly cannot make the daemon hold gigabytes. Bodies up to [`SMALL_BODY_KIB`] — what forges
/// send for a push — have a budget of their own, which large ones cannot use up.
const LARGE_BODIES_KIB: usize = 64 * 1024;
const SMALL_BODIES_KIB: usize = 16 * 1024;
const SMALL_BODY_KIB: usize = 256;
/// What one address may have in bodies being read: one of the largest, and some.
const BODIES_PER_SOURCE_KIB: usize = 8 * 1024;

static LARGE_BODIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(LARGE_BODIES_KIB);
static SMALL_BODIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(SMALL_BODIES_KIB);
static BODIES_BY_SOURCE: Mutex<std::collections::BTreeMap<std::net::IpAddr, usize>> =
    Mutex::new(std::collections::BTreeMap::new());

/// A delivery's share of the body budgets, given back when it is dropped.
struct BodyBudget {
    _permit: tokio::sync::SemaphorePermit<'static>,
    source: std::net::IpAddr,
    kib: usize,
}

impl Drop for BodyBudget {
    fn drop(&mut self) {
        give_back(self.source, self.kib);
    }
}

fn give_back(source: std::net::IpAddr, kib: usize) {
    let mut held = BODIES_BY_SOURCE
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(now) = held.get_mut(&source) {
        *now = now.saturating_sub(kib);
        if *now == 0 {
            held.remove(&source);
        }
    }
}

type Refusal = (&'static str, StatusCode, String);

/// Takes `kib` of the budgets for a body from `source`, or says why not.
fn take_budget(source: std::net::IpAddr, kib: usize) -> std::result::Result<BodyBudget, Refusal> {
    {
        let mut held = BODIES_BY_SOURCE
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = held.entry(source).or_default();
        if *now + kib > BODIES_PER_SOURCE_KIB {
            return Err((
                "busy",
                StatusCode::TOO_MANY_REQUESTS,
                "this address has too many deliveries being read; retry later\n".to_owned(),
            ));
        }
        *now += kib;
    }
    let pool = if kib <= SMALL_BODY_KIB {
        &SMALL_BODIES
    } else {
        &LARGE_BODIES
    };
    match pool.try_acquire_many(u32::try_from(kib).unwrap_or(u32::MAX)) {
        Ok(permit) => Ok(BodyBudget {
            _permit: permit,
            source,
            kib,
        }),
        Err(_) => {
            give_back(source, kib);
            Err((
                "busy",
                StatusCode::SERVICE_UNAVAILABLE,
                "too many deliveries are being read; retry later\n".to_owned(),
            ))
        }
    }
}

/// A delivery's body, read within bounds: an announced length over [`BODY_LIMIT`] is refused
/// before a byte is read, and the whole body must arrive within [`BODY_TIMEOUT`]. A refusal is
/// (outcome for the metrics, status, answer).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    source: std::net::IpAddr,
) -> std::result::Result<(Bytes, BodyBudget), Refusal> {
    let too_large = || {
        (
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {BODY_LIMIT} bytes\n"),
        )
    };
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let kib = announced
        .map_or(BODY_LIMIT, |length| length as usize)
        .div_ceil(1024)
        .max(1);
    let permit = take_budget(source, kib)?;
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(bytes)) => Ok((bytes, permit)),
        Ok(Err(error)) => {
            let over = std::error::Error::source(&error)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            Err(if over {
                too_large()
            } else {
                (
                    "malformed",
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read: {error}\n"),
                )
            })
        }
        Err(_) => Err((
            "timed_out",
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} seconds\n",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}
