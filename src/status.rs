//! Status in Git. After reconciling commit C, gitward commits to the status branch (an orphan
//! branch, never the tracked one) a tree of `summary.yaml` and `status/<kind>/<name>.yaml` —
//! what is in force: serial, fingerprint, validity, issuer, spec hash, conditions, and the
//! public certificate; never key material — with the trailers `Gitward-Source: <C>` and
//! `Gitward-Result: <result>`, and adds a note to C under `refs/notes/gitward`. Anyone reads
//! both with plain Git: `git log gitward/status`, `git log --notes=gitward`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use git2::{ObjectType, Oid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::git::{Repo, signature};
use crate::model::{Enforcement, FindingSeverity, KeyAlgorithm, Kind};
use crate::policy::{AppliedException, Finding, FindingStatus};

/// The notes ref that holds the outcome of each reconciled commit.
pub const NOTES_REF: &str = "refs/notes/gitward";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The commit is in force.
    Applied,
    /// A gate or a new `deny` finding stopped it; the previous commit stays in force.
    Blocked,
    /// It could not be applied (invalid, or issuing failed); what could be applied was.
    Failed,
    /// Waiting for something (a change window, an ACME order).
    Pending,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Blocked => "blocked",
            Outcome::Failed => "failed",
            Outcome::Pending => "pending",
        }
    }
}

/// A word of a condition: one of gitward's own, not a copy, unless read from a file.
pub type Word = std::borrow::Cow<'static, str>;

/// A fact about a resource and since when it holds (as Kubernetes conditions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready` (issued and written), `Reloaded` (the target's reload command ran).
    #[serde(rename = "type")]
    pub type_: Word,
    /// `True` or `False`.
    pub status: Word,
    /// A CamelCase word for machines.
    pub reason: Word,
    /// Words for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
}

/// What is in force for one certificate or CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    pub kind: Kind,
    pub name: String,
    /// Hash of the spec fields the certificate reflects; a different hash means reissue.
    pub spec_hash: String,
    /// The issuer that signed it (none for a root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Fingerprint of the issuer's certificate that signed it: a new issuer certificate
    /// means reissue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_fingerprint: Option<String>,
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// When it is renewed: `notAfter - renewBefore`.
    pub renew_at: DateTime<Utc>,
    pub key_algorithm: KeyAlgorithm,
    /// The output target it is written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The certificate (public), PEM.
    pub certificate: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl ResourceStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Sets a condition; its transition time moves only when its status changes.
    pub fn set_condition(
        &mut self,
        type_: &'static str,
        ok: bool,
        reason: &'static str,
        message: String,
        now: DateTime<Utc>,
    ) {
        let status = Word::Borrowed(if ok { "True" } else { "False" });
        let since = match self.condition(type_) {
            Some(c) if c.status == status => c.last_transition_time,
            _ => now,
        };
        self.conditions.retain(|c| c.type_ != type_);
        self.conditions.push(Condition {
            type_: Word::Borrowed(type_),
            status,
            reason: Word::Borrowed(reason),
            message,
            last_transition_time: since,
        });
        self.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        // Thousands of records are kept: no room for conditions they do not have.
        self.conditions.shrink_to_fit();
    }
}

/// What happened to a resource in a reconcile.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Issued,
    Reissued,
    Renewed,
    /// Its output files were written again (they were missing or differed).
    Rewritten,
    /// Its files were written to another target (and removed from the old one where it
    /// prunes).
    Moved,
    Removed,
    Unchanged,
    Failed,
}

/// One resource's line in a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceOutcome {
    pub kind: Kind,
    pub name: String,
    pub change: Change,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `summary.yaml`: the reconcile the status tree comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The commit reconciled.
    pub source: String,
    pub result: Outcome,
    /// The commit in force (the last one applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<String>,
    /// Why the result is not `applied`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// When a pending commit is applied: the opening of the window it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The note on a reconciled commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    pub result: Outcome,
    /// The status-branch commit that records it.
    pub status_commit: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceOutcome>,
    /// Policy findings of the commit, as `policy enforcement Kind/name: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    /// The decision of each gate that governed the commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<crate::gate::GateReport>,
    /// Overrides the commit used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<crate::gate::OverrideRecord>,
    /// What evaluating the commit's policies found, so that a `plan` based on this commit
    /// evaluates only what its change can alter. Absent when the commit was not evaluated
    /// (invalid), or its evaluation was too large to record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<NoteEvaluation>,
}

/// The commit's policy evaluation as a note records it. Anyone who can push notes writes
/// them: a reader uses one only when its digests are those of the commit it reads them on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoteEvaluation {
    /// `sha256:` digest of everything the results depend on beyond the resources: the policy
    /// modules, the Policy resources, the policy data and gitward's evaluation format.
    pub policies: String,
    /// `sha256:` digest of `input.commit` as the policies saw it (its signature as checked
    /// then).
    pub commit: String,
    /// The day it was evaluated on: exceptions, and rules reading the clock, depend on it.
    pub day: NaiveDate,
    /// (policy, resource) pairs of the commit where a policy applies.
    pub pairs: usize,
    /// Runtime errors of the evaluation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<crate::diag::Diagnostic>,
    /// The resources whose `input.change` was not `none` (`Kind/name`), recorded only when a
    /// policy reads `input.change`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Every finding, before comparing with any base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<NoteFinding>,
}

/// Most findings, and most changed resources, a note's evaluation records: beyond them the
/// note records none (a plan then evaluates in full), and a note holding more is not read.
pub const MOST_NOTED: usize = 5_000;

/// A policy finding as a note records it: everything to rebuild it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoteFinding {
    pub policy: String,
    pub enforcement: Enforcement,
    pub severity: FindingSeverity,
    pub kind: Kind,
    pub name: String,
    pub file: String,
    pub line: u32,
    pub column: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compliance: Vec<String>,
    /// The exception that excused it on `day`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<NoteException>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NoteException {
    pub reason: String,
    pub owner: String,
    pub expires: String,
}

impl NoteFinding {
    pub fn of(f: &Finding) -> NoteFinding {
        NoteFinding {
            policy: f.policy.clone(),
            enforcement: f.enforcement,
            severity: f.severity,
            kind: f.kind,
            name: f.name.clone(),
            file: f.file.clone(),
            line: f.line,
            column: f.column,
            field: f.field.clone(),
            id: f.id.clone(),
            message: f.message.clone(),
            compliance: f.compliance.clone(),
            exception: f.exception.as_ref().map(|e| NoteException {
                reason: e.reason.clone(),
                owner: e.owner.clone(),
                expires: e.expires.clone(),
            }),
        }
    }

    /// The finding, as evaluating found it (not yet compared with a base).
    pub fn finding(&self) -> Finding {
        Finding {
            policy: self.policy.clone(),
            enforcement: self.enforcement,
            severity: self.severity,
            kind: self.kind,
            name: self.name.clone(),
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            field: self.field.clone(),
            id: self.id.clone(),
            message: self.message.clone(),
            compliance: self.compliance.clone(),
            status: FindingStatus::New,
            exception: self.exception.as_ref().map(|e| AppliedException {
                reason: e.reason.clone(),
                owner: e.owner.clone(),
                expires: e.expires.clone(),
            }),
        }
    }
}

/// The JSON Schema of a note (`refs/notes/gitward`), for those who read notes.
pub fn note_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Note)).unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut schema {
        map.insert(
            "$id".into(),
            "https://gitward.dev/schemas/note.schema.json".into(),
        );
    }
    schema
}

/// The status tree at the tip of the status branch.
/// Status records by resource, shared: a reconcile keeps most of them as they were.
pub type Statuses = BTreeMap<(Kind, String), Arc<ResourceStatus>>;

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub tip: Option<Oid>,
    pub summary: Option<Summary>,
    pub resources: Statuses,
    /// Overrides whose review is open (`overrides.yaml`).
    pub reviews: Vec<crate::gate::OpenReview>,
}

/// Where the status tree keeps the open override reviews.
const REVIEWS_FILE: &str = "overrides.yaml";
/// Where the status tree keeps each gate's last decision.
const GATES_DIR: &str = "status/gate";

/// What a reconcile records on the status branch.
pub struct Record<'a> {
    pub summary: &'a Summary,
    pub resources: &'a Statuses,
    pub reviews: &'a [crate::gate::OpenReview],
    /// Each governing gate's decision, when the head was decided on; `None` keeps the
    /// decisions recorded before.
    pub gates: Option<&'a [crate::gate::GateReport]>,
    /// The delivery state of each sink as the reconcile left it.
    pub sinks: &'a [crate::events::outbox::SinkState],
    /// The problems of the ticket sinks and their tickets.
    pub tickets: &'a [crate::tickets::store::Record],
}

/// Where each ticket sink's problems and tickets are recorded.
const TICKETS_DIR: &str = "status/tickets";

/// A problem's ticket as the status tree records it, for `gitward status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TicketShown {
    pub sink: String,
    pub key: String,
    pub state: String,
    pub problem_open: bool,
    pub severity: String,
    pub ticket: Option<TicketKey>,
    pub title: String,
    pub due: Option<String>,
    pub breached: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TicketKey {
    pub key: String,
    pub url: String,
}

/// Most tickets `gitward status` reads from a status tree.
const MOST_TICKETS_SHOWN: usize = 1000;

/// The tickets recorded in the status tree of `status_commit`: what it says, unchecked (the
/// status branch is anyone's who can push it), bounded.
pub fn tickets_at(repo: &Repo, status_commit: &str) -> Vec<TicketShown> {
    let git = repo.inner();
    let tree = Oid::from_str(status_commit)
        .ok()
        .and_then(|oid| git.find_commit(oid).ok())
        .and_then(|commit| commit.tree().ok())
        .and_then(|tree| tree.get_path(std::path::Path::new(TICKETS_DIR)).ok())
        .and_then(|entry| entry.to_object(git).ok())
        .and_then(|object| object.into_tree().ok());
    let mut shown = Vec::new();
    for entry in tree.iter().flat_map(|t| t.iter()) {
        let Some(blob) = entry
            .to_object(git)
            .ok()
            .and_then(|o| o.into_blob().ok())
            .filter(|b| b.size() <= 4 << 20)
        else {
            continue;
        };
        let records: Vec<TicketShown> = std::str::from_utf8(blob.content())
            .ok()
            .and_then(parse_record)
            .unwrap_or_default();
        shown.extend(records);
        if shown.len() >= MOST_TICKETS_SHOWN {
            shown.truncate(MOST_TICKETS_SHOWN);
            break;
        }
    }
    shown
}

/// Whether the status tree of `tip` records exactly `records` as its tickets.
pub fn tickets_recorded(repo: &Repo, tip: Oid, records: &[crate::tickets::store::Record]) -> bool {
    let git = repo.inner();
    let Some(tree) = git.find_commit(tip).ok().and_then(|c| c.tree().ok()) else {
        return false;
    };
    let files = ticket_files(records);
    let recorded = tree
        .get_path(std::path::Path::new(TICKETS_DIR))
        .ok()
        .and_then(|e| e.to_object(git).ok())
        .and_then(|o| o.into_tree().ok());
    let count = recorded.as_ref().map_or(0, git2::Tree::len);
    count == files.len()
        && files.iter().all(|(sink, text)| {
            let wanted = Oid::hash_object(ObjectType::Blob, text.as_bytes()).ok();
            recorded
                .as_ref()
                .and_then(|t| t.get_name(&format!("{sink}.yaml")).map(|e| e.id()))
                == wanted
        })
}

/// The ticket files of the status tree: one per ticket sink with problems or open tickets.
fn ticket_files(records: &[crate::tickets::store::Record]) -> Vec<(&str, String)> {
    let mut by_sink: BTreeMap<&str, Vec<&crate::tickets::store::Record>> = BTreeMap::new();
    for record in records {
        by_sink
            .entry(record.sink.as_str())
            .or_default()
            .push(record);
    }
    by_sink
        .into_iter()
        .map(|(sink, records)| (sink, yaml(&records)))
        .collect()
}

/// Where the delivery state of the sinks is recorded.
const SINKS_DIR: &str = "status/sink";

fn sink_path(name: &str) -> String {
    format!("{SINKS_DIR}/{name}.yaml")
}

/// A sink's state as repository writers read it: the host's paths and credentials, which
/// errors may quote, left out.
fn sink_record(state: &crate::events::outbox::SinkState) -> String {
    let scrub = |text: &Option<String>| {
        text.as_deref()
            .map(|t| without_host_paths(&crate::redact::credentials(t)))
    };
    let mut shown = state.clone();
    shown.last_error = scrub(&state.last_error);
    shown.problem = scrub(&state.problem);
    yaml(&shown)
}

/// `text` with absolute paths replaced: they are the host's.
fn without_host_paths(text: &str) -> String {
    static PATH: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"(^|[\s(\[=\x22'])/[^\n:)\]\x22',;]+").ok());
    match &*PATH {
        Some(path) => path.replace_all(text, "${1}<host path>").into_owned(),
        None => String::new(),
    }
}

fn yaml<T: Serialize>(value: &T) -> String {
    serde_yaml::to_string(value).unwrap_or_default()
}

fn resource_path(kind: Kind, name: &str) -> String {
    format!("status/{}/{name}.yaml", kind.schema_stem())
}

fn gate_path(name: &str) -> String {
    format!("{GATES_DIR}/{name}.yaml")
}

/// The files of a status tree.
fn tree_files<'a>(record: &'a Record<'a>) -> impl Iterator<Item = (String, String)> + 'a {
    std::iter::once(("summary.yaml".to_owned(), yaml(record.summary)))
        .chain(
            (!record.reviews.is_empty()).then(|| (REVIEWS_FILE.to_owned(), yaml(&record.reviews))),
        )
        .chain(
            record
                .gates
                .unwrap_or_default()
                .iter()
                .map(|g| (gate_path(&g.name), yaml(g))),
        )
        .chain(
            record
                .resources
                .iter()
                .map(|((kind, name), status)| (resource_path(*kind, name), yaml(status))),
        )
        .chain(
            record
                .sinks
                .iter()
                .map(|state| (sink_path(&state.name), sink_record(state))),
        )
        .chain(
            ticket_files(record.tickets)
                .into_iter()
                .map(|(sink, text)| (format!("{TICKETS_DIR}/{sink}.yaml"), text)),
        )
}

fn status_ref(branch: &str) -> String {
    format!("refs/heads/{branch}")
}

/// Makes `dir` of the status tree hold `<name>.yaml` for each of `files` and nothing else
/// gitward could have written there (other names are not its own and stay).
fn replace_dir<'a>(
    update: &mut git2::build::TreeUpdateBuilder,
    git: &git2::Repository,
    base: &git2::Tree<'_>,
    dir: &str,
    files: impl Iterator<Item = (&'a str, String)>,
) -> Result<()> {
    let files: Vec<(&str, String)> = files.collect();
    let recorded = base
        .get_path(std::path::Path::new(dir))
        .ok()
        .and_then(|e| e.to_object(git).ok())
        .and_then(|o| o.into_tree().ok());
    for entry in recorded.iter().flat_map(|t| t.iter()) {
        let Ok(name) = std::str::from_utf8(entry.name_bytes()) else {
            continue;
        };
        if !name.is_empty() && !files.iter().any(|(n, _)| format!("{n}.yaml") == name) {
            update.remove(format!("{dir}/{name}"));
        }
    }
    for (name, text) in files {
        let blob = git
            .blob(text.as_bytes())
            .map_err(Error::git("writing a blob"))?;
        update.upsert(format!("{dir}/{name}.yaml"), blob, git2::FileMode::Blob);
    }
    Ok(())
}

/// Reads the status branch's tip.
pub fn read(repo: &Repo, branch: &str) -> Result<Observed> {
    let git = repo.inner();
    let Ok(reference) = git.find_reference(&status_ref(branch)) else {
        return Ok(Observed::default());
    };
    let commit = reference
        .peel_to_commit()
        .map_err(Error::git("reading the status branch"))?;
    let tree = commit
        .tree()
        .map_err(Error::git("reading the status tree"))?;
    let blob = |path: &str| -> Option<String> {
        let entry = tree.get_path(std::path::Path::new(path)).ok()?;
        String::from_utf8(bounded_blob(git, entry.id())?).ok()
    };
    let summary = blob("summary.yaml").and_then(|text| parse_record(&text));
    let reviews = blob(REVIEWS_FILE)
        .and_then(|text| parse_record(&text))
        .unwrap_or_default();
    let mut texts = Vec::new();
    if let Ok(status_dir) = tree.get_path(std::path::Path::new("status")) {
        let dir = status_dir
            .to_object(git)
            .ok()
            .and_then(|o| o.into_tree().ok());
        // Only the directories of resource kinds hold resource statuses (gate decisions,
        // sinks and tickets are records of their own).
        let resource_dirs = dir.iter().flat_map(|d| d.iter()).filter(|e| {
            Kind::ALL
                .iter()
                .any(|kind| kind.schema_stem().as_bytes() == e.name_bytes())
        });
        for kind_entry in resource_dirs {
            let Some(kind_tree) = kind_entry
                .to_object(git)
                .ok()
                .and_then(|o| o.into_tree().ok())
            else {
                continue;
            };
            for file in kind_tree.iter() {
                if file.kind() != Some(ObjectType::Blob) {
                    continue;
                }
                if let Some(bytes) = bounded_blob(git, file.id()) {
                    texts.push(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
    }
    Ok(Observed {
        tip: Some(commit.id()),
        summary,
        resources: parse_statuses(&texts),
        reviews,
    })
}

/// Parses status files on every core: thousands of them are read on each reconcile.
/// A status file gitward cannot read (edited by hand) counts as absent: the resource is then
/// issued again, which makes status true again.
fn parse_statuses(texts: &[String]) -> Statuses {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = texts.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parsers: Vec<_> = texts
            .chunks(chunk)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|t| parse_record::<ResourceStatus>(t))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parsers
            .into_iter()
            .flat_map(|parser| parser.join().unwrap_or_default())
            .map(|status| ((status.kind, status.name.clone()), Arc::new(status)))
            .collect()
    })
}

/// The `Gitward-Source` trailer of a status commit.
fn source_of(message: &str) -> Option<String> {
    git2::message_trailers_strs(message)
        .ok()?
        .iter()
        .find(|(k, _)| *k == "Gitward-Source")
        .map(|(_, v)| v.to_owned())
}

/// Commits the status tree of `summary` and `resources` on the branch unless it equals the
/// tip's; returns the commit that records this status (the new one or the tip). On top of a
/// tip, only the files that differ from what it observed are written: a change to one
/// certificate costs one file, not one per certificate.
pub fn commit(
    repo: &Repo,
    branch: &str,
    observed: &Observed,
    record: &Record<'_>,
    message: &str,
) -> Result<Oid> {
    let (summary, resources) = (record.summary, record.resources);
    let git = repo.inner();
    let base_tree = observed
        .tip
        .and_then(|tip| git.find_commit(tip).ok())
        .and_then(|c| c.tree().ok());
    let tree = match &base_tree {
        None => repo.write_files(tree_files(record))?,
        Some(base) => {
            let blob = |text: String| {
                git.blob(text.as_bytes())
                    .map_err(Error::git("writing a blob"))
            };
            let mut update = git2::build::TreeUpdateBuilder::new();
            update.upsert("summary.yaml", blob(yaml(summary))?, git2::FileMode::Blob);
            if record.reviews.is_empty() {
                if base.get_name(REVIEWS_FILE).is_some() {
                    update.remove(REVIEWS_FILE);
                }
            } else {
                update.upsert(
                    REVIEWS_FILE,
                    blob(yaml(&record.reviews))?,
                    git2::FileMode::Blob,
                );
            }
            if let Some(gates) = record.gates {
                replace_dir(
                    &mut update,
                    git,
                    base,
                    GATES_DIR,
                    gates.iter().map(|g| (g.name.as_str(), yaml(g))),
                )?;
            }
            replace_dir(
                &mut update,
                git,
                base,
                TICKETS_DIR,
                ticket_files(record.tickets).into_iter(),
            )?;
            replace_dir(
                &mut update,
                git,
                base,
                SINKS_DIR,
                record
                    .sinks
                    .iter()
                    .map(|s| (s.name.as_str(), sink_record(s))),
            )?;
            for ((kind, name), status) in resources {
                if observed.resources.get(&(*kind, name.clone())) != Some(status) {
                    update.upsert(
                        resource_path(*kind, name),
                        blob(yaml(status))?,
                        git2::FileMode::Blob,
                    );
                }
            }
            // A record is removed where it is: the status branch is anyone's who can push it,
            // and a file may name another resource than its path says.
            for (kind, name) in observed.resources.keys() {
                let path = resource_path(*kind, name);
                if !resources.contains_key(&(*kind, name.clone()))
                    && base.get_path(std::path::Path::new(&path)).is_ok()
                {
                    update.remove(path);
                }
            }
            update
                .create_updated(git, base)
                .map_err(Error::git("updating the status tree"))?
        }
    };
    if let Some(base) = &base_tree
        && base.id() == tree
        && let Some(tip) = observed.tip
    {
        return Ok(tip);
    }
    repo.commit_tree(&status_ref(branch), observed.tip, tree, message)
}

/// The status commit message: a summary line and the trailers.
pub fn message(source: &str, result: Outcome, line: &str) -> String {
    format!(
        "gitward: {} {}{}\n\nGitward-Source: {source}\nGitward-Result: {}\n",
        result.as_str(),
        crate::git::abbreviated(source, 12),
        if line.is_empty() {
            String::new()
        } else {
            format!(" ({line})")
        },
        result.as_str()
    )
}

/// The commit that wrote the status at `tip`: `tip` itself, or when `tip` only merged in what
/// others pushed to the status branch, the first parent that introduced the same tree.
pub fn record(repo: &Repo, tip: Oid) -> Oid {
    let git = repo.inner();
    let mut record = tip;
    while let Ok(commit) = git.find_commit(record)
        && let Ok(parent) = commit.parent(0)
        && commit.parent_count() > 1
        && parent.tree_id() == commit.tree_id()
    {
        record = parent.id();
    }
    record
}

/// Writes the note on `source` unless it already says the same.
pub fn write_note(repo: &Repo, source: Oid, note: &Note) -> Result<()> {
    let git = repo.inner();
    let text = yaml(note);
    if note_text(git, source).as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    let sig = signature(git)?;
    git.note(&sig, &sig, Some(NOTES_REF), source, &text, true)
        .map_err(Error::git("writing the note"))?;
    Ok(())
}

/// The note on a commit, if it has one.
pub fn read_note(repo: &Repo, commit: Oid) -> Option<Note> {
    let text = note_text(repo.inner(), commit)?;
    parse_record(&text)
}

/// A record of the status branch or a note, unless it is not one gitward could have written.
/// Anyone who can push those refs writes them: a YAML alias, which gitward never writes, is
/// refused before it is expanded (a few kilobytes of aliases expand to gigabytes).
pub fn parse_record<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    if text.contains(['&', '*']) && has_anchors(text) {
        return None;
    }
    serde_yaml::from_str(text).ok()
}

/// Whether YAML `text` has an anchor or an alias (or is not YAML at all).
fn has_anchors(text: &str) -> bool {
    use saphyr_parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        match event {
            Err(_) | Ok((Event::Alias(_), _)) => return true,
            Ok((
                Event::Scalar(_, _, anchor, _)
                | Event::SequenceStart(anchor, _)
                | Event::MappingStart(anchor, _),
                _,
            )) if anchor > 0 => return true,
            Ok(_) => {}
        }
    }
    false
}

/// Most a note or a status file may hold: anyone who can push these refs writes them, and
/// gitward's own are a small fraction of this. Larger ones are ignored, unread.
const MAX_RECORD_BYTES: usize = 16 << 20;

/// The contents of blob `id`, if it is no larger than [`MAX_RECORD_BYTES`] (its size is
/// read from the object header first).
fn bounded_blob(git: &git2::Repository, id: Oid) -> Option<Vec<u8>> {
    let (size, kind) = git.odb().ok()?.read_header(id).ok()?;
    if kind != ObjectType::Blob || size > MAX_RECORD_BYTES {
        return None;
    }
    Some(git.find_blob(id).ok()?.content().to_vec())
}

/// The text of the note on `commit`, found in the notes tree (flat or fanned out, as git
/// writes it) without loading an oversized one.
fn note_text(git: &git2::Repository, commit: Oid) -> Option<String> {
    let tree = git
        .find_reference(NOTES_REF)
        .ok()?
        .peel_to_commit()
        .ok()?
        .tree()
        .ok()?;
    let hex = commit.to_string();
    let paths = [
        hex.clone(),
        format!("{}/{}", &hex[..2], &hex[2..]),
        format!("{}/{}/{}", &hex[..2], &hex[2..4], &hex[4..]),
    ];
    let entry = paths
        .iter()
        .find_map(|path| tree.get_path(std::path::Path::new(path)).ok())?;
    String::from_utf8(bounded_blob(git, entry.id())?).ok()
}

/// The source commit of the tip of the status branch, if any.
pub fn tip_source(repo: &Repo, observed: &Observed) -> Option<String> {
    let commit = repo.inner().find_commit(observed.tip?).ok()?;
    source_of(commit.message().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_times_move_only_on_transitions() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut status = ResourceStatus {
            kind: Kind::Certificate,
            name: "api".into(),
            spec_hash: "h".into(),
            issuer: None,
            issuer_fingerprint: None,
            serial: "01".into(),
            fingerprint: "AA".into(),
            not_before: t("2026-01-01T00:00:00Z"),
            not_after: t("2026-04-01T00:00:00Z"),
            renew_at: t("2026-03-01T00:00:00Z"),
            key_algorithm: KeyAlgorithm::EcdsaP256,
            target: None,
            certificate: String::new(),
            conditions: Vec::new(),
        };
        status.set_condition(
            "Ready",
            true,
            "Issued",
            String::new(),
            t("2026-01-01T00:00:00Z"),
        );
        status.set_condition(
            "Ready",
            true,
            "Issued",
            String::new(),
            t("2026-02-01T00:00:00Z"),
        );
        assert_eq!(
            status.conditions[0].last_transition_time,
            t("2026-01-01T00:00:00Z")
        );
        status.set_condition(
            "Ready",
            false,
            "Failed",
            "boom".into(),
            t("2026-02-02T00:00:00Z"),
        );
        assert_eq!(
            status.conditions[0].last_transition_time,
            t("2026-02-02T00:00:00Z")
        );
        let round_trip: ResourceStatus = serde_yaml::from_str(&yaml(&status)).unwrap();
        assert_eq!(round_trip, status);
    }

    #[test]
    fn status_commits_carry_their_trailers() {
        let text = message("0123456789abcdef0123", Outcome::Applied, "2 issued");
        assert_eq!(
            text,
            "gitward: applied 0123456789ab (2 issued)\n\nGitward-Source: 0123456789abcdef0123\nGitward-Result: applied\n"
        );
        assert_eq!(source_of(&text).as_deref(), Some("0123456789abcdef0123"));
    }
}
