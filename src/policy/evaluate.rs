//! Evaluating policies on resources, and what comes out: findings, each at the line of the
//! field it names, with the policy's enforcement, severity and compliance mapping, and the
//! exception that excuses it, if one does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use regorus::Value as RegoValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compile::{
    Binding, DnsNameIndex, EVALUATION_LIMIT, MEMORY_LIMIT_BYTES, PolicySet, gitward_data,
    rego_error,
};
use super::isolate::{Child, End, isolated};
use crate::diag::{Diagnostic, Pos};
use crate::git::CommitInfo;
use crate::model::parse::{DATA_DIR, rego_value};
use crate::model::semantic::date;
use crate::model::{Catalog, Enforcement, FindingSeverity, IssuerType, Kind, Loaded, Spec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FindingStatus {
    /// Not in the base: introduced by the change.
    New,
    /// In the base too.
    Existing,
    /// In the base, gone in the head.
    Resolved,
}

/// The exception that excuses a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct AppliedException {
    pub reason: String,
    pub owner: String,
    /// Last day it holds, `YYYY-MM-DD`.
    pub expires: String,
}

/// What a policy found on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Finding {
    pub policy: String,
    pub enforcement: Enforcement,
    pub severity: FindingSeverity,
    pub kind: Kind,
    pub name: String,
    pub file: String,
    /// Line of the field the finding names, or of the resource.
    pub line: u32,
    pub column: u32,
    /// The field, as the rule named it (`spec.duration`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The rule's own identifier for the finding, when it gives one: findings with the same
    /// id on the same resource are the same finding in the base and the head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub message: String,
    /// Control IDs of the policy.
    pub compliance: Vec<String>,
    pub status: FindingStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<AppliedException>,
}

impl Finding {
    pub fn resource_id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// Whether this finding stops the change: a new `deny` that no exception excuses.
    pub fn blocks(&self) -> bool {
        self.status == FindingStatus::New
            && self.enforcement == Enforcement::Deny
            && self.exception.is_none()
    }

    /// What makes two findings "the same" across commits: the policy, the resource, and the
    /// rule's `id` for the finding when it gives one, else the message and the field without
    /// list indexes (a name moving from `dnsNames[2]` to `dnsNames[3]` is still the same
    /// finding; a different message on the same field is another one).
    pub fn identity(&self) -> (String, Kind, String, String) {
        let detail = match &self.id {
            Some(id) => format!("id:{id}"),
            None => {
                let field = self.field.as_deref().unwrap_or_default();
                let unindexed: String = field_segments(field)
                    .iter()
                    .filter(|s| s.parse::<usize>().is_err())
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(".");
                format!("{unindexed}|{}", self.message)
            }
        };
        (self.policy.clone(), self.kind, self.name.clone(), detail)
    }
}

/// The commit as policies see it (`input.commit`).
pub fn commit_input(commit: &CommitInfo) -> Value {
    let mut trailers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Ok(parsed) = git2::message_trailers_strs(&commit.message) {
        for (key, value) in parsed.iter() {
            trailers
                .entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    let signature = commit
        .signature
        .clone()
        .unwrap_or_else(|| crate::trust::SignatureCheck {
            problem: Some("not checked".to_owned()),
            ..Default::default()
        });
    serde_json::json!({
        "sha": commit.sha,
        "author": format!("{} <{}>", commit.author, commit.email),
        "message": commit.message,
        "trailers": trailers,
        // Verified against the host's allowed signers; `principal` and `keyFingerprint`
        // only when the signature could be read.
        "signature": {
            "verified": signature.verified,
            "principal": signature.principal,
            "keyFingerprint": signature.key_fingerprint,
        },
    })
}

/// Which (policy, resource) pairs to evaluate.
pub type Select<'a> = dyn Fn(&Binding, &Loaded) -> bool + Sync + 'a;

/// Fewest (policy, resource) pairs worth a child process of their own.
const MIN_PAIRS_PER_CHILD: usize = 512;

/// Most threads an evaluation uses.
const MAX_THREADS: usize = 8;

fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
}

/// What an evaluation knows beyond the catalog.
pub struct Context {
    /// `input.commit`.
    pub commit: Value,
    /// `input.change` of changed resources: the action and the document before it.
    pub changes: HashMap<(Kind, String), (&'static str, RegoValue)>,
    /// The day exceptions are judged on.
    pub today: NaiveDate,
}

/// The result of evaluating policies over a catalog.
#[derive(Default, Clone)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    /// Runtime errors: each fails the commit.
    pub errors: Vec<Diagnostic>,
    /// (policy, kind, name) of every pair evaluated.
    pub evaluated: HashSet<(String, Kind, String)>,
}

/// `input.computed`: values derived from the spec so rules need not parse them.
fn computed(loaded: &Loaded) -> Value {
    match &loaded.resource.spec {
        Spec::Certificate(spec) => serde_json::json!({
            "durationSeconds": spec.duration.as_secs(),
            "renewBeforeSeconds": spec.effective_renew_before().as_secs(),
            "keyType": spec.key_algorithm.key_type(),
            "keyBits": spec.key_algorithm.key_bits(),
        }),
        Spec::Issuer(spec) => {
            let (key, duration) = match spec.issuer_type() {
                Some(IssuerType::SelfSigned(s)) => (Some(s.key_algorithm), Some(s.duration)),
                Some(IssuerType::Ca(c)) => (Some(c.key_algorithm), Some(c.duration)),
                _ => (None, None),
            };
            match (key, duration) {
                (Some(key), Some(duration)) => serde_json::json!({
                    "durationSeconds": duration.as_secs(),
                    "keyType": key.key_type(),
                    "keyBits": key.key_bits(),
                }),
                _ => serde_json::json!({}),
            }
        }
        _ => serde_json::json!({}),
    }
}

/// `input` for a resource: its document, kind, name, file, computed values, change, its
/// own part of the indexes and `commit` (already converted, as it is the same for every
/// resource).
fn input(
    loaded: &Loaded,
    context: &Context,
    commit: &RegoValue,
    dns_name_index: &DnsNameIndex,
) -> RegoValue {
    // Built once: the same for every input (engine strings and objects are shared, not copied).
    static SHARED: OnceLock<([RegoValue; 8], RegoValue, RegoValue)> = OnceLock::new();
    let (keys, unchanged, dns_names_key) = SHARED.get_or_init(|| {
        (
            [
                "resource", "kind", "name", "file", "computed", "change", "index", "commit",
            ]
            .map(RegoValue::from),
            rego_value(&serde_json::json!({"action": "none", "before": null})),
            RegoValue::from("dnsNames"),
        )
    });
    let change = match context
        .changes
        .get(&(loaded.kind(), loaded.name().to_owned()))
    {
        Some((action, before)) => RegoValue::from(BTreeMap::from([
            (RegoValue::from("action"), RegoValue::from(*action)),
            (RegoValue::from("before"), before.clone()),
        ])),
        None => unchanged.clone(),
    };
    let values = [
        loaded.rego_value().clone(),
        RegoValue::from(loaded.kind().as_str()),
        RegoValue::from(loaded.name()),
        RegoValue::from(&*loaded.file),
        rego_value(&computed(loaded)),
        change,
        RegoValue::from(BTreeMap::from([(
            dns_names_key.clone(),
            dns_name_index.own(loaded),
        )])),
        commit.clone(),
    ];
    let fields: BTreeMap<RegoValue, RegoValue> = keys.iter().cloned().zip(values).collect();
    RegoValue::from(fields)
}

/// `spec.dnsNames[1]` or `spec.dnsNames.1` as path segments.
fn field_segments(field: &str) -> Vec<String> {
    field
        .replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Serialize, Deserialize)]
struct RuleResult {
    message: String,
    severity: Option<FindingSeverity>,
    field: Option<String>,
    id: Option<String>,
}

/// Reads a rule's value: a set (or array) of strings, or of objects
/// `{msg, severity?, field?, id?}`.
fn rule_results(value: &RegoValue) -> Result<Vec<RuleResult>, String> {
    let items: Vec<&RegoValue> = match value {
        RegoValue::Undefined => return Ok(Vec::new()),
        RegoValue::Set(set) => set.iter().collect(),
        RegoValue::Array(array) => array.iter().collect(),
        other => {
            return Err(format!(
                "the rule's value is {}, not a set of findings",
                describe(other)
            ));
        }
    };
    items
        .into_iter()
        .map(|item| match item {
            RegoValue::String(text) => Ok(RuleResult {
                message: message(bounded(text.to_string())),
                severity: None,
                field: None,
                id: None,
            }),
            RegoValue::Object(object) => {
                let text = |key: &str| match object.get(&RegoValue::from(key)) {
                    None | Some(RegoValue::Undefined) => Ok(None),
                    Some(RegoValue::String(s)) => Ok(Some(bounded(s.to_string()))),
                    Some(other) => Err(format!(
                        "`{key}` of a finding is {}, not a string",
                        describe(other)
                    )),
                };
                let message = message(text("msg")?.ok_or("a finding object has no `msg`")?);
                let severity = match text("severity")? {
                    None => None,
                    Some(s) => Some(
                        FindingSeverity::ALL
                            .iter()
                            .copied()
                            .find(|v| v.as_str() == s)
                            .ok_or(format!(
                                "severity `{s}` is not one of critical, high, medium, low, info"
                            ))?,
                    ),
                };
                Ok(RuleResult {
                    message,
                    severity,
                    field: text("field")?,
                    id: text("id")?,
                })
            }
            other => Err(format!(
                "a finding is {}, not a string or an object {{msg, severity?, field?, id?}}",
                describe(other)
            )),
        })
        .collect()
}

fn describe(value: &RegoValue) -> String {
    match value {
        RegoValue::Bool(b) => format!("the boolean {b}"),
        RegoValue::Number(_) => "a number".to_owned(),
        RegoValue::Null => "null".to_owned(),
        RegoValue::Object(_) => "an object".to_owned(),
        RegoValue::String(_) => "a string".to_owned(),
        RegoValue::Array(_) => "an array".to_owned(),
        RegoValue::Set(_) => "a set".to_owned(),
        RegoValue::Undefined => "undefined".to_owned(),
    }
}

impl PolicySet {
    /// The bound policies that apply to `loaded`.
    pub fn applying_to<'s>(&'s self, loaded: &'s Loaded) -> impl Iterator<Item = &'s Binding> {
        let labels = &loaded.resource.metadata.labels;
        self.bindings
            .iter()
            .filter(move |b| b.spec().applies_to.matches(loaded.kind(), labels))
    }

    /// Evaluates every bound policy on every resource of `catalog` it applies to for which
    /// `select` says yes.
    pub fn evaluate(
        &self,
        catalog: &Catalog,
        context: &Context,
        select: &Select<'_>,
    ) -> Evaluation {
        Evaluator::new(self, catalog).evaluate(context, select)
    }
}

/// Evaluations of one policy set over one catalog. They share one engine, built on first
/// use: the catalog's inventory added and the modules prepared once, then cloned to each
/// thread (clones share the compiled modules and the data).
pub struct Evaluator<'a> {
    set: &'a PolicySet,
    catalog: &'a Catalog,
    dns_name_index: OnceLock<DnsNameIndex<'a>>,
    engine: OnceLock<Result<regorus::Engine, Diagnostic>>,
}

impl<'a> Evaluator<'a> {
    pub fn new(set: &'a PolicySet, catalog: &'a Catalog) -> Evaluator<'a> {
        Evaluator {
            set,
            catalog,
            dns_name_index: OnceLock::new(),
            engine: OnceLock::new(),
        }
    }

    /// The compiled engine with `data.gitward` of the catalog, ready to evaluate.
    pub fn engine(&self) -> Result<&regorus::Engine, Diagnostic> {
        self.engine
            .get_or_init(|| {
                let mut engine = self.set.engine.clone();
                // Data files may not define data.gitward (validation says so); should the
                // merge fail anyway, nothing can be evaluated.
                let failed = |error: &dyn std::fmt::Display| {
                    Diagnostic::error(
                        DATA_DIR,
                        Pos::START,
                        format!("data.gitward: {}", runtime_error(error)),
                    )
                };
                let reads = super::reads::Reads::union(self.set.bindings.iter().map(|b| &b.reads));
                engine
                    .add_data(gitward_data(self.catalog, || self.dns_name_index(), &reads))
                    .map_err(|e| failed(&e))?;
                engine
                    .eval_query("true".to_owned(), false)
                    .map_err(|e| failed(&e))?;
                Ok(engine)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn dns_name_index(&self) -> &DnsNameIndex<'a> {
        self.dns_name_index
            .get_or_init(|| DnsNameIndex::of(self.catalog))
    }

    /// The `input` a policy sees for `loaded` (`commit` is `context.commit` converted).
    pub fn input(&self, loaded: &Loaded, context: &Context, commit: &RegoValue) -> RegoValue {
        input(loaded, context, commit, self.dns_name_index())
    }

    /// Evaluates on as many threads as there are cores.
    pub fn evaluate(&self, context: &Context, select: &Select<'_>) -> Evaluation {
        self.evaluate_on(threads(), context, select)
    }

    /// Evaluates every bound policy on every resource it applies to for which `select` says
    /// yes, on at most `threads` threads.
    pub fn evaluate_on(
        &self,
        threads: usize,
        context: &Context,
        select: &Select<'_>,
    ) -> Evaluation {
        let resources: Vec<&Loaded> = self.catalog.resources().iter().collect();
        self.evaluate_pairs(threads, &resources, context, select)
    }

    /// [`Evaluator::evaluate`] on only `resources` (of this catalog): when the others are
    /// known to have no pair to select, not even looked at.
    pub fn evaluate_among(
        &self,
        resources: &[&'a Loaded],
        context: &Context,
        select: &Select<'_>,
    ) -> Evaluation {
        self.evaluate_pairs(threads(), resources, context, select)
    }

    pub fn catalog(&self) -> &'a Catalog {
        self.catalog
    }

    fn evaluate_pairs(
        &self,
        threads: usize,
        resources: &[&'a Loaded],
        context: &Context,
        select: &Select<'_>,
    ) -> Evaluation {
        // The work first: when nothing is to be evaluated, not even the inventory is built.
        let work: Vec<(&Loaded, Vec<&Binding>)> = resources
            .iter()
            .map(|&loaded| {
                let chosen = self
                    .set
                    .applying_to(loaded)
                    .filter(|b| select(b, loaded))
                    .collect();
                (loaded, chosen)
            })
            .filter(|(_, chosen): &(_, Vec<_>)| !chosen.is_empty())
            .collect();
        if work.is_empty() {
            return Evaluation::default();
        }
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(error) => {
                return Evaluation {
                    errors: vec![error],
                    ..Evaluation::default()
                };
            }
        };
        // The whole index when the engine holds it or most resources are evaluated; else
        // only the part about the names of those evaluated.
        let claiming;
        let dns_name_index = match self.dns_name_index.get() {
            Some(whole) => whole,
            None if work.len() * 4 < self.catalog.resources().len() => {
                claiming = DnsNameIndex::claiming(self.catalog, work.iter().map(|(l, _)| *l));
                &claiming
            }
            None => self.dns_name_index(),
        };
        let commit = rego_value(&context.commit);
        let pairs: Vec<(&Loaded, &Binding)> = work
            .iter()
            .flat_map(|(loaded, applicable)| applicable.iter().map(|b| (*loaded, *b)))
            .collect();
        let deadline = Instant::now() + evaluation_budget();
        // A child costs a fork: small work (a commit-triggered review) takes one.
        let children = threads
            .clamp(1, MAX_THREADS)
            .min(pairs.len().div_ceil(MIN_PAIRS_PER_CHILD));
        let chunk = pairs.len().div_ceil(children.max(1)).max(1);
        let parts: Vec<Evaluation> = std::thread::scope(|scope| {
            let workers: Vec<_> = pairs
                .chunks(chunk)
                .map(|part| {
                    let pass = Pass {
                        engine,
                        context,
                        commit: &commit,
                        dns_name_index,
                    };
                    scope.spawn(move || pass.evaluate_isolated(part, deadline))
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| {
                    worker
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut out = Evaluation::default();
        for part in parts {
            out.findings.extend(part.findings);
            out.errors.extend(part.errors);
            out.evaluated.extend(part.evaluated);
        }
        if out.findings.len() > MAX_FINDINGS_PER_COMMIT {
            let total = out.findings.len();
            out.findings.truncate(MAX_FINDINGS_PER_COMMIT);
            out.errors.push(Diagnostic::error(
                "policies",
                Pos::START,
                format!(
                    "policies returned {total} findings; a commit may have at most \
                     {MAX_FINDINGS_PER_COMMIT}"
                ),
            ));
        }
        out.findings.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.policy, &a.message)
                .cmp(&(&b.file, b.line, b.column, &b.policy, &b.message))
        });
        out
    }
}

/// Longest the policies of one commit may take in all, unless the host sets
/// [`BUDGET_ENV`]: a commit whose evaluation does not end by then fails, however little
/// each resource takes.
pub const EVALUATION_BUDGET: Duration = Duration::from_secs(30);

/// The environment variable with which a host gives policies another budget, in seconds.
pub const BUDGET_ENV: &str = "GITWARD_POLICY_BUDGET_SECONDS";

/// The budget in force: [`BUDGET_ENV`] or [`EVALUATION_BUDGET`].
pub fn evaluation_budget() -> Duration {
    static BUDGET: OnceLock<Duration> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        std::env::var(BUDGET_ENV)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs > 0.0)
            .map_or(EVALUATION_BUDGET, Duration::from_secs_f64)
    })
}

/// Most findings one policy may return for one resource.
pub const MAX_FINDINGS_PER_PAIR: usize = 100;

/// Most findings the policies of one commit may return.
pub const MAX_FINDINGS_PER_COMMIT: usize = 20_000;

/// Longest a finding's message, field or id may be; the rest is cut.
pub const MAX_FINDING_TEXT: usize = 1000;

/// What the child evaluating policies sends back for a (policy, resource) pair: only pairs
/// with findings, failures or skips are sent, so that a clean pass costs next to nothing.
#[derive(Serialize, Deserialize)]
enum Sent {
    Results {
        step: usize,
        results: Vec<RuleResult>,
    },
    Failed {
        step: usize,
        message: String,
    },
    /// Not evaluated: the policy ran into a limit on an earlier resource.
    Skipped {
        step: usize,
    },
}

/// What every pair of one evaluation shares.
#[derive(Clone, Copy)]
struct Pass<'a> {
    engine: &'a regorus::Engine,
    context: &'a Context,
    commit: &'a RegoValue,
    dns_name_index: &'a DnsNameIndex<'a>,
}

impl Pass<'_> {
    /// Evaluates `pairs` in child processes: when one dies, the pair it was on is reported
    /// as the policy's failure and a new child goes on with the next pair.
    fn evaluate_isolated(&self, pairs: &[(&Loaded, &Binding)], deadline: Instant) -> Evaluation {
        let mut out = Evaluation::default();
        let mut start = 0;
        // Policies that killed a child are not run again on this share: the commit fails
        // either way, and each run would cost a child.
        let mut crashed: HashSet<&str> = HashSet::new();
        while start < pairs.len() {
            let rest = &pairs[start..];
            let skip = &crashed;
            let run = isolated(deadline, |child| {
                self.evaluate_pairs(rest, start, skip, child)
            });
            let run = match run {
                Ok(run) => run,
                Err(error) => {
                    out.errors.push(Diagnostic::error(
                        "policies",
                        Pos::START,
                        format!("cannot start policy evaluation: {error}"),
                    ));
                    return out;
                }
            };
            let mut skipped = HashSet::new();
            for sent in run.items {
                match sent {
                    Sent::Results { step, results } => {
                        if let Some((loaded, binding)) = pairs.get(step) {
                            out.findings.extend(
                                results
                                    .into_iter()
                                    .map(|r| finding(binding, loaded, r, self.context.today)),
                            );
                        }
                    }
                    Sent::Failed { step, message } => {
                        if let Some((loaded, binding)) = pairs.get(step) {
                            out.errors.push(pair_error(binding, loaded, &message));
                        }
                    }
                    Sent::Skipped { step } => {
                        skipped.insert(step);
                    }
                }
            }
            let reached = usize::try_from(run.step).unwrap_or(usize::MAX).max(start);
            let done = match &run.end {
                End::Finished => pairs.len(),
                End::Died(_) | End::TimedOut => reached.min(pairs.len()),
            };
            out.evaluated.extend(
                (start..done)
                    .filter(|step| !skipped.contains(step))
                    .filter_map(|step| pairs.get(step))
                    .filter(|(_, binding)| !crashed.contains(binding.name()))
                    .map(|(loaded, binding)| {
                        (
                            binding.name().to_owned(),
                            loaded.kind(),
                            loaded.name().to_owned(),
                        )
                    }),
            );
            match run.end {
                End::Finished => break,
                End::Died(why) => {
                    if let Some((loaded, binding)) = pairs.get(done) {
                        out.errors.push(pair_error(
                            binding,
                            loaded,
                            &format!("its evaluation crashed: {why}"),
                        ));
                        crashed.insert(binding.name());
                    }
                    start = done + 1;
                }
                End::TimedOut => {
                    if let Some((loaded, binding)) = pairs.get(done) {
                        out.errors.push(loaded.error(
                            &[],
                            format!(
                                "the policies of this commit did not finish within {:?}: \
                                 evaluation stopped at policy `{}` on {}/{}, with {} \
                                 evaluations not done",
                                evaluation_budget(),
                                binding.name(),
                                loaded.kind(),
                                loaded.name(),
                                pairs.len() - done
                            ),
                        ));
                    }
                    break;
                }
            }
        }
        out
    }

    /// The child's side: evaluates `pairs` (numbered from `first`) and sends what it finds.
    fn evaluate_pairs(
        &self,
        pairs: &[(&Loaded, &Binding)],
        first: usize,
        skip: &HashSet<&str>,
        child: &mut Child<'_, Sent>,
    ) {
        let mut engine = self.engine.clone();
        // A policy that ran out of time or memory once is not run again: the commit fails
        // either way, and the limit would be paid once per resource.
        let mut exhausted: HashSet<&str> = HashSet::new();
        let mut current: Option<&Loaded> = None;
        for (offset, (loaded, binding)) in pairs.iter().enumerate() {
            let step = first + offset;
            if exhausted.contains(binding.name()) || skip.contains(binding.name()) {
                child.send(&Sent::Skipped { step });
                continue;
            }
            child.step(step as u64);
            if current.is_none_or(|c| !std::ptr::eq(c, *loaded)) {
                engine.set_input(input(
                    loaded,
                    self.context,
                    self.commit,
                    self.dns_name_index,
                ));
                current = Some(loaded);
            }
            let results = engine
                .eval_rule(binding.rule.clone())
                .map_err(|e| runtime_error(&e))
                .and_then(|value| rule_results(&value));
            match results {
                Ok(results) if results.is_empty() => {}
                Ok(results) if results.len() > MAX_FINDINGS_PER_PAIR => {
                    child.send(&Sent::Failed {
                        step,
                        message: format!(
                            "it returned {} findings for one resource; at most \
                             {MAX_FINDINGS_PER_PAIR} are accepted",
                            results.len()
                        ),
                    });
                }
                Ok(results) => child.send(&Sent::Results { step, results }),
                Err(message) => {
                    if message.contains(LIMIT_MESSAGE) {
                        exhausted.insert(binding.name());
                    }
                    child.send(&Sent::Failed {
                        step,
                        message: bounded(message),
                    });
                }
            }
        }
        // The last step is done: a child that dies on its way out is not blamed on it.
        child.step(pairs.len().saturating_add(first) as u64);
    }
}

fn pair_error(binding: &Binding, loaded: &Loaded, message: &str) -> Diagnostic {
    loaded.error(
        &[],
        format!(
            "policy `{}` failed on {}/{}: {message}",
            binding.name(),
            loaded.kind(),
            loaded.name()
        ),
    )
}

/// A finding's message, never blank (a `sprintf` given the wrong type yields "").
fn message(text: String) -> String {
    if text.trim().is_empty() {
        "(the policy gave this finding no message)".to_owned()
    } else {
        text
    }
}

/// `text` cut to [`MAX_FINDING_TEXT`] characters.
fn bounded(text: String) -> String {
    crate::diag::bounded(text, MAX_FINDING_TEXT)
}

/// How an evaluation stopped by a limit is reported; such a policy is not run again.
const LIMIT_MESSAGE: &str = "evaluation stopped at its limit";

fn runtime_error(error: &dyn std::fmt::Display) -> String {
    let (location, message) = rego_error(error);
    let message = if message.contains("exceeded time limit") {
        format!(
            "{LIMIT_MESSAGE}: it ran for more than {}s",
            EVALUATION_LIMIT.as_secs()
        )
    } else if message.contains("exceeded memory limit") {
        format!(
            "{LIMIT_MESSAGE}: it would need more than {} GiB",
            MEMORY_LIMIT_BYTES >> 30
        )
    } else {
        message
    };
    match location {
        Some((file, pos)) => format!("{file}:{}:{}: {message}", pos.line, pos.col),
        None => message,
    }
}

/// The exception of `spec` that excuses its findings on resource `kind`/`name` on `today`.
pub fn exception_on(
    spec: &crate::model::PolicySpec,
    kind: Kind,
    name: &str,
    today: NaiveDate,
) -> Option<AppliedException> {
    spec.exceptions
        .iter()
        .find(|e| e.covers(kind, name) && date(&e.expires).is_some_and(|last| today <= last))
        .map(|e| AppliedException {
            reason: e.reason.clone(),
            owner: e.owner.clone(),
            expires: e.expires.clone(),
        })
}

fn finding(binding: &Binding, loaded: &Loaded, result: RuleResult, today: NaiveDate) -> Finding {
    let spec = binding.spec();
    let pos = match &result.field {
        Some(field) => loaded.locate(field_segments(field).iter().map(String::as_str)),
        None => loaded.pos(),
    };
    let exception = exception_on(spec, loaded.kind(), loaded.name(), today);
    Finding {
        policy: binding.name().to_owned(),
        enforcement: spec.enforcement,
        severity: result.severity.unwrap_or(spec.severity),
        kind: loaded.kind(),
        name: loaded.name().to_owned(),
        file: loaded.file.to_string(),
        line: pos.line,
        column: pos.col,
        field: result.field,
        id: result.id,
        message: result.message,
        compliance: spec.compliance.clone(),
        status: FindingStatus::New,
        exception,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_accept_both_index_spellings() {
        assert_eq!(
            field_segments("spec.dnsNames[1]"),
            ["spec", "dnsNames", "1"]
        );
        assert_eq!(field_segments("spec.dnsNames.1"), ["spec", "dnsNames", "1"]);
        assert_eq!(field_segments("metadata.labels"), ["metadata", "labels"]);
    }

    #[test]
    fn rule_values_must_be_sets_of_findings() {
        let value = RegoValue::from(
            serde_json::json!(["plain", {"msg": "m", "severity": "high", "field": "spec.x"}]),
        );
        let results = rule_results(&value).unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].severity, Some(FindingSeverity::High));
        assert_eq!(results[1].field.as_deref(), Some("spec.x"));
        assert!(rule_results(&RegoValue::Undefined).unwrap().is_empty());
        let bad =
            |v: serde_json::Value| rule_results(&RegoValue::from(v)).err().unwrap_or_default();
        assert_eq!(
            bad(serde_json::json!(true)),
            "the rule's value is the boolean true, not a set of findings"
        );
        assert_eq!(
            bad(serde_json::json!([{"field": "x"}])),
            "a finding object has no `msg`"
        );
        assert_eq!(
            bad(serde_json::json!([{"msg": "m", "severity": "urgent"}])),
            "severity `urgent` is not one of critical, high, medium, low, info"
        );
        assert_eq!(
            bad(serde_json::json!([3])),
            "a finding is a number, not a string or an object {msg, severity?, field?, id?}"
        );
    }
}
