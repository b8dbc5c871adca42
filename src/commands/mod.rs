//! The commands behind the CLI. Each takes its options as plain values, writes its output to
//! the given writer and returns the process exit code; `main` only parses arguments.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

use crate::config::HostConfig;
use crate::diag::{escaped, shown_bounded};
use crate::error::{Error, Result};
use crate::gate::gather::{self, Sources, gather};
use crate::git::{Repo, abbreviated};
use crate::model::{Catalog, Kind};
use crate::policy::testing::{TestOutcome, run_tests};
use crate::reconcile::decide::{Facts, Verdict, decide};
use crate::reconcile::reconcile_once;
use crate::report::{Compared, Format, PlanReport, plan_report_schema};
use crate::review::{noted_base, review_noted};
use crate::scaffold;
use crate::snapshot::Snapshot;
use crate::source::{self, BlobCache, ConfigRepo, Directory};
use crate::status::{Change, Outcome};
use crate::trust::commits::check_commit_now;
use crate::trust::signers::AllowedSigners;

pub mod post;
pub mod sinks;
pub mod tickets;

/// Exit codes shared by the commands.
pub mod exit {
    pub const OK: u8 = 0;
    /// Invalid configuration (`validate`), blocked change (`plan`).
    pub const FAILED: u8 = 1;
    /// Usage error, or invalid input to `plan`.
    pub const INVALID: u8 = 2;
}

pub(crate) fn write_out(out: &mut dyn Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .map_err(Error::io("<stdout>"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
}

pub struct ValidateOptions {
    pub repo: PathBuf,
    pub rev: Option<String>,
    pub format: ValidateFormat,
    /// Accept a configuration without resources.
    pub allow_empty: bool,
}

/// Refuses a configuration without resources (unless allowed): it is most often a wrong
/// `--repo` or revision, which CI would otherwise pass as valid. One with errors is not
/// refused here: its errors say more.
fn refuse_empty(
    snapshots: &[&Snapshot],
    allow_empty: bool,
    place: impl FnOnce() -> String,
) -> Result<()> {
    let empty = snapshots
        .iter()
        .all(|s| s.catalog.resources().is_empty() && !s.has_errors());
    if empty && !allow_empty {
        return Err(Error::EmptyConfiguration { place: place() });
    }
    Ok(())
}

/// A directory as messages name it: absolute, when it exists.
fn shown(dir: &Path) -> String {
    dir.canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}

/// The catalog of a commit, or of the working tree when `rev` is `None`, for `validate`.
fn load(repo: &Path, rev: Option<&str>) -> Result<Catalog> {
    match rev {
        Some(rev) => Ok(ConfigRepo::open(repo)?
            .load(rev, &mut BlobCache::evaluating_few())?
            .1),
        None => source::load(&Directory::open(repo)?, &mut BlobCache::evaluating_few()),
    }
}

/// `gitward validate`: every problem of a commit or of the working tree.
pub fn validate(options: &ValidateOptions, out: &mut dyn Write) -> Result<u8> {
    let snapshot = Snapshot::new(load(&options.repo, options.rev.as_deref())?);
    refuse_empty(&[&snapshot], options.allow_empty, || match &options.rev {
        Some(rev) => format!("`{rev}` of {}", shown(&options.repo)),
        None => shown(&options.repo),
    })?;
    let counts: Vec<(Kind, usize)> = Kind::ALL
        .iter()
        .map(|&k| (k, snapshot.catalog.of_kind(k).count()))
        .collect();
    match options.format {
        ValidateFormat::Json => {
            let resources: serde_json::Map<String, serde_json::Value> = counts
                .iter()
                .map(|(k, n)| (k.to_string(), json!(n)))
                .collect();
            let report = json!({
                "valid": !snapshot.has_errors(),
                "files": snapshot.catalog.files,
                "resources": resources,
                "diagnostics": snapshot.diagnostics,
            });
            write_out(
                out,
                &format!(
                    "{}\n",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
            )?;
        }
        ValidateFormat::Text => write_out(
            out,
            &crate::report::disarmed_lines(&validate_text(&snapshot, &counts)),
        )?,
    }
    let code = if snapshot.has_errors() {
        exit::FAILED
    } else {
        exit::OK
    };
    // As for `plan`: the process ends with the command.
    std::mem::forget(snapshot);
    Ok(code)
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn validate_text(snapshot: &Snapshot, counts: &[(Kind, usize)]) -> String {
    let mut text: String = snapshot
        .diagnostics
        .iter()
        .map(|d| format!("{d}\n"))
        .collect();
    let errors = snapshot.errors().count();
    let warnings = snapshot.diagnostics.len() - errors;
    if errors > 0 {
        let mut files: Vec<&str> = snapshot.errors().map(|d| d.file.as_str()).collect();
        files.dedup();
        let warned = if warnings > 0 {
            format!(" and {}", plural(warnings, "warning"))
        } else {
            String::new()
        };
        text.push_str(&format!(
            "invalid: {}{warned} in {}\n",
            plural(errors, "error"),
            plural(files.len(), "file")
        ));
    } else {
        let listed: Vec<String> = counts
            .iter()
            .map(|(kind, n)| match (kind, n) {
                (Kind::Policy, 1) => "1 policy".to_owned(),
                (Kind::Policy, n) => format!("{n} policies"),
                (kind, n) => plural(*n, &kind.as_str().to_lowercase()),
            })
            .collect();
        text.push_str(&format!(
            "valid: {} in {}{}\n",
            listed.join(", "),
            plural(snapshot.catalog.files, "file"),
            if warnings > 0 {
                format!(" ({})", plural(warnings, "warning"))
            } else {
                String::new()
            }
        ));
    }
    text
}

pub struct PlanOptions {
    pub repo: PathBuf,
    pub base: String,
    pub head: String,
    pub format: Format,
    pub output: Option<PathBuf>,
    /// The day exceptions are judged on; the day of `now` when unset.
    pub today: Option<NaiveDate>,
    /// The time gate windows are judged at; now when unset.
    pub now: Option<DateTime<Utc>>,
    /// Accept a base and a head without resources.
    pub allow_empty: bool,
    /// What signatures are checked against, as the daemon's host config says.
    pub trust: Trust,
    /// The host config whose endpoints change requests are read through.
    pub host_config: Option<PathBuf>,
    /// Post the status and comment to the pull request (`--post`).
    pub post: Option<post::PostOptions>,
    /// Evaluate every policy on the head, even where the base's note could stand for it.
    pub full: bool,
}

/// What a host trusts: the keys that sign for principals, and whether trailers approve.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// An allowed-signers file (git's `gpg.ssh.allowedSignersFile` format).
    pub allowed_signers: Option<PathBuf>,
    /// A file of revoked keys, one per line.
    pub revocations: Option<PathBuf>,
    /// Whether `Approved-by:` trailers count (reported as unverified).
    pub trust_trailers: bool,
}

/// When and with what trust a change is judged.
pub struct Judging<'a> {
    pub today: NaiveDate,
    pub now: DateTime<Utc>,
    pub signers: Option<&'a AllowedSigners>,
    pub trust_trailers: bool,
    /// Whether the report lists every (policy, resource) pair evaluated, as JUnit shows them.
    pub list_pairs: bool,
}

/// The plan report of merging `head` into `base`: the base compared with the merge, or with
/// the head itself when it already contains the base.
pub fn plan_report(
    repo: &Path,
    base: &str,
    head: &str,
    judging: &Judging<'_>,
    allow_empty: bool,
) -> Result<PlanReport> {
    plan_report_reading(
        repo,
        base,
        head,
        judging,
        &Readers {
            changes: &crate::gate::change::NoEndpoints,
            reviews: &crate::gate::reviews::Unreadable::no_forge(),
        },
        allow_empty,
    )
}

/// Where gates' evidence outside the repository is read.
pub struct Readers<'a> {
    /// Change requests (the host's endpoints).
    pub changes: &'a dyn crate::gate::change::ChangeRequests,
    /// Pull request reviews (the forge).
    pub reviews: &'a dyn crate::gate::reviews::PullReviews,
}

/// [`plan_report`] reading what gates ask about outside the repository through `readers`.
pub fn plan_report_reading(
    repo: &Path,
    base: &str,
    head: &str,
    judging: &Judging<'_>,
    readers: &Readers<'_>,
    allow_empty: bool,
) -> Result<PlanReport> {
    let evaluating = Evaluating {
        full: false,
        cache: &mut BlobCache::evaluating_few(),
    };
    plan_report_evaluating(repo, base, head, judging, readers, allow_empty, evaluating)
}

/// How a plan evaluates the base: from its note where the note can stand for it, unless
/// `full`. The files read stay in `cache`.
pub struct Evaluating<'c> {
    pub full: bool,
    pub cache: &'c mut BlobCache,
}

/// [`plan_report_reading`], evaluating as `evaluating` says.
pub fn plan_report_evaluating(
    repo: &Path,
    base: &str,
    head: &str,
    judging: &Judging<'_>,
    readers: &Readers<'_>,
    allow_empty: bool,
    evaluating: Evaluating<'_>,
) -> Result<PlanReport> {
    let Evaluating { full, cache } = evaluating;
    let config = ConfigRepo::open(repo)?;
    config.repo.write_in_memory()?;
    let mut base_commit = config.repo.commit(base)?;
    let mut head_commit = config.repo.commit(head)?;
    // Policies see whether a commit is signed, and by whom (`input.commit.signature`).
    for commit in [&mut base_commit, &mut head_commit] {
        commit.signature = git2::Oid::from_str(&commit.sha)
            .ok()
            .map(|id| check_commit_now(config.repo.inner(), id, judging.signers, judging.now));
    }
    let merged = config.repo.merged_head(&base_commit, &head_commit)?;
    let head_name = if merged.merged {
        format!(
            "the merge of {} into {}",
            head_commit.short(),
            base_commit.short()
        )
    } else {
        head_commit.short().to_owned()
    };
    let head_catalog = config.load_tree(merged.tree, &head_name, cache)?;
    let base_catalog = config.load_tree(base_commit.tree, base_commit.short(), cache)?;
    let head_snapshot = Snapshot::new(head_catalog);
    let base_snapshot = Snapshot::new(base_catalog);
    refuse_empty(&[&base_snapshot, &head_snapshot], allow_empty, || {
        format!("`{base}` or `{head}` of {}", shown(repo))
    })?;
    // The note comes from the remote, as the repository does: it is used only where it
    // matches the base as read from the tree (`noted_base`), never instead of it.
    let noted = if full {
        Err("--full".to_owned())
    } else {
        let note = git2::Oid::from_str(&base_commit.sha)
            .ok()
            .and_then(|id| crate::status::read_note(&config.repo, id))
            .and_then(|note| note.evaluation);
        noted_base(note.as_ref(), (&base_commit, &base_snapshot), judging.today)
    };
    let mut report = review_noted(
        (&base_commit, &base_snapshot),
        noted,
        (&head_commit, &head_snapshot),
        judging.today,
        judging.list_pairs,
    );
    report.root = config.prefix().to_owned();
    if merged.merged {
        report.compared = Compared::Merge;
    }
    // The daemon's decision on the merge, with the base in force.
    let evidence = gather(
        &Sources {
            repo: config.repo.inner(),
            root: config.prefix(),
            signers: judging.signers,
            trust_trailers: judging.trust_trailers,
            changes: readers.changes,
            reviews: readers.reviews,
        },
        &gather::Change {
            in_force: git2::Oid::from_str(&base_commit.sha).ok(),
            base_tree: Some(base_commit.tree),
            head: git2::Oid::from_str(&head_commit.sha).map_err(Error::git("reading the head"))?,
            tree: merged.tree,
            governing: &base_snapshot.catalog,
        },
        judging.now,
    );
    let decision = decide(&Facts {
        in_force: &base_snapshot.catalog,
        anything_in_force: true,
        head: &head_snapshot.catalog,
        review: Some(&report),
        evidence: &evidence,
        open_reviews: &[],
        now: judging.now,
    });
    report.blocked = decision.verdict == Verdict::Blocked;
    report.verdict = decision.verdict;
    report.reasons = decision.reasons;
    report.gates = decision.gates;
    Ok(report)
}

/// `gitward plan`: what merging `head` into `base` would do. Problems in the head also go to
/// `err` as `file:line:col: message`, whatever the format.
pub fn plan(options: &PlanOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8> {
    let now = options.now.unwrap_or_else(Utc::now);
    let signers = options.trust.signers()?;
    let host = options
        .host_config
        .as_deref()
        .map(HostConfig::load)
        .transpose()?;
    let online = host.as_ref().map(|host| crate::gate::change::Online {
        endpoints: &host.endpoints,
    });
    let changes: &dyn crate::gate::change::ChangeRequests = match &online {
        Some(online) => online,
        None => &crate::gate::change::NoEndpoints,
    };
    // Where the plan is posted is found first: a CI job that cannot post fails before it
    // plans, and gates counting reviews read them from that pull request.
    let posting = match &options.post {
        Some(post) => {
            let planned = ConfigRepo::open(&options.repo)?
                .repo
                .commit(&options.head)?
                .sha;
            Some(post::Posting::open(post, &planned)?)
        }
        None => None,
    };
    let no_forge = crate::gate::reviews::Unreadable::no_forge();
    let hosted = host.as_ref().map(|config| crate::gate::reviews::Hosted {
        config,
        wanted: crate::gate::reviews::Wanted::Open { number: None },
    });
    let online_reviews = posting.as_ref().map(post::Posting::reviews);
    let reviews: &dyn crate::gate::reviews::PullReviews = match (&online_reviews, &hosted) {
        (Some(online), _) => online,
        (None, Some(hosted)) => hosted,
        (None, None) => &no_forge,
    };
    let mut cache = BlobCache::evaluating_few();
    let report = plan_report_evaluating(
        &options.repo,
        &options.base,
        &options.head,
        &Judging {
            today: options.today.unwrap_or(now.date_naive()),
            now,
            signers: signers.as_ref(),
            trust_trailers: options.trust.trust_trailers,
            list_pairs: options.format == Format::Junit,
        },
        &Readers { changes, reviews },
        options.allow_empty,
        Evaluating {
            full: options.full,
            cache: &mut cache,
        },
    )?;
    let rendered = report.render(options.format);
    match &options.output {
        Some(path) => std::fs::write(path, rendered).map_err(Error::io(path))?,
        None => write_out(out, &rendered)?,
    }
    if options.format != Format::Text || options.output.is_some() {
        err.write_all(report.error_lines().as_bytes())
            .map_err(Error::io("<stderr>"))?;
    }
    if let Some(posting) = &posting {
        posting.post(&report, err)?;
    }
    // The process ends with the command: the files it parsed are left for the system to free
    // at once, not one allocation at a time.
    std::mem::forget(cache);
    Ok(report.exit_code())
}

impl Trust {
    /// The allowed signers, read; none when no file is given.
    pub fn signers(&self) -> Result<Option<AllowedSigners>> {
        let load = |path: &Path| {
            AllowedSigners::load(path, self.revocations.as_deref()).map_err(|e| match e {
                // Given on the command line, the file is not part of a host config.
                Error::Config(invalid) => Error::Usage(format!(
                    "invalid allowed signers:\n{}",
                    invalid
                        .diagnostics
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                )),
                other => other,
            })
        };
        self.allowed_signers.as_deref().map(load).transpose()
    }
}

/// A progress bar on stderr when it is a terminal and output is not quiet; hidden otherwise,
/// so logs and pipes stay plain.
struct TerminalProgress {
    bar: indicatif::ProgressBar,
}

impl TerminalProgress {
    fn new(quiet: bool) -> TerminalProgress {
        use std::io::IsTerminal;
        let bar = if quiet || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(0)
        };
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        TerminalProgress { bar }
    }
}

impl crate::reconcile::Progress for TerminalProgress {
    fn start(&self, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(0);
    }

    fn certificate(&self, done: usize, name: &str) {
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("certificate {name}"));
    }

    fn step(&self, what: &str) {
        // Steps after the certificates have started come once all of them are done.
        self.bar.set_position(self.bar.length().unwrap_or(0));
        self.bar.set_message(what.to_owned());
    }
}

/// `gitward reconcile --once`: applies the head of the tracked branch and records the outcome.
pub fn reconcile(
    config: &Path,
    now: Option<DateTime<Utc>>,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let config = HostConfig::load(config)?;
    let progress = TerminalProgress::new(quiet);
    let report = reconcile_once(&config, now.unwrap_or_else(Utc::now), &progress)?;
    progress.bar.finish_and_clear();
    // The events of this reconcile (and any backlog) go out before the process ends; what a
    // receiver cannot take now waits in the outbox for the next run or the daemon.
    let undelivered = sinks::undelivered_lines(&sinks::deliver(&config)?);
    let short = abbreviated(&report.source, 8);
    let mut text = format!("gitward reconcile: {short} {}\n", report.result.as_str());
    if !quiet {
        for r in report
            .resources
            .iter()
            .filter(|r| r.change != Change::Unchanged)
        {
            let change = serde_json::to_value(r.change)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let detail = match (&r.serial, r.message.is_empty()) {
                (_, false) => format!("  {}", escaped(&r.message)),
                (Some(serial), true) => format!("  serial {serial}"),
                (None, true) => String::new(),
            };
            text.push_str(&format!("  {change:9} {}/{}{detail}\n", r.kind, r.name));
        }
    }
    for problem in &report.problems {
        text.push_str(&format!("  problem: {}\n", escaped(problem)));
    }
    if let (Outcome::Pending, Some(at)) = (report.result, report.retry_at) {
        text.push_str(&format!(
            "  pending: applied without a new commit when the window opens, {}\n",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    let wrote = if report.wrote_status {
        "new status commit"
    } else {
        "status unchanged"
    };
    text.push_str(&format!(
        "{} {} ({wrote})\n",
        config.status_branch,
        abbreviated(&report.status_commit, 8)
    ));
    let exchange = &report.exchange;
    for problem in [&exchange.fetch_error, &exchange.push_error]
        .into_iter()
        .flatten()
    {
        text.push_str(&format!("  remote: {}\n", escaped(problem)));
    }
    if exchange.push_retries > 0 {
        text.push_str(&format!(
            "  remote: the remote had moved; merged and pushed again ({} retries)\n",
            exchange.push_retries
        ));
    }
    text.push_str(&undelivered);
    write_out(out, &text)?;
    // Applied but not pushed is not done: the remote does not show it yet.
    Ok(
        if report.result == Outcome::Applied && exchange.push_error.is_none() {
            exit::OK
        } else {
            exit::FAILED
        },
    )
}

/// `gitward status [REV]`: the outcome recorded for a commit, from Git alone.
pub fn status(repo: &Path, rev: &str, format: ValidateFormat, out: &mut dyn Write) -> Result<u8> {
    let repo = Repo::discover(repo)?;
    let commit = repo.commit(rev)?;
    let oid = git2::Oid::from_str(&commit.sha).map_err(Error::git("reading the commit id"))?;
    let Some(note) = crate::status::read_note(&repo, oid) else {
        write_out(out, &format!("{} has no gitward status\n", commit.short()))?;
        return Ok(exit::FAILED);
    };
    let text = match format {
        ValidateFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&note).unwrap_or_default()
        ),
        ValidateFormat::Text => {
            // The note is anyone's who can push its ref: every word of it is escaped.
            let mut text = format!(
                "{} {}: {} (status {})\n",
                commit.short(),
                escaped(&commit.summary),
                note.result.as_str(),
                escaped(abbreviated(&note.status_commit, 8))
            );
            for r in &note.resources {
                let change = serde_json::to_value(r.change)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let serial = r
                    .serial
                    .as_deref()
                    .map(|s| format!("  serial {}", escaped(s)))
                    .unwrap_or_default();
                text.push_str(&format!(
                    "  {change:9} {}/{}{serial}\n",
                    r.kind,
                    escaped(&r.name)
                ));
            }
            for p in &note.problems {
                text.push_str(&format!("  problem: {}\n", escaped(p)));
            }
            for f in &note.findings {
                text.push_str(&format!("  finding: {}\n", escaped(f)));
            }
            for gate in &note.gates {
                text.push_str(&format!("  gate {}\n", escaped(&gate.line())));
            }
            for shown in crate::status::tickets_at(&repo, &note.status_commit)
                .iter()
                .filter(|t| t.problem_open || t.state == "open")
            {
                let ticket = shown.ticket.clone().unwrap_or_default();
                text.push_str(&format!(
                    "  ticket {} {} {}{}{}: {}\n",
                    escaped(&shown.sink),
                    escaped(if ticket.key.is_empty() {
                        "-"
                    } else {
                        &ticket.key
                    }),
                    escaped(&shown.state),
                    shown
                        .due
                        .as_deref()
                        .map(|d| format!(" due {}", escaped(d)))
                        .unwrap_or_default(),
                    if shown.breached { " (breached)" } else { "" },
                    escaped(&shown.title)
                ));
            }
            shown_bounded(&text)
        }
    };
    write_out(out, &text)?;
    Ok(exit::OK)
}

/// `gitward test`: runs the policy tests of a commit or the working tree and prints a line
/// per test and a summary.
pub fn test(
    repo: &Path,
    rev: Option<&str>,
    filter: Option<&str>,
    out: &mut dyn Write,
) -> Result<u8> {
    let filter = filter
        .map(|f| regex::Regex::new(f).map_err(|e| Error::Usage(format!("--filter: {e}"))))
        .transpose()?;
    let snapshot = Snapshot::new(load(repo, rev)?);
    let mut text = String::new();
    let module_errors: Vec<&crate::diag::Diagnostic> = snapshot
        .errors()
        .filter(|d| d.file.ends_with(".rego"))
        .collect();
    for d in &module_errors {
        text.push_str(&format!("{d}\n"));
    }
    let results = run_tests(&snapshot.policies, filter.as_ref());
    let (mut passed, mut failed) = (0, 0);
    for r in &results {
        let millis = r.duration.as_secs_f64() * 1000.0;
        match &r.outcome {
            TestOutcome::Pass => {
                passed += 1;
                text.push_str(&format!("PASS  {}  {} ({millis:.1}ms)\n", r.module, r.rule));
            }
            TestOutcome::Fail => {
                failed += 1;
                text.push_str(&format!("FAIL  {}  {} ({millis:.1}ms)\n", r.module, r.rule));
            }
            TestOutcome::Error(message) => {
                failed += 1;
                text.push_str(&format!("ERROR {}  {}: {message}\n", r.module, r.rule));
            }
        }
        if r.outcome != TestOutcome::Pass {
            for line in &r.prints {
                text.push_str(&format!("        {line}\n"));
            }
        }
    }
    if results.is_empty() {
        text.push_str("no tests found\n");
    }
    text.push_str(&format!("{passed} passed, {failed} failed\n"));
    write_out(out, &text)?;
    Ok(if failed > 0 || !module_errors.is_empty() {
        exit::FAILED
    } else {
        exit::OK
    })
}

/// Every published JSON Schema: (name, file stem, schema). The resource kinds, the JSON plan
/// report and the host config.
fn published_schemas() -> Vec<(String, String, serde_json::Value)> {
    let mut all: Vec<(String, String, serde_json::Value)> = Kind::ALL
        .iter()
        .map(|k| {
            (
                k.to_string(),
                k.schema_stem().to_owned(),
                crate::model::schema::kind_schema(*k),
            )
        })
        .collect();
    all.push(("plan".into(), "plan".into(), plan_report_schema()));
    all.push(("note".into(), "note".into(), crate::status::note_schema()));
    all.push((
        "host-config".into(),
        "host-config".into(),
        crate::config::schema(),
    ));
    all
}

fn pretty(value: &serde_json::Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
}

/// `gitward schema [NAME]`: one schema (a kind, `plan` or `host-config`), or all as one JSON
/// object. With `out_dir`, writes `<name>.schema.json` files there instead.
pub fn schema(name: Option<&str>, out_dir: Option<&Path>, out: &mut dyn Write) -> Result<u8> {
    let all = published_schemas();
    let chosen: Vec<&(String, String, serde_json::Value)> = match name {
        Some(wanted) => {
            let found = all.iter().find(|(n, stem, _)| {
                n.eq_ignore_ascii_case(wanted) || stem.eq_ignore_ascii_case(wanted)
            });
            let names: Vec<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
            vec![found.ok_or_else(|| {
                Error::Usage(format!(
                    "unknown schema `{wanted}`; schemas are {}",
                    names.join(", ")
                ))
            })?]
        }
        None => all.iter().collect(),
    };
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        for (_, stem, schema) in &chosen {
            let path = dir.join(format!("{stem}.schema.json"));
            std::fs::write(&path, pretty(schema)).map_err(Error::io(&path))?;
        }
        return Ok(exit::OK);
    }
    let text = match chosen.as_slice() {
        [(_, _, one)] => pretty(one),
        many => pretty(&serde_json::Value::Object(
            many.iter()
                .map(|(n, _, s)| (n.clone(), s.clone()))
                .collect(),
        )),
    };
    write_out(out, &text)?;
    Ok(exit::OK)
}

/// Refuses to go on when any of `paths` exists under `dir`: nothing is overwritten.
fn refuse_overwrite<'a>(dir: &Path, paths: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let existing: Vec<&str> = paths
        .into_iter()
        .filter(|path| dir.join(path).symlink_metadata().is_ok())
        .collect();
    if !existing.is_empty() {
        return Err(Error::Usage(format!(
            "{} already has {}; not overwriting anything",
            dir.display(),
            existing.join(", ")
        )));
    }
    Ok(())
}

/// Writes a file, making its directory first.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
    }
    std::fs::write(path, bytes).map_err(Error::io(path))
}

/// `gitward init DIR`: a starter configuration, in a new Git repository unless DIR is
/// already inside one, and the config of a trial host that applies it, kept out of Git.
pub fn init(dir: &Path, out: &mut dyn Write) -> Result<u8> {
    let files = scaffold::files(&scaffold::STARTER);
    let host_file = format!("{LOCAL_HOST}/gitward.yaml");
    refuse_overwrite(
        dir,
        files
            .iter()
            .map(|(path, _)| path.as_str())
            .chain([host_file.as_str()]),
    )?;
    for (path, bytes) in &files {
        write_file(&dir.join(path), bytes)?;
    }
    let initialised = if git2::Repository::discover(dir).is_err() {
        Repo::init(dir)?;
        " and initialised a Git repository"
    } else {
        ""
    };
    let repo = Repo::discover(dir)?;
    let branch = repo.head_branch().unwrap_or_else(|| "main".to_owned());
    let host = local_host_config(dir, &branch, &["web-tls"], None)?;
    write_file(&dir.join(&host_file), host.as_bytes())?;
    exclude_local_host(&repo, dir)?;
    HostConfig::load(&dir.join(&host_file))?;
    let gitward = this_binary();
    let shown = dir.display();
    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        format!("  cd {}\n", shell_word(dir))
    };
    write_out(
        out,
        &format!(
            "Wrote {} files to {shown}{initialised}.\n\
             A trial host applies it with {shown}/{host_file}: it follows {branch} and writes\n\
             certificates under {shown}/{LOCAL_HOST}/tls/. That directory stays out of Git: a\n\
             host config is never part of the repository it follows.\n\n\
             Next:\n{cd}  {gitward} validate\n  git add . && git commit -m \"Initial gitward configuration\"\n  \
             {gitward} reconcile --once --config {host_file}\n",
            files.len(),
        ),
    )?;
    Ok(exit::OK)
}

/// A path as one word of a shell command.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    match shlex::try_quote(&text) {
        Ok(quoted) => quoted.into_owned(),
        Err(_) => text,
    }
}

/// This binary as a command to paste: its own path, as it may not be on `PATH` yet (run
/// through `cargo run`, say).
fn this_binary() -> String {
    std::env::current_exe().map_or_else(|_| "gitward".to_owned(), |path| shell_word(&path))
}

/// The branch of the demo's proposed change.
pub const DEMO_BRANCH: &str = "rotate-api-certificate";

/// The proposed change of the demo: edits, a new certificate and a removal, as a pull
/// request would bring them.
fn demo_change(files: &mut Vec<(String, Vec<u8>)>) {
    let edit = |files: &mut Vec<(String, Vec<u8>)>, path: &str, from: &str, to: &str| {
        if let Some((_, bytes)) = files.iter_mut().find(|(p, _)| p == path) {
            *bytes = String::from_utf8_lossy(bytes)
                .replace(from, to)
                .into_bytes();
        }
    };
    edit(
        files,
        "certificates/prod/api.yaml",
        "    - api.internal.example.com\n  keyAlgorithm: ECDSA-P256",
        "    - api.internal.example.com\n    - api-v2.example.com\n  keyAlgorithm: ECDSA-P384",
    );
    edit(
        files,
        "certificates/prod/shop.yaml",
        "renewBefore: 45d",
        "renewBefore: 60d",
    );
    files.retain(|(p, _)| p != "certificates/staging/shop.yaml");
    files.push((
        "certificates/prod/status.yaml".to_owned(),
        b"apiVersion: gitward/v1\nkind: Certificate\nmetadata:\n  name: status-example-com\n  labels:\n    env: prod\n    owner: sre\n    exposure: internal\nspec:\n  issuerRef: example-issuing\n  dnsNames:\n    - status.example.com\n  keyAlgorithm: ECDSA-P256\n  duration: 90d\n  renewBefore: 5d\n  target: web-tls\n".to_vec(),
    ));
}

/// The allowed-signers file of the demo host, next to its config.
const DEMO_SIGNERS: &str = "allowed_signers";
/// The demo's approvers and the security lead who may override the example's prod gate; their
/// keys are made for the demo, in the trial host's directory.
const DEMO_PRINCIPALS: [&str; 3] = [
    "alice@example.com",
    "bob@example.com",
    "security-lead@example.com",
];

/// Makes an Ed25519 key for each demo principal in `host/keys/` (named by the part before
/// the `@`) and lists them in `host/allowed_signers`; returns the allowed signers.
fn demo_signers(host: &Path) -> Result<AllowedSigners> {
    let keys = host.join("keys");
    let mut allowed = String::new();
    for principal in DEMO_PRINCIPALS {
        let name = principal.split('@').next().unwrap_or(principal);
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::Usage(format!("no randomness for the demo's keys: {e}")))?;
        let mut key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&seed));
        key.set_comment(principal);
        let private = key
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| Error::Usage(format!("writing the demo key of {principal}: {e}")))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| Error::Usage(format!("writing the demo key of {principal}: {e}")))?;
        let path = keys.join(name);
        write_private(&path, private.as_bytes())?;
        write_file(
            &keys.join(format!("{name}.pub")),
            format!("{public}\n").as_bytes(),
        )?;
        allowed.push_str(&format!("{principal} {public}\n"));
    }
    let file = host.join(DEMO_SIGNERS);
    write_file(&file, allowed.as_bytes())?;
    AllowedSigners::load(&file, None)
}

/// Writes a private key readable by its owner only, as ssh and git require.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(path))?;
    file.write_all(bytes).map_err(Error::io(path))
}

/// The example's policy file without the policy that every prod resource is gated, for the
/// demo's import before its gates; other files as they are.
fn ungated<'a>(path: &str, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    if path != "policies/policies.yaml" {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let text = String::from_utf8_lossy(bytes);
    let kept: Vec<&str> = text
        .split("\n---\n")
        .filter(|doc| !doc.contains("\n  name: prod-gated\n"))
        .collect();
    std::borrow::Cow::Owned(kept.join("\n---\n").into_bytes())
}

/// `gitward demo [DIR]`: a Git repository holding the example configuration on `main` and a
/// proposed change on a branch, and the plan of that change.
pub fn demo(dir: Option<&Path>, out: &mut dyn Write) -> Result<u8> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => tempfile::Builder::new()
            .prefix("gitward-demo-")
            .tempdir()
            .map_err(Error::io(std::env::temp_dir()))?
            .keep(),
    };
    if dir.join(".git").exists() {
        return Err(Error::Usage(format!(
            "{} is already a Git repository; give the demo a new directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let repo = Repo::init(&dir)?;
    let mut files: Vec<(String, Vec<u8>)> = scaffold::files(&scaffold::EXAMPLE_REPO)
        .into_iter()
        .map(|(p, b)| (p, b.to_vec()))
        .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(Error::io("127.0.0.1:0"))?
        .port();
    let host_file = dir.join(LOCAL_HOST).join("gitward.yaml");
    let host = local_host_config(
        &dir,
        "main",
        &["web-tls", "internal-tls", "mtls-clients"],
        Some(&format!("127.0.0.1:{port}")),
    )?;
    let allowed = demo_signers(&dir.join(LOCAL_HOST))?;
    let events = std::fs::canonicalize(&dir)
        .map_err(Error::io(&dir))?
        .join(LOCAL_HOST)
        .join("events.jsonl");
    // The example's other sinks name endpoints this trial host does not define: they say so
    // in `gitward sinks status` and hold their events, and nothing else is held up.
    let host = format!(
        "{host}signers: {{allowedSignersFile: {DEMO_SIGNERS}}}\nendpoints:\n  audit-log: {{url: {}}}\n",
        serde_json::to_string(&format!("file://{}", events.display())).unwrap_or_default()
    );
    write_file(&host_file, host.as_bytes())?;
    exclude_local_host(&repo, &dir)?;
    let config = HostConfig::load(&host_file)?;
    // The PKI is imported before the gates exist: with nothing in force, a commit's own gates
    // judge it, and the example's gates want signed approvals and office hours. Then the
    // gates and the policy that every prod resource is gated are committed, judged by the
    // (no) gates in force, and they judge every change after.
    let imported: Vec<(&str, std::borrow::Cow<'_, [u8]>)> = files
        .iter()
        .filter(|(p, _)| !p.starts_with("gates/"))
        .map(|(p, b)| (p.as_str(), ungated(p, b)))
        .collect();
    let bootstrap = repo.commit_files(
        "refs/heads/main",
        None,
        imported.iter().map(|(p, b)| (*p, b.as_ref())),
        "Example Corp PKI: CA hierarchy, certificates, policies and sinks",
    )?;
    repo.checkout("refs/heads/main")?;
    // Quietly: its outcome is in its note, and the demo's own output comes first.
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        reconcile_once(&config, Utc::now(), &crate::reconcile::Silent)
    })?;
    let main = repo.commit_files(
        "refs/heads/main",
        Some(bootstrap),
        files.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
        "Gate changes to prod and staging: scans, approvals, a change window",
    )?;
    repo.checkout("refs/heads/main")?;
    demo_change(&mut files);
    repo.commit_files(
        &format!("refs/heads/{DEMO_BRANCH}"),
        Some(main),
        files.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
        "Rotate the API certificate to P-384, add the status page, retire shop staging",
    )?;
    let now = Utc::now();
    let report = plan_report(
        &dir,
        "main",
        DEMO_BRANCH,
        &Judging {
            today: now.date_naive(),
            now,
            signers: Some(&allowed),
            trust_trailers: false,
            list_pairs: false,
        },
        false,
    )?;
    let shown = dir.display();
    let gitward = this_binary();
    write_out(
        out,
        &format!(
            "Demo repository: {shown}\n  main                     the example configuration\n  {DEMO_BRANCH}   a proposed change\n\n{}\n{}",
            report.render(Format::Text),
            [
                format!("gitward now follows main in {shown}; commit to it and the commit is applied within a second."),
                format!("  host config   {shown}/{LOCAL_HOST}/gitward.yaml"),
                format!("  certificates  {shown}/{LOCAL_HOST}/tls/<target>/<certificate>/"),
                "  status        git log --notes=gitward    git show gitward/status:summary.yaml".to_owned(),
                format!("  review        {gitward} plan --base main --head {DEMO_BRANCH} --allowed-signers {LOCAL_HOST}/{DEMO_SIGNERS}"),
                format!("  approvers     {} in {LOCAL_HOST}/keys/, listed in {LOCAL_HOST}/{DEMO_SIGNERS}", DEMO_PRINCIPALS.join(", ")),
                format!("  approve       {gitward} approve HEAD --key {LOCAL_HOST}/keys/alice --as alice@example.com --no-push"),
                format!("  explain       {gitward} explain HEAD"),
                format!("  events        {shown}/{LOCAL_HOST}/events.jsonl    {gitward} events --config {LOCAL_HOST}/gitward.yaml"),
                format!("  sinks         {gitward} sinks status --config {LOCAL_HOST}/gitward.yaml"),
                format!("  metrics       http://127.0.0.1:{port}/metrics   (and /healthz, /readyz, /status)"),
                format!("Ctrl-C stops it; `{gitward} run --config {}` starts it again.\n\n", shell_word(&host_file)),
            ]
            .join("\n"),
        ),
    )?;
    out.flush().map_err(Error::io("<stdout>"))?;
    crate::daemon::run(&host_file)
}

/// The directory of a trial host inside the repository it follows (`demo`, `init`), kept out
/// of Git: a host config is trusted and never part of the repository.
const LOCAL_HOST: &str = ".gitward";

/// The config of a trial host in `LOCAL_HOST` of the repository directory `dir`: it follows
/// `branch` there, keeps its state and the directory of each of `targets` under it, and
/// listens on `listen` when given.
fn local_host_config(
    dir: &Path,
    branch: &str,
    targets: &[&str],
    listen: Option<&str>,
) -> Result<String> {
    let repo = std::fs::canonicalize(dir).map_err(Error::io(dir))?;
    // JSON strings are YAML strings: any path and branch name, quoted.
    let quoted = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let mut text = format!(
        "# A trial host: its state and certificates under this directory.\n\
         repo:\n  url: {}\n  branch: {}\n  pollInterval: 60s\nstateDir: state\n",
        quoted(&repo.display().to_string()),
        quoted(branch)
    );
    if let Some(listen) = listen {
        text.push_str(&format!("listen: {listen}\n"));
    }
    text.push_str("targets:\n");
    for target in targets {
        text.push_str(&format!("  {target}: {{dir: tls/{target}}}\n"));
    }
    Ok(text)
}

/// Keeps the trial host's directory under `dir` out of `repo`, through its `info/exclude`
/// (a `.gitignore` would be part of the configuration).
fn exclude_local_host(repo: &Repo, dir: &Path) -> Result<()> {
    let canonical = |p: &Path| std::fs::canonicalize(p).map_err(Error::io(p));
    let git = repo.inner();
    let workdir = git.workdir().unwrap_or(git.path());
    let place = canonical(dir)?;
    let relative = place
        .strip_prefix(canonical(workdir)?)
        .unwrap_or(Path::new(""));
    let mut pattern = String::from("/");
    for part in relative.iter() {
        for c in part.to_string_lossy().chars() {
            // Characters that gitignore patterns give a meaning to, taken literally.
            if matches!(c, '*' | '?' | '[' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('/');
    }
    pattern.push_str(&format!("{LOCAL_HOST}/"));
    let exclude = git.path().join("info/exclude");
    let mut text = match std::fs::read_to_string(&exclude) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(&exclude)(e)),
    };
    if text.lines().any(|line| line == pattern) {
        return Ok(());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&pattern);
    text.push('\n');
    write_file(&exclude, text.as_bytes())
}

/// `gitward state rebuild`: a new state database from the status branch and the secret
/// store, the old one kept aside.
pub fn state_rebuild(config: &Path, out: &mut dyn Write) -> Result<u8> {
    let config = HostConfig::load(config)?;
    let _lock = crate::store::lock_state_dir(&config.state_dir)?;
    let workspace = crate::remote::Workspace::of(&config);
    let observed = match Repo::discover(workspace.path()) {
        Ok(repo) => crate::status::read(&repo, &config.status_branch)?,
        // Nothing fetched yet: no status to rebuild from, and no key status knows.
        Err(_) => crate::status::Observed::default(),
    };
    let recorded = |kind: Kind, name: &str| {
        observed
            .resources
            .get(&(kind, name.to_owned()))
            .map(|status| status.certificate.clone())
    };
    let rebuilt =
        crate::store::Store::rebuild(&config.state_dir, &recorded, Utc::now().timestamp())?;
    let mut text = String::from("state database rebuilt");
    if let Some(aside) = &rebuilt.kept_aside {
        text.push_str(&format!("; the old one is kept as {}", aside.display()));
    }
    text.push('\n');
    for (kind, name) in &rebuilt.promoted {
        text.push_str(&format!(
            "  key in force  {kind}/{}  (status records its certificate)\n",
            escaped(name)
        ));
    }
    for (kind, name) in &rebuilt.discarded {
        text.push_str(&format!(
            "  key removed   {kind}/{}  (no certificate status knows uses it; issued again)\n",
            escaped(name)
        ));
    }
    text.push_str(
        "Webhook delivery ids are forgotten: a replayed delivery may reconcile once more.\n",
    );
    out.write_all(text.as_bytes())
        .map_err(Error::io("<stdout>"))?;
    Ok(0)
}
