//! Emergency overrides: honoured only on a commit SSH-signed by a principal the gate names,
//! with a reason; each leaves a review open until another principal signs
//! `Override-Reviewed: <sha>` on a later commit.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Evidence, OVERRIDE_REVIEWED, OverrideRecord, OverrideReport};

/// The override of gate `name` that the applied commit carries, honoured or refused.
pub(super) fn override_of(
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
    // The key may be listed for several principals, or for a pattern: it signs for each.
    let signer = rule.by.iter().find(|b| signature.signed_by(b));
    let refused = if reason.is_empty() {
        Some("an override needs a reason after the gate's name".to_owned())
    } else {
        match (signer, signature.verified) {
            (Some(_), _) => None,
            (None, true) => Some(format!(
                "{} may not override this gate",
                signature.principal.as_deref().unwrap_or_default()
            )),
            (None, false) => Some(format!(
                "the commit is not signed by a listed key ({})",
                signature
                    .problem
                    .as_deref()
                    .unwrap_or("no verified signature")
            )),
        }
    };
    let used = match (refused.is_none(), signer) {
        (true, Some(principal)) => Some(OverrideRecord {
            gate: name.to_owned(),
            commit: head.sha.clone(),
            principal: principal.clone(),
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
    // A short id names an override only when it names one: git refuses ambiguous ones too.
    let names = |sha: &str, record: &OverrideRecord| {
        sha.len() >= 7
            && sha.len() <= record.commit.len()
            && record.commit.starts_with(&sha.to_ascii_lowercase())
    };
    let named = |sha: &str| open.iter().filter(|r| names(sha, &r.record)).count() == 1;
    let reviewed = |record: &OverrideRecord| {
        evidence.commits.iter().any(|c| {
            let signature = &c.signature;
            // Another principal, with another key: not the one who overrode under another name.
            signature.verified
                && !signature.signed_by(&record.principal)
                && signature.key_fingerprint.as_deref() != Some(record.key_fingerprint.as_str())
                && c.trailer(OVERRIDE_REVIEWED)
                    .any(|sha| names(sha, record) && named(sha))
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
