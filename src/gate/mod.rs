//! Gates: checkpoints a change passes before the daemon applies it. Whether it passes is a
//! pure function of the gate (as in force), the change, the evidence gathered for it and the
//! time; `plan` and the daemon share it.

pub mod change;
pub mod gather;
mod holds;
mod overrides;
mod requirements;
pub mod reviews;
pub mod scans;
pub mod window;

pub use holds::{Renewal, RenewalHold, renewal, renewal_holds};
use overrides::override_of;
pub use overrides::{OpenReview, reviews_after};
use requirements::{
    approvals_requirement, change_requirement, scans_requirement, signed_by, violations,
    window_requirement,
};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Catalog, ChangeSystem, GateSpec, Kind, Labels, Loaded, Spec};
use crate::plan::ResourcePlan;
use crate::policy::compile::is_test_module;
use crate::policy::evaluate::Finding;
use crate::review::data_differs;
use crate::trust::{Approval, SignatureCheck};

/// The trailer that approves, where the host trusts trailers.
pub const APPROVED_BY: &str = "Approved-by";
/// The trailer with which another principal closes the review of an override.
pub const OVERRIDE_REVIEWED: &str = "Override-Reviewed";
/// Why a gate has no say on a change.
pub const NOT_APPLICABLE: &str = "the change touches nothing it applies to";
/// Most resources a gate report lists by name; the count has them all.
const LISTED: usize = 100;

/// What is known of one commit between the commit in force and the head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitFacts {
    pub sha: String,
    pub author_email: String,
    pub committer_email: String,
    /// Its SSH signature, checked against the host's allowed signers.
    pub signature: SignatureCheck,
    /// Its trailers, in order (`Gate-Override`, `Override-Reviewed`, `Approved-by`...).
    pub trailers: Vec<(String, String)>,
}

impl CommitFacts {
    /// The values of trailer `key` (trailer keys are case-insensitive, as in git).
    fn trailer<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.trailers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim())
    }
}

/// Everything gathered for a change besides its two catalogs.
#[derive(Debug, Default)]
pub struct Evidence {
    /// The commits after the commit in force up to the head, the head first.
    pub commits: Vec<CommitFacts>,
    /// Whether `commits` holds all of them (it is bounded).
    pub complete: bool,
    /// The approvals of the tree to apply, signatures checked.
    pub approvals: Vec<Approval>,
    /// The SARIF reports of the head and of the base, by gate.
    pub scans: HashMap<String, (Arc<scans::Collected>, Arc<scans::Collected>)>,
    /// Whether `Approved-by:` trailers count (host config `gates.trustTrailers`).
    pub trust_trailers: bool,
    /// The change requests the applied commit names, as read from their systems.
    pub changes: HashMap<change::Ask, change::Answer>,
    /// The reviews of the change's pull request, when a gate counts them.
    pub reviews: Option<reviews::Answer>,
}

impl Evidence {
    /// The commit that is applied.
    pub fn head(&self) -> Option<&CommitFacts> {
        self.commits.first()
    }
}

/// A resource a change touches.
#[derive(Debug, Clone, Copy)]
pub struct Affected<'a> {
    pub kind: Kind,
    pub name: &'a str,
    /// Its labels in the head, or in the base when the change deletes it; a resource whose
    /// labels the change alters is affected with both.
    pub labels: &'a Labels,
}

/// The resources a change creates, updates, deletes or reissues (the plan's notable
/// resources), and the policies whose Rego changed.
pub fn affected<'a>(
    plan: &'a [ResourcePlan],
    base: &'a Catalog,
    head: &'a Catalog,
) -> Vec<Affected<'a>> {
    let labelled = |loaded: &'a Loaded| Affected {
        kind: loaded.kind(),
        name: loaded.name(),
        labels: &loaded.resource.metadata.labels,
    };
    let mut seen: BTreeSet<(Kind, &str)> = BTreeSet::new();
    let mut out = Vec::new();
    for r in plan.iter().filter(|r| r.is_notable()) {
        let before = base.get(r.kind, &r.name);
        let loaded = head.get(r.kind, &r.name).or(before);
        if let Some(loaded) = loaded
            && seen.insert((r.kind, loaded.name()))
        {
            out.push(labelled(loaded));
            // Relabelled by the change: the gates of its labels before govern it too, lest a
            // change move a resource out of a gate's selector to pass it.
            if let Some(before) = before
                && before.resource.metadata.labels != loaded.resource.metadata.labels
            {
                out.push(labelled(before));
            }
        }
    }
    for policy in rego_changed(base, head) {
        if seen.insert((Kind::Policy, policy.name())) {
            out.push(labelled(policy));
        }
    }
    out
}

/// Policies of the head whose Rego differs from the base's: their own module changed, or a
/// module no policy names (a library any may import) or the policy data did.
fn rego_changed<'a>(base: &Catalog, head: &'a Catalog) -> Vec<&'a Loaded> {
    let rules = |c: &Catalog| -> Vec<(String, String)> {
        c.modules
            .iter()
            .filter(|(path, _)| !is_test_module(path))
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    };
    let (before, after) = (rules(base), rules(head));
    if before == after && !data_differs(base, head) {
        return Vec::new();
    }
    let changed: BTreeSet<&str> = before
        .iter()
        .filter(|m| !after.contains(m))
        .chain(after.iter().filter(|m| !before.contains(m)))
        .map(|(path, _)| path.as_str())
        .collect();
    let policies: Vec<&Loaded> = head.of_kind(Kind::Policy).collect();
    let module_of = |l: &Loaded| match &l.resource.spec {
        Spec::Policy(spec) => Some(spec.module.as_str().to_owned()),
        _ => None,
    };
    let named: BTreeSet<String> = policies.iter().filter_map(|l| module_of(l)).collect();
    let everything = data_differs(base, head) || changed.iter().any(|m| !named.contains(*m));
    policies
        .into_iter()
        .filter(|l| everything || module_of(l).is_some_and(|m| changed.contains(m.as_str())))
        .collect()
}

/// What a gate decided about a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GateOutcome {
    /// Every requirement is met.
    Pass,
    /// A requirement other than the window is not met: the change is blocked.
    Fail,
    /// Only the window is closed: the change is applied when it opens.
    Pending,
    /// A signed override lets the change through.
    Overridden,
    /// The change touches nothing the gate applies to.
    NotApplicable,
}

impl GateOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            GateOutcome::Pass => "pass",
            GateOutcome::Fail => "fail",
            GateOutcome::Pending => "pending",
            GateOutcome::Overridden => "overridden",
            GateOutcome::NotApplicable => "notApplicable",
        }
    }
}

/// Which commit's version of a gate governs the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Governing {
    /// The commit in force: a change cannot weaken the gate it must pass.
    InForce,
    /// The head, when nothing is in force yet.
    Head,
}

/// Whether a requirement is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Met {
    Yes,
    No,
    /// Not yet: the window opens later.
    Waiting,
}

/// One requirement of a gate, judged, with what it was judged on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequirementReport {
    pub met: Met,
    /// One line for people: "1 of 2 approvals: alice@example.com".
    pub summary: String,
    #[serde(flatten)]
    pub evidence: RequirementEvidence,
}

/// Counted findings against a limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Limit {
    pub found: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

/// What a requirement was judged on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "requirement", rename_all = "camelCase")]
pub enum RequirementEvidence {
    /// Unexcepted findings on the affected resources, by enforcement.
    Violations {
        deny: Limit,
        warn: Limit,
        audit: Limit,
    },
    /// SARIF reports of the commit.
    Scans {
        files: Vec<String>,
        counted: usize,
        failing_total: usize,
        failing: Vec<scans::ScanHit>,
        problems: Vec<String>,
    },
    /// Approvals found, each counted or with why it does not count.
    Approvals {
        required: u32,
        counted: Vec<String>,
        approvals: Vec<Approval>,
        /// Counted from trailers: text anyone can write.
        unverified: bool,
    },
    /// The signature of the applied commit.
    SignedBy {
        principals: Vec<String>,
        signature: SignatureCheck,
    },
    /// The change window at the time of the decision.
    Window {
        timezone: String,
        open: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        opens_at: Option<DateTime<Utc>>,
        /// `opens_at` as the gate's time zone shows it.
        #[serde(skip_serializing_if = "Option::is_none")]
        opens_local: Option<String>,
    },
    /// The change request the applied commit names, as its system has it.
    Change {
        system: ChangeSystem,
        /// Its number (ServiceNow) or key (Jira); a value that is not one is shown escaped.
        #[serde(skip_serializing_if = "Option::is_none")]
        number: Option<String>,
        /// Its state (ServiceNow) or status (Jira).
        #[serde(skip_serializing_if = "Option::is_none")]
        state: Option<String>,
        /// ServiceNow's `approval`, like `approved` or `requested`.
        #[serde(skip_serializing_if = "Option::is_none")]
        approval: Option<String>,
        /// Who approved it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        approvers: Vec<String>,
        /// Its planned start and end.
        #[serde(skip_serializing_if = "Option::is_none")]
        start: Option<DateTime<Utc>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        end: Option<DateTime<Utc>>,
        /// Where people see it.
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// Why it could not be read or named.
        #[serde(skip_serializing_if = "Option::is_none")]
        problem: Option<String>,
    },
}

impl RequirementEvidence {
    /// The requirement's field name in a gate: `violations`, `scans`, `approvals`,
    /// `signedBy`, `window` or `change`.
    pub fn name(&self) -> &'static str {
        match self {
            RequirementEvidence::Violations { .. } => "violations",
            RequirementEvidence::Scans { .. } => "scans",
            RequirementEvidence::Approvals { .. } => "approvals",
            RequirementEvidence::SignedBy { .. } => "signedBy",
            RequirementEvidence::Window { .. } => "window",
            RequirementEvidence::Change { .. } => "change",
        }
    }
}

/// An override used by a commit: who, when, why, with which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverrideRecord {
    pub gate: String,
    pub commit: String,
    pub principal: String,
    pub key_fingerprint: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    /// When another principal should have reviewed it by.
    pub review_due: DateTime<Utc>,
}

/// An override trailer found on the applied commit, honoured or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverrideReport {
    /// Honoured: the override used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<OverrideRecord>,
    /// Why it is not honoured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A gate's decision about a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateReport {
    pub name: String,
    /// Where the governing version of the gate is defined.
    pub file: String,
    pub line: u32,
    pub governing: Governing,
    pub outcome: GateOutcome,
    /// Resources of the change the gate applies to (the first 100).
    pub affected: Vec<String>,
    pub affected_total: usize,
    pub requirements: Vec<RequirementReport>,
    /// When a pending change is applied: the window's next opening.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<OverrideReport>,
}

impl GateReport {
    /// "prod-changes: fail — 1 of 2 approvals; window closed (opens Mon 2026-11-30 09:00 CET)".
    pub fn line(&self) -> String {
        let unmet: Vec<&str> = self
            .requirements
            .iter()
            .filter(|r| r.met != Met::Yes)
            .map(|r| r.summary.as_str())
            .collect();
        let detail = match self.outcome {
            GateOutcome::NotApplicable => NOT_APPLICABLE.to_owned(),
            GateOutcome::Overridden => {
                let by = self
                    .override_
                    .as_ref()
                    .and_then(|o| o.used.as_ref())
                    .map(|u| format!("by {}: {}", u.principal, u.reason))
                    .unwrap_or_default();
                format!("overridden {by}")
            }
            _ if unmet.is_empty() => format!(
                "{} requirement{} met",
                self.requirements.len(),
                if self.requirements.len() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
            _ => unmet.join("; "),
        };
        format!("{}: {} — {detail}", self.name, self.outcome.as_str())
    }
}

/// The change a gate judges: what it touches and the head's findings.
pub struct ChangeFacts<'a> {
    pub affected: &'a [Affected<'a>],
    /// The head's findings (resolved ones are skipped).
    pub findings: &'a [Finding],
}

/// Judges `spec` (the governing version of gate `name`) on a change.
pub fn judge(
    gate: &Loaded,
    spec: &GateSpec,
    governing: Governing,
    change: &ChangeFacts<'_>,
    evidence: &Evidence,
    now: DateTime<Utc>,
) -> GateReport {
    let name = gate.name();
    let mut affected: Vec<&Affected<'_>> = change
        .affected
        .iter()
        .filter(|a| spec.applies_to.matches(a.kind, a.labels))
        .collect();
    // A relabelled resource is there with its labels before and after: listed once.
    affected.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
    let mut report = GateReport {
        name: name.to_owned(),
        file: gate.file.to_string(),
        line: gate.pos().line,
        governing,
        outcome: GateOutcome::NotApplicable,
        affected: affected
            .iter()
            .take(LISTED)
            .map(|a| format!("{}/{}", a.kind, a.name))
            .collect(),
        affected_total: affected.len(),
        requirements: Vec::new(),
        opens_at: None,
        override_: None,
    };
    if affected.is_empty() {
        return report;
    }
    let require = &spec.require;
    if let Some(limits) = &require.violations {
        report
            .requirements
            .push(violations(limits, &affected, change.findings));
    }
    if let Some(scan) = &require.scans {
        let empty: (Arc<scans::Collected>, Arc<scans::Collected>) = Default::default();
        let (head, base) = evidence.scans.get(name).unwrap_or(&empty);
        report
            .requirements
            .push(scans_requirement(&scans::evaluate(scan, head, base)));
    }
    if let Some(approvals) = &require.approvals {
        report
            .requirements
            .push(approvals_requirement(name, approvals, evidence));
    }
    if !require.signed_by.is_empty() {
        report
            .requirements
            .push(signed_by(&require.signed_by, evidence));
    }
    if let Some(window) = &require.window {
        let (requirement, opens_at) = window_requirement(window, now);
        report.requirements.push(requirement);
        report.opens_at = opens_at;
    }
    if let Some(change) = &require.change {
        let (requirement, opens_at) = change_requirement(change, evidence, now);
        report.requirements.push(requirement);
        // Waiting for both a window and a change request's start: the later of the two.
        report.opens_at = report.opens_at.max(opens_at);
    }
    report.override_ = spec
        .override_
        .as_ref()
        .and_then(|o| override_of(name, o, evidence, now));
    let met = |m: Met| {
        report
            .requirements
            .iter()
            .all(|r| r.met == m || r.met == Met::Yes)
    };
    report.outcome = if report.override_.as_ref().is_some_and(|o| o.used.is_some()) {
        GateOutcome::Overridden
    } else if report.requirements.iter().all(|r| r.met == Met::Yes) {
        GateOutcome::Pass
    } else if met(Met::Waiting) {
        GateOutcome::Pending
    } else {
        GateOutcome::Fail
    };
    if report.outcome != GateOutcome::Pending {
        report.opens_at = None;
    }
    report
}
