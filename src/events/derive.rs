//! The events of one reconcile, from what it decided and did: pure, so that `plan`-like
//! tests and a redone reconcile after a crash agree on them.

use std::collections::BTreeMap;

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
    /// The problems open before (condition keys), as the host recorded them.
    pub open_before: &'a std::collections::BTreeSet<String>,
    /// Since when each gate failing now has blocked the branch ([`blocked_since`]).
    pub blocked_since: &'a BTreeMap<String, DateTime<Utc>>,
    /// How long each governing gate may block before that is a problem (`openAfter`).
    pub open_after: &'a BTreeMap<String, Duration>,
}

/// The events of a reconcile, in the order they happened.
pub fn derive(facts: &Facts) -> Vec<Draft> {
    let mut drafts = Vec::new();
    drafts.extend(gate_events(facts));
    drafts.extend(blocked_gate_events(facts));
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
    drafts.extend(vanished_events(facts));
    drafts.extend(expiring_events(facts));
    drafts.extend(exception_events(facts));
    drafts.extend(reconcile_events(facts));
    for draft in &mut drafts {
        with_env(facts, &mut draft.data);
    }
    drafts
}

/// The `env` label of the resource an event is about, in its details: receivers route and
/// rank by it (a ticket's priority by environment).
fn with_env(facts: &Facts, data: &mut EventData) {
    let env = data.resource.as_ref().and_then(|r| {
        let kind = Kind::parse(&r.kind)?;
        let loaded = facts.catalog?.get(kind, &r.name)?;
        loaded
            .resource
            .metadata
            .labels
            .0
            .get("env")
            .map(str::to_owned)
    });
    if let Some(env) = env {
        data.details.entry("env").or_insert(Value::String(env));
    }
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

/// Since when each gate failing in `gates` has blocked the branch: as recorded `before`, or
/// `now` for one that starts to.
pub fn blocked_since(
    before: &BTreeMap<String, DateTime<Utc>>,
    gates: &[GateReport],
    now: DateTime<Utc>,
) -> BTreeMap<String, DateTime<Utc>> {
    gates
        .iter()
        .filter(|g| g.outcome == GateOutcome::Fail)
        .map(|g| (g.name.clone(), before.get(&g.name).copied().unwrap_or(now)))
        .collect()
}

fn blocked_key(gate: &str) -> String {
    format!("gate-blocked/{gate}")
}

/// A gate blocking the branch longer than its `openAfter` opens a problem; the problem
/// clears when the gate no longer blocks.
fn blocked_gate_events(facts: &Facts) -> Vec<Draft> {
    let mut drafts = Vec::new();
    for gate in facts
        .gates
        .iter()
        .filter(|g| g.outcome == GateOutcome::Fail)
    {
        let (Some(after), Some(since)) = (
            facts.open_after.get(&gate.name),
            facts.blocked_since.get(&gate.name),
        ) else {
            continue;
        };
        if facts.now - *since < *after {
            continue;
        }
        let key = blocked_key(&gate.name);
        let message = format!(
            "gate {} has blocked the branch since {}: {}",
            gate.name,
            since.format("%Y-%m-%d %H:%M UTC"),
            gate.line()
        );
        let mut data = data(facts, FindingSeverity::High, message, key.clone());
        data.resource = Some(ResourceRef {
            kind: Kind::Gate.to_string(),
            name: gate.name.clone(),
            file: Some(gate.file.clone()),
            line: Some(gate.line),
        });
        data.details = details(json!({"blockedSince": since, "requirements": gate.requirements}));
        data.condition = Some(ConditionChange { key, open: true });
        drafts.push(Draft {
            kind: EventType::GateBlocked,
            // The same problem while it lasts, whatever the commits.
            anchor: since.to_rfc3339(),
            subject: format!("Gate/{}", gate.name),
            data,
        });
    }
    for name in facts
        .open_before
        .iter()
        .filter_map(|key| key.strip_prefix("gate-blocked/"))
        .filter(|name| !facts.blocked_since.contains_key(*name))
    {
        let key = blocked_key(name);
        let message = format!(
            "gate {name} no longer blocks the branch ({})",
            short(&facts.head.sha)
        );
        let mut data = data(facts, FindingSeverity::Low, message, key.clone());
        data.condition = Some(ConditionChange { key, open: false });
        drafts.push(Draft {
            kind: EventType::GateUnblocked,
            anchor: facts.head.sha.clone(),
            subject: format!("Gate/{name}"),
            data,
        });
    }
    drafts
}

/// When a gate blocking now has blocked for its `openAfter`, if that is still to come.
pub fn next_blocked_problem(
    blocked_since: &BTreeMap<String, DateTime<Utc>>,
    open_after: &BTreeMap<String, Duration>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    blocked_since
        .iter()
        .filter_map(|(gate, since)| Some(*since + *open_after.get(gate)?))
        .filter(|at| *at > now)
        .min()
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
    let key = certificate_key(outcome.kind, &outcome.name);
    // A problem is open when an earlier event opened it (a certificate that failed on its
    // first issue has no status before), or when the status before shows it.
    let open_before = facts.open_before.contains(&key);
    let (kind, severity) = match outcome.change {
        Change::Issued => (EventType::CertificateIssued, FindingSeverity::Low),
        Change::Renewed => (EventType::CertificateRenewed, FindingSeverity::Low),
        Change::Reissued => (EventType::CertificateReissued, FindingSeverity::Low),
        Change::Removed => (EventType::CertificateRemoved, FindingSeverity::Low),
        Change::Failed => (EventType::CertificateFailed, FindingSeverity::High),
        // Written again (or elsewhere) after its writing failed: the certificate is in place,
        // and the problem its failure opened clears.
        Change::Rewritten | Change::Moved
            if facts
                .open_before
                .contains(&certificate_key(outcome.kind, &outcome.name)) =>
        {
            (EventType::CertificateIssued, FindingSeverity::Low)
        }
        Change::Rewritten | Change::Moved | Change::Unchanged => return None,
    };
    let id = (outcome.kind, outcome.name.clone());
    let before = facts.before.get(&id);
    let after = facts.after.get(&id);
    let verb = match outcome.change {
        Change::Failed => "failed",
        Change::Rewritten | Change::Moved => "written in place again",
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
            (open_before || before.is_some_and(|b| had_problem(facts, b))).then(|| {
                ConditionChange {
                    key: key.clone(),
                    open: false,
                }
            }),
        ),
        _ => (
            outcome
                .serial
                .clone()
                .or_else(|| after.map(|a| a.serial.clone()))
                .unwrap_or_else(|| facts.head.sha.clone()),
            (open_before || before.is_some_and(|b| had_problem(facts, b))).then(|| {
                ConditionChange {
                    key: key.clone(),
                    open: false,
                }
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

/// A problem of a certificate or issuer that left the repository before it had a status (it
/// failed on its first issue): nothing removes it, and its problem clears with it.
fn vanished_events(facts: &Facts) -> Vec<Draft> {
    let Some(catalog) = facts.catalog.filter(|_| facts.head_applied) else {
        return Vec::new();
    };
    facts
        .open_before
        .iter()
        .filter_map(|key| {
            let (kind, name) = key.split_once('/')?;
            let kind =
                Kind::parse(kind).filter(|k| matches!(k, Kind::Certificate | Kind::Issuer))?;
            let gone = catalog.get(kind, name).is_none()
                && !facts.before.contains_key(&(kind, name.to_owned()))
                && !facts
                    .outcomes
                    .iter()
                    .any(|o| o.kind == kind && o.name == name);
            if !gone {
                return None;
            }
            let mut data = data(
                facts,
                FindingSeverity::Low,
                format!("{kind} {name} removed from the repository"),
                key.clone(),
            );
            data.condition = Some(ConditionChange {
                key: key.clone(),
                open: false,
            });
            Some(Draft {
                kind: EventType::CertificateRemoved,
                anchor: facts.head.sha.clone(),
                subject: key.clone(),
                data,
            })
        })
        .collect()
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

/// `drafts` with the occurrence of the problem each opens or clears in its anchor: a problem
/// that comes back after it cleared (a finding on a commit seen before, a certificate failing
/// again) is another occurrence, and its events get ids of their own, where the same ids
/// would be taken for events already told. `openings` counts the events that opened each key.
pub fn occurrences(
    drafts: Vec<Draft>,
    open_before: &std::collections::BTreeSet<String>,
    openings: &std::collections::HashMap<String, i64>,
) -> Vec<Draft> {
    drafts
        .into_iter()
        .map(|mut draft| {
            if let Some(condition) = &draft.data.condition {
                let told = openings.get(&condition.key).copied().unwrap_or(0);
                let occurrence = if condition.open && !open_before.contains(&condition.key) {
                    told + 1
                } else {
                    told
                };
                draft.anchor = format!("{}#{occurrence}", draft.anchor);
            }
            draft
        })
        .collect()
}

/// The problems open after `events`: those open before, less what they clear, with what they
/// open.
pub fn open_after(
    before: &std::collections::BTreeSet<String>,
    events: &[super::Event],
) -> std::collections::BTreeSet<String> {
    let mut open = before.clone();
    for condition in events.iter().filter_map(|e| e.data.condition.as_ref()) {
        if condition.open {
            open.insert(condition.key.clone());
        } else {
            open.remove(&condition.key);
        }
    }
    open
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::model::{Enforcement, KeyAlgorithm};

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn commit(sha: &str) -> CommitInfo {
        CommitInfo {
            sha: sha.to_owned(),
            tree: git2::Oid::ZERO_SHA1,
            author: "Alice".into(),
            email: "alice@example.com".into(),
            summary: "change".into(),
            message: "change".into(),
            signature: None,
        }
    }

    fn status(name: &str, serial: &str, not_after: DateTime<Utc>) -> Arc<ResourceStatus> {
        Arc::new(ResourceStatus {
            kind: Kind::Certificate,
            name: name.to_owned(),
            spec_hash: "h".into(),
            issuer: Some("issuing".into()),
            issuer_fingerprint: None,
            serial: serial.to_owned(),
            fingerprint: "AA".into(),
            not_before: not_after - Duration::days(90),
            not_after,
            renew_at: not_after - Duration::days(7),
            key_algorithm: KeyAlgorithm::EcdsaP256,
            target: Some("web".into()),
            certificate: String::new(),
            conditions: Vec::new(),
        })
    }

    fn statuses(list: &[Arc<ResourceStatus>]) -> Statuses {
        list.iter()
            .map(|s| ((s.kind, s.name.clone()), s.clone()))
            .collect()
    }

    struct Case {
        now: DateTime<Utc>,
        head: CommitInfo,
        result: Outcome,
        head_applied: bool,
        outcomes: Vec<ResourceOutcome>,
        before: Statuses,
        after: Statuses,
        findings: Vec<Finding>,
        reviews_before: Vec<OpenReview>,
        reviews_after: Vec<OpenReview>,
        open_before: std::collections::BTreeSet<String>,
        blocked_since: BTreeMap<String, DateTime<Utc>>,
        open_after: BTreeMap<String, Duration>,
        gates: Vec<GateReport>,
    }

    impl Case {
        fn new(now: DateTime<Utc>) -> Case {
            Case {
                now,
                head: commit("c0ffee0000000000000000000000000000000000"),
                result: Outcome::Applied,
                head_applied: true,
                outcomes: Vec::new(),
                before: Statuses::new(),
                after: Statuses::new(),
                findings: Vec::new(),
                reviews_before: Vec::new(),
                reviews_after: Vec::new(),
                open_before: Default::default(),
                blocked_since: BTreeMap::new(),
                open_after: BTreeMap::new(),
                gates: Vec::new(),
            }
        }

        fn derive(&self) -> Vec<Draft> {
            derive(&Facts {
                now: self.now,
                head: &self.head,
                result: self.result,
                problems: &[],
                head_applied: self.head_applied,
                gates: &self.gates,
                overrides: &[],
                reviews_before: &self.reviews_before,
                reviews_after: &self.reviews_after,
                outcomes: &self.outcomes,
                before: &self.before,
                after: &self.after,
                findings: &self.findings,
                catalog: None,
                expiring_days: &EXPIRING_DAYS,
                open_before: &self.open_before,
                blocked_since: &self.blocked_since,
                open_after: &self.open_after,
            })
        }
    }

    fn told(drafts: &[Draft]) -> Vec<(EventType, String, Option<bool>)> {
        drafts
            .iter()
            .map(|d| {
                (
                    d.kind,
                    d.subject.clone(),
                    d.data.condition.as_ref().map(|c| c.open),
                )
            })
            .collect()
    }

    #[test]
    fn an_expiry_warning_is_told_once_per_serial_at_each_threshold_crossed() {
        let expires = at(28) + Duration::days(30);
        let mut case = Case::new(at(1));
        case.after = statuses(&[status("web", "01", expires)]);
        assert!(case.derive().is_empty(), "more than 30 days left");
        case.now = expires - Duration::days(29);
        let thirty = case.derive();
        assert_eq!(
            told(&thirty),
            [(
                EventType::CertificateExpiring,
                "Certificate/web".to_owned(),
                Some(true)
            )]
        );
        assert_eq!(thirty[0].data.severity, FindingSeverity::Medium);
        // Later, still within 30 days: the same event, the same id.
        case.now = expires - Duration::days(20);
        assert_eq!(
            case.derive()[0].id("file:///srv/pki"),
            thirty[0].id("file:///srv/pki")
        );
        // Crossing 7 days at once skips 14: one event, the tightest.
        case.now = expires - Duration::days(6);
        let seven = case.derive();
        assert_eq!(seven.len(), 1);
        assert_ne!(
            seven[0].id("file:///srv/pki"),
            thirty[0].id("file:///srv/pki")
        );
        assert_eq!(seven[0].data.severity, FindingSeverity::High);
        assert_eq!(seven[0].data.details["thresholdDays"], 7);
        case.now = expires - Duration::hours(3);
        assert_eq!(case.derive()[0].data.severity, FindingSeverity::Critical);
        // A renewed certificate is another serial: its warnings start again.
        case.after = statuses(&[status("web", "02", expires)]);
        assert_ne!(
            case.derive()[0].id("file:///srv/pki"),
            seven[0].id("file:///srv/pki")
        );
        case.now = expires + Duration::hours(1);
        assert!(case.derive().is_empty(), "expired: no warning left to give");
    }

    #[test]
    fn a_failing_certificate_opens_a_problem_that_its_next_issue_clears() {
        let expires = at(1) + Duration::days(90);
        let mut case = Case::new(at(1));
        let mut failing = (*status("web", "01", expires)).clone();
        failing.set_condition("Ready", false, "IssueFailed", "no".into(), at(1));
        case.outcomes = vec![ResourceOutcome {
            kind: Kind::Certificate,
            name: "web".into(),
            change: Change::Failed,
            serial: None,
            message: "the CA is down".into(),
        }];
        let failed = case.derive();
        assert_eq!(
            told(&failed),
            [(
                EventType::CertificateFailed,
                "Certificate/web".to_owned(),
                Some(true)
            )]
        );
        assert_eq!(
            failed[0].data.message,
            "Certificate web failed: the CA is down"
        );
        assert_eq!(failed[0].data.severity, FindingSeverity::High);
        // Failing again on the same commit: the same event.
        assert_eq!(
            case.derive()[0].id("file:///srv/pki"),
            failed[0].id("file:///srv/pki")
        );
        case.before = statuses(&[Arc::new(failing)]);
        case.after = statuses(&[status("web", "02", expires)]);
        case.outcomes[0].change = Change::Renewed;
        case.outcomes[0].serial = Some("02".into());
        case.outcomes[0].message.clear();
        assert_eq!(
            told(&case.derive()),
            [(
                EventType::CertificateRenewed,
                "Certificate/web".to_owned(),
                Some(false)
            )]
        );
        // A renewal with nothing wrong before clears nothing.
        case.before = statuses(&[status("web", "01", expires)]);
        assert_eq!(
            told(&case.derive()),
            [(
                EventType::CertificateRenewed,
                "Certificate/web".to_owned(),
                None
            )]
        );
    }

    #[test]
    fn the_first_issue_after_a_failed_first_issue_clears_the_failure() {
        // No status before: the problem the failure opened is known from the host's record.
        let mut case = Case::new(at(1));
        case.after = statuses(&[status("web", "01", at(1) + Duration::days(90))]);
        case.outcomes = vec![ResourceOutcome {
            kind: Kind::Certificate,
            name: "web".into(),
            change: Change::Issued,
            serial: Some("01".into()),
            message: String::new(),
        }];
        assert_eq!(told(&case.derive())[0].2, None);
        case.open_before.insert("Certificate/web".to_owned());
        assert_eq!(
            told(&case.derive()),
            [(
                EventType::CertificateIssued,
                "Certificate/web".to_owned(),
                Some(false)
            )]
        );
    }

    fn finding(status: FindingStatus, excepted: bool) -> Finding {
        Finding {
            policy: "key-size".into(),
            enforcement: Enforcement::Deny,
            severity: FindingSeverity::High,
            kind: Kind::Certificate,
            name: "web".into(),
            file: "web.yaml".into(),
            line: 7,
            column: 3,
            field: Some("spec.keyAlgorithm".into()),
            id: None,
            message: "RSA-2048 is too weak".into(),
            compliance: vec!["PCI-DSS-4.2.1".into()],
            status,
            exception: excepted.then(|| crate::policy::AppliedException {
                reason: "migrating".into(),
                owner: "web".into(),
                expires: "2026-12-31".into(),
            }),
        }
    }

    #[test]
    fn findings_are_told_when_they_come_into_force_and_when_they_clear() {
        let mut case = Case::new(at(1));
        case.findings = vec![
            finding(FindingStatus::New, false),
            finding(FindingStatus::New, true),
            finding(FindingStatus::Existing, false),
        ];
        let new = case.derive();
        assert_eq!(
            told(&new),
            [(
                EventType::PolicyViolation,
                "Certificate/web".to_owned(),
                Some(true)
            )]
        );
        assert_eq!(new[0].data.compliance, ["PCI-DSS-4.2.1"]);
        assert_eq!(new[0].data.resource.as_ref().and_then(|r| r.line), Some(7));
        case.findings = vec![finding(FindingStatus::Resolved, false)];
        let resolved = case.derive();
        assert_eq!(
            told(&resolved),
            [(
                EventType::PolicyResolved,
                "Certificate/web".to_owned(),
                Some(false)
            )]
        );
        // The problem the resolution clears is the one the violation opened.
        assert_eq!(
            resolved[0].data.condition,
            new[0].data.condition.clone().map(|mut c| {
                c.open = false;
                c
            })
        );
        // A head that is not applied brings no finding into force.
        case.head_applied = false;
        case.result = Outcome::Blocked;
        assert_eq!(
            told(&case.derive()),
            [(
                EventType::ReconcileBlocked,
                "commit/c0ffee000000".to_owned(),
                None
            )]
        );
    }

    #[test]
    fn an_override_review_is_told_when_it_becomes_overdue_and_when_it_is_done() {
        let record = OverrideRecord {
            gate: "prod".into(),
            commit: "beef".into(),
            principal: "alice@example.com".into(),
            key_fingerprint: "SHA256:x".into(),
            reason: "outage".into(),
            at: at(1),
            review_due: at(3),
        };
        let open = |overdue| OpenReview {
            record: record.clone(),
            overdue,
        };
        let mut case = Case::new(at(4));
        case.reviews_before = vec![open(false)];
        case.reviews_after = vec![open(true)];
        assert_eq!(
            told(&case.derive()),
            [(
                EventType::GateOverrideOverdue,
                "Gate/prod".to_owned(),
                Some(true)
            )]
        );
        case.reviews_before = vec![open(true)];
        assert!(case.derive().is_empty(), "told once");
        case.reviews_after = Vec::new();
        assert_eq!(
            told(&case.derive()),
            [(
                EventType::GateOverrideReviewed,
                "Gate/prod".to_owned(),
                Some(false)
            )]
        );
    }

    fn failing(name: &str) -> GateReport {
        GateReport {
            name: name.into(),
            file: "gates/prod.yaml".into(),
            line: 4,
            governing: crate::gate::Governing::InForce,
            outcome: GateOutcome::Fail,
            affected: vec!["Certificate/web".into()],
            affected_total: 1,
            requirements: Vec::new(),
            opens_at: None,
            override_: None,
        }
    }

    #[test]
    fn a_gate_blocking_longer_than_open_after_is_a_problem_until_it_lets_through() {
        let mut case = Case::new(at(10));
        case.result = Outcome::Blocked;
        case.head_applied = false;
        case.gates = vec![failing("prod")];
        case.open_after = BTreeMap::from([("prod".to_owned(), Duration::hours(4))]);
        // Blocking for an hour: told as blocked, not a problem yet; due in three hours.
        let before = BTreeMap::from([("prod".to_owned(), at(10) - Duration::hours(1))]);
        case.blocked_since = blocked_since(&before, &case.gates, case.now);
        let blocked = |kind, open| (kind, "Gate/prod".to_owned(), open);
        let reconcile = (
            EventType::ReconcileBlocked,
            "commit/c0ffee000000".to_owned(),
            None,
        );
        assert_eq!(
            told(&case.derive()),
            [blocked(EventType::GateBlocked, None), reconcile.clone()]
        );
        assert_eq!(
            next_blocked_problem(&case.blocked_since, &case.open_after, case.now),
            Some(at(10) + Duration::hours(3))
        );
        // Five hours: the problem opens, anchored to when the blocking began, so that each
        // reconcile while it lasts makes the same event.
        case.now = at(10) + Duration::hours(4);
        let drafts = case.derive();
        assert_eq!(
            told(&drafts),
            [
                blocked(EventType::GateBlocked, None),
                blocked(EventType::GateBlocked, Some(true)),
                reconcile,
            ]
        );
        assert_eq!(
            drafts[1].data.condition.as_ref().unwrap().key,
            "gate-blocked/prod"
        );
        // The gate passes: the problem clears.
        case.gates.clear();
        case.blocked_since = blocked_since(&case.blocked_since, &case.gates, case.now);
        case.open_before = ["gate-blocked/prod".to_owned()].into();
        case.result = Outcome::Applied;
        case.head_applied = true;
        assert_eq!(
            told(&case.derive()),
            [blocked(EventType::GateUnblocked, Some(false))]
        );
    }
}
