//! What to do with a head, and why: a pure function of the commit in force, the head, its
//! review, the evidence gathered for its gates and the time. `plan` shows it; a reconcile
//! carries it out.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::gate::{
    self, ChangeFacts, Evidence, GateOutcome, GateReport, Governing, OpenReview, OverrideRecord,
    RenewalHold,
};
use crate::model::{Catalog, Kind, Spec};
use crate::report::PlanReport;

/// What becomes of the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum Verdict {
    /// Apply it: valid, nothing blocks it, every gate passes.
    Apply,
    /// A new `deny` finding or a failing gate stops it; the commit in force stays.
    Blocked,
    /// Only a gate's window is closed: it is applied, without a new commit, when it opens.
    Pending {
        #[serde(rename = "opensAt")]
        opens_at: DateTime<Utc>,
    },
    /// The head is not a valid configuration.
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Apply => "apply",
            Verdict::Blocked => "blocked",
            Verdict::Pending { .. } => "pending",
            Verdict::Failed => "failed",
        }
    }
}

/// What a decision is made on: plain values, read beforehand.
pub struct Facts<'a> {
    /// The catalog in force; empty when nothing is.
    pub in_force: &'a Catalog,
    /// Whether a commit is in force. When none is, the head's gates govern.
    pub anything_in_force: bool,
    pub head: &'a Catalog,
    /// The review of the head against the commit in force; `None` when the head is the
    /// commit in force.
    pub review: Option<&'a PlanReport>,
    pub evidence: &'a Evidence,
    /// Overrides whose review was open before this change.
    pub open_reviews: &'a [OpenReview],
    pub now: DateTime<Utc>,
}

/// The decision about a head.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Why the head is not applied, for people: its errors, the findings that block it, the
    /// gates it fails or waits for.
    pub reasons: Vec<String>,
    /// Each governing gate's decision, in name order.
    pub gates: Vec<GateReport>,
    /// Gates whose closed windows hold renewals back.
    pub holds: Vec<RenewalHold>,
    /// Overrides the head uses (only when it is applied).
    pub overrides: Vec<OverrideRecord>,
    /// Overrides still waiting for their review after this change.
    pub open_reviews: Vec<OpenReview>,
}

/// Decides what becomes of the head.
pub fn decide(facts: &Facts<'_>) -> Decision {
    let (governing_catalog, governing) = if facts.anything_in_force {
        (facts.in_force, Governing::InForce)
    } else {
        (facts.head, Governing::Head)
    };
    let holds = gate::renewal_holds(governing_catalog, facts.now);
    let open_reviews = gate::reviews_after(facts.open_reviews, facts.evidence, facts.now);
    let mut decision = Decision {
        verdict: Verdict::Apply,
        reasons: Vec::new(),
        gates: Vec::new(),
        holds,
        overrides: Vec::new(),
        open_reviews,
    };
    let Some(review) = facts.review else {
        return decision;
    };
    if !review.valid {
        decision.verdict = Verdict::Failed;
        decision.reasons = review.errors().map(ToString::to_string).collect();
        return decision;
    }
    let affected = gate::affected(&review.resources, facts.in_force, facts.head);
    let change = ChangeFacts {
        affected: &affected,
        findings: &review.findings,
    };
    decision.gates = governing_catalog
        .of_kind(Kind::Gate)
        .filter_map(|loaded| match &loaded.resource.spec {
            Spec::Gate(spec) => Some(gate::judge(
                loaded,
                spec,
                governing,
                &change,
                facts.evidence,
                facts.now,
            )),
            _ => None,
        })
        .collect();
    decision.gates.sort_by(|a, b| a.name.cmp(&b.name));
    decision.reasons = review
        .findings
        .iter()
        .filter(|f| f.blocks())
        .map(|f| {
            format!(
                "new deny finding: {} {}: {}",
                f.policy,
                f.resource_id(),
                f.message
            )
        })
        .collect();
    let fails = |g: &&GateReport| g.outcome == GateOutcome::Fail;
    decision.reasons.extend(
        decision
            .gates
            .iter()
            .filter(fails)
            .map(|g| format!("gate {}", g.line())),
    );
    // The change waits for every closed window; at the last opening it is decided again.
    let opens_at = decision
        .gates
        .iter()
        .filter(|g| g.outcome == GateOutcome::Pending)
        .filter_map(|g| g.opens_at)
        .max();
    decision.verdict = match opens_at {
        _ if !decision.reasons.is_empty() => Verdict::Blocked,
        Some(opens_at) => {
            decision.reasons.extend(
                decision
                    .gates
                    .iter()
                    .filter(|g| g.outcome == GateOutcome::Pending)
                    .map(|g| format!("gate {}", g.line())),
            );
            Verdict::Pending { opens_at }
        }
        None => Verdict::Apply,
    };
    if decision.verdict == Verdict::Apply {
        decision.overrides = decision
            .gates
            .iter()
            .filter_map(|g| g.override_.as_ref()?.used.clone())
            .collect();
        decision
            .open_reviews
            .extend(decision.overrides.iter().map(|record| OpenReview {
                record: record.clone(),
                overdue: false,
            }));
    }
    decision
}
