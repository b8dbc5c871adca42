//! The pull-request check as a pure function: two snapshots and their commits in, the plan
//! report out — resource changes, policy findings classified against the base, exceptions.
//!
//! The head is evaluated in full. The base is evaluated where a result can differ from the
//! head's — resources that changed, policies that changed or read what changed (the
//! inventory, the commit), everything when modules or policy data changed — which finds what
//! the change resolves; and on every pair the head has findings for, so that whether a
//! finding is new is always decided by evaluating the base.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;

use crate::git::CommitInfo;
use crate::model::Kind;
use crate::plan::{Change, plan};
use crate::policy::compile::is_test_module;
use crate::policy::evaluate::Evaluator;
use crate::policy::{Context, Evaluation, commit_input, compare, exceptions};
use crate::report::{FORMAT_VERSION, PlanReport, PolicyInfo};
use crate::snapshot::Snapshot;

pub fn review(
    base: (&CommitInfo, &Snapshot),
    head: (&CommitInfo, &Snapshot),
    today: NaiveDate,
) -> PlanReport {
    let (base_commit, base_snapshot) = base;
    let (head_commit, head_snapshot) = head;
    let plan = plan(&base_snapshot.catalog, &head_snapshot.catalog);
    let mut diagnostics = head_snapshot.diagnostics.clone();
    let mut findings = Vec::new();
    let mut evaluated = Vec::new();
    if !head_snapshot.has_errors() {
        let changed: HashSet<(Kind, &str)> = plan
            .resources
            .iter()
            .filter(|r| r.change != Change::None)
            .map(|r| (r.kind, r.name.as_str()))
            .collect();
        let changed_kinds: BTreeSet<Kind> = changed.iter().map(|(kind, _)| *kind).collect();
        let changes: HashMap<(Kind, String), (&'static str, serde_json::Value)> = plan
            .resources
            .iter()
            .filter_map(|r| {
                let before = match r.change {
                    Change::Create => serde_json::Value::Null,
                    Change::Update => base_snapshot
                        .catalog
                        .get(r.kind, &r.name)
                        .map(|l| l.json().clone())
                        .unwrap_or_default(),
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
        let head_eval =
            head_snapshot
                .policies
                .evaluate(&head_snapshot.catalog, &head_context, &|_, _| true);
        let rules_changed = modules_differ(&base_snapshot.catalog, &head_snapshot.catalog)
            || data_differs(&base_snapshot.catalog, &head_snapshot.catalog);
        let base_context = Context {
            commit: commit_input(base_commit),
            changes: HashMap::new(),
            today,
        };
        // Where the result can differ: to find what the change resolves.
        let base_evaluator = Evaluator::new(&base_snapshot.policies, &base_snapshot.catalog);
        let mut base_eval: Evaluation =
            base_evaluator.evaluate(&base_context, &|binding, loaded| {
                rules_changed
                    || binding.reads.affected_by(&changed_kinds)
                    || changed.contains(&(Kind::Policy, binding.name()))
                    || changed.contains(&(loaded.kind(), loaded.name()))
            });
        // And every pair the head has findings for: whether a finding is new never rests on
        // the scan of what policies read.
        let unchecked: HashSet<(&str, Kind, &str)> = head_eval
            .findings
            .iter()
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
            base_eval.findings.extend(rest.findings);
            base_eval.evaluated.extend(rest.evaluated);
        }
        diagnostics.extend(head_eval.errors);
        evaluated = head_eval.evaluated.into_iter().collect();
        diagnostics.sort();
        findings = compare(head_eval.findings, &base_eval);
    }
    let valid = !diagnostics.iter().any(|d| d.is_error());
    PlanReport {
        format_version: FORMAT_VERSION,
        blocked: valid && findings.iter().any(|f| f.blocks()),
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
        root: String::new(),
        diagnostics,
    }
}

/// Whether the policy modules differ (tests aside: they do not change any result).
fn modules_differ(a: &crate::model::Catalog, b: &crate::model::Catalog) -> bool {
    let rules = |c: &crate::model::Catalog| {
        c.modules
            .iter()
            .filter(|(path, _)| !is_test_module(path))
            .map(|(p, t)| (p.clone(), t.clone()))
            .collect::<Vec<_>>()
    };
    rules(a) != rules(b)
}

fn data_differs(a: &crate::model::Catalog, b: &crate::model::Catalog) -> bool {
    a.data.len() != b.data.len()
        || a.data
            .iter()
            .zip(&b.data)
            .any(|((pa, fa), (pb, fb))| pa != pb || !std::sync::Arc::ptr_eq(fa, fb))
}
