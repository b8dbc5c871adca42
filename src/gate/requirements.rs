//! Each requirement of a gate judged on its evidence: findings within limits, clean scans,
//! verified approvals by people who did not write the change, the applied commit's signer,
//! the change window, the change request the commit names.

use chrono::{DateTime, Utc};

use super::{
    APPROVED_BY, Affected, Evidence, Limit, Met, RequirementEvidence, RequirementReport, change,
    scans, window,
};
use crate::model::{
    ApprovalRequirement, ApprovalSource, ChangeRequirement, ChangeWindow, Enforcement, Kind,
    ViolationLimits,
};
use crate::policy::evaluate::{Finding, FindingStatus};
use crate::trust::Approval;
use std::collections::BTreeSet;

pub(super) fn violations(
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

pub(super) fn scans_requirement(outcome: &scans::ScanOutcome) -> RequirementReport {
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
fn wrote(evidence: &Evidence, approval: &Approval) -> bool {
    // Identities in text are compared without case or surrounding blanks of any kind; a key
    // that signed part of the change is its writer's whatever principal it is listed for.
    let who = identity(&approval.approver);
    let key = approval.key_fingerprint.as_deref();
    evidence.commits.iter().any(|c| {
        identity(&c.author_email) == who
            || identity(&c.committer_email) == who
            || c.signature.signed_by(approval.approver.trim())
            || c.signature.signed_by(&who)
            || (c.signature.verified
                && key.is_some()
                && c.signature.key_fingerprint.as_deref() == key)
    })
}

/// An identity as compared: lowercase, without surrounding blanks (Unicode ones too).
fn identity(text: &str) -> String {
    text.trim().to_lowercase()
}

pub(super) fn approvals_requirement(
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
        ApprovalSource::Github | ApprovalSource::Gitlab => {
            match super::reviews::approvals(gate, requirement.source, evidence.reviews.as_ref()) {
                Ok(approvals) => approvals,
                Err(why) => {
                    return RequirementReport {
                        met: Met::No,
                        summary: format!("0 of {} approvals: {why}", requirement.count),
                        evidence: RequirementEvidence::Approvals {
                            required: requirement.count,
                            counted: Vec::new(),
                            approvals: Vec::new(),
                            unverified: false,
                        },
                    };
                }
            }
        }
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
                at: None,
                url: None,
            })
            .collect(),
    };
    let allowed: BTreeSet<String> = requirement.from.iter().map(|p| identity(p)).collect();
    // Who wrote the change is known by e-mail and key; a forge's reviewers by login, and the
    // forge's own rule (never the author) stands in.
    let by_commits = matches!(
        requirement.source,
        ApprovalSource::Signatures | ApprovalSource::Trailers
    );
    let mut counted: Vec<String> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let approvals: Vec<Approval> = candidates
        .into_iter()
        .map(|mut a| {
            let who = identity(&a.approver);
            let key = a.key_fingerprint.clone();
            if a.refused.is_none() {
                a.refused = if !allowed.is_empty() && !allowed.contains(&who) {
                    Some("not one of the gate's approvers".to_owned())
                } else if by_commits && !evidence.complete {
                    Some(
                        "too many commits since the commit in force to check who wrote them"
                            .to_owned(),
                    )
                } else if by_commits && wrote(evidence, &a) {
                    Some("wrote or committed part of the change (separation of duties)".to_owned())
                } else if counted.contains(&who) {
                    Some("already counted".to_owned())
                } else if key.as_ref().is_some_and(|k| keys.contains(k)) {
                    // One key holder is one approver, whatever principals the key is listed for.
                    Some("its key already approved as another principal".to_owned())
                } else {
                    counted.push(who);
                    keys.extend(key);
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

pub(super) fn signed_by(principals: &[String], evidence: &Evidence) -> RequirementReport {
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

pub(super) fn window_requirement(
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

/// The change request the applied commit names, judged on what its system answered when
/// the evidence was gathered. Anything not read is not met: it never passes by default.
pub(super) fn change_requirement(
    requirement: &ChangeRequirement,
    evidence: &Evidence,
    now: DateTime<Utc>,
) -> (RequirementReport, Option<DateTime<Utc>>) {
    let empty = |number: Option<String>, problem: String| RequirementEvidence::Change {
        system: requirement.system,
        number,
        state: None,
        approval: None,
        approvers: Vec::new(),
        start: None,
        end: None,
        url: None,
        problem: Some(problem),
    };
    let not_met = |summary: String, evidence: RequirementEvidence| {
        (
            RequirementReport {
                met: Met::No,
                summary,
                evidence,
            },
            None,
        )
    };
    let ask = match change::ask_of(requirement, evidence.head()) {
        Ok(ask) => ask,
        Err(refusal) => return not_met(refusal.why.clone(), empty(refusal.value, refusal.why)),
    };
    let number = ask.number.clone();
    let record = match evidence.changes.get(&ask) {
        Some(Ok(record)) => record,
        Some(Err(problem)) => {
            return not_met(
                format!("{number} could not be read: {problem}"),
                empty(Some(number), problem.clone()),
            );
        }
        None => {
            let problem = "it was not read".to_owned();
            return not_met(
                format!("{number} could not be read: {problem}"),
                empty(Some(number), problem),
            );
        }
    };
    let (met, summary, opens_at) = change::judge(requirement, &number, record, now);
    (
        RequirementReport {
            met,
            summary,
            evidence: RequirementEvidence::Change {
                system: requirement.system,
                number: Some(number),
                state: Some(record.state.clone()),
                approval: record.approval.clone(),
                approvers: record.approvers.clone(),
                start: record.start,
                end: record.end,
                url: record.url.clone(),
                problem: None,
            },
        },
        opens_at,
    )
}
