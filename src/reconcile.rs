//! One reconcile: make the world match the head of the tracked branch, then record the
//! outcome in Git.
//!
//! Desired state is the commit; observed state is the status branch's tip plus the secret
//! store. The same pure review as `plan` decides whether the commit may be applied at all
//! (valid, no new `deny` finding against the commit in force); then each CA, parents first,
//! and each certificate is kept, issued, reissued or renewed by comparing its spec hash,
//! its issuer's fingerprint and its renewal time with what status records. Effects go
//! through the journal of [`crate::store`] and the link-proof writes of [`crate::outputs`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rcgen::KeyPair;
use sha2::{Digest, Sha256};

use crate::acme;
use crate::config::{HostConfig, Target};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::git::CommitInfo;
use crate::model::{
    Catalog, CertificateSpec, IssuerSpec, IssuerType, Kind, Loaded, Significant, Spec,
};
use crate::outputs;
use crate::pki::{self, Signer};
use crate::policy::Evaluation;
use crate::redact::Private;
use crate::remote::{Exchange, Workspace};
use crate::review::{Known, review_on};
use crate::snapshot::Snapshot;
use crate::source::{BlobCache, ConfigRepo};
use crate::status::{
    self, Change, Note, Observed, Outcome, ResourceOutcome, ResourceStatus, Statuses, Summary,
};
use crate::store::{Staged, Store};

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

/// What the review of a commit decides for the reconcile.
#[derive(Default)]
struct Verdict {
    /// Why the commit is invalid; empty when it is valid.
    errors: Vec<String>,
    /// The new `deny` findings that block it.
    blocking: Vec<String>,
    /// Its policy findings, as the note lists them.
    findings: Vec<String>,
}

impl Verdict {
    fn of(plan: &crate::report::PlanReport) -> Verdict {
        let errors = if plan.valid {
            Vec::new()
        } else {
            plan.errors().map(ToString::to_string).collect()
        };
        let blocking = plan
            .findings
            .iter()
            .filter(|f| plan.blocked && f.blocks())
            .map(|f| {
                format!(
                    "new deny finding: {} {}: {}",
                    f.policy,
                    f.resource_id(),
                    f.message
                )
            })
            .collect();
        let findings = plan
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
            .collect();
        Verdict {
            errors,
            blocking,
            findings,
        }
    }
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
    /// The last reconcile: its head, the status tip it left, and its report.
    last: Option<(git2::Oid, Option<git2::Oid>, Report)>,
    /// The head that did not apply and how many reconciles in a row it did not.
    failing: Option<(git2::Oid, u32)>,
}

impl Warm {
    /// Forgets how often the head failed: its next failure is retried soon again.
    pub fn forget_failures(&mut self) {
        self.failing = None;
    }
}

/// What applying a catalog did: its problems, the outcome of each resource, the statuses it
/// leaves and the resources it issued.
type Applied = (
    Vec<String>,
    Vec<ResourceOutcome>,
    Statuses,
    Vec<(Kind, String)>,
);

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

/// Reconciles the head of the tracked branch, reusing what `warm` kept from the last time and
/// keeping what the next time can reuse.
pub fn reconcile_warm(
    config: &HostConfig,
    now: DateTime<Utc>,
    progress: &dyn Progress,
    warm: &mut Warm,
    scope: Scope,
) -> Result<Report> {
    let workspace = Workspace::of(config);
    let mut exchange = Exchange::default();
    if let Err(error) = workspace.fetch(&config.repo.branch, &config.status_branch) {
        // The last head fetched stays in force, so renewals go on while the remote is away;
        // with nothing fetched yet there is nothing to reconcile.
        if !workspace.has(&format!("refs/heads/{}", config.repo.branch)) {
            return Err(error);
        }
        tracing::warn!(%error, "fetch failed; reconciling the last head fetched");
        exchange.fetch_error = Some(error.to_string());
    }
    let path = workspace.path().to_path_buf();
    let config_repo = ConfigRepo::open(&path)?;
    let repo = &config_repo.repo;
    let branch = format!("refs/heads/{}", config.repo.branch);
    let status_ref = format!("refs/heads/{}", config.status_branch);
    let status_tip = repo.inner().refname_to_id(&status_ref).ok();
    // Nothing new since the last time, and nothing due: that reconcile's outcome stands.
    let head_id = repo.inner().refname_to_id(&branch).ok();
    if scope == Scope::Changes
        && let Some((head, tip, report)) = &warm.last
        && Some(*head) == head_id
        && *tip == status_tip
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
    let cache = &mut warm.blobs;
    let known = warm.observed.take().filter(|o| o.tip == status_tip);
    // Desired and observed state are read side by side: both are thousands of blobs.
    let (head, observed) = std::thread::scope(|scope| {
        let observed = scope.spawn(|| match known {
            Some(observed) => Ok(observed),
            None => {
                let repo = crate::git::Repo::discover(&path)?;
                status::read(&repo, &config.status_branch)
            }
        });
        let head = config_repo.load(&branch, cache);
        let observed = observed.join().unwrap_or_else(|_| {
            Err(Error::Usage(
                "reading the status branch stopped unexpectedly".to_owned(),
            ))
        });
        (head, observed)
    });
    let (head_commit, head_catalog) = head?;
    let observed = observed?;
    let _span = tracing::info_span!("reconcile", commit = %head_commit.sha).entered();
    let store = Store::open(&config.state_dir)?;
    // A crash after a status commit and before its keys were promoted: finish that first.
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
    store.promote(&named)?;
    let applied = observed.summary.as_ref().and_then(|s| s.applied.clone());
    let (verdict, head_catalog, previous_base, next_base, changed) =
        if applied.as_deref() == Some(head_commit.sha.as_str()) {
            // The commit in force passed its review when it was applied, and compared with itself
            // nothing in it is new: only its findings are kept, from its note.
            let verdict = Verdict {
                findings: git2::Oid::from_str(&head_commit.sha)
                    .ok()
                    .and_then(|id| status::read_note(repo, id))
                    .map(|n| n.findings)
                    .unwrap_or_default(),
                ..Verdict::default()
            };
            (
                verdict,
                head_catalog,
                warm.reviewed.take(),
                None,
                HashSet::new(),
            )
        } else {
            let today = now.date_naive();
            let known = warm
                .reviewed
                .take()
                .filter(|r| Some(r.commit.sha.as_str()) == applied.as_deref() && r.today == today);
            let head = Snapshot::new(head_catalog);
            let (report, evaluation, changed) = match &known {
                Some(known) => review_on(
                    (&known.commit, &known.snapshot),
                    Some(Known {
                        evaluation: &known.evaluation,
                        changed: &known.changed,
                    }),
                    (&head_commit, &head),
                    today,
                ),
                None => {
                    let (base_commit, base) = match &applied {
                        Some(sha) => {
                            let (commit, catalog) = config_repo.load(sha, cache)?;
                            (commit, Snapshot::new(catalog))
                        }
                        None => (empty_commit(), Snapshot::new(Catalog::default())),
                    };
                    review_on((&base_commit, &base), None, (&head_commit, &head), today)
                }
            };
            let verdict = Verdict::of(&report);
            let Snapshot {
                catalog,
                policies,
                diagnostics,
            } = head;
            // Kept until the outcome says whether this head is the next base.
            let next_base = (policies, diagnostics, evaluation, today);
            (verdict, catalog, known, Some(next_base), changed)
        };
    let findings = verdict.findings;

    let invalid = !verdict.errors.is_empty();
    // Applies `catalog`, looking again at what `changed` names and at what is due.
    let apply = |catalog: &Catalog, changed: &HashSet<(Kind, String)>| -> Result<Applied> {
        let mut applier = Applier {
            config,
            store: &store,
            observed: &observed,
            now,
            statuses: BTreeMap::new(),
            outcomes: Vec::new(),
            issued: Vec::new(),
            written: BTreeSet::new(),
            problems: Vec::new(),
            signers: HashMap::new(),
            acme_issued: HashMap::new(),
            to_stage: Vec::new(),
            to_write: Vec::new(),
            progress,
            scope,
            changed,
            issuers_settled: false,
        };
        applier.apply(catalog)?;
        let mut problems: Vec<String> = applier
            .outcomes
            .iter()
            .filter(|o| o.change == Change::Failed)
            .map(|o| format!("{}/{}: {}", o.kind, o.name, o.message))
            .collect();
        problems.extend(applier.problems);
        Ok((problems, applier.outcomes, applier.statuses, applier.issued))
    };
    let (result, problems, resources, statuses, promote) =
        if invalid || !verdict.blocking.is_empty() {
            let (result, mut problems) = if invalid {
                (Outcome::Failed, verdict.errors)
            } else {
                (Outcome::Blocked, verdict.blocking)
            };
            // The head is not applied, and the commit in force stays in force: what of it comes
            // due is renewed all the same.
            let in_force = applied
                .as_deref()
                .map(|sha| config_repo.load(sha, cache).map_err(|e| (sha, e)));
            match in_force {
                Some(Ok((_, catalog))) => {
                    let (failures, outcomes, statuses, issued) = apply(&catalog, &HashSet::new())?;
                    problems.extend(failures);
                    (result, problems, outcomes, statuses, issued)
                }
                unread => {
                    if let Some(Err((sha, error))) = unread {
                        problems.push(format!(
                        "the commit in force {sha} cannot be read to renew what it holds: {error}"
                    ));
                    }
                    (
                        result,
                        problems,
                        Vec::new(),
                        observed.resources.clone(),
                        Vec::new(),
                    )
                }
            }
        } else {
            let (problems, outcomes, statuses, issued) = apply(&head_catalog, &changed)?;
            let result = if problems.is_empty() {
                Outcome::Applied
            } else {
                Outcome::Failed
            };
            (result, problems, outcomes, statuses, issued)
        };

    let applied = match result {
        Outcome::Applied => Some(head_commit.sha.clone()),
        Outcome::Failed if !invalid => Some(head_commit.sha.clone()),
        _ => applied,
    };
    // The commit in force is the base of the next review: keep its evaluation.
    warm.reviewed = match next_base {
        Some((policies, diagnostics, evaluation, today))
            if applied.as_deref() == Some(head_commit.sha.as_str()) =>
        {
            Some(Reviewed {
                commit: head_commit.clone(),
                snapshot: Snapshot {
                    catalog: head_catalog,
                    policies,
                    diagnostics,
                },
                evaluation,
                changed,
                today,
            })
        }
        _ => previous_base,
    };
    let summary = Summary {
        source: head_commit.sha.clone(),
        result,
        applied,
        problems: problems.clone(),
    };
    let counts = count_line(&resources);
    failpoint::point("before status commit");
    let (status_commit, wrote_status) = match observed.tip {
        // Nothing observed changed: the tip already records it, no need to render it again.
        Some(tip)
            if observed.summary.as_ref() == Some(&summary) && observed.resources == statuses =>
        {
            (status::record(repo, tip), false)
        }
        _ => {
            let commit = status::commit(
                repo,
                &config.status_branch,
                &observed,
                &summary,
                &statuses,
                &status::message(&head_commit.sha, result, &counts),
            )?;
            (commit, Some(commit) != observed.tip)
        }
    };
    failpoint::point("status committed");
    let source =
        git2::Oid::from_str(&head_commit.sha).map_err(Error::git("reading the head commit id"))?;
    // The note tells what reconciling this commit changed: what an earlier reconcile of the
    // same commit did stays listed, what this one changed is added or updated.
    let mut changed: BTreeMap<(Kind, String), ResourceOutcome> = status::read_note(repo, source)
        .map(|n| {
            n.resources
                .into_iter()
                .map(|r| ((r.kind, r.name.clone()), r))
                .collect()
        })
        .unwrap_or_default();
    for r in resources.iter().filter(|r| r.change != Change::Unchanged) {
        // One event, at the level its outcome deserves.
        macro_rules! resource_event {
            ($level:ident) => {
                tracing::$level!(
                    kind = %r.kind,
                    resource = %r.name,
                    change = ?r.change,
                    serial = r.serial.as_deref().unwrap_or_default(),
                    detail = %r.message,
                    "resource"
                )
            };
        }
        if r.change == Change::Failed {
            resource_event!(warn);
        } else {
            resource_event!(info);
        }
        changed.insert((r.kind, r.name.clone()), r.clone());
    }
    let note = Note {
        result,
        status_commit: status_commit.to_string(),
        problems: problems.clone(),
        resources: changed.into_values().collect(),
        findings,
    };
    status::write_note(repo, source, &note)?;
    failpoint::point("note written");
    store.promote(&promote)?;
    match workspace.publish(&config.status_branch) {
        Ok(retries) => exchange.push_retries = retries,
        Err(error) => {
            tracing::warn!(%error, "status not pushed; trying again after the next reconcile");
            exchange.push_error = Some(error.to_string());
        }
    }
    let next_renewal = statuses.values().map(|s| s.renew_at).min();
    let expiries = statuses
        .values()
        .map(|s| (s.kind, s.name.clone(), s.not_after))
        .collect();
    // The status tip may have moved onto a merge with the remote's; its tree is this status.
    let tip_now = repo.inner().refname_to_id(&status_ref).ok();
    warm.observed = Some(Observed {
        tip: tip_now,
        summary: Some(summary),
        resources: statuses,
    });
    warm.blobs.keep_only_used();
    let mut report = Report {
        source: head_commit.sha,
        result,
        problems,
        resources,
        status_commit: status_commit.to_string(),
        wrote_status,
        next_renewal,
        retry_at: None,
        stands_until: None,
        stood: false,
        expiries,
        exchange,
    };
    // An outcome stands for the reconcile after, until a renewal is due or, for a commit that
    // did not apply, until it is tried again. One that could not reach the remote does not:
    // the daemon tries again at the remote's own pace.
    if report.exchange.healthy() {
        if report.result == Outcome::Applied {
            warm.failing = None;
            report.stands_until = report.next_renewal;
        } else {
            let attempts = match warm.failing {
                Some((head, attempts)) if head == source => attempts.saturating_add(1),
                _ => 1,
            };
            warm.failing = Some((source, attempts));
            let retry = now
                + chrono::Duration::from_std(retry_after(attempts))
                    .unwrap_or(chrono::Duration::MAX);
            report.retry_at = Some(retry);
            // A renewal still to come is not put off by the retries (one already due is what
            // failed, or failed with the commit).
            report.stands_until = Some(
                report
                    .next_renewal
                    .filter(|due| *due > now)
                    .map_or(retry, |due| due.min(retry)),
            );
        }
        // Without its resources: a reconcile that stands for it changes none.
        let resources = std::mem::take(&mut report.resources);
        warm.last = Some((source, tip_now, report.clone()));
        report.resources = resources;
    }
    Ok(report)
}

/// Logs `error` of `subject` in full, for the host, and returns what notes and the status
/// branch may say of it.
fn told(subject: &str, error: &impl Private) -> String {
    tracing::warn!(subject, %error, "failed");
    error.reason()
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

/// A CA ready to sign: its certificate, key and the chain above it.
struct CaSigner {
    certificate: String,
    /// Its private key, PEM (read back into a key pair for each signature).
    key: String,
    fingerprint: String,
    /// CA certificates from this one up to, not including, the root.
    intermediates: Vec<String>,
    /// The root at the top of the chain.
    root: String,
}

/// The contents of a certificate's files.
struct OwnedFiles {
    cert: String,
    chain: String,
    ca: Option<String>,
    key: String,
}

/// Files to write for a certificate, and the status that records them.
struct FilesToWrite {
    target: Target,
    files: OwnedFiles,
    status: ResourceStatus,
    change: Change,
    /// The target the files were written to before, when the certificate moved: its files
    /// are removed once the new ones are written, where that target prunes.
    moved_from: Option<Target>,
}

/// Where a certificate comes from.
enum Source {
    /// A CA of the repository, signing here.
    Ca(Arc<CaSigner>),
    /// An ACME account of the host config.
    Acme(String),
}

impl Source {
    /// The fingerprint of the issuing CA's certificate, when gitward holds it: a change of it
    /// means reissuing.
    fn fingerprint(&self) -> Option<&str> {
        match self {
            Source::Ca(signer) => Some(&signer.fingerprint),
            Source::Acme(_) => None,
        }
    }
}

/// Why a certificate is issued now, or `None` to keep it.
fn why_issue(
    existing: Option<&ResourceStatus>,
    hash: &str,
    issuer_fingerprint: Option<&str>,
    key_present: bool,
    now: DateTime<Utc>,
) -> Option<Change> {
    let Some(existing) = existing else {
        return Some(Change::Issued);
    };
    if existing.spec_hash != hash
        || existing.issuer_fingerprint.as_deref() != issuer_fingerprint
        || !key_present
    {
        return Some(Change::Reissued);
    }
    (now >= existing.renew_at).then_some(Change::Renewed)
}

struct Applier<'a> {
    config: &'a HostConfig,
    store: &'a Store,
    observed: &'a Observed,
    now: DateTime<Utc>,
    statuses: Statuses,
    outcomes: Vec<ResourceOutcome>,
    /// Resources whose staged key and certificate the status commit will name.
    issued: Vec<(Kind, String)>,
    /// Targets with files written this time.
    written: BTreeSet<String>,
    /// Problems not tied to one resource (a reload that failed).
    problems: Vec<String>,
    signers: HashMap<String, Arc<CaSigner>>,
    /// Issued this run, for the journal before anything uses them.
    to_stage: Vec<(Kind, String, Staged)>,
    /// Certificate files to write once what they hold is staged.
    to_write: Vec<FilesToWrite>,
    /// Keys and certificates ordered from ACME this run, or why the order failed.
    acme_issued: HashMap<String, std::result::Result<(KeyPair, String), String>>,
    progress: &'a dyn Progress,
    scope: Scope,
    /// Resources the commit changed compared with the one in force.
    changed: &'a HashSet<(Kind, String)>,
    /// No issuer changed in the commit or was issued again by this reconcile.
    issuers_settled: bool,
}

impl CaSigner {
    /// Signs with this CA.
    fn sign<T>(
        &self,
        with: impl FnOnce(&Signer<'_>) -> std::result::Result<T, pki::PkiError>,
    ) -> std::result::Result<T, pki::PkiError> {
        let key = pki::load_key(&self.key)?;
        let signer = Signer::new(&self.certificate, &key)?;
        with(&signer)
    }
}

/// Certificates whose files are held before they are journaled and written.
const WRITE_BATCH: usize = 256;

impl Applier<'_> {
    fn apply(&mut self, catalog: &Catalog) -> Result<()> {
        self.progress.step("issuers");
        let mut issuers: Vec<&Loaded> = catalog.of_kind(Kind::Issuer).collect();
        // Parents before the CAs they sign.
        issuers.sort_by_key(|l| catalog.ancestors(l.name()).len());
        for loaded in issuers {
            if let Spec::Issuer(spec) = &loaded.resource.spec {
                self.issuer(loaded.name(), spec)?;
            }
        }
        self.issuers_settled = !self.changed.iter().any(|(kind, _)| *kind == Kind::Issuer)
            && self
                .outcomes
                .iter()
                .all(|o| o.kind != Kind::Issuer || o.change == Change::Unchanged);
        self.stage()?;
        self.order_acme(catalog)?;
        self.progress
            .start(catalog.of_kind(Kind::Certificate).count());
        for (done, loaded) in catalog.of_kind(Kind::Certificate).enumerate() {
            if let Spec::Certificate(spec) = &loaded.resource.spec {
                self.progress.certificate(done, loaded.name());
                self.certificate(catalog, loaded.name(), spec)?;
            }
            // Journaled and written a batch at a time: the keys and files of thousands of new
            // certificates are not all held at once.
            if self.to_write.len() >= WRITE_BATCH {
                self.stage()?;
                self.write_files();
            }
        }
        self.progress.step("writing files");
        self.stage()?;
        self.write_files();
        self.remove_deleted(catalog)?;
        self.progress.step("reloading");
        self.reload();
        self.outcomes
            .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(())
    }

    /// Journals what was issued since the last call, in one transaction.
    fn stage(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.to_stage);
        if !batch.is_empty() {
            self.store.stage(&batch)?;
        }
        Ok(())
    }

    /// Writes the files of every certificate that needs them.
    fn write_files(&mut self) {
        for FilesToWrite {
            target,
            files,
            mut status,
            change,
            moved_from,
        } in std::mem::take(&mut self.to_write)
        {
            let (kind, name) = (status.kind, status.name.clone());
            let serial = Some(status.serial.clone());
            let written = outputs::write(
                &target,
                &name,
                &outputs::Files {
                    cert: &files.cert,
                    chain: &files.chain,
                    ca: files.ca.as_deref(),
                    key: &files.key,
                },
            );
            match written {
                Ok(()) => {
                    failpoint::point("outputs written");
                    if let Some(target) = &status.target {
                        self.written.insert(target.clone());
                    }
                    status.set_condition("Ready", true, "Written", String::new(), self.now);
                    let mut message = String::new();
                    if let Some(old) = moved_from.filter(|old| old.prune)
                        && let Err(e) = outputs::remove(&old, &name)
                    {
                        message = told(&format!("{kind}/{name}: the files it moved from"), &e);
                    }
                    self.outcome(kind, &name, change, serial, message);
                }
                Err(e) => {
                    let reason = told(&format!("{kind}/{name}"), &e);
                    status.set_condition("Ready", false, "WriteFailed", reason.clone(), self.now);
                    self.outcome(kind, &name, Change::Failed, serial, reason);
                }
            }
            self.statuses.insert((kind, name), Arc::new(status));
        }
    }

    fn outcome(
        &mut self,
        kind: Kind,
        name: &str,
        change: Change,
        serial: Option<String>,
        message: String,
    ) {
        self.outcomes.push(ResourceOutcome {
            kind,
            name: name.to_owned(),
            change,
            serial,
            message,
        });
    }

    /// Records `existing` as this reconcile's status of its resource, unchanged.
    fn keep(&mut self, existing: &Arc<ResourceStatus>) {
        self.statuses
            .insert((existing.kind, existing.name.clone()), existing.clone());
        self.outcome(
            existing.kind,
            &existing.name,
            Change::Unchanged,
            Some(existing.serial.clone()),
            String::new(),
        );
    }

    /// Issues (or reuses what a crashed run staged) a key and certificate; the journal gets it
    /// with the next [`Self::stage`].
    fn issue(
        &mut self,
        kind: Kind,
        name: &str,
        hash: &str,
        issuer_fingerprint: Option<&str>,
        make: impl FnOnce() -> std::result::Result<(KeyPair, String), pki::PkiError>,
    ) -> std::result::Result<(KeyPair, String), String> {
        let reusable = self
            .reusable(kind, name, hash, issuer_fingerprint)
            .map_err(|e| told(&format!("{kind}/{name}"), &e))?;
        if let Some(staged) = reusable {
            let key = pki::load_key(&staged.key).map_err(|e| e.to_string())?;
            self.issued.push((kind, name.to_owned()));
            return Ok((key, staged.certificate));
        }
        let (key, certificate) = make().map_err(|e| e.to_string())?;
        let info = pki::inspect(&certificate).map_err(|e| e.to_string())?;
        failpoint::point("certificate signed");
        let staged = Staged {
            spec_hash: hash.to_owned(),
            issuer_fingerprint: issuer_fingerprint.map(str::to_owned),
            certificate: certificate.clone(),
            serial: info.serial,
            key: pki::key_pem(&key),
        };
        self.to_stage.push((kind, name.to_owned(), staged));
        self.issued.push((kind, name.to_owned()));
        Ok((key, certificate))
    }

    fn issuer(&mut self, name: &str, spec: &IssuerSpec) -> Result<()> {
        let (parent, key_algorithm, duration) = match spec.issuer_type() {
            Some(IssuerType::SelfSigned(s)) => (None, s.key_algorithm, s.duration),
            Some(IssuerType::Ca(c)) => (Some(c.issuer_ref.as_str()), c.key_algorithm, c.duration),
            // An ACME issuer has no certificate or key of its own.
            _ => return Ok(()),
        };
        if let Some(parent) = parent
            && !self.signers.contains_key(parent)
        {
            self.outcome(
                Kind::Issuer,
                name,
                Change::Failed,
                None,
                format!("its issuer `{parent}` is not available"),
            );
            return Ok(());
        }
        let hash = spec_hash(&spec.significant_fields());
        let parent_fingerprint = parent
            .and_then(|p| self.signers.get(p))
            .map(|s| s.fingerprint.clone());
        let key = self.store.key(Kind::Issuer, name)?;
        let existing = self
            .observed
            .resources
            .get(&(Kind::Issuer, name.to_owned()));
        let why = why_issue(
            existing.map(Arc::as_ref),
            &hash,
            parent_fingerprint.as_deref(),
            key.is_some(),
            self.now,
        );
        let parent_signer = parent.and_then(|p| self.signers.get(p)).cloned();
        let (key, certificate, change) = match (why, existing, key) {
            (None, Some(existing), Some(key)) => {
                (key, existing.certificate.clone(), Change::Unchanged)
            }
            (why, _, _) => {
                let now = self.now;
                let made = match (spec.issuer_type(), &parent_signer) {
                    (Some(IssuerType::SelfSigned(s)), _) => {
                        self.issue(Kind::Issuer, name, &hash, None, || {
                            let key = pki::generate_key(key_algorithm)?;
                            let pem = pki::issue_root(s, &key, now)?;
                            Ok((key, pem))
                        })
                    }
                    (Some(IssuerType::Ca(c)), Some(parent)) => {
                        self.issue(Kind::Issuer, name, &hash, Some(&parent.fingerprint), || {
                            let key = pki::generate_key(key_algorithm)?;
                            let pem = parent
                                .sign(|signer| pki::issue_intermediate(c, &key, signer, now))?;
                            Ok((key, pem))
                        })
                    }
                    _ => Err("no issuer to sign it".to_owned()),
                };
                match made {
                    Ok((key, certificate)) => (
                        pki::key_pem(&key),
                        certificate,
                        why.unwrap_or(Change::Reissued),
                    ),
                    Err(message) => {
                        self.outcome(Kind::Issuer, name, Change::Failed, None, message);
                        return Ok(());
                    }
                }
            }
        };
        let Ok(info) = pki::inspect(&certificate) else {
            self.outcome(
                Kind::Issuer,
                name,
                Change::Failed,
                None,
                "its certificate cannot be read".to_owned(),
            );
            return Ok(());
        };
        let (intermediates, root) = match &parent_signer {
            Some(p) => {
                let mut chain = vec![certificate.clone()];
                chain.extend(p.intermediates.iter().cloned());
                (chain, p.root.clone())
            }
            None => (Vec::new(), certificate.clone()),
        };
        let renew_at = info.not_after
            - chrono::Duration::seconds(i64::try_from(duration.as_secs() / 3).unwrap_or(i64::MAX));
        let mut status = ResourceStatus {
            kind: Kind::Issuer,
            name: name.to_owned(),
            spec_hash: hash,
            issuer: parent.map(str::to_owned),
            issuer_fingerprint: parent_fingerprint,
            serial: info.serial.clone(),
            fingerprint: info.fingerprint.clone(),
            not_before: info.not_before,
            not_after: info.not_after,
            renew_at,
            key_algorithm,
            target: None,
            certificate: certificate.clone(),
            conditions: existing.map(|e| e.conditions.clone()).unwrap_or_default(),
        };
        status.set_condition("Ready", true, "Issued", String::new(), self.now);
        self.statuses
            .insert((Kind::Issuer, name.to_owned()), Arc::new(status));
        self.outcome(Kind::Issuer, name, change, Some(info.serial), String::new());
        self.signers.insert(
            name.to_owned(),
            Arc::new(CaSigner {
                certificate,
                key,
                fingerprint: info.fingerprint,
                intermediates,
                root,
            }),
        );
        Ok(())
    }

    /// Where certificate `spec` comes from, or why it cannot be issued.
    fn source(&self, catalog: &Catalog, spec: &CertificateSpec) -> Result<Source, String> {
        let issuer = spec.issuer_ref.as_str();
        if let Some(signer) = self.signers.get(issuer) {
            return Ok(Source::Ca(signer.clone()));
        }
        match catalog.issuer(issuer).and_then(IssuerSpec::issuer_type) {
            Some(IssuerType::Acme(acme)) => {
                let account = acme.account.as_str();
                if self.config.acme.keys().any(|a| a.as_str() == account) {
                    Ok(Source::Acme(account.to_owned()))
                } else {
                    Err(format!(
                        "ACME account `{account}` (issuer `{issuer}`) is not granted in the host config"
                    ))
                }
            }
            _ => Err(format!("its issuer `{issuer}` is not available")),
        }
    }

    /// Whether certificate `name`, whose spec hashes to `hash`, is issued now, given what
    /// status and the store hold.
    fn certificate_due(&self, name: &str, hash: &str, source: &Source) -> Option<Change> {
        let kind = Kind::Certificate;
        let existing = self.observed.resources.get(&(kind, name.to_owned()));
        let key_present = self.scope == Scope::Changes || self.store.has_key(kind, name);
        why_issue(
            existing.map(Arc::as_ref),
            hash,
            source.fingerprint(),
            key_present,
            self.now,
        )
    }

    /// The current key of certificate `name` when the spec asks to keep it across renewals
    /// and it is still of the right algorithm; `None` means a new key.
    fn kept_key(&self, name: &str, spec: &CertificateSpec) -> Option<KeyPair> {
        if spec.rotate_private_key {
            return None;
        }
        let pem = self.store.key(Kind::Certificate, name).ok().flatten()?;
        pki::load_key(&pem)
            .ok()
            .filter(|k| pki::key_matches(k, spec.key_algorithm))
    }

    /// Orders, all at once, every ACME certificate that is due and not already staged by an
    /// interrupted run; [`Self::certificate`] then takes the results from `acme_issued`.
    fn order_acme(&mut self, catalog: &Catalog) -> Result<()> {
        let mut batches: BTreeMap<String, Vec<acme::Request>> = BTreeMap::new();
        let mut keys = HashMap::new();
        for loaded in catalog.of_kind(Kind::Certificate) {
            let Spec::Certificate(spec) = &loaded.resource.spec else {
                continue;
            };
            let name = loaded.name();
            let Ok(Source::Acme(account)) = self.source(catalog, spec) else {
                continue;
            };
            let hash = spec_hash(&spec.significant_fields());
            if self
                .certificate_due(name, &hash, &Source::Acme(account.clone()))
                .is_none()
                || self
                    .reusable(Kind::Certificate, name, &hash, None)?
                    .is_some()
            {
                continue;
            }
            // An order an interrupted run recorded is finished with the key it was made for.
            let recorded = self
                .store
                .recorded_order(name)?
                .filter(|o| o.account == account && o.spec_hash == hash);
            let key = match (&recorded, self.kept_key(name, spec)) {
                (Some(order), _) => pki::load_key(&order.key),
                (None, Some(key)) => Ok(key),
                (None, None) => pki::generate_key(spec.key_algorithm),
            };
            let request = key.and_then(|key| Ok((pki::signing_request(spec, &key)?, key)));
            match request {
                Ok((csr, key)) => {
                    let mut request = acme::Request::new(name, spec, hash, csr, pki::key_pem(&key));
                    request.resume = recorded.map(|o| o.url);
                    batches.entry(account).or_default().push(request);
                    keys.insert(name.to_owned(), key);
                }
                Err(e) => {
                    self.acme_issued.insert(name.to_owned(), Err(e.to_string()));
                }
            }
        }
        for (account, requests) in batches {
            let Some(config) = self
                .config
                .acme
                .iter()
                .find(|(n, _)| n.as_str() == account)
                .map(|(_, c)| c)
            else {
                continue;
            };
            self.progress.step(&format!(
                "ordering {} certificate(s) from ACME account `{account}`",
                requests.len()
            ));
            for (name, issued) in acme::issue(&account, config, self.store, requests) {
                let issued = issued.and_then(|bundle| {
                    keys.remove(&name)
                        .map(|key| (key, bundle))
                        .ok_or_else(|| "the CA answered for a certificate not ordered".to_owned())
                });
                self.acme_issued.insert(name, issued);
            }
        }
        Ok(())
    }

    /// What an interrupted run staged for this resource, if it is still what is wanted.
    fn reusable(
        &self,
        kind: Kind,
        name: &str,
        hash: &str,
        issuer_fingerprint: Option<&str>,
    ) -> Result<Option<Staged>, crate::store::StoreError> {
        Ok(self.store.staged(kind, name)?.filter(|s| {
            s.spec_hash == hash && s.issuer_fingerprint.as_deref() == issuer_fingerprint
        }))
    }

    fn certificate(&mut self, catalog: &Catalog, name: &str, spec: &CertificateSpec) -> Result<()> {
        let kind = Kind::Certificate;
        let observed = self.observed;
        let existing = observed.resources.get(&(kind, name.to_owned()));
        let renew_before =
            i64::try_from(spec.effective_renew_before().as_secs()).unwrap_or(i64::MAX);
        // A commit-triggered reconcile takes what status records as it stands when the
        // certificate is ready, not due, and written where its spec says; it checks no files.
        let settled = existing.filter(|e| {
            self.scope == Scope::Changes
                && e.target.as_deref() == Some(spec.target.as_str())
                && e.renew_at == e.not_after - chrono::Duration::seconds(renew_before)
                && self.now < e.renew_at
                && e.condition("Ready").is_some_and(|c| c.status == "True")
        });
        // Unchanged by the commit and under unchanged issuers: not even its spec is hashed.
        if let Some(existing) = settled
            && self.issuers_settled
            && !self.changed.contains(&(kind, name.to_owned()))
        {
            self.keep(existing);
            return Ok(());
        }
        let fail = |this: &mut Self, message: String| {
            // What was in force stays recorded: status never forgets a certificate it knows.
            if let Some(mut old) = existing.cloned() {
                Arc::make_mut(&mut old).set_condition(
                    "Ready",
                    false,
                    "Failed",
                    message.clone(),
                    this.now,
                );
                this.statuses.insert((kind, name.to_owned()), old);
            }
            this.outcome(kind, name, Change::Failed, None, message);
        };
        let config = self.config;
        let Some(target) = config.targets.get(&spec.target) else {
            fail(
                self,
                format!("target `{}` is not granted in the host config", spec.target),
            );
            return Ok(());
        };
        let source = match self.source(catalog, spec) {
            Ok(source) => source,
            Err(message) => {
                fail(self, message);
                return Ok(());
            }
        };
        let hash = spec_hash(&spec.significant_fields());
        let why = self.certificate_due(name, &hash, &source);
        if let Some(existing) = settled
            && why.is_none()
        {
            self.keep(existing);
            return Ok(());
        }
        // A new key, or `None` for the one in force (read only if the files need writing).
        let (new_key, certificate, change) = match (why, &existing) {
            (None, Some(existing)) => (None, existing.certificate.clone(), Change::Unchanged),
            (why, _) => {
                let made = match &source {
                    Source::Ca(signer) => {
                        let kept = self.kept_key(name, spec);
                        let now = self.now;
                        self.issue(kind, name, &hash, source.fingerprint(), || {
                            let key = match kept {
                                Some(key) => key,
                                None => pki::generate_key(spec.key_algorithm)?,
                            };
                            let pem = signer.sign(|s| pki::issue_leaf(spec, &key, s, now))?;
                            Ok((key, pem))
                        })
                    }
                    Source::Acme(_) => {
                        let ordered = self.acme_issued.remove(name);
                        self.issue(kind, name, &hash, None, || match ordered {
                            Some(Ok(issued)) => Ok(issued),
                            Some(Err(message)) => Err(pki::PkiError::Acme(message)),
                            None => Err(pki::PkiError::Acme("it was not ordered".to_owned())),
                        })
                    }
                };
                match made {
                    Ok((key, certificate)) => (
                        Some(pki::key_pem(&key)),
                        certificate,
                        why.unwrap_or(Change::Reissued),
                    ),
                    Err(message) => {
                        fail(self, message);
                        return Ok(());
                    }
                }
            }
        };
        let info = match (&existing, change) {
            (Some(existing), Change::Unchanged) => pki::CertificateInfo {
                serial: existing.serial.clone(),
                fingerprint: existing.fingerprint.clone(),
                not_before: existing.not_before,
                not_after: existing.not_after,
            },
            _ => match pki::inspect(&certificate) {
                Ok(info) => info,
                Err(_) => {
                    fail(self, "the certificate cannot be read".to_owned());
                    return Ok(());
                }
            },
        };
        // A CA's chain comes from the issuers above it; an ACME CA sends its chain with the
        // certificate, and status keeps the two together.
        let (leaf, chain, root) = match &source {
            Source::Ca(signer) => (
                certificate.clone(),
                signer.intermediates.concat(),
                Some(signer.root.clone()),
            ),
            Source::Acme(_) => {
                let (leaf, chain) = pki::split_chain(&certificate);
                (leaf, chain, None)
            }
        };
        let mut status = ResourceStatus {
            kind,
            name: name.to_owned(),
            spec_hash: hash,
            issuer: Some(spec.issuer_ref.to_string()),
            issuer_fingerprint: source.fingerprint().map(str::to_owned),
            serial: info.serial.clone(),
            fingerprint: info.fingerprint,
            not_before: info.not_before,
            not_after: info.not_after,
            renew_at: info.not_after - chrono::Duration::seconds(renew_before),
            key_algorithm: spec.key_algorithm,
            target: Some(spec.target.to_string()),
            certificate: certificate.clone(),
            conditions: existing
                .as_ref()
                .map(|e| e.conditions.clone())
                .unwrap_or_default(),
        };
        // Files are written when the certificate is new, or when they are not what status says.
        let on_disk = outputs::read_certificate(target, name);
        let moved_from = existing
            .and_then(|e| e.target.as_deref())
            .filter(|old| *old != spec.target.as_str())
            .and_then(|old| config.targets.iter().find(|(n, _)| n.as_str() == old))
            .map(|(_, target)| target)
            .cloned();
        let change = match (change, on_disk.as_deref() == Some(leaf.as_str())) {
            (Change::Unchanged, _) if moved_from.is_some() => Change::Moved,
            (Change::Unchanged, true) => Change::Unchanged,
            (Change::Unchanged, false) => Change::Rewritten,
            (other, _) => other,
        };
        if change != Change::Unchanged {
            let key_pem = match new_key {
                Some(key) => key,
                None => match self.store.key(kind, name)? {
                    Some(key) => key,
                    None => {
                        fail(self, "its key is missing from the secret store".to_owned());
                        return Ok(());
                    }
                },
            };
            self.to_write.push(FilesToWrite {
                target: target.clone(),
                files: OwnedFiles {
                    cert: leaf,
                    chain,
                    ca: root,
                    key: key_pem,
                },
                status,
                change,
                moved_from,
            });
            return Ok(());
        }
        if status.condition("Ready").is_none_or(|c| c.status != "True") {
            status.set_condition("Ready", true, "Written", String::new(), self.now);
        }
        self.statuses
            .insert((kind, name.to_owned()), Arc::new(status));
        self.outcome(kind, name, change, Some(info.serial), String::new());
        Ok(())
    }

    /// Status entries of resources no longer in the commit: gitward stops managing them;
    /// their files go only where the target prunes.
    fn remove_deleted(&mut self, catalog: &Catalog) -> Result<()> {
        let deleted: Vec<((Kind, String), Arc<ResourceStatus>)> = self
            .observed
            .resources
            .iter()
            .filter(|((kind, name), _)| catalog.get(*kind, name).is_none())
            .map(|(key, status)| (key.clone(), status.clone()))
            .collect();
        for ((kind, name), status) in deleted {
            if let Some(target) = status
                .target
                .as_deref()
                .and_then(|t| self.config.targets.iter().find(|(n, _)| n.as_str() == t))
                .map(|(_, t)| t.clone())
                && target.prune
                && let Err(e) = outputs::remove(&target, &name)
            {
                let reason = told(&format!("{kind}/{name}"), &e);
                self.outcome(kind, &name, Change::Failed, None, reason);
                self.statuses.insert((kind, name), status);
                continue;
            }
            self.store.forget(kind, &name)?;
            self.outcome(kind, &name, Change::Removed, None, String::new());
        }
        Ok(())
    }

    /// Runs the reload command of every target with new files, and of every target whose
    /// last reload failed; records the outcome on its certificates.
    fn reload(&mut self) {
        let mut due: BTreeSet<String> = self.written.clone();
        for status in self.statuses.values() {
            if status
                .condition("Reloaded")
                .is_some_and(|c| c.status == "False")
                && let Some(t) = &status.target
            {
                due.insert(t.clone());
            }
        }
        let targets: Vec<(String, Target)> = self
            .config
            .targets
            .iter()
            .filter(|(name, t)| due.contains(name.as_str()) && !t.reload.is_empty())
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        for (name, target) in targets {
            let timeout = std::time::Duration::from_secs(target.timeout.as_secs());
            let result = outputs::reload(&target.reload, timeout)
                .map_err(|e| told(&format!("target `{name}`"), &e));
            failpoint::point("reloaded");
            let now = self.now;
            for status in self
                .statuses
                .values_mut()
                .filter(|s| s.target.as_deref() == Some(name.as_str()))
            {
                let status = Arc::make_mut(status);
                match &result {
                    Ok(()) => {
                        status.set_condition("Reloaded", true, "Reloaded", String::new(), now)
                    }
                    Err(reason) => {
                        status.set_condition("Reloaded", false, "ReloadFailed", reason.clone(), now)
                    }
                }
            }
            if let Err(reason) = result {
                self.problems.push(format!("target `{name}`: {reason}"));
            }
        }
    }
}
