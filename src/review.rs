//! The pull-request check as a pure function: two snapshots and their commits in, the plan
//! report out — resource changes, policy findings classified against the base, exceptions.
//!
//! The head is evaluated in full. The base is evaluated where a result can differ from the
//! head's — resources that changed, policies that changed or read what changed (the
//! inventory, the commit, their own index entries), everything when modules or policy data
//! changed — which finds what the change resolves; and on every pair the head has findings
//! for, so that whether a finding is new is always decided by evaluating the base.
//!
//! When the base's full evaluation is known — kept by the daemon, or recorded in the base's
//! note and made by the same policies on the same day — only the pairs whose result can
//! differ are evaluated, on the head; the rest stand as the base had them.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use crate::diag::Diagnostic;
use crate::git::CommitInfo;
use crate::model::Enforcement;
use crate::model::catalog::{Sides, side_by_side};
use crate::model::parse::Content;
use crate::model::{Catalog, Kind, Loaded};
use crate::plan::{Change, plan};
use crate::policy::compile::{Binding, dns_names, is_test_module};
use crate::policy::evaluate::MAX_FINDINGS_PER_COMMIT;
use crate::policy::evaluate::{Evaluator, Finding, FindingStatus, exception_on};
use crate::policy::{Context, Evaluation, PolicySet, commit_input, compare, exceptions};
use crate::reconcile::decide::Verdict;
use crate::report::{
    BaseEvaluation, Compared, EvaluationInfo, FORMAT_VERSION, PlanReport, PolicyInfo,
};
use crate::snapshot::Snapshot;
use crate::status::{MOST_NOTED, NoteEvaluation, NoteFinding};

pub fn review(
    base: (&CommitInfo, &Snapshot),
    head: (&CommitInfo, &Snapshot),
    today: NaiveDate,
) -> PlanReport {
    review_on(base, None, head, today).0
}

/// Version of how gitward turns a commit into policy results (the input it builds, how
/// results become findings). A note recorded under another is not used, nor is one recorded
/// by another gitward release.
pub const EVALUATION_FORMAT: u32 = 1;

/// Digest of what a commit's policy results depend on besides its resources, its commit and
/// the day: the policy modules (tests aside), the Policy resources, the policy data and the
/// evaluation format.
pub fn policies_digest(catalog: &Catalog) -> String {
    let mut hash = Sha256::new();
    // Each part with its length first: no two sequences of parts hash alike.
    let mut put = |part: &[u8]| {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    };
    put(format!(
        "gitward evaluation {EVALUATION_FORMAT} {}",
        env!("CARGO_PKG_VERSION")
    )
    .as_bytes());
    for (path, text) in catalog.modules.iter().filter(|(p, _)| !is_test_module(p)) {
        put(b"module");
        put(path.as_bytes());
        put(text.as_bytes());
    }
    for policy in catalog.of_kind(Kind::Policy) {
        put(b"policy");
        put(policy.file.as_bytes());
        put(json_or_marker(policy.rego_value()).as_bytes());
    }
    for (path, file) in &catalog.data {
        put(b"data");
        put(path.as_bytes());
        match &file.content {
            Content::Data(value) => put(json_or_marker(value).as_bytes()),
            _ => put(b"unreadable"),
        }
    }
    format!("sha256:{}", hex::encode(hash.finalize()))
}

/// `value` as JSON; a value that cannot be written (none gitward reads) is one that no note
/// can match.
fn json_or_marker<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("unwritable {}", uuid::Uuid::new_v4()))
}

/// Digest of `input.commit` of `commit` as policies see it.
pub fn commit_digest(commit: &CommitInfo) -> String {
    let input = serde_json::to_string(&commit_input(commit)).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(input.as_bytes())))
}

/// The note's record of a head's evaluation, for a `plan` based on that head: `None` when
/// the head was not evaluated (invalid), or the record would be too large to be a note.
pub fn noted(
    commit: &CommitInfo,
    snapshot: &Snapshot,
    evaluation: &Evaluation,
    changed: &HashSet<(Kind, String)>,
    today: NaiveDate,
) -> Option<NoteEvaluation> {
    if snapshot.has_errors() || evaluation.findings.len() > MOST_NOTED {
        return None;
    }
    // Read only through `input.change`: without such a policy, not worth recording.
    let reads_change = snapshot.policies.bindings.iter().any(|b| b.reads.change);
    let mut changed: Vec<String> = changed
        .iter()
        .filter(|_| reads_change)
        .map(|(kind, name)| format!("{kind}/{name}"))
        .collect();
    if changed.len() > MOST_NOTED {
        return None;
    }
    changed.sort();
    Some(NoteEvaluation {
        policies: policies_digest(&snapshot.catalog),
        commit: commit_digest(commit),
        day: today,
        pairs: snapshot.applicable().count(),
        // Any error makes the record unusable: a few say why.
        errors: evaluation.errors.iter().take(10).cloned().collect(),
        changed,
        findings: evaluation.findings.iter().map(NoteFinding::of).collect(),
    })
}

/// A base's evaluation as its note records it, checked against the base.
pub struct Noted {
    evaluation: Evaluation,
    changed: HashSet<(Kind, String)>,
    same_commit: bool,
    /// The pairs the note says the base has, checked while the head is reviewed.
    pairs: usize,
}

/// The base's evaluation from `note`, when it can stand for evaluating the base now: made
/// for the base's own policies (its digest is the base's), on `today`, without errors
/// ([`review_noted`] checks that it has as many pairs as the base). Otherwise why not.
pub fn noted_base(
    note: Option<&NoteEvaluation>,
    base: (&CommitInfo, &Snapshot),
    today: NaiveDate,
) -> Result<Noted, String> {
    let (commit, snapshot) = base;
    let note = note.ok_or("the base has no note with its evaluation")?;
    if snapshot.has_errors() {
        return Err("the base is not a valid configuration".to_owned());
    }
    // A result may differ from day to day only through the clock and the exceptions' dates;
    // the exceptions are applied again for today below.
    if note.day != today && snapshot.policies.bindings.iter().any(|b| b.reads.clock) {
        return Err(format!(
            "the base's note is from {}, not {today}, and a policy reads the clock",
            note.day
        ));
    }
    if note.policies != policies_digest(&snapshot.catalog) {
        return Err("the base's note was made with other policies, or another gitward".to_owned());
    }
    if !note.errors.is_empty() {
        return Err("the base's evaluation had errors".to_owned());
    }
    if note.findings.len() > MOST_NOTED || note.changed.len() > MOST_NOTED {
        return Err("the base's note is larger than gitward writes".to_owned());
    }
    let changed = note
        .changed
        .iter()
        .map(|id| {
            id.split_once('/')
                .and_then(|(kind, name)| Some((Kind::parse(kind)?, name.to_owned())))
        })
        .collect::<Option<HashSet<_>>>()
        .ok_or("the base's note names a resource it cannot")?;
    let specs: HashMap<&str, &crate::model::PolicySpec> = snapshot
        .policies
        .bindings
        .iter()
        .map(|b| (b.name(), b.spec()))
        .collect();
    let findings = note
        .findings
        .iter()
        .map(|noted| {
            let mut finding = noted.finding();
            finding.exception = specs
                .get(finding.policy.as_str())
                .and_then(|spec| exception_on(spec, finding.kind, &finding.name, today));
            finding
        })
        .collect();
    Ok(Noted {
        evaluation: Evaluation {
            findings,
            ..Evaluation::default()
        },
        changed,
        same_commit: note.commit == commit_digest(commit),
        pairs: note.pairs,
    })
}

/// The plan report of `head` on `base` with the base's evaluation taken from its note when
/// `noted` has one: then the head is evaluated only where its results can differ from the
/// base's. Otherwise, or when that evaluation meets errors (a full one tells them as it
/// always does), a full review; the report says which it did, and why.
pub fn review_noted(
    base: (&CommitInfo, &Snapshot),
    noted: Result<Noted, String>,
    head: (&CommitInfo, &Snapshot),
    today: NaiveDate,
    list_pairs: bool,
) -> PlanReport {
    let reason = match noted {
        Ok(noted) => {
            let known = Known {
                evaluation: &noted.evaluation,
                changed: &noted.changed,
                same_commit: noted.same_commit,
                own: false,
            };
            // Whether the note has as many pairs as the base, counted on the other core.
            let (base_pairs, (mut report, evaluation, _)) = std::thread::scope(|scope| {
                let counting = scope.spawn(|| base.1.applicable().count());
                let reviewed = review_on(base, Some(known), head, today);
                let counted = counting
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (counted, reviewed)
            });
            if base_pairs != noted.pairs {
                "the base's note does not match the base".to_owned()
            } else if evaluation.errors.is_empty()
                && evaluation.findings.len() <= MAX_FINDINGS_PER_COMMIT
            {
                // Every pair stands evaluated, as in a full review: JUnit lists them all, when
                // asked for (90,000 pairs are a tenth of a plan that evaluates 100).
                if list_pairs {
                    report.evaluated = head
                        .1
                        .applicable()
                        .map(|(b, l)| (b.name().to_owned(), l.kind(), l.name().to_owned()))
                        .collect();
                }
                report.evaluation.base = BaseEvaluation::Note;
                return report;
            } else {
                "the change's evaluation met errors".to_owned()
            }
        }
        Err(reason) => reason,
    };
    let mut report = review(base, head, today);
    report.evaluation.reason = Some(reason);
    report
}

/// Why the results of a resource can differ between a base and a head: for every policy
/// (`always`: it is new, changed or moved), for those reading the DNS-name index (a name it
/// claims is claimed by another resource or no longer), for those reading `input.change`.
#[derive(Default)]
struct Differs {
    always: bool,
    index: bool,
    change: bool,
}

/// Where the results of a head can differ from its base's: policies whose every result can
/// (asked once, not for each pair), and the resources whose results can, with why.
struct Differences<'a> {
    wholesale: HashSet<&'a str>,
    resources: HashMap<(Kind, &'a str), Differs, foldhash::fast::RandomState>,
}

impl<'a> Differences<'a> {
    /// `changed`: the resources whose documents the change changes; `known_changed`: those
    /// that the evaluation known of the base saw changed in `input.change`.
    fn between(
        (base, head): (&'a Snapshot, &'a Snapshot),
        changed: &HashSet<(Kind, &'a str)>,
        known_changed: Option<&'a HashSet<(Kind, String)>>,
    ) -> Differences<'a> {
        let rules_changed = modules_differ(&base.catalog, &head.catalog)
            || data_differs(&base.catalog, &head.catalog);
        let changed_kinds: BTreeSet<Kind> = changed.iter().map(|(kind, _)| *kind).collect();
        let wholesale = head
            .policies
            .bindings
            .iter()
            .chain(&base.policies.bindings)
            .filter(|b| {
                rules_changed
                    || b.reads.affected_by(&changed_kinds)
                    || changed.contains(&(Kind::Policy, b.name()))
            })
            .map(Binding::name)
            .collect();
        let mut resources: HashMap<_, Differs, _> = HashMap::default();
        let differing = side_by_side(&base.catalog, &head.catalog)
            .filter_map(|sides| match sides {
                Sides::Head(loaded) => Some(loaded),
                Sides::Both(before, loaded) if moved(before, loaded) => Some(loaded),
                _ => None,
            })
            .map(|l| (l.kind(), l.name()))
            .chain(changed.iter().copied());
        for key in differing {
            resources.entry(key).or_default().always = true;
        }
        for key in reindexed(&base.catalog, &head.catalog, changed) {
            resources.entry(key).or_default().index = true;
        }
        for (kind, name) in known_changed.into_iter().flatten() {
            resources.entry((*kind, name.as_str())).or_default().change = true;
        }
        Differences {
            wholesale,
            resources,
        }
    }

    /// Whether the result of a pair can differ between the base and the head.
    fn can_differ(&self, binding: &Binding, loaded: &Loaded) -> bool {
        (!self.wholesale.is_empty() && self.wholesale.contains(binding.name()))
            || self
                .resources
                .get(&(loaded.kind(), loaded.name()))
                .is_some_and(|why| {
                    why.always
                        || (binding.reads.index && why.index)
                        || (binding.reads.change && why.change)
                })
    }

    /// Evaluates where results can differ: on the few resources that can, unless a policy's
    /// every result can.
    fn evaluate(&self, evaluator: &Evaluator<'_>, context: &Context) -> Evaluation {
        let select = |binding: &Binding, loaded: &Loaded| self.can_differ(binding, loaded);
        if !self.wholesale.is_empty() {
            return evaluator.evaluate(context, &select);
        }
        let mut resources: Vec<&Loaded> = (self.resources.keys())
            .filter_map(|&(kind, name)| evaluator.catalog().get(kind, name))
            .collect();
        resources.sort_by(|a, b| (a.kind(), a.name()).cmp(&(b.kind(), b.name())));
        evaluator.evaluate_among(&resources, context, &select)
    }
}

/// What a review found on its head, kept for the review that has this head as its base.
pub struct Known<'a> {
    /// The head's full evaluation, findings as evaluated (before comparing with a base).
    pub evaluation: &'a Evaluation,
    /// The resources whose `input.change` was not `none` then.
    pub changed: &'a HashSet<(Kind, String)>,
    /// Whether the evaluation saw the base's `input.commit` as it is now (a signature is
    /// checked against the keys of whoever evaluates).
    pub same_commit: bool,
    /// Whether the evaluation is this process's own. One read from a note is anyone's who
    /// can push notes: where the head has a finding the note says the base has too, the
    /// base is evaluated on that pair, so that a note cannot make a new finding existing.
    pub own: bool,
}

/// [`review`] of a head on a base whose full evaluation is `known` (evaluated on the same
/// day): the head is evaluated only where a result can differ from the base's, and the base
/// not at all — a review in proportion to the change. Also returns the head's full
/// evaluation (its findings; which pairs were evaluated is in the report) and the resources it
/// saw changed, for the next review to build on.
pub fn review_on(
    base: (&CommitInfo, &Snapshot),
    known: Option<Known<'_>>,
    head: (&CommitInfo, &Snapshot),
    today: NaiveDate,
) -> (PlanReport, Evaluation, HashSet<(Kind, String)>) {
    // The pairs the head has in all (the report tells them), counted on another core while a
    // review evaluating only some of them runs.
    std::thread::scope(|scope| {
        let counting = (known.is_some() && !head.1.has_errors())
            .then(|| scope.spawn(|| head.1.applicable().count()));
        let (mut report, evaluation, changed) = review_evaluating(base, known, head, today);
        if let Some(counting) = counting {
            report.evaluation.total = counting
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
        (report, evaluation, changed)
    })
}

/// `input.change` of each resource the plan creates or updates: its action, and its document
/// before (`null` for a new one).
fn changes(
    plan: &crate::plan::Plan,
    base: &Catalog,
) -> HashMap<(Kind, String), (&'static str, regorus::Value)> {
    plan.resources
        .iter()
        .filter_map(|r| {
            let before = match r.change {
                Change::Create => regorus::Value::Null,
                Change::Update => base
                    .get(r.kind, &r.name)
                    .map_or(regorus::Value::Null, |l| l.rego_value().clone()),
                Change::Delete | Change::None => return None,
            };
            Some(((r.kind, r.name.clone()), (r.change.as_str(), before)))
        })
        .collect()
}

/// What the report says of each of the head's policies.
fn policy_infos(head: &Snapshot) -> Vec<PolicyInfo> {
    head.policies
        .bindings
        .iter()
        .map(|b| {
            let spec = b.spec();
            PolicyInfo {
                name: b.name().to_owned(),
                description: spec.description.clone(),
                url: spec.url.clone(),
                enforcement: spec.enforcement,
                severity: spec.severity,
                compliance: spec.compliance.clone(),
                file: b.policy.file.to_string(),
                line: b.policy.pos().line,
            }
        })
        .collect()
}

/// What evaluating a valid head's policies finds, compared with its base's.
#[derive(Default)]
struct Judged {
    /// Evaluation errors and warnings about policies the change stops from judging.
    diagnostics: Vec<Diagnostic>,
    findings: Vec<Finding>,
    evaluated: Vec<(String, Kind, String)>,
    evaluation: Evaluation,
    /// The resources whose `input.change` was not `none`.
    changed: HashSet<(Kind, String)>,
}

fn judge(
    base: (&CommitInfo, &Snapshot),
    known: Option<Known<'_>>,
    head: (&CommitInfo, &Snapshot),
    today: NaiveDate,
    plan: &crate::plan::Plan,
) -> Judged {
    let (base_commit, base_snapshot) = base;
    let (head_commit, head_snapshot) = head;
    let mut diagnostics = Vec::new();
    let changed: HashSet<(Kind, &str)> = plan
        .resources
        .iter()
        .filter(|r| r.change != Change::None)
        .map(|r| (r.kind, r.name.as_str()))
        .collect();
    let head_context = Context {
        commit: commit_input(head_commit),
        changes: changes(plan, &base_snapshot.catalog),
        today,
    };
    let differences = Differences::between(
        (base_snapshot, head_snapshot),
        &changed,
        known.as_ref().map(|k| k.changed),
    );
    let can_differ = |binding: &Binding, loaded: &Loaded| differences.can_differ(binding, loaded);
    let base_context = Context {
        commit: commit_input(base_commit),
        changes: HashMap::new(),
        today,
    };
    let base_evaluator = Evaluator::new(&base_snapshot.policies, &base_snapshot.catalog);
    let base_partial = known.is_none();
    let (mut head_eval, mut base_eval): (Evaluation, Cow<'_, Evaluation>) = match known {
        Some(known) => {
            let head_evaluator = Evaluator::new(&head_snapshot.policies, &head_snapshot.catalog);
            let fresh = differences.evaluate(&head_evaluator, &head_context);
            let standing = standing(&known, &fresh, head_snapshot, &can_differ);
            let suspect = if known.own {
                HashSet::new()
            } else {
                claimed(&known, &fresh)
            };
            let mut head_eval = fresh;
            head_eval.findings.extend(standing);
            // In the order a full evaluation gives them.
            head_eval.findings.sort_by(|a, b| {
                (&a.file, a.line, a.column, &a.policy, &a.message)
                    .cmp(&(&b.file, b.line, b.column, &b.policy, &b.message))
            });
            let base_eval = known_base(
                &known,
                &suspect,
                &base_snapshot.policies,
                &base_evaluator,
                &base_context,
            );
            (head_eval, base_eval)
        }
        None => {
            let head_eval =
                head_snapshot
                    .policies
                    .evaluate(&head_snapshot.catalog, &head_context, &|_, _| true);
            // Where the result can differ: to find what the change resolves.
            let base_eval = differences.evaluate(&base_evaluator, &base_context);
            (head_eval, Cow::Owned(base_eval))
        }
    };
    // And every pair the head has findings for: whether a finding is new never rests on
    // the scan of what policies read (a base known in full has them all).
    let unchecked: HashSet<(&str, Kind, &str)> = head_eval
        .findings
        .iter()
        .filter(|_| base_partial)
        .map(|f| (f.policy.as_str(), f.kind, f.name.as_str()))
        .filter(|(p, k, n)| {
            !base_eval
                .evaluated
                .contains(&(p.to_string(), *k, n.to_string()))
        })
        .collect();
    if !unchecked.is_empty() {
        let rest = base_evaluator.evaluate(&base_context, &|binding, loaded| {
            unchecked.contains(&(binding.name(), loaded.kind(), loaded.name()))
        });
        let base_eval = base_eval.to_mut();
        base_eval.findings.extend(rest.findings);
        base_eval.evaluated.extend(rest.evaluated);
    }
    diagnostics.extend(head_eval.errors.iter().cloned());
    let unwatched = judged_by_removed_policies(base_snapshot, head_snapshot, &head_context);
    diagnostics.extend(unwatched.warnings.iter().cloned());
    diagnostics.extend(unwatched.evaluation.errors.iter().cloned());
    // Moved, not copied: a full evaluation of thousands of resources has many pairs.
    let evaluated = std::mem::take(&mut head_eval.evaluated)
        .into_iter()
        .collect();
    let mut findings = compare(head_eval.findings.clone(), &base_eval, !base_partial);
    // Kept out of the head's evaluation: they are the base's policies, not the head's.
    // A removed policy's base findings are not resolved by its removal.
    findings.retain(|f| {
        f.status != FindingStatus::Resolved || !unwatched.removed.contains(f.policy.as_str())
    });
    // Where the head's own version already denies it, once is enough.
    let seen: HashSet<_> = findings
        .iter()
        .filter(|f| f.enforcement == Enforcement::Deny && f.exception.is_none())
        .map(Finding::identity)
        .collect();
    findings.extend(
        compare(unwatched.evaluation.findings, &base_eval, true)
            .into_iter()
            .filter(|f| f.status != FindingStatus::Resolved && !seen.contains(&f.identity())),
    );
    Judged {
        diagnostics,
        findings,
        evaluated,
        changed: head_context.changes.keys().cloned().collect(),
        evaluation: head_eval,
    }
}

/// [`review_on`], telling as the head's pairs those it evaluated.
fn review_evaluating(
    base: (&CommitInfo, &Snapshot),
    known: Option<Known<'_>>,
    head: (&CommitInfo, &Snapshot),
    today: NaiveDate,
) -> (PlanReport, Evaluation, HashSet<(Kind, String)>) {
    let (base_commit, base_snapshot) = base;
    let (head_commit, head_snapshot) = head;
    let kept = known.is_some();
    let plan = plan(&base_snapshot.catalog, &head_snapshot.catalog);
    let mut diagnostics = head_snapshot.diagnostics.clone();
    let judged = if head_snapshot.has_errors() {
        Judged::default()
    } else {
        judge(base, known, head, today, &plan)
    };
    diagnostics.extend(judged.diagnostics);
    diagnostics.sort();
    let Judged {
        findings,
        evaluated,
        evaluation,
        changed: changed_here,
        ..
    } = judged;
    let valid = !diagnostics.iter().any(|d| d.is_error());
    let evaluation_info = EvaluationInfo {
        base: if kept {
            BaseEvaluation::Review
        } else {
            BaseEvaluation::Full
        },
        pairs: evaluated.len(),
        total: evaluated.len(),
        reason: None,
    };
    let report = PlanReport {
        format_version: FORMAT_VERSION,
        blocked: valid && findings.iter().any(|f| f.blocks()),
        verdict: if !valid {
            Verdict::Failed
        } else if findings.iter().any(|f| f.blocks()) {
            Verdict::Blocked
        } else {
            Verdict::Apply
        },
        reasons: Vec::new(),
        gates: Vec::new(),
        valid,
        summary: plan.summary(),
        resources: plan.notable().cloned().collect(),
        exceptions: exceptions(&head_snapshot.catalog, today),
        policies: policy_infos(head_snapshot),
        evaluated,
        evaluation: evaluation_info,
        findings,
        base: base_commit.clone(),
        head: head_commit.clone(),
        compared: Compared::Head,
        root: String::new(),
        diagnostics,
    };
    (report, evaluation, changed_here)
}

/// The known base's findings that stand for the head: on pairs whose result cannot differ,
/// not evaluated again.
fn standing(
    known: &Known<'_>,
    fresh: &Evaluation,
    head: &Snapshot,
    can_differ: &dyn Fn(&Binding, &Loaded) -> bool,
) -> Vec<Finding> {
    let bindings: HashMap<&str, &Binding> = head
        .policies
        .bindings
        .iter()
        .map(|b| (b.name(), b))
        .collect();
    known
        .evaluation
        .findings
        .iter()
        .filter(|f| {
            !fresh
                .evaluated
                .contains(&(f.policy.clone(), f.kind, f.name.clone()))
                && bindings
                    .get(f.policy.as_str())
                    .zip(head.catalog.get(f.kind, &f.name))
                    .is_some_and(|(binding, loaded)| !can_differ(binding, loaded))
        })
        .cloned()
        .collect()
}

/// The pairs where the head has a finding that the known base claims to have too.
fn claimed(known: &Known<'_>, fresh: &Evaluation) -> HashSet<(String, Kind, String)> {
    let base: HashSet<_> = known
        .evaluation
        .findings
        .iter()
        .map(Finding::identity)
        .collect();
    fresh
        .findings
        .iter()
        .filter(|f| base.contains(&f.identity()))
        .map(|f| (f.policy.clone(), f.kind, f.name.clone()))
        .collect()
}

/// The base's evaluation from what is known of it, evaluated again where the known one saw
/// another input than the base has now — its own changes in `input.change` (judged as a
/// base, nothing changes), another `input.commit` — and on the `suspect` pairs.
fn known_base<'k>(
    known: &Known<'k>,
    suspect: &HashSet<(String, Kind, String)>,
    base_policies: &PolicySet,
    base_evaluator: &Evaluator<'_>,
    base_context: &Context,
) -> Cow<'k, Evaluation> {
    let suspect_policies: HashSet<&str> = suspect.iter().map(|(p, _, _)| p.as_str()).collect();
    let again_for = |binding: &Binding| {
        (binding.reads.change && !known.changed.is_empty())
            || (binding.reads.commit && !known.same_commit)
            || suspect_policies.contains(binding.name())
    };
    if !base_policies.bindings.iter().any(again_for) {
        return Cow::Borrowed(known.evaluation);
    }
    let again = base_evaluator.evaluate(base_context, &|binding, loaded| {
        again_for(binding)
            && ((binding.reads.commit && !known.same_commit)
                || (binding.reads.change
                    && known
                        .changed
                        .contains(&(loaded.kind(), loaded.name().to_owned())))
                || (suspect_policies.contains(binding.name())
                    && suspect.contains(&(
                        binding.name().to_owned(),
                        loaded.kind(),
                        loaded.name().to_owned(),
                    ))))
    });
    let mut base_eval = known.evaluation.clone();
    base_eval.findings.retain(|f| {
        !again
            .evaluated
            .contains(&(f.policy.clone(), f.kind, f.name.clone()))
    });
    base_eval.findings.extend(again.findings);
    Cow::Owned(base_eval)
}

/// A change may not switch off the policy that would block it: a `deny` policy of the base
/// that the head removes (deletes, ignores, or no longer enforces with `deny`) still judges
/// the head, in its base version, and its new findings block. Each such policy is also
/// reported as a warning, so the removal is seen. Policy changes that a gate approves are
/// how a team retires a policy once gates are enforced.
fn judged_by_removed_policies(
    base: &Snapshot,
    head: &Snapshot,
    head_context: &Context,
) -> Unwatched {
    // The same policy judging the same way: its spec, its module and the data it may read
    // unchanged. Anything else may weaken it (an emptied rule, a narrower `appliesTo`, an
    // exception for the very finding the change brings).
    let data_same = !data_differs(&base.catalog, &head.catalog);
    let unchanged = |binding: &Binding| {
        head.policies.bindings.iter().any(|b| {
            b.name() == binding.name()
                && b.spec() == binding.spec()
                && data_same
                && base.catalog.modules.get(binding.spec().module.as_str())
                    == head.catalog.modules.get(b.spec().module.as_str())
        })
    };
    let removed: HashSet<String> = base
        .policies
        .bindings
        .iter()
        .filter(|b| b.spec().enforcement == Enforcement::Deny && !unchanged(b))
        .map(|b| b.name().to_owned())
        .collect();
    if removed.is_empty() {
        return Unwatched::default();
    }
    let warnings = base
        .policies
        .bindings
        .iter()
        .filter(|b| removed.contains(b.name()))
        .map(|b| {
            Diagnostic::warning(
                &b.policy.file,
                b.policy.pos(),
                format!(
                    "policy `{}` (deny) is changed, removed or ignored by this change; until a \
                     gate approves policy changes, its version in force also judges the change",
                    b.name()
                ),
            )
        })
        .collect();
    let evaluation = Evaluator::new(&base.policies, &head.catalog)
        .evaluate(head_context, &|binding, _| removed.contains(binding.name()));
    Unwatched {
        removed,
        evaluation,
        warnings,
    }
}

/// The base's `deny` policies that a head removes, and what they find on the head.
#[derive(Default)]
struct Unwatched {
    removed: HashSet<String>,
    evaluation: Evaluation,
    warnings: Vec<Diagnostic>,
}

/// The resources of `head` whose `input.index` can differ from the base's: those claiming a
/// DNS name that a changed resource claims in one commit and not in the other.
fn reindexed<'a>(
    base: &Catalog,
    head: &'a Catalog,
    changed: &HashSet<(Kind, &str)>,
) -> HashSet<(Kind, &'a str)> {
    let claims = |catalog: &Catalog, kind, name| -> HashSet<String> {
        catalog
            .get(kind, name)
            .map(|l| dns_names(l).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let touched: HashSet<String, foldhash::fast::RandomState> = changed
        .iter()
        .flat_map(|&(kind, name)| {
            let (before, after) = (claims(base, kind, name), claims(head, kind, name));
            before
                .symmetric_difference(&after)
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    if touched.is_empty() {
        return HashSet::new();
    }
    head.resources()
        .iter()
        .filter(|l| dns_names(l).any(|name| touched.contains(name)))
        .map(|l| (l.kind(), l.name()))
        .collect()
}

/// Whether `loaded` is not where the base had it as `before` (another file, document or
/// blob): its findings' positions and `input.file` may differ even when its content does not.
fn moved(before: &Loaded, loaded: &Loaded) -> bool {
    before.file != loaded.file
        || before.doc != loaded.doc
        || !Arc::ptr_eq(&before.parsed, &loaded.parsed)
}

/// Whether the policy modules differ (tests aside: they do not change any result).
fn modules_differ(a: &Catalog, b: &Catalog) -> bool {
    let rules = |c: &Catalog| {
        c.modules
            .iter()
            .filter(|(path, _)| !is_test_module(path))
            .map(|(p, t)| (p.clone(), t.clone()))
            .collect::<Vec<_>>()
    };
    rules(a) != rules(b)
}

/// Whether the policy data files differ.
pub(crate) fn data_differs(a: &crate::model::Catalog, b: &crate::model::Catalog) -> bool {
    a.data.len() != b.data.len()
        || a.data
            .iter()
            .zip(&b.data)
            .any(|((pa, fa), (pb, fb))| pa != pb || !std::sync::Arc::ptr_eq(fa, fb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::Repo;
    use crate::source::{BlobCache, ConfigRepo};

    /// The review `plan` makes of `head` with `note` as the base's, listing the pairs.
    fn review_with_note(
        note: &NoteEvaluation,
        base: (&CommitInfo, &Snapshot),
        head: (&CommitInfo, &Snapshot),
        today: NaiveDate,
    ) -> PlanReport {
        review_noted(base, noted_base(Some(note), base, today), head, today, true)
    }

    /// What a review concluded, in a form two reviews can be compared by.
    fn conclusions(report: &PlanReport) -> Vec<String> {
        let mut lines: Vec<String> = report
            .findings
            .iter()
            .map(|f| {
                format!(
                    "{:?} {} {} {:?} {}",
                    f.status,
                    f.policy,
                    f.resource_id(),
                    f.exception.is_some(),
                    f.message
                )
            })
            .collect();
        lines.sort();
        lines.push(format!("blocked {} valid {}", report.blocked, report.valid));
        lines
    }

    #[test]
    fn a_review_on_a_known_base_concludes_what_a_full_one_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo::init(dir.path()).expect("init");
        let mut files: Vec<(String, Vec<u8>)> =
            crate::scaffold::files(&crate::scaffold::EXAMPLE_REPO)
                .into_iter()
                .map(|(p, b)| (p, b.to_vec()))
                .collect();
        let edit = |files: &mut Vec<(String, Vec<u8>)>, path: &str, from: &str, to: &str| {
            let (_, bytes) = files.iter_mut().find(|(p, _)| p == path).expect(path);
            let text = String::from_utf8_lossy(bytes).into_owned();
            assert!(text.contains(from), "{path}: {from}");
            *bytes = text.replacen(from, to, 1).into_bytes();
        };
        let mut commits = Vec::new();
        let mut parent = None;
        let mut commit = |files: &Vec<(String, Vec<u8>)>, message: &str| {
            let id = repo
                .commit_files(
                    "refs/heads/main",
                    parent,
                    files.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
                    message,
                )
                .expect("commit");
            parent = Some(id);
            commits.push(id.to_string());
        };
        commit(&files, "example");
        // A finding appears (renewal margin), then an unrelated resource changes, then a name
        // is claimed twice (a rule across resources), then the first finding is resolved.
        edit(
            &mut files,
            "certificates/prod/api.yaml",
            "renewBefore: 30d",
            "renewBefore: 2d",
        );
        commit(&files, "short renewal margin");
        edit(
            &mut files,
            "certificates/prod/shop.yaml",
            "owner: ",
            "owner: x",
        );
        commit(&files, "another owner");
        edit(
            &mut files,
            "certificates/prod/api.yaml",
            "    - api.internal.example.com\n",
            "    - api.internal.example.com\n    - shop.example.com\n",
        );
        commit(&files, "a name claimed twice");
        edit(
            &mut files,
            "certificates/prod/api.yaml",
            "renewBefore: 2d",
            "renewBefore: 30d",
        );
        commit(&files, "margin restored");
        // A resource leaves a policy's selector: its finding goes although nothing that
        // policy reads changed.
        edit(
            &mut files,
            "certificates/prod/erp.yaml",
            "env: prod",
            "env: staging",
        );
        commit(&files, "erp is staging");
        // A policy on `input.change`: what was created in one review is unchanged in the next.
        files.push((
            "policies/change.rego".to_owned(),
            b"package gitward.change\n\nimport rego.v1\n\nwarn contains msg if {\n\tinput.change.action == \"create\"\n\tmsg := sprintf(\"%s is new\", [input.name])\n}\n".to_vec(),
        ));
        files.push((
            "policies/change.yaml".to_owned(),
            b"apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: new-things}\nspec:\n  module: policies/change.rego\n  rule: data.gitward.change.warn\n  appliesTo: {kinds: [Certificate]}\n  enforcement: warn\n  severity: low\n".to_vec(),
        ));
        let api = files
            .iter()
            .find(|(p, _)| p == "certificates/prod/api.yaml")
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .expect("api.yaml");
        files.push((
            "certificates/prod/extra.yaml".to_owned(),
            api.replace("api-example-com", "extra-example-com")
                .replace("api.", "extra.")
                .into_bytes(),
        ));
        commit(&files, "a policy on new things, and a new thing");
        edit(
            &mut files,
            "certificates/prod/shop.yaml",
            "owner: x",
            "owner: xx",
        );
        commit(&files, "nothing new");
        // A claimant leaves: the certificates sharing its names no longer clash, although
        // they did not change.
        files.retain(|(p, _)| p != "certificates/prod/extra.yaml");
        commit(&files, "extra is gone");

        let config = ConfigRepo::open(dir.path()).expect("open");
        let mut cache = BlobCache::default();
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
        let load = |cache: &mut BlobCache, sha: &str| {
            let (commit, catalog) = config.load(sha, cache).expect("load");
            (commit, Snapshot::new(catalog))
        };
        type Reviewed = (CommitInfo, Snapshot, Evaluation, HashSet<(Kind, String)>);
        let mut known: Option<Reviewed> = None;
        let mut reused = 0;
        let mut partly = 0;
        for pair in commits.windows(2) {
            let (base_commit, base) = load(&mut cache, &pair[0]);
            let (head_commit, head) = load(&mut cache, &pair[1]);
            let full = review((&base_commit, &base), (&head_commit, &head), today);
            let (warm, evaluation, changed) = match &known {
                Some((commit, snapshot, evaluation, changed)) => {
                    assert_eq!(commit.sha, pair[0]);
                    reused += 1;
                    review_on(
                        (commit, snapshot),
                        Some(Known {
                            evaluation,
                            changed,
                            same_commit: true,
                            own: true,
                        }),
                        (&head_commit, &head),
                        today,
                    )
                }
                None => review_on((&base_commit, &base), None, (&head_commit, &head), today),
            };
            assert_eq!(
                conclusions(&warm),
                conclusions(&full),
                "{}",
                head_commit.summary
            );
            assert!(!full.findings.is_empty());
            // The same base read from its note, as `plan` reads it: the same report.
            if let Some((commit, snapshot, evaluation, changed)) = &known {
                let note = noted(commit, snapshot, evaluation, changed, today).expect("noted");
                let text = serde_yaml::to_string(&note).expect("yaml");
                let read = crate::status::parse_record::<NoteEvaluation>(&text).expect("read");
                let from_note =
                    review_with_note(&read, (&base_commit, &base), (&head_commit, &head), today);
                assert_eq!(from_note.evaluation.base, BaseEvaluation::Note);
                let e = &from_note.evaluation;
                assert!(e.pairs <= e.total, "{e:?}");
                partly += usize::from(e.pairs < e.total);
                assert_same_report(&from_note, &full, &head_commit.summary);
            }
            known = Some((head_commit, head, evaluation, changed));
        }
        assert_eq!(reused, commits.len() - 2);
        assert!(partly >= commits.len() - 3, "{partly}");
    }

    /// Two reports say the same, byte for byte, but for how they were evaluated.
    fn assert_same_report(a: &PlanReport, b: &PlanReport, what: &str) {
        let shown = |r: &PlanReport| {
            let mut value = serde_json::to_value(r).expect("json");
            value.as_object_mut().expect("object").remove("evaluation");
            let mut evaluated = r.evaluated.clone();
            evaluated.sort();
            (
                serde_json::to_string_pretty(&value).expect("json"),
                evaluated,
            )
        };
        let (a, b) = (shown(a), shown(b));
        assert!(a == b, "{what}:\n{}\n---\n{}", a.0, b.0);
    }

    /// The example repository, committed, with `more` files added; the commit's catalog.
    fn example_with(more: &[(&str, &str)]) -> (tempfile::TempDir, ConfigRepo, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo::init(dir.path()).expect("init");
        let mut files: Vec<(String, Vec<u8>)> =
            crate::scaffold::files(&crate::scaffold::EXAMPLE_REPO)
                .into_iter()
                .map(|(p, b)| (p, b.to_vec()))
                .collect();
        files.extend(
            more.iter()
                .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec())),
        );
        let id = repo
            .commit_files(
                "refs/heads/main",
                None,
                files.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
                "example",
            )
            .expect("commit");
        let config = ConfigRepo::open(dir.path()).expect("open");
        (dir, config, id.to_string())
    }

    #[test]
    fn the_policies_digest_follows_the_policies_not_the_certificates() {
        let (_dir, config, sha) = example_with(&[]);
        let (_, catalog) = config.load(&sha, &mut BlobCache::default()).expect("load");
        let digest = policies_digest(&catalog);
        assert!(digest.starts_with("sha256:"), "{digest}");
        assert_eq!(policies_digest(&catalog), digest);
        let with = |path: &str, from: &str, to: &str| {
            let mut files: Vec<(String, Vec<u8>)> =
                crate::scaffold::files(&crate::scaffold::EXAMPLE_REPO)
                    .into_iter()
                    .map(|(p, b)| (p, b.to_vec()))
                    .collect();
            let (_, bytes) = files.iter_mut().find(|(p, _)| p == path).expect(path);
            let text = String::from_utf8_lossy(bytes).into_owned();
            assert!(text.contains(from), "{path}: {from}");
            *bytes = text.replacen(from, to, 1).into_bytes();
            let dir = tempfile::tempdir().expect("tempdir");
            let repo = Repo::init(dir.path()).expect("init");
            let id = repo
                .commit_files(
                    "refs/heads/main",
                    None,
                    files.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
                    "edited",
                )
                .expect("commit");
            let config = ConfigRepo::open(dir.path()).expect("open");
            let (_, catalog) = config
                .load(&id.to_string(), &mut BlobCache::default())
                .expect("load");
            policies_digest(&catalog)
        };
        // A certificate edit leaves it; a module, a policy resource (an exception's date)
        // or policy data changes it; a policy test does not.
        assert_eq!(
            with(
                "certificates/prod/api.yaml",
                "renewBefore: 30d",
                "renewBefore: 20d"
            ),
            digest
        );
        assert_ne!(
            with("policies/keys.rego", "package", "# a comment\npackage"),
            digest
        );
        assert_ne!(
            with("policies/policies.yaml", "2027-03-31", "2027-04-01"),
            digest
        );
        assert_ne!(
            with("policies/data/domains.yaml", "example.com", "example.org"),
            digest
        );
        assert_eq!(
            with("policies/keys_test.rego", "package", "# a comment\npackage"),
            digest
        );
    }

    /// A policy reading `input.commit`: the note's base saw the commit signed (the daemon's
    /// keys), `plan` sees it unsigned. The base is evaluated again on that policy, as a full
    /// review does, and the head's finding stays existing rather than new.
    #[test]
    fn a_note_that_saw_another_commit_input_is_evaluated_again_where_policies_read_it() {
        let policy = "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: signed-only}\nspec:\n  module: policies/signed.rego\n  rule: data.gitward.signed.deny\n  appliesTo: {kinds: [Issuer]}\n  enforcement: deny\n  severity: high\n";
        let module = "package gitward.signed\n\nimport rego.v1\n\ndeny contains msg if {\n\tnot input.commit.signature.verified\n\tmsg := sprintf(\"%s: the commit is not signed\", [input.name])\n}\n";
        let (_dir, config, sha) = example_with(&[
            ("policies/signed.yaml", policy),
            ("policies/signed.rego", module),
        ]);
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
        let mut cache = BlobCache::default();
        let (base_commit, catalog) = config.load(&sha, &mut cache).expect("load");
        let base = Snapshot::new(catalog);
        let (_, catalog) = config.load(&sha, &mut cache).expect("load");
        let head = Snapshot::new(catalog);
        let mut head_commit = base_commit.clone();
        head_commit.sha = "f".repeat(40);
        // What the daemon saw: the base signed by a key it lists.
        let mut signed = base_commit.clone();
        signed.signature = Some(crate::trust::SignatureCheck {
            verified: true,
            principal: Some("release@example.com".to_owned()),
            ..Default::default()
        });
        let everything = base.policies.evaluate(
            &base.catalog,
            &Context {
                commit: commit_input(&signed),
                changes: HashMap::new(),
                today,
            },
            &|_, _| true,
        );
        assert!(
            everything
                .findings
                .iter()
                .all(|f| f.policy != "signed-only")
        );
        let note = noted(&signed, &base, &everything, &HashSet::new(), today).expect("noted");
        let full = review((&base_commit, &base), (&head_commit, &head), today);
        assert!(full.findings.iter().any(|f| f.policy == "signed-only"));
        assert!(!full.blocked);
        let noted = noted_base(Some(&note), (&base_commit, &base), today);
        assert!(noted.as_ref().is_ok_and(|n| !n.same_commit));
        let from_note = review_noted(
            (&base_commit, &base),
            noted,
            (&head_commit, &head),
            today,
            true,
        );
        assert_eq!(from_note.evaluation.base, BaseEvaluation::Note);
        assert_same_report(&from_note, &full, "commit input");
    }

    /// A note is used only for the base's own policies, on its day, without errors; what it
    /// claims of the base cannot make a new finding of the head existing.
    #[test]
    fn a_note_is_refused_or_checked_where_it_does_not_match_the_base() {
        let (_dir, config, sha) = example_with(&[]);
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
        let mut cache = BlobCache::default();
        let (base_commit, catalog) = config.load(&sha, &mut cache).expect("load");
        let base = Snapshot::new(catalog);
        let everything = base.policies.evaluate(
            &base.catalog,
            &Context {
                commit: commit_input(&base_commit),
                changes: HashMap::new(),
                today,
            },
            &|_, _| true,
        );
        let note = noted(&base_commit, &base, &everything, &HashSet::new(), today).expect("noted");
        let refused = |edit: &dyn Fn(&mut NoteEvaluation)| {
            let mut forged = note.clone();
            edit(&mut forged);
            noted_base(Some(&forged), (&base_commit, &base), today).err()
        };
        assert_eq!(refused(&|_| {}), None);
        assert_eq!(
            refused(&|n| n.policies = "sha256:00".to_owned()).as_deref(),
            Some("the base's note was made with other policies, or another gitward")
        );
        // Another day's note stands while no policy reads the clock.
        assert_eq!(
            refused(&|n| n.day = today.pred_opt().expect("yesterday")),
            None
        );
        assert_eq!(
            refused(&|n| n.errors = vec![crate::diag::Diagnostic::error(
                "policies",
                crate::diag::Pos::START,
                "x"
            )])
            .as_deref(),
            Some("the base's evaluation had errors")
        );
        assert_eq!(
            refused(&|n| n.changed = vec!["Certificate".to_owned()]).as_deref(),
            Some("the base's note names a resource it cannot")
        );
        assert!(noted_base(None, (&base_commit, &base), today).is_err());
        // A head with a new deny finding, and a note claiming the base has it too: the base
        // is evaluated on that pair, and the finding stays new.
        let mut files: Vec<(String, Vec<u8>)> =
            crate::scaffold::files(&crate::scaffold::EXAMPLE_REPO)
                .into_iter()
                .map(|(p, b)| (p, b.to_vec()))
                .collect();
        let (_, api) = files
            .iter_mut()
            .find(|(p, _)| p == "certificates/prod/api.yaml")
            .expect("api");
        *api = String::from_utf8_lossy(api)
            .replacen("keyAlgorithm: ECDSA-P256", "keyAlgorithm: RSA-2048", 1)
            .into_bytes();
        let head_id = config
            .repo
            .commit_files(
                "refs/heads/change",
                git2::Oid::from_str(&sha).ok(),
                files.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
                "weak key",
            )
            .expect("commit");
        let (head_commit, catalog) = config.load(&head_id.to_string(), &mut cache).expect("load");
        let head = Snapshot::new(catalog);
        let full = review((&base_commit, &base), (&head_commit, &head), today);
        let new: Vec<&Finding> = full.findings.iter().filter(|f| f.blocks()).collect();
        assert!(!new.is_empty(), "{:?}", full.findings);
        let mut forged = note.clone();
        forged
            .findings
            .extend(new.iter().map(|f| NoteFinding::of(f)));
        let from_note =
            review_with_note(&forged, (&base_commit, &base), (&head_commit, &head), today);
        assert_eq!(from_note.evaluation.base, BaseEvaluation::Note);
        assert!(from_note.blocked);
        assert!(from_note.findings.iter().any(|f| f.blocks()));
        // A note counting other pairs than the base has is not used.
        let mut miscounted = note.clone();
        miscounted.pairs += 1;
        let full_instead = review_with_note(
            &miscounted,
            (&base_commit, &base),
            (&head_commit, &head),
            today,
        );
        assert_eq!(full_instead.evaluation.base, BaseEvaluation::Full);
        assert_eq!(
            full_instead.evaluation.reason.as_deref(),
            Some("the base's note does not match the base")
        );
        let mut clocked = base;
        clocked.policies.bindings[0].reads.clock = true;
        let mut yesterdays = note.clone();
        yesterdays.day = today.pred_opt().expect("yesterday");
        assert_eq!(
            noted_base(Some(&yesterdays), (&base_commit, &clocked), today)
                .err()
                .as_deref(),
            Some(
                "the base's note is from 2026-11-25, not 2026-11-26, and a policy reads the clock"
            )
        );
    }
}
