//! The pull-request check as a pure function: two snapshots and their commits in, the plan
//! report out — resource changes, policy findings classified against the base, exceptions.
//!
//! The head is evaluated in full. The base is evaluated where a result can differ from the
//! head's — resources that changed, policies that changed or read what changed (the
//! inventory, the commit, their own index entries), everything when modules or policy data
//! changed — which finds what the change resolves; and on every pair the head has findings
//! for, so that whether a finding is new is always decided by evaluating the base.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;

use crate::diag::Diagnostic;
use crate::git::CommitInfo;
use crate::model::Enforcement;
use crate::model::{Catalog, Kind, Loaded};
use crate::plan::{Change, plan};
use crate::policy::compile::{Binding, dns_names, is_test_module};
use crate::policy::evaluate::{Evaluator, Finding, FindingStatus};
use crate::policy::{Context, Evaluation, commit_input, compare, exceptions};
use crate::reconcile::decide::Verdict;
use crate::report::{Compared, FORMAT_VERSION, PlanReport, PolicyInfo};
use crate::snapshot::Snapshot;

pub fn review(
    base: (&CommitInfo, &Snapshot),
    head: (&CommitInfo, &Snapshot),
    today: NaiveDate,
) -> PlanReport {
    review_on(base, None, head, today).0
}

/// What a review found on its head, kept for the review that has this head as its base.
pub struct Known<'a> {
    /// The head's full evaluation, findings as evaluated (before comparing with a base).
    pub evaluation: &'a Evaluation,
    /// The resources whose `input.change` was not `none` then.
    pub changed: &'a HashSet<(Kind, String)>,
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
    let (base_commit, base_snapshot) = base;
    let (head_commit, head_snapshot) = head;
    let plan = plan(&base_snapshot.catalog, &head_snapshot.catalog);
    let mut diagnostics = head_snapshot.diagnostics.clone();
    let mut findings = Vec::new();
    let mut evaluated = Vec::new();
    let mut evaluation = Evaluation::default();
    let mut changed_here = HashSet::new();
    if !head_snapshot.has_errors() {
        let changed: HashSet<(Kind, &str)> = plan
            .resources
            .iter()
            .filter(|r| r.change != Change::None)
            .map(|r| (r.kind, r.name.as_str()))
            .collect();
        let changed_kinds: BTreeSet<Kind> = changed.iter().map(|(kind, _)| *kind).collect();
        let changes: HashMap<(Kind, String), (&'static str, regorus::Value)> = plan
            .resources
            .iter()
            .filter_map(|r| {
                let before = match r.change {
                    Change::Create => regorus::Value::Null,
                    Change::Update => base_snapshot
                        .catalog
                        .get(r.kind, &r.name)
                        .map_or(regorus::Value::Null, |l| l.rego_value().clone()),
                    Change::Delete | Change::None => return None,
                };
                Some(((r.kind, r.name.clone()), (r.change.as_str(), before)))
            })
            .collect();
        let head_context = Context {
            commit: commit_input(head_commit),
            changes,
            today,
        };
        let rules_changed = modules_differ(&base_snapshot.catalog, &head_snapshot.catalog)
            || data_differs(&base_snapshot.catalog, &head_snapshot.catalog);
        let known_changed = known.as_ref().map(|k| k.changed);
        // Policies whose every result can differ, and resources whose every result can: asked
        // once, not for each of the (policy, resource) pairs.
        let wholesale: HashSet<&str> = head_snapshot
            .policies
            .bindings
            .iter()
            .chain(&base_snapshot.policies.bindings)
            .filter(|b| {
                rules_changed
                    || b.reads.affected_by(&changed_kinds)
                    || changed.contains(&(Kind::Policy, b.name()))
            })
            .map(Binding::name)
            .collect();
        let differing: HashSet<(Kind, &str)> = head_snapshot
            .catalog
            .resources()
            .iter()
            .filter(|l| moved(&base_snapshot.catalog, l))
            .map(|l| (l.kind(), l.name()))
            .chain(changed.iter().copied())
            .collect();
        let reindexed = reindexed(&base_snapshot.catalog, &head_snapshot.catalog, &changed);
        // Whether the result of a pair can differ between the base and the head.
        let can_differ = |binding: &Binding, loaded: &Loaded| {
            let key = (loaded.kind(), loaded.name());
            wholesale.contains(binding.name())
                || differing.contains(&key)
                || (binding.reads.index && reindexed.contains(&key))
                || (binding.reads.change
                    && known_changed.is_some_and(|c| c.contains(&(key.0, key.1.to_owned()))))
        };
        let base_context = Context {
            commit: commit_input(base_commit),
            changes: HashMap::new(),
            today,
        };
        let base_evaluator = Evaluator::new(&base_snapshot.policies, &base_snapshot.catalog);
        let base_partial = known.is_none();
        let (mut head_eval, mut base_eval): (Evaluation, Cow<'_, Evaluation>) = match known {
            Some(known) => {
                let fresh = head_snapshot.policies.evaluate(
                    &head_snapshot.catalog,
                    &head_context,
                    &can_differ,
                );
                let bindings: HashMap<&str, &Binding> = head_snapshot
                    .policies
                    .bindings
                    .iter()
                    .map(|b| (b.name(), b))
                    .collect();
                // The base's findings stand where they cannot differ and were not evaluated
                // again. `evaluated` keeps the pairs evaluated this time only: with the base
                // known in full, no finding needs the base evaluated on its pair.
                let standing: Vec<Finding> = known
                    .evaluation
                    .findings
                    .iter()
                    .filter(|f| {
                        !fresh
                            .evaluated
                            .contains(&(f.policy.clone(), f.kind, f.name.clone()))
                            && bindings
                                .get(f.policy.as_str())
                                .zip(head_snapshot.catalog.get(f.kind, &f.name))
                                .is_some_and(|(binding, loaded)| !can_differ(binding, loaded))
                    })
                    .cloned()
                    .collect();
                let mut head_eval = fresh;
                head_eval.findings.extend(standing);
                // The base as it was reviewed saw its own changes in `input.change`; judged
                // as a base (nothing changing), those pairs are evaluated again.
                let as_reviewed = |binding: &Binding, loaded: &Loaded| {
                    binding.reads.change
                        && known
                            .changed
                            .contains(&(loaded.kind(), loaded.name().to_owned()))
                };
                let base_eval = if known.changed.is_empty()
                    || !base_snapshot
                        .policies
                        .bindings
                        .iter()
                        .any(|b| b.reads.change)
                {
                    Cow::Borrowed(known.evaluation)
                } else {
                    let again = base_evaluator.evaluate(&base_context, &as_reviewed);
                    let mut base_eval = known.evaluation.clone();
                    base_eval.findings.retain(|f| {
                        !again
                            .evaluated
                            .contains(&(f.policy.clone(), f.kind, f.name.clone()))
                    });
                    base_eval.findings.extend(again.findings);
                    Cow::Owned(base_eval)
                };
                (head_eval, base_eval)
            }
            None => {
                let head_eval = head_snapshot.policies.evaluate(
                    &head_snapshot.catalog,
                    &head_context,
                    &|_, _| true,
                );
                // Where the result can differ: to find what the change resolves.
                let base_eval = base_evaluator.evaluate(&base_context, &can_differ);
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
        evaluated = std::mem::take(&mut head_eval.evaluated)
            .into_iter()
            .collect();
        diagnostics.sort();
        findings = compare(head_eval.findings.clone(), &base_eval, !base_partial);
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
        changed_here = head_context.changes.keys().cloned().collect();
        evaluation = head_eval;
    }
    let valid = !diagnostics.iter().any(|d| d.is_error());
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
        policies: head_snapshot
            .policies
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
            .collect(),
        evaluated,
        findings,
        base: base_commit.clone(),
        head: head_commit.clone(),
        compared: Compared::Head,
        root: String::new(),
        diagnostics,
    };
    (report, evaluation, changed_here)
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
    let touched: HashSet<String> = changed
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

/// Whether `loaded` is not where the base had it (another file, document or blob): its
/// findings' positions and `input.file` may differ even when its content does not.
fn moved(base: &Catalog, loaded: &Loaded) -> bool {
    base.get(loaded.kind(), loaded.name()).is_none_or(|b| {
        b.file != loaded.file || b.doc != loaded.doc || !Arc::ptr_eq(&b.parsed, &loaded.parsed)
    })
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
            known = Some((head_commit, head, evaluation, changed));
        }
        assert_eq!(reused, commits.len() - 2);
    }
}
