//! The events of one reconcile, from what it decided and did: pure, so that `plan`-like
//! tests and a redone reconcile after a crash agree on them.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use super::{CommitRef, ConditionChange, Draft, EventData, ResourceRef};
use crate::gate::{GateOutcome, GateReport, OpenReview, OverrideRecord};
use crate::git::CommitInfo;
use crate::model::{Catalog, EventType, FindingSeverity, Kind, Spec};
use crate::policy::{Finding, FindingStatus};
use crate::status::{Change, Outcome, ResourceOutcome, ResourceStatus, Statuses};

/// Days before `notAfter` at which `certificate.expiring` is sent, by default.
pub const EXPIRING_DAYS: [u32; 4] = [30, 14, 7, 1];

/// What a reconcile decided and did, as plain values.
pub struct Facts<'a> {
    pub now: DateTime<Utc>,
    pub head: &'a CommitInfo,
    pub result: Outcome,
    pub problems: &'a [String],
    /// Whether the head is now the commit in force.
    pub head_applied: bool,
    pub gates: &'a [GateReport],
    pub overrides: &'a [OverrideRecord],
    pub reviews_before: &'a [OpenReview],
    pub reviews_after: &'a [OpenReview],
    pub outcomes: &'a [ResourceOutcome],
    /// Certificates and CAs in force before and after.
    pub before: &'a Statuses,
    pub after: &'a Statuses,
    /// The head's review against the commit in force (empty when the head was in force).
    pub findings: &'a [Finding],
    /// The catalog in force after the reconcile: where resources are defined, exceptions.
    pub catalog: Option<&'a Catalog>,
    pub expiring_days: &'a [u32],
}

/// The events of a reconcile, in the order they happened.
pub fn derive(facts: &Facts) -> Vec<Draft> {
    let mut drafts = Vec::new();
    drafts.extend(gate_events(facts));
    drafts.extend(review_events(facts));
    drafts.extend(
        facts
            .outcomes
            .iter()
            .filter_map(|o| certificate_event(facts, o)),
    );
    if facts.head_applied {
        drafts.extend(
            facts
                .findings
                .iter()
                .filter_map(|f| finding_event(facts, f)),
        );
    }
    drafts.extend(expiring_events(facts));
    drafts.extend(exception_events(facts));
    drafts.extend(reconcile_events(facts));
    drafts
}

fn commit_ref(commit: &CommitInfo) -> Option<CommitRef> {
    (!commit.sha.is_empty()).then(|| CommitRef {
        sha: commit.sha.clone(),
        author: format!("{} <{}>", commit.author, commit.email),
    })
}

fn data(
    facts: &Facts,
    severity: FindingSeverity,
    message: String,
    fingerprint: String,
) -> EventData {
    EventData {
        severity,
        resource: None,
        commit: commit_ref(facts.head),
        message,
        details: Map::new(),
        compliance: Vec::new(),
        fingerprint,
        condition: None,
    }
}

fn details(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Where the catalog in force defines a resource.
fn resource(facts: &Facts, kind: Kind, name: &str) -> ResourceRef {
    let loaded = facts.catalog.and_then(|c| c.get(kind, name));
    ResourceRef {
        kind: kind.to_string(),
        name: name.to_owned(),
        file: loaded.map(|l| l.file.to_string()),
        line: loaded.map(|l| l.pos().line),
    }
}

fn reconcile_events(facts: &Facts) -> Option<Draft> {
    let kind = match facts.result {
        Outcome::Failed => EventType::ReconcileFailed,
        Outcome::Blocked => EventType::ReconcileBlocked,
        Outcome::Applied | Outcome::Pending => return None,
    };
    let message = format!(
        "{} {}: {}",
        short(&facts.head.sha),
        facts.result.as_str(),
        facts.problems.join("; ")
    );
    let mut data = data(
        facts,
        FindingSeverity::High,
        message,
        format!("commit/{}", facts.head.sha),
    );
    data.details = details(json!({"problems": facts.problems}));
    Some(Draft {
        kind,
        anchor: facts.head.sha.clone(),
        subject: format!("commit/{}", short(&facts.head.sha)),
        data,
    })
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn gate_events(facts: &Facts) -> Vec<Draft> {
    let mut drafts: Vec<Draft> = facts
        .gates
        .iter()
        .filter_map(|gate| {
            let (kind, severity) = match gate.outcome {
                GateOutcome::Fail => (EventType::GateBlocked, FindingSeverity::High),
                GateOutcome::Pending => (EventType::GatePending, FindingSeverity::Low),
                _ => return None,
            };
            let mut data = data(facts, severity, gate.line(), format!("Gate/{}", gate.name));
            data.resource = Some(ResourceRef {
                kind: Kind::Gate.to_string(),
                name: gate.name.clone(),
                file: Some(gate.file.clone()),
                line: Some(gate.line),
            });
            data.details = details(json!({
                "affected": gate.affected,
                "affectedTotal": gate.affected_total,
                "requirements": gate.requirements,
                "opensAt": gate.opens_at,
            }));
            Some(Draft {
                kind,
                anchor: facts.head.sha.clone(),
                subject: format!("Gate/{}", gate.name),
                data,
            })
        })
        .collect();
    drafts.extend(facts.overrides.iter().map(|used| {
        let message = format!(
            "gate {} overridden by {} in {}: {}",
            used.gate,
            used.principal,
            short(&used.commit),
            used.reason
        );
        let mut data = data(
            facts,
            FindingSeverity::High,
            message,
            format!("Gate/{}", used.gate),
        );
        data.details = details(json!(used));
        Draft {
            kind: EventType::GateOverride,
            anchor: used.commit.clone(),
            subject: format!("Gate/{}", used.gate),
            data,
        }
    }));
    drafts
}

fn review_key(review: &OverrideRecord) -> String {
    format!("override-review/{}/{}", review.gate, review.commit)
}

fn review_events(facts: &Facts) -> Vec<Draft> {
    let mut drafts = Vec::new();
    for open in facts.reviews_after {
        let was_overdue = facts
            .reviews_before
            .iter()
            .any(|before| before.record == open.record && before.overdue);
        if !open.overdue || was_overdue {
            continue;
        }
        let key = review_key(&open.record);
        let record = &open.record;
        let message = format!(
            "the override of gate {} in {} by {} was due for review by {}",
            record.gate,
            short(&record.commit),
            record.principal,
            record.review_due.format("%Y-%m-%d %H:%M UTC")
        );
        let mut data = data(facts, FindingSeverity::High, message, key.clone());
        data.details = details(json!(record));
        data.condition = Some(ConditionChange { key, open: true });
        drafts.push(Draft {
            kind: EventType::GateOverrideOverdue,
            anchor: record.commit.clone(),
            subject: format!("Gate/{}", record.gate),
            data,
        });
    }
    for closed in facts
        .reviews_before
        .iter()
        .map(|before| &before.record)
        .filter(|before| {
            !facts
                .reviews_after
                .iter()
                .any(|after| after.record == **before)
        })
    {
        let key = review_key(closed);
        let message = format!(
            "the override of gate {} in {} was reviewed in {}",
            closed.gate,
            short(&closed.commit),
            short(&facts.head.sha)
        );
        let mut data = data(facts, FindingSeverity::Low, message, key.clone());
        data.details = details(json!(closed));
        data.condition = Some(ConditionChange { key, open: false });
        drafts.push(Draft {
            kind: EventType::GateOverrideReviewed,
            anchor: closed.commit.clone(),
            subject: format!("Gate/{}", closed.gate),
            data,
        });
    }
    drafts
}

fn certificate_key(kind: Kind, name: &str) -> String {
    format!("{kind}/{name}")
}

fn certificate_details(status: &ResourceStatus) -> Map<String, Value> {
    details(json!({
        "serial": status.serial,
        "fingerprint": status.fingerprint,
        "notBefore": status.not_before,
        "notAfter": status.not_after,
        "issuer": status.issuer,
        "keyAlgorithm": status.key_algorithm,
        "target": status.target,
    }))
}

/// Whether the certificate in force before had a problem open: its last issue failed, or it
/// was close enough to expiry for a warning.
fn had_problem(facts: &Facts, status: &ResourceStatus) -> bool {
    let failing = status
        .condition("Ready")
        .is_some_and(|ready| ready.status == "False");
    let widest = facts.expiring_days.iter().copied().max().unwrap_or(0);
    failing || status.not_after - Duration::days(i64::from(widest)) <= facts.now
}

fn certificate_event(facts: &Facts, outcome: &ResourceOutcome) -> Option<Draft> {
    let (kind, severity) = match outcome.change {
        Change::Issued => (EventType::CertificateIssued, FindingSeverity::Low),
        Change::Renewed => (EventType::CertificateRenewed, FindingSeverity::Low),
        Change::Reissued => (EventType::CertificateReissued, FindingSeverity::Low),
        Change::Removed => (EventType::CertificateRemoved, FindingSeverity::Low),
        Change::Failed => (EventType::CertificateFailed, FindingSeverity::High),
        Change::Rewritten | Change::Moved | Change::Unchanged => return None,
    };
    let id = (outcome.kind, outcome.name.clone());
    let before = facts.before.get(&id);
    let after = facts.after.get(&id);
    let key = certificate_key(outcome.kind, &outcome.name);
    let verb = match outcome.change {
        Change::Failed => "failed",
        _ => kind.as_str().trim_start_matches("certificate."),
    };
    let mut message = format!("{} {} {verb}", outcome.kind, outcome.name);
    if !outcome.message.is_empty() {
        message = format!("{message}: {}", outcome.message);
    }
    let mut data = data(facts, severity, message, key.clone());
    if outcome.change != Change::Removed {
        data.resource = Some(resource(facts, outcome.kind, &outcome.name));
    }
    let (anchor, condition) = match outcome.change {
        Change::Failed => (
            facts.head.sha.clone(),
            Some(ConditionChange {
                key: key.clone(),
                open: true,
            }),
        ),
        Change::Removed => (
            before.map_or_else(|| facts.head.sha.clone(), |b| b.serial.clone()),
            before
                .filter(|b| had_problem(facts, b))
                .map(|_| ConditionChange {
                    key: key.clone(),
                    open: false,
                }),
        ),
        _ => (
            outcome
                .serial
                .clone()
                .or_else(|| after.map(|a| a.serial.clone()))
                .unwrap_or_else(|| facts.head.sha.clone()),
            before
                .filter(|b| had_problem(facts, b))
                .map(|_| ConditionChange {
                    key: key.clone(),
                    open: false,
                }),
        ),
    };
    data.condition = condition;
    if let Some(status) = if outcome.change == Change::Removed {
        before
    } else {
        after
    } {
        data.details = certificate_details(status);
    }
    Some(Draft {
        kind,
        anchor,
        subject: key,
        data,
    })
}

/// The tightest warning threshold that `until` is within, if any.
fn threshold(now: DateTime<Utc>, until: DateTime<Utc>, days: &[u32]) -> Option<u32> {
    days.iter()
        .copied()
        .filter(|d| until - Duration::days(i64::from(*d)) <= now && now < until)
        .min()
}

fn warning_severity(days: u32) -> FindingSeverity {
    match days {
        0..=1 => FindingSeverity::Critical,
        2..=7 => FindingSeverity::High,
        _ => FindingSeverity::Medium,
    }
}

fn expiring_events(facts: &Facts) -> Vec<Draft> {
    facts
        .after
        .values()
        .filter_map(|status| {
            let days = threshold(facts.now, status.not_after, facts.expiring_days)?;
            let key = certificate_key(status.kind, &status.name);
            let message = format!(
                "{} {} expires {} (in {} days or less) and is not renewed yet",
                status.kind,
                status.name,
                status.not_after.format("%Y-%m-%d %H:%M UTC"),
                days
            );
            let mut data = data(facts, warning_severity(days), message, key.clone());
            data.resource = Some(resource(facts, status.kind, &status.name));
            data.details = certificate_details(status);
            data.details.insert("thresholdDays".to_owned(), json!(days));
            data.condition = Some(ConditionChange {
                key: key.clone(),
                open: true,
            });
            Some(Draft {
                kind: EventType::CertificateExpiring,
                anchor: format!("{}@{days}d", status.serial),
                subject: key,
                data,
            })
        })
        .collect()
}

/// A short, stable digest of `parts`.
fn digest(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..10])
}

fn finding_event(facts: &Facts, finding: &Finding) -> Option<Draft> {
    let (kind, open) = match finding.status {
        FindingStatus::New if finding.exception.is_none() => (EventType::PolicyViolation, true),
        FindingStatus::Resolved => (EventType::PolicyResolved, false),
        _ => return None,
    };
    let (policy, resource_kind, name, detail) = finding.identity();
    let fingerprint = digest(&[&policy, resource_kind.as_str(), &name, &detail]);
    let key = format!("finding/{fingerprint}");
    let mut data = data(
        facts,
        finding.severity,
        finding.message.clone(),
        fingerprint,
    );
    data.resource = Some(ResourceRef {
        kind: finding.kind.to_string(),
        name: finding.name.clone(),
        file: Some(finding.file.clone()),
        line: Some(finding.line),
    });
    data.compliance = finding.compliance.clone();
    data.details = details(json!({
        "policy": finding.policy,
        "enforcement": finding.enforcement,
        "field": finding.field,
        "ruleId": finding.id,
    }));
    data.condition = Some(ConditionChange { key, open });
    Some(Draft {
        kind,
        anchor: facts.head.sha.clone(),
        subject: finding.resource_id(),
        data,
    })
}

fn exception_events(facts: &Facts) -> Vec<Draft> {
    let Some(catalog) = facts.catalog else {
        return Vec::new();
    };
    let mut drafts = Vec::new();
    for loaded in catalog.of_kind(Kind::Policy) {
        let Spec::Policy(policy) = &loaded.resource.spec else {
            continue;
        };
        for exception in &policy.exceptions {
            let Ok(last_day) = NaiveDate::parse_from_str(&exception.expires, "%Y-%m-%d") else {
                continue;
            };
            // It holds through its last day.
            let Some(ends) = last_day
                .succ_opt()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
            else {
                continue;
            };
            let Some(days) = threshold(facts.now, ends, facts.expiring_days) else {
                continue;
            };
            let resources = exception.resources.join(",");
            let fingerprint = digest(&[loaded.name(), &resources, &exception.expires]);
            let message = format!(
                "the exception to policy {} for {} (owner {}) ends after {}",
                loaded.name(),
                exception.resources.join(", "),
                exception.owner,
                exception.expires
            );
            let mut data = data(facts, warning_severity(days), message, fingerprint.clone());
            data.resource = Some(resource(facts, Kind::Policy, loaded.name()));
            data.compliance = policy.compliance.clone();
            data.details = details(json!({
                "resources": exception.resources,
                "owner": exception.owner,
                "reason": exception.reason,
                "expires": exception.expires,
                "thresholdDays": days,
            }));
            drafts.push(Draft {
                kind: EventType::ExceptionExpiring,
                anchor: format!("{fingerprint}@{days}d"),
                subject: format!("Policy/{}", loaded.name()),
                data,
            });
        }
    }
    drafts
}

/// The next time an expiry warning comes due, for a daemon with nothing else to do.
pub fn next_warning(
    statuses: &Statuses,
    catalog: Option<&Catalog>,
    days: &[u32],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut ends: Vec<DateTime<Utc>> = statuses.values().map(|s| s.not_after).collect();
    if let Some(catalog) = catalog {
        for loaded in catalog.of_kind(Kind::Policy) {
            if let Spec::Policy(policy) = &loaded.resource.spec {
                ends.extend(policy.exceptions.iter().filter_map(|e| {
                    NaiveDate::parse_from_str(&e.expires, "%Y-%m-%d")
                        .ok()?
                        .succ_opt()?
                        .and_hms_opt(0, 0, 0)
                        .map(|t| t.and_utc())
                }));
            }
        }
    }
    ends.iter()
        .flat_map(|end| {
            days.iter()
                .map(move |d| *end - Duration::days(i64::from(*d)))
        })
        .filter(|at| *at > now)
        .min()
}
