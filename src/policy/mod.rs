//! Policy as code: Rego modules compiled with regorus, Policy resources bound to their rules,
//! findings on resources, the comparison of a head's findings with a base's, exceptions, and
//! `gitward test`.

pub mod compile;
pub mod evaluate;
pub mod testing;

use std::collections::HashMap;

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::Serialize;

pub use compile::{Binding, PolicySet, compile};
pub use evaluate::{AppliedException, Context, Evaluation, Finding, FindingStatus, commit_input};

use crate::model::semantic::date;
use crate::model::{Catalog, Kind, Spec};

/// Marks each head finding new or existing against the base, and adds the base's findings
/// that are gone as resolved. A pair (policy, resource) the base did not evaluate although
/// `in_base` says the base has both was skipped because its result cannot differ: its
/// findings are existing.
pub fn compare(
    head: Vec<Finding>,
    base: &Evaluation,
    in_base: &dyn Fn(&Finding) -> bool,
) -> Vec<Finding> {
    let mut unmatched: HashMap<_, Vec<&Finding>> = HashMap::new();
    for f in &base.findings {
        unmatched.entry(f.identity()).or_default().push(f);
    }
    let mut out: Vec<Finding> = head
        .into_iter()
        .map(|mut f| {
            let pair = (f.policy.clone(), f.kind, f.name.clone());
            f.status = if !base.evaluated.contains(&pair) {
                if in_base(&f) {
                    FindingStatus::Existing
                } else {
                    FindingStatus::New
                }
            } else if unmatched
                .get_mut(&f.identity())
                .and_then(Vec::pop)
                .is_some()
            {
                FindingStatus::Existing
            } else {
                FindingStatus::New
            };
            f
        })
        .collect();
    let mut resolved: Vec<Finding> = unmatched
        .into_values()
        .flatten()
        .map(|f| Finding {
            status: FindingStatus::Resolved,
            exception: None,
            ..f.clone()
        })
        .collect();
    resolved.sort_by(|a, b| (&a.file, a.line, &a.policy).cmp(&(&b.file, b.line, &b.policy)));
    out.extend(resolved);
    out
}

/// How close an exception is to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExceptionState {
    Active,
    /// Ends within [`EXPIRING_WITHIN_DAYS`] days.
    Expiring,
    /// Ended: its findings count again.
    Expired,
}

/// An exception ending this soon is reported as expiring.
pub const EXPIRING_WITHIN_DAYS: i64 = 14;

/// An exception of a policy, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ExceptionReport {
    pub policy: String,
    pub resources: Vec<String>,
    pub reason: String,
    pub owner: String,
    pub expires: String,
    pub state: ExceptionState,
    /// Days from today to the last day (negative once expired).
    #[serde(rename = "daysLeft")]
    pub days_left: i64,
    pub file: String,
    pub line: u32,
}

/// Every exception of every policy, with its state on `today`.
pub fn exceptions(catalog: &Catalog, today: NaiveDate) -> Vec<ExceptionReport> {
    let mut out = Vec::new();
    for loaded in catalog.of_kind(Kind::Policy) {
        let Spec::Policy(spec) = &loaded.resource.spec else {
            continue;
        };
        for (i, exception) in spec.exceptions.iter().enumerate() {
            let Some(last) = date(&exception.expires) else {
                continue;
            };
            let days_left = (last - today).num_days();
            let state = match days_left {
                d if d < 0 => ExceptionState::Expired,
                d if d < EXPIRING_WITHIN_DAYS => ExceptionState::Expiring,
                _ => ExceptionState::Active,
            };
            out.push(ExceptionReport {
                policy: loaded.name().to_owned(),
                resources: exception.resources.clone(),
                reason: exception.reason.clone(),
                owner: exception.owner.clone(),
                expires: exception.expires.clone(),
                state,
                days_left,
                file: loaded.file.to_string(),
                line: loaded.locate(["spec", "exceptions", &i.to_string()]).line,
            });
        }
    }
    out
}
