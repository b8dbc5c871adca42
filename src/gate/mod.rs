//! Gates: checkpoints a change passes before the daemon applies it. Whether it passes is a
//! pure function of the gate (as in force), the change, the evidence gathered for it and the
//! time; `plan` and the daemon share it.

pub mod gather;
pub mod scans;
pub mod window;

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{
    AppliesTo, ApprovalRequirement, ApprovalSource, Catalog, ChangeWindow, Enforcement, GateSpec,
    Kind, Labels, Loaded, RenewalRule, Spec, ViolationLimits,
};
use crate::plan::ResourcePlan;
use crate::policy::compile::is_test_module;
use crate::policy::evaluate::{Finding, FindingStatus};
use crate::review::data_differs;
use crate::trust::{Approval, SignatureCheck};

/// The trailer that approves, where the host trusts trailers.
pub const APPROVED_BY: &str = "Approved-by";
/// The trailer with which another principal closes the review of an override.
pub const OVERRIDE_REVIEWED: &str = "Override-Reviewed";
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
    pub scans: HashMap<String, (scans::Collected, scans::Collected)>,
    /// Whether `Approved-by:` trailers count (host config `gates.trustTrailers`).
    pub trust_trailers: bool,
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
    /// Its labels in the head, or in the base when the change deletes it.
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
        let loaded = head
            .get(r.kind, &r.name)
            .or_else(|| base.get(r.kind, &r.name));
        if let Some(loaded) = loaded
            && seen.insert((r.kind, loaded.name()))
        {
            out.push(labelled(loaded));
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
            GateOutcome::NotApplicable => "the change touches nothing it applies to".to_owned(),
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
    let affected: Vec<&Affected<'_>> = change
        .affected
        .iter()
        .filter(|a| spec.applies_to.matches(a.kind, a.labels))
        .collect();
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
        let empty = Default::default();
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

fn violations(
    limits: &ViolationLimits,
    affected: &[&Affected<'_>],
    findings: &[Finding],
) -> RequirementReport {
    let touched: BTreeSet<(Kind, &str)> = affected.iter().map(|a| (a.kind, a.name)).collect();
    let count = |enforcement: Enforcement| {
        findings
            .iter()
            .filter(|f| {
                f.enforcement == enforcement
                    && f.status != FindingStatus::Resolved
                    && f.exception.is_none()
                    && touched.contains(&(f.kind, f.name.as_str()))
            })
            .count()
    };
    let deny = Limit {
        found: count(Enforcement::Deny),
        max: Some(limits.deny),
    };
    let warn = Limit {
        found: count(Enforcement::Warn),
        max: limits.warn,
    };
    let audit = Limit {
        found: count(Enforcement::Audit),
        max: limits.audit,
    };
    let over: Vec<String> = [("deny", &deny), ("warn", &warn), ("audit", &audit)]
        .iter()
        .filter_map(|(what, l)| {
            let max = l.max?;
            (l.found > max as usize).then(|| format!("{} {what} findings (at most {max})", l.found))
        })
        .collect();
    RequirementReport {
        met: if over.is_empty() { Met::Yes } else { Met::No },
        summary: if over.is_empty() {
            format!(
                "findings within limits ({} deny, {} warn, {} audit)",
                deny.found, warn.found, audit.found
            )
        } else {
            over.join(", ")
        },
        evidence: RequirementEvidence::Violations { deny, warn, audit },
    }
}

fn scans_requirement(outcome: &scans::ScanOutcome) -> RequirementReport {
    let summary = if !outcome.problems.is_empty() {
        outcome.problems.join("; ")
    } else if outcome.passed {
        format!(
            "scans clean ({} results in {} reports within limits)",
            outcome.counted,
            outcome.files.len()
        )
    } else {
        format!(
            "{} scan result{} over the limits",
            outcome.failing_total,
            if outcome.failing_total == 1 { "" } else { "s" }
        )
    };
    RequirementReport {
        met: if outcome.passed && outcome.problems.is_empty() {
            Met::Yes
        } else {
            Met::No
        },
        summary,
        evidence: RequirementEvidence::Scans {
            files: outcome.files.clone(),
            counted: outcome.counted,
            failing_total: outcome.failing_total,
            failing: outcome.failing.clone(),
            problems: outcome.problems.clone(),
        },
    }
}

/// The principal or e-mail address in an `Approved-by:` value: `Name <a@b>` or `a@b`.
fn trailer_identity(value: &str) -> &str {
    match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => value[open + 1..close].trim(),
        _ => value.trim(),
    }
}

/// Whether `who` wrote part of the change: the author, committer or signer of one of its
/// commits. Such a principal does not approve it (separation of duties).
fn wrote(evidence: &Evidence, who: &str) -> bool {
    evidence.commits.iter().any(|c| {
        c.author_email.eq_ignore_ascii_case(who)
            || c.committer_email.eq_ignore_ascii_case(who)
            || c.signature.signed_by(who)
    })
}

fn approvals_requirement(
    gate: &str,
    requirement: &ApprovalRequirement,
    evidence: &Evidence,
) -> RequirementReport {
    let candidates: Vec<Approval> = match requirement.source {
        ApprovalSource::Signatures => evidence
            .approvals
            .iter()
            .filter(|a| a.gate == gate && a.source == ApprovalSource::Signatures)
            .cloned()
            .collect(),
        ApprovalSource::Trailers => evidence
            .head()
            .into_iter()
            .flat_map(|c| c.trailer(APPROVED_BY))
            .map(|value| Approval {
                gate: gate.to_owned(),
                approver: trailer_identity(value).to_owned(),
                source: ApprovalSource::Trailers,
                key_fingerprint: None,
                refused: (!evidence.trust_trailers).then(|| {
                    "this host does not trust trailers (gates.trustTrailers is off)".to_owned()
                }),
            })
            .collect(),
    };
    let allowed: BTreeSet<String> = requirement.from.iter().map(|p| p.to_lowercase()).collect();
    let mut counted: Vec<String> = Vec::new();
    let approvals: Vec<Approval> = candidates
        .into_iter()
        .map(|mut a| {
            let who = a.approver.to_lowercase();
            if a.refused.is_none() {
                a.refused = if !allowed.is_empty() && !allowed.contains(&who) {
                    Some("not one of the gate's approvers".to_owned())
                } else if !evidence.complete {
                    Some(
                        "too many commits since the commit in force to check who wrote them"
                            .to_owned(),
                    )
                } else if wrote(evidence, &who) {
                    Some("wrote or committed part of the change (separation of duties)".to_owned())
                } else if counted.contains(&who) {
                    Some("already counted".to_owned())
                } else {
                    counted.push(who);
                    None
                };
            }
            a
        })
        .collect();
    let unverified = requirement.source == ApprovalSource::Trailers;
    let names: Vec<&str> = approvals
        .iter()
        .filter(|a| a.refused.is_none())
        .map(|a| a.approver.as_str())
        .collect();
    let met = counted.len() >= requirement.count as usize;
    let mut summary = format!(
        "{} of {} approval{}{}",
        counted.len(),
        requirement.count,
        if requirement.count == 1 { "" } else { "s" },
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        }
    );
    if unverified && !counted.is_empty() {
        summary.push_str(" (unverified trailers)");
    }
    let refused = approvals.iter().filter(|a| a.refused.is_some()).count();
    if refused > 0 {
        summary.push_str(&format!("; {refused} not counted"));
    }
    RequirementReport {
        met: if met { Met::Yes } else { Met::No },
        summary,
        evidence: RequirementEvidence::Approvals {
            required: requirement.count,
            counted,
            approvals,
            unverified,
        },
    }
}

fn signed_by(principals: &[String], evidence: &Evidence) -> RequirementReport {
    let signature = evidence
        .head()
        .map(|c| c.signature.clone())
        .unwrap_or_default();
    let by = principals.iter().find(|p| signature.signed_by(p));
    let summary = match (by, signature.verified) {
        (Some(p), _) => format!("signed by {p}"),
        (None, true) => format!(
            "signed by {}, who is not one of {}",
            signature.principal.as_deref().unwrap_or_default(),
            principals.join(", ")
        ),
        (None, false) => format!(
            "not signed by one of {}: {}",
            principals.join(", "),
            signature
                .problem
                .as_deref()
                .unwrap_or("no verified signature")
        ),
    };
    RequirementReport {
        met: if by.is_some() { Met::Yes } else { Met::No },
        summary,
        evidence: RequirementEvidence::SignedBy {
            principals: principals.to_vec(),
            signature,
        },
    }
}

fn window_requirement(
    window: &ChangeWindow,
    now: DateTime<Utc>,
) -> (RequirementReport, Option<DateTime<Utc>>) {
    let state = window::state(window, now);
    let opens_local = state.opens_at.map(|at| window::local(at, &window.timezone));
    let (met, summary) = match (&state.open, &opens_local) {
        (true, _) => (Met::Yes, "window open".to_owned()),
        (false, Some(at)) => (
            Met::Waiting,
            format!(
                "window closed ({}); opens {at}",
                state.reason.as_deref().unwrap_or("outside the window")
            ),
        ),
        (false, None) => (
            Met::No,
            format!(
                "window closed ({}) and does not open within three years",
                state.reason.as_deref().unwrap_or("outside the window")
            ),
        ),
    };
    let opens_at = state.opens_at.filter(|_| !state.open);
    (
        RequirementReport {
            met,
            summary,
            evidence: RequirementEvidence::Window {
                timezone: window.timezone.clone(),
                open: state.open,
                reason: state.reason,
                opens_at,
                opens_local,
            },
        },
        opens_at,
    )
}

/// The override of gate `name` that the applied commit carries, honoured or refused.
fn override_of(
    name: &str,
    rule: &crate::model::GateOverride,
    evidence: &Evidence,
    now: DateTime<Utc>,
) -> Option<OverrideReport> {
    let head = evidence.head()?;
    let reason = head.trailer(&rule.trailer).find_map(|value| {
        let (gate, reason) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        (gate == name).then(|| reason.trim())
    })?;
    let signature = &head.signature;
    let signer = signature
        .principal
        .as_deref()
        .filter(|_| signature.verified);
    let refused = if reason.is_empty() {
        Some("an override needs a reason after the gate's name".to_owned())
    } else {
        match signer {
            None => Some(format!(
                "the commit is not signed by a listed key ({})",
                signature
                    .problem
                    .as_deref()
                    .unwrap_or("no verified signature")
            )),
            Some(p) if !rule.by.iter().any(|b| b.eq_ignore_ascii_case(p)) => {
                Some(format!("{p} may not override this gate"))
            }
            Some(_) => None,
        }
    };
    let used = match (refused.is_none(), signer) {
        (true, Some(principal)) => Some(OverrideRecord {
            gate: name.to_owned(),
            commit: head.sha.clone(),
            principal: principal.to_owned(),
            key_fingerprint: signature.key_fingerprint.clone().unwrap_or_default(),
            reason: crate::diag::bounded(reason.to_owned(), 1000),
            at: now,
            review_due: now
                + chrono::Duration::seconds(
                    i64::try_from(rule.review_within.as_secs()).unwrap_or(i64::MAX / 1000),
                ),
        }),
        _ => None,
    };
    Some(OverrideReport { used, refused })
}

/// An override whose review is still open: no later commit signed by another principal has
/// said `Override-Reviewed: <its commit>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenReview {
    #[serde(flatten)]
    pub record: OverrideRecord,
    /// Whether the review is past due.
    #[serde(default)]
    pub overdue: bool,
}

/// The open reviews after the commits of a change: those it reviews (signed by a principal
/// other than the one who overrode) are closed, the rest are marked overdue when past due.
pub fn reviews_after(
    open: &[OpenReview],
    evidence: &Evidence,
    now: DateTime<Utc>,
) -> Vec<OpenReview> {
    let reviewed = |record: &OverrideRecord| {
        evidence.commits.iter().any(|c| {
            let by = c
                .signature
                .principal
                .as_deref()
                .filter(|_| c.signature.verified);
            by.is_some_and(|p| !p.eq_ignore_ascii_case(&record.principal))
                && c.trailer(OVERRIDE_REVIEWED).any(|sha| {
                    sha.len() >= 7
                        && sha.len() <= record.commit.len()
                        && record.commit.starts_with(&sha.to_ascii_lowercase())
                })
        })
    };
    open.iter()
        .filter(|r| !reviewed(&r.record))
        .map(|r| OpenReview {
            record: r.record.clone(),
            overdue: now > r.record.review_due,
        })
        .collect()
}

/// A gate whose window holds renewals back (`renewals: followWindow`, window closed).
#[derive(Debug, Clone, PartialEq)]
pub struct RenewalHold {
    pub gate: String,
    pub applies_to: AppliesTo,
    /// Renewals within this margin of expiry go ahead anyway: expiry beats freeze.
    pub margin: chrono::Duration,
    /// When the window opens, if it does.
    pub opens_at: Option<DateTime<Utc>>,
}

/// The renewal holds of the gates of `catalog` at `now`.
pub fn renewal_holds(catalog: &Catalog, now: DateTime<Utc>) -> Vec<RenewalHold> {
    catalog
        .of_kind(Kind::Gate)
        .filter_map(|l| match &l.resource.spec {
            Spec::Gate(spec) if spec.require.renewals == RenewalRule::FollowWindow => {
                let window = spec.require.window.as_ref()?;
                let state = window::state(window, now);
                (!state.open).then(|| RenewalHold {
                    gate: l.name().to_owned(),
                    applies_to: spec.applies_to.clone(),
                    margin: chrono::Duration::seconds(
                        i64::try_from(spec.require.expiry_margin.as_secs())
                            .unwrap_or(i64::MAX / 1000),
                    ),
                    opens_at: state.opens_at,
                })
            }
            _ => None,
        })
        .collect()
}

/// What the gates say of a renewal that is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Renewal<'a> {
    /// No gate holds it.
    Go,
    /// A closed window holds it back.
    Held(&'a RenewalHold),
    /// A closed window would hold it, but expiry is within the gate's margin: expiry beats
    /// freeze.
    Forced(&'a RenewalHold),
}

/// Whether a due renewal of a resource goes ahead at `now`.
pub fn renewal<'a>(
    holds: &'a [RenewalHold],
    kind: Kind,
    labels: &Labels,
    not_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Renewal<'a> {
    let mut matching = holds.iter().filter(|h| h.applies_to.matches(kind, labels));
    let Some(first) = matching.next() else {
        return Renewal::Go;
    };
    match std::iter::once(first)
        .chain(matching)
        .find(|h| not_after - now > h.margin)
    {
        Some(hold) => Renewal::Held(hold),
        None => Renewal::Forced(first),
    }
}
