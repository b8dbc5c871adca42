//! One reconcile: make the world match the head of the tracked branch, then record the
//! outcome in Git.
//!
//! Desired state is the commit; observed state is the status branch's tip plus the secret
//! store. A reconcile reads both, reviews the head against the commit in force as `plan`
//! does, gathers what the governing gates ask for, and [`decide`]s — a pure function —
//! whether the head is applied, blocked, pending or failed. [`apply`] carries the decision
//! out: each CA, parents first, and each certificate is kept, issued, reissued or renewed by
//! comparing its spec hash, its issuer's fingerprint and its renewal time with what status
//! records, through the journal of [`crate::store`] and the link-proof writes of
//! [`crate::outputs`]. [`record`] writes the outcome to the status branch and the notes.

mod apply;
pub mod decide;
mod record;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::config::HostConfig;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::gate::gather::{self, Sources, gather};
use crate::gate::{self, Evidence, GateReport, OpenReview, Renewal, RenewalHold};
use crate::git::CommitInfo;
use crate::model::{Catalog, Kind, Significant};
use crate::policy::Evaluation;
use crate::remote::{Exchange, Workspace};
use crate::report::PlanReport;
use crate::review::{Known, review_on};
use crate::snapshot::Snapshot;
use crate::source::{BlobCache, ConfigRepo};
use crate::status::{self, Change, Observed, Outcome, ResourceOutcome, Statuses, Summary};
use crate::store::Store;
use crate::trust::approvals::APPROVALS_REF;
use crate::trust::commits::check_commit_now;
use crate::trust::signers::AllowedSigners;
use decide::{Decision, Facts, Verdict, decide};

/// What one reconcile did.
#[derive(Debug, Clone)]
pub struct Report {
    pub source: String,
    pub result: Outcome,
    pub problems: Vec<String>,
    pub resources: Vec<ResourceOutcome>,
    /// The status-branch commit that records the outcome.
    pub status_commit: String,
    /// Whether a new status commit was written (a reconcile that changes nothing writes none).
    pub wrote_status: bool,
    /// The earliest time a certificate or CA in force is due for renewal.
    pub next_renewal: Option<DateTime<Utc>>,
    /// The next time an expiry warning (`certificate.expiring`, `exception.expiring`) or an
    /// override review (`gate.override.overdue`) falls due.
    pub next_warning: Option<DateTime<Utc>>,
    /// When a commit that did not apply is tried again.
    pub retry_at: Option<DateTime<Utc>>,
    /// Until when this outcome stands for a reconcile that finds nothing new: the retry, or
    /// the earliest renewal to come. `None`: until something new.
    pub stands_until: Option<DateTime<Utc>>,
    /// Whether this is the last reconcile's outcome standing: nothing new, nothing due, so
    /// nothing was done.
    pub stood: bool,
    /// When each certificate and CA in force expires.
    pub expiries: Vec<(Kind, String, DateTime<Utc>)>,
    /// The decision of each gate that governed the head (none when the head was in force).
    pub gates: Vec<GateReport>,
    /// Overrides whose review is open.
    pub open_reviews: Vec<OpenReview>,
    /// How fetching and pushing went, when the repository is a remote.
    pub exchange: Exchange,
}

/// Hears how a reconcile advances, for a display on a terminal.
pub trait Progress {
    /// Work starts on `total` certificates.
    fn start(&self, _total: usize) {}
    /// Certificate `name` is next, `done` certificates are finished.
    fn certificate(&self, _done: usize, _name: &str) {}
    /// A step that is not about one certificate.
    fn step(&self, _what: &str) {}
}

/// Progress nobody watches.
pub struct Silent;

impl Progress for Silent {}

/// "sha256:<hex>" of the fields that matter.
pub fn spec_hash(fields: &Significant) -> String {
    let json = serde_json::to_string(fields).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(json.as_bytes())))
}

/// A commit that stands for "nothing applied yet".
fn empty_commit() -> CommitInfo {
    CommitInfo {
        sha: "0".repeat(40),
        tree: git2::Oid::ZERO_SHA1,
        author: String::new(),
        email: String::new(),
        summary: "nothing applied yet".to_owned(),
        message: String::new(),
        signature: None,
    }
}

/// What a long-running daemon keeps from one reconcile to the next, so that the work of a
/// reconcile follows the size of the change rather than of the repository.
#[derive(Default)]
pub struct Warm {
    /// Parsed files by blob id, of the commits last read.
    blobs: BlobCache,
    /// The status the daemon itself recorded last, valid while the status tip is unchanged.
    observed: Option<Observed>,
    /// The commit in force as reviewed when it was applied: the base of the next review.
    reviewed: Option<Reviewed>,
    /// The last reconcile: what it started from (with the status tip it left) and its report.
    last: Option<(Inputs, Report)>,
    /// The head that did not apply and how many reconciles in a row it did not.
    failing: Option<(git2::Oid, u32)>,
}

impl Warm {
    /// Forgets how often the head failed: its next failure is retried soon again.
    pub fn forget_failures(&mut self) {
        self.failing = None;
    }
}

/// The first retry of a commit that did not apply; each next one waits twice as long.
const FIRST_RETRY: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest wait between retries.
const LONGEST_RETRY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// How long to wait before the next try after `attempts` failed ones in a row.
fn retry_after(attempts: u32) -> std::time::Duration {
    FIRST_RETRY
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(LONGEST_RETRY)
}

/// A reviewed commit with its compiled policies and their full evaluation.
struct Reviewed {
    commit: CommitInfo,
    snapshot: Snapshot,
    evaluation: Evaluation,
    changed: HashSet<(Kind, String)>,
    today: chrono::NaiveDate,
}

/// Reconciles the head of the tracked branch once.
pub fn reconcile_once(
    config: &HostConfig,
    now: DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<Report> {
    reconcile_warm(
        config,
        now,
        progress,
        &mut Warm::default(),
        Scope::Everything,
    )
}

/// How much of what is on disk a reconcile compares with status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every output file and key: files that drifted are rewritten, a lost key reissued.
    Everything,
    /// What the commit changed or what is due: a new commit costs what it changes. The
    /// daemon checks everything at start and on its timers.
    Changes,
}

impl Warm {
    /// Makes the next reconcile decide again, though nothing it reads changed: what is
    /// recorded of tickets did, and the status branch shows it.
    pub fn tickets_changed(&mut self) {
        self.last = None;
    }
}

/// Reconciles the head of the tracked branch, reusing what `warm` kept from the last time and
/// keeping what the next time can reuse.
pub fn reconcile_warm(
    config: &HostConfig,
    now: DateTime<Utc>,
    progress: &dyn Progress,
    warm: &mut Warm,
    scope: Scope,
) -> Result<Report> {
    let (workspace, mut exchange) = fetched(config)?;
    let config_repo = ConfigRepo::open(workspace.path())?;
    let repo = &config_repo.repo;
    let branch = format!("refs/heads/{}", config.repo.branch);
    let inputs = Inputs::read(repo.inner(), config);
    // Nothing new since the last time, and nothing due: that reconcile's outcome stands.
    if scope == Scope::Changes
        && let Some((inputs_then, report)) = &warm.last
        && *inputs_then == inputs
        && report.stands_until.is_none_or(|until| now < until)
    {
        return Ok(Report {
            exchange,
            wrote_status: false,
            stood: true,
            ..report.clone()
        });
    }
    warm.last = None;
    let known = warm.observed.take().filter(|o| o.tip == inputs.status);
    let (mut head_commit, head_catalog, mut observed) =
        read_head_and_status(config, &config_repo, &branch, known, &mut warm.blobs)?;
    // Read once a reconcile: the host may have revoked a key since the last one.
    let signers = config.allowed_signers();
    // Policies see whether the head is signed, and by whom (`input.commit.signature`).
    head_commit.signature = inputs
        .head
        .map(|id| check_commit_now(repo.inner(), id, signers.as_deref(), now));
    let _span = tracing::info_span!("reconcile", commit = %head_commit.sha).entered();
    let store = Store::open(&config.state_dir)?;
    finish_interrupted(&store, &observed)?;
    let applied = own_record(&store, &mut observed)?;
    let reviewing = review(
        &config_repo,
        &mut warm.blobs,
        warm.reviewed.take(),
        applied.as_deref(),
        (head_commit, head_catalog),
        now,
    )?;
    let decision = decide_on(
        config,
        signers.as_deref(),
        &config_repo,
        &reviewing,
        &observed,
        now,
    );
    let context = apply::Context {
        config,
        store: &store,
        observed: &observed,
        now,
        progress,
        scope,
        holds: &decision.holds,
    };
    let executed = execute(&context, &decision, &reviewing)?;
    let head_sha = reviewing.head_commit.sha.clone();
    let summary = summary_of(&head_sha, applied, &executed, &decision);
    let applied = summary.applied.clone();
    let head_applied = applied.as_deref() == Some(head_sha.as_str());
    let open_before = store.open_conditions()?;
    let told = tell(
        (config, &store),
        &reviewing,
        (&observed, &open_before),
        &executed,
        &decision,
        head_applied,
        now,
    )?;
    let findings = reviewing.finding_lines();
    let evaluation = reviewing.noted_evaluation();
    let head_commit = reviewing.head_commit.clone();
    // The commit in force is the base of the next review: keep its evaluation.
    warm.reviewed = reviewing.into_base(head_applied);
    let status_tip = observed.tip.map(|t| t.to_string()).unwrap_or_default();
    crate::events::outbox::hold(
        store.db(),
        &told.events,
        &told.declared(),
        &status_tip,
        &head_sha,
    )
    .map_err(store.db_error())?;
    let recorded = record::record(
        &config_repo,
        config,
        &observed,
        &record::Outcome {
            head: &head_commit,
            summary: &summary,
            executed: &executed,
            decision: &decision,
            findings,
            evaluation,
            sinks: crate::events::outbox::states(store.db()).map_err(store.db_error())?,
            tickets: crate::tickets::store::current(store.db(), None).map_err(store.db_error())?,
        },
    )?;
    failpoint::point("status recorded");
    store.record_outcome(&crate::store::RecordedOutcome {
        promote: &executed.promote,
        in_force: summary.applied.as_deref(),
        override_reviews: &serde_json::to_string(&decision.open_reviews).unwrap_or_default(),
        open_conditions: &serde_json::to_string(&told.open_after).unwrap_or_default(),
        gates_blocked_since: &serde_json::to_string(&told.blocked_since).unwrap_or_default(),
        now,
    })?;
    match workspace.publish(&config.status_branch) {
        Ok(retries) => exchange.push_retries = retries,
        Err(error) => {
            tracing::warn!(%error, "status not pushed; trying again after the next reconcile");
            exchange.push_error = Some(error.to_string());
        }
    }
    // The status tip may have moved onto a merge with the remote's; its tree is this status.
    let inputs = Inputs {
        status: Inputs::read(repo.inner(), config).status,
        ..inputs
    };
    warm.observed = Some(Observed {
        tip: inputs.status,
        summary: Some(summary),
        resources: executed.statuses.clone(),
        reviews: decision.open_reviews.clone(),
    });
    warm.blobs.keep_only_used();
    let mut report = Report {
        source: head_sha,
        result: executed.result,
        problems: executed.problems,
        resources: executed.outcomes,
        status_commit: recorded.status_commit.to_string(),
        wrote_status: recorded.wrote_status,
        next_renewal: executed.next_renewal,
        next_warning: told.next_warning,
        retry_at: None,
        stands_until: None,
        stood: false,
        expiries: executed
            .statuses
            .values()
            .map(|s| (s.kind, s.name.clone(), s.not_after))
            .collect(),
        gates: decision.gates,
        open_reviews: decision.open_reviews,
        exchange,
    };
    schedule(&mut report, warm, &decision.verdict, now);
    poll_again(
        &mut report,
        std::time::Duration::from_secs(config.repo.poll_interval.as_secs().max(1)),
        now,
    );
    if report.exchange.healthy() {
        // Without its resources: a reconcile that stands for it changes none.
        let resources = std::mem::take(&mut report.resources);
        warm.last = Some((inputs, report.clone()));
        report.resources = resources;
    }
    Ok(report)
}

/// The summary of a reconcile of `head`: the commit in force after it is the head when it was
/// applied (or applying it failed in part), else still `applied`.
fn summary_of(
    head: &str,
    applied: Option<String>,
    executed: &Executed,
    decision: &Decision,
) -> Summary {
    let applied = match (executed.result, decision.verdict) {
        (Outcome::Applied, _) | (Outcome::Failed, Verdict::Apply) => Some(head.to_owned()),
        _ => applied,
    };
    Summary {
        source: head.to_owned(),
        result: executed.result,
        applied,
        problems: executed.problems.clone(),
        opens_at: match decision.verdict {
            Verdict::Pending { opens_at } => Some(opens_at),
            _ => None,
        },
    }
}

/// The workspace after fetching the tracked branch and the status (when the repository is a
/// remote), and how fetching went. The last head fetched stays in force when the remote is
/// away, so renewals go on; with nothing fetched yet there is nothing to reconcile.
fn fetched(config: &HostConfig) -> Result<(Workspace, Exchange)> {
    let workspace = Workspace::of(config);
    let mut exchange = Exchange::default();
    if let Err(error) = workspace.fetch(&config.repo.branch, &config.status_branch) {
        if !workspace.has(&format!("refs/heads/{}", config.repo.branch)) {
            return Err(error);
        }
        tracing::warn!(%error, "fetch failed; reconciling the last head fetched");
        exchange.fetch_error = Some(error.to_string());
    }
    Ok((workspace, exchange))
}

/// What a reconcile starts from: the head, the status tip and the approvals. While they stay
/// the same, so does the outcome (until something comes due).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inputs {
    head: Option<git2::Oid>,
    status: Option<git2::Oid>,
    approvals: Option<git2::Oid>,
}

impl Inputs {
    fn read(repo: &git2::Repository, config: &HostConfig) -> Inputs {
        let at = |name: &str| repo.refname_to_id(name).ok();
        Inputs {
            head: at(&format!("refs/heads/{}", config.repo.branch)),
            status: at(&format!("refs/heads/{}", config.status_branch)),
            approvals: at(APPROVALS_REF),
        }
    }
}

/// When the outcome of `report` is decided again without a new input: a pending commit when
/// its window opens, one that failed or was blocked after a backoff, an applied one when a
/// renewal comes due. One that could not reach the remote is left to the remote's own pace.
fn schedule(report: &mut Report, warm: &mut Warm, verdict: &Verdict, now: DateTime<Utc>) {
    if !report.exchange.healthy() {
        return;
    }
    let head = git2::Oid::from_str(&report.source).ok();
    // An expiry warning coming due is a due time like a renewal.
    let next_due = match (report.next_renewal, report.next_warning) {
        (Some(renewal), Some(warning)) => Some(renewal.min(warning)),
        (renewal, warning) => renewal.or(warning),
    };
    // A renewal still to come is not put off by a retry (one already due is what failed, or
    // failed with the commit).
    let until = |at: DateTime<Utc>, next_renewal: Option<DateTime<Utc>>| {
        next_renewal
            .filter(|due| *due > now)
            .map_or(at, |due| due.min(at))
    };
    match (report.result, verdict) {
        (Outcome::Applied, _) => {
            warm.failing = None;
            report.stands_until = next_due;
        }
        (Outcome::Pending, Verdict::Pending { opens_at }) => {
            warm.failing = None;
            report.retry_at = Some(*opens_at);
            report.stands_until = Some(until(*opens_at, next_due));
        }
        _ => {
            let attempts = match (warm.failing, head) {
                (Some((failing, attempts)), Some(head)) if failing == head => {
                    attempts.saturating_add(1)
                }
                _ => 1,
            };
            warm.failing = head.map(|head| (head, attempts));
            let retry = now
                + chrono::Duration::from_std(retry_after(attempts))
                    .unwrap_or(chrono::Duration::MAX);
            report.retry_at = Some(retry);
            report.stands_until = Some(until(retry, next_due));
        }
    }
}

/// A head blocked on a change request is decided again at the next poll, not after the
/// backoff: the change request may be approved meanwhile, which no new commit tells.
fn poll_again(report: &mut Report, poll: std::time::Duration, now: DateTime<Utc>) {
    let on_change_request = |g: &GateReport| {
        g.outcome == gate::GateOutcome::Fail
            && g.requirements.iter().any(|r| {
                r.met != gate::Met::Yes
                    && matches!(r.evidence, gate::RequirementEvidence::Change { .. })
            })
    };
    if !report.exchange.healthy()
        || report.result != Outcome::Blocked
        || !report.gates.iter().any(on_change_request)
    {
        return;
    }
    let Some(next_poll) = chrono::Duration::from_std(poll)
        .ok()
        .and_then(|poll| now.checked_add_signed(poll))
    else {
        return;
    };
    let sooner = |at: Option<DateTime<Utc>>| Some(at.map_or(next_poll, |at| at.min(next_poll)));
    report.retry_at = sooner(report.retry_at);
    report.stands_until = sooner(report.stands_until);
}

/// Reads the head and the status tip side by side: both are thousands of blobs.
fn read_head_and_status(
    config: &HostConfig,
    config_repo: &ConfigRepo,
    branch: &str,
    known: Option<Observed>,
    cache: &mut BlobCache,
) -> Result<(CommitInfo, Catalog, Observed)> {
    let path = config_repo.repo.inner().path().to_path_buf();
    let (head, observed) = std::thread::scope(|scope| {
        let observed = scope.spawn(|| match known {
            Some(observed) => Ok(observed),
            None => {
                let repo = crate::git::Repo::discover(&path)?;
                status::read(&repo, &config.status_branch)
            }
        });
        let head = config_repo.load(branch, cache);
        let observed = observed.join().unwrap_or_else(|_| {
            Err(Error::Usage(
                "reading the status branch stopped unexpectedly".to_owned(),
            ))
        });
        (head, observed)
    });
    let (commit, catalog) = head?;
    Ok((commit, catalog, observed?))
}

/// The commit in force and the open override reviews as this host recorded them. The status
/// branch says the same, but in a repository worked on in place anyone who can push writes
/// it; where the host has no record yet (a state directory from before it kept one, or
/// rebuilt), the status branch's stands.
fn own_record(store: &Store, observed: &mut Observed) -> Result<Option<String>> {
    let claimed = observed.summary.as_ref().and_then(|s| s.applied.clone());
    if let Some(json) = store.override_reviews()? {
        observed.reviews = serde_json::from_str(&json).unwrap_or_default();
    }
    Ok(match store.in_force()? {
        Some(sha) => {
            if claimed.as_deref() != Some(sha.as_str()) {
                tracing::warn!(
                    recorded = %sha,
                    claimed = %crate::diag::escaped(claimed.as_deref().unwrap_or("nothing")),
                    "the status branch names another commit in force than this host recorded; the host's record stands"
                );
            }
            Some(sha)
        }
        None => claimed,
    })
}

/// A crash after a status commit and before its outcome was recorded: finishes that first.
fn finish_interrupted(store: &Store, observed: &Observed) -> Result<()> {
    use crate::events::outbox;
    if let Some((tip_then, source)) = outbox::held(store.db()).map_err(store.db_error())? {
        // Status moved on from the tip the events were held at, to a record of their
        // commit: the reconcile that made them was recorded, and its events happened.
        let recorded = observed.tip.map(|t| t.to_string()) != Some(tip_then)
            && observed
                .summary
                .as_ref()
                .is_some_and(|s| s.source == source);
        if recorded {
            let transaction =
                crate::store::write_transaction(store.db()).map_err(store.db_error())?;
            outbox::release(&transaction, Utc::now()).map_err(store.db_error())?;
            transaction.commit().map_err(store.db_error())?;
        } else {
            outbox::drop_held(store.db()).map_err(store.db_error())?;
        }
    }
    let named: Vec<(Kind, String)> = store
        .all_staged()?
        .into_iter()
        .filter_map(|(kind, name, serial)| {
            let kind = Kind::parse(&kind)?;
            observed
                .resources
                .get(&(kind, name.clone()))
                .is_some_and(|s| s.serial == serial)
                .then_some((kind, name))
        })
        .collect();
    Ok(store.promote(&named)?)
}

/// The commit in force, as the base of a review.
enum Base {
    /// Reviewed by this daemon when it was applied: its full evaluation is known.
    Known(Reviewed),
    /// Read for this review.
    Loaded(CommitInfo, Snapshot),
}

impl Base {
    fn commit(&self) -> &CommitInfo {
        match self {
            Base::Known(r) => &r.commit,
            Base::Loaded(commit, _) => commit,
        }
    }

    fn snapshot(&self) -> &Snapshot {
        match self {
            Base::Known(r) => &r.snapshot,
            Base::Loaded(_, snapshot) => snapshot,
        }
    }
}

/// The head as reviewed.
enum Head {
    /// The head is the commit in force: it passed its review when it was applied, and
    /// compared with itself nothing in it is new. Its findings are kept from its note.
    InForce {
        catalog: Catalog,
        findings: Vec<String>,
    },
    /// A new head, reviewed against the commit in force as `plan` reviews it.
    New {
        report: Box<PlanReport>,
        snapshot: Box<Snapshot>,
        evaluation: Evaluation,
        changed: HashSet<(Kind, String)>,
        today: chrono::NaiveDate,
    },
}

/// A head, its review, and the commit in force it was reviewed against.
struct Reviewing {
    head_commit: CommitInfo,
    head: Head,
    base: Option<Base>,
}

impl Reviewing {
    fn head_catalog(&self) -> &Catalog {
        match &self.head {
            Head::InForce { catalog, .. } => catalog,
            Head::New { snapshot, .. } => &snapshot.catalog,
        }
    }

    fn report(&self) -> Option<&PlanReport> {
        match &self.head {
            Head::InForce { .. } => None,
            Head::New { report, .. } => Some(report),
        }
    }

    /// The catalog in force, when a commit is: the head's when the head is in force.
    fn in_force(&self) -> Option<&Catalog> {
        match &self.head {
            Head::InForce { catalog, .. } => Some(catalog),
            Head::New { .. } => self.base.as_ref().map(|b| &b.snapshot().catalog),
        }
    }

    /// Its policy findings, as the note lists them.
    fn finding_lines(&self) -> Vec<String> {
        match &self.head {
            Head::InForce { findings, .. } => findings.clone(),
            Head::New { report, .. } => report
                .findings
                .iter()
                .filter(|f| f.status != crate::policy::FindingStatus::Resolved)
                .map(|f| {
                    let excepted = f
                        .exception
                        .as_ref()
                        .map(|e| format!(" (excepted until {} for {})", e.expires, e.owner))
                        .unwrap_or_default();
                    format!(
                        "{} {} {}: {}{excepted}",
                        f.policy,
                        f.enforcement,
                        f.resource_id(),
                        f.message
                    )
                })
                .collect(),
        }
    }

    /// The head's evaluation as its note records it, for a `plan` based on the head; `None`
    /// when the head is in force (its note already has it) or was not evaluated.
    fn noted_evaluation(&self) -> Option<status::NoteEvaluation> {
        match &self.head {
            Head::InForce { .. } => None,
            Head::New {
                snapshot,
                evaluation,
                changed,
                today,
                ..
            } => crate::review::noted(&self.head_commit, snapshot, evaluation, changed, *today),
        }
    }

    /// What the next review builds on: the head when it is now in force, else the commit in
    /// force when its full evaluation is known.
    fn into_base(self, head_applied: bool) -> Option<Reviewed> {
        match (self.head, self.base) {
            (
                Head::New {
                    snapshot,
                    evaluation,
                    changed,
                    today,
                    ..
                },
                _,
            ) if head_applied => Some(Reviewed {
                commit: self.head_commit,
                snapshot: *snapshot,
                evaluation,
                changed,
                today,
            }),
            (_, Some(Base::Known(reviewed))) => Some(reviewed),
            _ => None,
        }
    }
}

/// Reviews the head against the commit in force `applied`, on the evaluation `known` kept
/// from when that commit was applied when it is still good (same commit, same day).
fn review(
    config_repo: &ConfigRepo,
    cache: &mut BlobCache,
    known: Option<Reviewed>,
    applied: Option<&str>,
    (head_commit, head_catalog): (CommitInfo, Catalog),
    now: DateTime<Utc>,
) -> Result<Reviewing> {
    if applied == Some(head_commit.sha.as_str()) {
        let findings = git2::Oid::from_str(&head_commit.sha)
            .ok()
            .and_then(|id| status::read_note(&config_repo.repo, id))
            .map(|n| n.findings)
            .unwrap_or_default();
        return Ok(Reviewing {
            head_commit,
            head: Head::InForce {
                catalog: head_catalog,
                findings,
            },
            base: known.map(Base::Known),
        });
    }
    let today = now.date_naive();
    let base = match known.filter(|r| Some(r.commit.sha.as_str()) == applied && r.today == today) {
        Some(known) => Some(Base::Known(known)),
        None => match applied {
            Some(sha) => {
                let (commit, catalog) = config_repo.load(sha, cache)?;
                Some(Base::Loaded(commit, Snapshot::new(catalog)))
            }
            None => None,
        },
    };
    let head = Snapshot::new(head_catalog);
    let nothing = (empty_commit(), Snapshot::new(Catalog::default()));
    let (base_commit, base_snapshot) = match &base {
        Some(base) => (base.commit(), base.snapshot()),
        None => (&nothing.0, &nothing.1),
    };
    let known = match &base {
        Some(Base::Known(r)) => Some(Known {
            evaluation: &r.evaluation,
            changed: &r.changed,
            same_commit: true,
            own: true,
        }),
        _ => None,
    };
    let (report, evaluation, changed) = review_on(
        (base_commit, base_snapshot),
        known,
        (&head_commit, &head),
        today,
    );
    Ok(Reviewing {
        head_commit,
        head: Head::New {
            report: Box::new(report),
            snapshot: Box::new(head),
            evaluation,
            changed,
            today,
        },
        base,
    })
}

/// Gathers the evidence the governing gates ask for and decides.
fn decide_on(
    config: &HostConfig,
    signers: Option<&AllowedSigners>,
    config_repo: &ConfigRepo,
    reviewing: &Reviewing,
    observed: &Observed,
    now: DateTime<Utc>,
) -> Decision {
    let empty = Catalog::default();
    let in_force = reviewing.in_force();
    let head = reviewing.head_catalog();
    let governing = in_force.unwrap_or(head);
    let head_id = git2::Oid::from_str(&reviewing.head_commit.sha).unwrap_or(git2::Oid::ZERO_SHA1);
    let changes = gate::change::Online {
        endpoints: &config.endpoints,
    };
    let evidence = match reviewing.report() {
        // Nothing to judge: the head is in force. Reviews of overrides may still close.
        None => Evidence::default(),
        Some(_) => gather(
            &Sources {
                repo: config_repo.repo.inner(),
                root: config_repo.prefix(),
                signers,
                trust_trailers: config.trust_trailers(),
                changes: &changes,
                reviews: &gate::reviews::Hosted {
                    config,
                    wanted: gate::reviews::Wanted::Merged {
                        branch: config.repo.branch.clone(),
                    },
                },
            },
            &gather::Change {
                in_force: reviewing
                    .base
                    .as_ref()
                    .and_then(|b| git2::Oid::from_str(&b.commit().sha).ok()),
                base_tree: reviewing.base.as_ref().map(|b| b.commit().tree),
                head: head_id,
                tree: reviewing.head_commit.tree,
                governing,
            },
            now,
        ),
    };
    let decision = decide(&Facts {
        in_force: in_force.unwrap_or(&empty),
        anything_in_force: in_force.is_some(),
        head,
        review: reviewing.report(),
        evidence: &evidence,
        open_reviews: &observed.reviews,
        now,
    });
    for used in &decision.overrides {
        // The reason and the principal come from the commit: escaped, as everywhere.
        tracing::warn!(
            gate = %used.gate,
            principal = %crate::diag::escaped(&used.principal),
            key = %used.key_fingerprint,
            reason = %crate::diag::escaped(&used.reason),
            "gate overridden; its review is open until another principal signs Override-Reviewed"
        );
    }
    decision
}

/// What a reconcile tells its sinks: its events, and the sinks in force.
struct Told {
    events: Vec<crate::events::Event>,
    /// The problems open after the reconcile.
    open_after: std::collections::BTreeSet<String>,
    /// Since when each gate failing now has blocked the branch.
    blocked_since: std::collections::BTreeMap<String, DateTime<Utc>>,
    next_warning: Option<DateTime<Utc>>,
    /// Each sink in force, with what keeps it from delivering.
    sinks: Vec<(String, crate::model::SinkSpec, Option<String>)>,
}

impl Told {
    fn declared(&self) -> Vec<crate::events::outbox::Declared<'_>> {
        self.sinks
            .iter()
            .map(|(name, spec, problem)| crate::events::outbox::Declared {
                name,
                spec,
                problem: problem.clone(),
            })
            .collect()
    }
}

/// The events of this reconcile and the sinks they go to: those of the commit in force
/// after it, each checked against the host's endpoints.
fn tell(
    (config, store): (&HostConfig, &Store),
    reviewing: &Reviewing,
    (observed, open_before): (&Observed, &std::collections::BTreeSet<String>),
    executed: &Executed,
    decision: &Decision,
    head_applied: bool,
    now: DateTime<Utc>,
) -> Result<Told> {
    let catalog = if head_applied {
        Some(reviewing.head_catalog())
    } else {
        reviewing.in_force()
    };
    let findings = match (&reviewing.head, head_applied) {
        (Head::New { report, .. }, true) => report.findings.as_slice(),
        _ => &[],
    };
    let blocked_since =
        crate::events::derive::blocked_since(&store.gates_blocked_since()?, &decision.gates, now);
    let open_after = gates_open_after(reviewing.in_force().unwrap_or(reviewing.head_catalog()));
    let drafts = crate::events::derive::derive(&crate::events::derive::Facts {
        now,
        head: &reviewing.head_commit,
        result: executed.result,
        problems: &executed.problems,
        head_applied,
        gates: &decision.gates,
        overrides: &decision.overrides,
        reviews_before: &observed.reviews,
        reviews_after: &decision.open_reviews,
        outcomes: &executed.outcomes,
        before: &observed.resources,
        after: &executed.statuses,
        findings,
        catalog,
        expiring_days: &config.events.expiring_days,
        open_before,
        blocked_since: &blocked_since,
        open_after: &open_after,
    });
    let keys: Vec<&str> = drafts
        .iter()
        .filter_map(|d| d.data.condition.as_ref().map(|c| c.key.as_str()))
        .collect();
    let openings = crate::events::outbox::openings(store.db(), &keys).map_err(store.db_error())?;
    let drafts = crate::events::derive::occurrences(drafts, open_before, &openings);
    let source = crate::events::source_of(&config.repo.url);
    let events: Vec<crate::events::Event> = drafts
        .into_iter()
        .map(|d| {
            let starts = d
                .data
                .condition
                .as_ref()
                .is_some_and(|c| c.open && !open_before.contains(&c.key));
            crate::events::Event {
                starts,
                ..d.seal(&source, now)
            }
        })
        .collect();
    let open_problems = crate::events::derive::open_after(open_before, &events);
    // A change that uses an override is told to the sinks the gates in force notify, even
    // when it changes those gates.
    let sinks = catalog
        .map(|catalog| sinks_in_force(catalog, reviewing.in_force(), config))
        .unwrap_or_default();
    // An override review falling due is told when it does, like an expiry warning.
    let next_warning = crate::events::derive::next_warning(
        &executed.statuses,
        catalog,
        &config.events.expiring_days,
        now,
    )
    .into_iter()
    .chain(
        decision
            .open_reviews
            .iter()
            .filter(|r| !r.overdue)
            .map(|r| r.record.review_due + chrono::Duration::seconds(1)),
    )
    // A gate blocking long enough to be a problem is told when it has.
    .chain(crate::events::derive::next_blocked_problem(
        &blocked_since,
        &open_after,
        now,
    ))
    .filter(|at| *at > now)
    .min();
    Ok(Told {
        events,
        open_after: open_problems,
        blocked_since,
        next_warning,
        sinks,
    })
}

/// Each gate's `openAfter` in `catalog`.
fn gates_open_after(catalog: &Catalog) -> std::collections::BTreeMap<String, chrono::Duration> {
    catalog
        .of_kind(crate::model::Kind::Gate)
        .filter_map(|loaded| match &loaded.resource.spec {
            crate::model::Spec::Gate(gate) => Some((
                loaded.name().to_owned(),
                chrono::Duration::seconds(i64::try_from(gate.open_after?.as_secs()).ok()?),
            )),
            _ => None,
        })
        .collect()
}

/// The sinks of `catalog`, each with what keeps it from delivering. A sink a gate's
/// `override.notify` names — in `catalog` or in the catalog in force `before` it — is told
/// about overrides and their reviews, whatever else it subscribes to.
fn sinks_in_force(
    catalog: &Catalog,
    before: Option<&Catalog>,
    config: &HostConfig,
) -> Vec<(String, crate::model::SinkSpec, Option<String>)> {
    use crate::model::{EventType, Spec};
    let notified: HashSet<&str> = std::iter::once(catalog)
        .chain(before)
        .flat_map(|c| c.of_kind(Kind::Gate))
        .filter_map(|loaded| match &loaded.resource.spec {
            Spec::Gate(gate) => gate.override_.as_ref(),
            _ => None,
        })
        .flat_map(|o| o.notify.iter().map(|n| n.as_str()))
        .collect();
    catalog
        .of_kind(Kind::Sink)
        .filter_map(|loaded| {
            let Spec::Sink(spec) = &loaded.resource.spec else {
                return None;
            };
            let mut spec = spec.clone();
            if notified.contains(loaded.name()) {
                for kind in [
                    EventType::GateOverride,
                    EventType::GateOverrideOverdue,
                    EventType::GateOverrideReviewed,
                ] {
                    if !spec.events.contains(&kind) {
                        spec.events.push(kind);
                    }
                }
            }
            let problem = crate::sinks::check(&spec, config.endpoints.get(&spec.endpoint))
                .err()
                .map(|p| p.0);
            Some((loaded.name().to_owned(), spec, problem))
        })
        .collect()
}

/// What carrying out a decision did.
struct Executed {
    result: Outcome,
    problems: Vec<String>,
    outcomes: Vec<ResourceOutcome>,
    statuses: Statuses,
    /// Resources whose staged keys are promoted once the status commit names them.
    promote: Vec<(Kind, String)>,
    /// The earliest renewal to come, after the gates' holds.
    next_renewal: Option<DateTime<Utc>>,
}

/// Carries out `decision`: applies the head, or, when it is not applied, renews what comes
/// due in the commit in force, which stays in force.
fn execute(
    context: &apply::Context<'_>,
    decision: &Decision,
    reviewing: &Reviewing,
) -> Result<Executed> {
    let no_change = HashSet::new();
    let (result, mut problems, catalog, changed) = match decision.verdict {
        Verdict::Apply => (
            Outcome::Applied,
            Vec::new(),
            Some(reviewing.head_catalog()),
            match &reviewing.head {
                Head::New { changed, .. } => changed,
                Head::InForce { .. } => &no_change,
            },
        ),
        Verdict::Blocked => (
            Outcome::Blocked,
            decision.reasons.clone(),
            reviewing.in_force(),
            &no_change,
        ),
        Verdict::Pending { .. } => (
            Outcome::Pending,
            decision.reasons.clone(),
            reviewing.in_force(),
            &no_change,
        ),
        Verdict::Failed => (
            Outcome::Failed,
            decision.reasons.clone(),
            reviewing.in_force(),
            &no_change,
        ),
    };
    let Some(catalog) = catalog else {
        return Ok(Executed {
            result,
            problems,
            outcomes: Vec::new(),
            statuses: context.observed.resources.clone(),
            promote: Vec::new(),
            next_renewal: None,
        });
    };
    let mut applied = apply::apply(context, catalog, changed)?;
    tell_holds(&mut applied, catalog, &decision.holds, context);
    let result = if result == Outcome::Applied && !applied.problems.is_empty() {
        Outcome::Failed
    } else {
        result
    };
    problems.extend(applied.problems);
    let next_renewal = next_renewal(&applied.statuses, catalog, &decision.holds, context.now);
    Ok(Executed {
        result,
        problems,
        outcomes: applied.outcomes,
        statuses: applied.statuses,
        promote: applied.issued,
        next_renewal,
    })
}

/// Says in status what a closed window did to renewals: a renewal it holds back is a
/// `RenewalHeld` condition until the renewal happens; one that went ahead because expiry was
/// within the gate's margin says so in its outcome.
fn tell_holds(
    applied: &mut apply::Applied,
    catalog: &Catalog,
    holds: &[RenewalHold],
    context: &apply::Context<'_>,
) {
    const HELD: &str = "RenewalHeld";
    let now = context.now;
    for outcome in applied
        .outcomes
        .iter_mut()
        .filter(|o| o.change == Change::Renewed)
    {
        let before = context
            .observed
            .resources
            .get(&(outcome.kind, outcome.name.clone()));
        let labels = catalog
            .get(outcome.kind, &outcome.name)
            .map(|l| &l.resource.metadata.labels);
        if let (Some(before), Some(labels)) = (before, labels)
            && let Renewal::Forced(hold) =
                gate::renewal(holds, outcome.kind, labels, before.not_after, now)
        {
            outcome.message = format!(
                "renewed while the window of gate `{}` is closed: it expires within the gate's margin",
                hold.gate
            );
        }
    }
    for status in applied.statuses.values_mut() {
        let labels = catalog
            .get(status.kind, &status.name)
            .map(|l| &l.resource.metadata.labels);
        let held = match labels {
            Some(labels) if status.renew_at <= now => {
                match gate::renewal(holds, status.kind, labels, status.not_after, now) {
                    Renewal::Held(hold) => Some(hold),
                    _ => None,
                }
            }
            _ => None,
        };
        let was_held = status.condition(HELD).is_some_and(|c| c.status == "True");
        match held {
            Some(hold) => {
                let opens = hold
                    .opens_at
                    .map(|at| format!("; the window opens {}", at.to_rfc3339()))
                    .unwrap_or_default();
                std::sync::Arc::make_mut(status).set_condition(
                    HELD,
                    true,
                    "WindowClosed",
                    format!(
                        "the renewal waits for the window of gate `{}`{opens}",
                        hold.gate
                    ),
                    now,
                );
            }
            None if was_held => {
                std::sync::Arc::make_mut(status).set_condition(
                    HELD,
                    false,
                    "WindowOpen",
                    String::new(),
                    now,
                );
            }
            None => {}
        }
    }
}

/// The earliest renewal to come: a renewal a closed window holds back comes due when the
/// window opens or when expiry is within the gate's margin, whichever is first.
fn next_renewal(
    statuses: &Statuses,
    catalog: &Catalog,
    holds: &[RenewalHold],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    statuses
        .values()
        .map(|s| {
            let labels = catalog
                .get(s.kind, &s.name)
                .map(|l| &l.resource.metadata.labels);
            match labels.map(|l| gate::renewal(holds, s.kind, l, s.not_after, now)) {
                Some(Renewal::Held(hold)) if s.renew_at <= now => {
                    let margin = s.not_after - hold.margin;
                    hold.opens_at.map_or(margin, |open| open.min(margin))
                }
                _ => s.renew_at,
            }
        })
        .min()
}

/// "2 issued, 1 renewed".
fn count_line(resources: &[ResourceOutcome]) -> String {
    let mut counts: BTreeMap<Change, usize> = BTreeMap::new();
    for r in resources {
        if r.change != Change::Unchanged {
            *counts.entry(r.change).or_default() += 1;
        }
    }
    counts
        .iter()
        .map(|(change, n)| {
            format!(
                "{n} {}",
                serde_json::to_value(change)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{GateOutcome, Governing, Met, RequirementEvidence, RequirementReport};
    use crate::model::ChangeSystem;

    fn report(result: Outcome, gate: GateOutcome, evidence: RequirementEvidence) -> Report {
        Report {
            source: "1".repeat(40),
            result,
            problems: Vec::new(),
            resources: Vec::new(),
            status_commit: String::new(),
            wrote_status: false,
            next_renewal: None,
            next_warning: None,
            retry_at: None,
            stands_until: None,
            stood: false,
            expiries: Vec::new(),
            gates: vec![GateReport {
                name: "g".into(),
                file: "g.yaml".into(),
                line: 1,
                governing: Governing::InForce,
                outcome: gate,
                affected: Vec::new(),
                affected_total: 1,
                requirements: vec![RequirementReport {
                    met: Met::No,
                    summary: String::new(),
                    evidence,
                }],
                opens_at: None,
                override_: None,
            }],
            open_reviews: Vec::new(),
            exchange: Exchange::default(),
        }
    }

    fn change() -> RequirementEvidence {
        RequirementEvidence::Change {
            system: ChangeSystem::ServiceNow,
            number: Some("CHG0012345".into()),
            state: None,
            approval: None,
            approvers: Vec::new(),
            start: None,
            end: None,
            url: None,
            problem: Some("HTTP 500".into()),
        }
    }

    #[test]
    fn a_head_blocked_on_a_change_request_is_decided_again_at_the_next_poll() {
        let now = Utc::now();
        // Sooner than the first retry of a commit that did not apply (10 s).
        let poll = std::time::Duration::from_secs(5);
        let backoff = now + chrono::Duration::minutes(15);
        let mut warm = Warm::default();
        let mut blocked = report(Outcome::Blocked, GateOutcome::Fail, change());
        schedule(&mut blocked, &mut warm, &Verdict::Blocked, now);
        poll_again(&mut blocked, poll, now);
        let next_poll = now + chrono::Duration::seconds(5);
        assert_eq!(blocked.retry_at, Some(next_poll));
        assert_eq!(blocked.stands_until, Some(next_poll));
        // A sooner retry stays sooner.
        let mut soon = report(Outcome::Blocked, GateOutcome::Fail, change());
        soon.retry_at = Some(now + chrono::Duration::seconds(2));
        soon.stands_until = soon.retry_at;
        poll_again(&mut soon, poll, now);
        assert_eq!(soon.retry_at, Some(now + chrono::Duration::seconds(2)));
        // Blocked on anything else, the backoff stands.
        let window = RequirementEvidence::Window {
            timezone: "UTC".into(),
            open: false,
            reason: None,
            opens_at: None,
            opens_local: None,
        };
        for mut other in [
            report(Outcome::Blocked, GateOutcome::Fail, window),
            report(Outcome::Failed, GateOutcome::Fail, change()),
            report(Outcome::Blocked, GateOutcome::NotApplicable, change()),
        ] {
            other.retry_at = Some(backoff);
            other.stands_until = Some(backoff);
            poll_again(&mut other, poll, now);
            assert_eq!(other.stands_until, Some(backoff));
        }
    }
}
