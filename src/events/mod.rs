//! Events: what gitward tells SIEMs, webhooks and on-call about, as CloudEvents 1.0
//! structured JSON. [`derive`] works out a reconcile's events from plain values; [`outbox`]
//! keeps them in the state database until every sink has them.
//!
//! An event's `id` is a digest of what it is about (a commit or a certificate serial, the
//! resource, the type, the finding), never of when it was made: a reconcile redone after a
//! crash makes the same events with the same ids, which the outbox and the receivers that
//! deduplicate (webhook ids, PagerDuty dedup keys) take once.

pub mod derive;
pub mod outbox;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::model::{EventType, FindingSeverity, SinkSpec};

/// The prefix of every event's CloudEvents `type`.
pub const TYPE_PREFIX: &str = "dev.gitward.";

/// One event, as every sink receives it (CloudEvents 1.0, structured JSON mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub specversion: String,
    pub id: String,
    /// The repository the event is about (credentials in the URL removed).
    pub source: String,
    /// `dev.gitward.<event type>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `Kind/name` of the resource, or what else the event is about.
    pub subject: String,
    pub time: DateTime<Utc>,
    pub datacontenttype: String,
    pub data: EventData,
    /// Whether it opens a problem that was not open (not only tells that it lasts): such
    /// events count the occurrences of a problem. Known to the reconcile that makes it.
    #[serde(skip)]
    pub starts: bool,
}

/// What an event says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    pub severity: FindingSeverity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitRef>,
    pub message: String,
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub compliance: Vec<String>,
    /// What identifies the thing the event is about across events: the finding, the
    /// certificate, the gate. Receivers group and deduplicate by it.
    pub fingerprint: String,
    /// The problem this event opens or clears, for receivers that keep one incident or
    /// ticket per problem (PagerDuty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionChange>,
}

/// A resource an event is about and where it is defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// The commit an event comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRef {
    pub sha: String,
    pub author: String,
}

/// A problem that opens or clears with this event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionChange {
    /// Stable for as long as the problem is the same (a PagerDuty `dedup_key`).
    pub key: String,
    /// Whether the problem opens (`true`) or clears (`false`).
    pub open: bool,
}

impl Event {
    /// The event type, when it is one of gitward's.
    pub fn kind(&self) -> Option<EventType> {
        let name = self.type_.strip_prefix(TYPE_PREFIX)?;
        EventType::ALL.iter().copied().find(|t| t.as_str() == name)
    }

    /// Whether it clears a problem an earlier event opened.
    pub fn clears(&self) -> bool {
        self.data.condition.as_ref().is_some_and(|c| !c.open)
    }
}

/// The rank of a severity, `info` lowest: what `minSeverity` compares.
pub fn rank(severity: FindingSeverity) -> u8 {
    match severity {
        FindingSeverity::Info => 0,
        FindingSeverity::Low => 1,
        FindingSeverity::Medium => 2,
        FindingSeverity::High => 3,
        FindingSeverity::Critical => 4,
    }
}

/// The event types whose problems an event of type `kind` clears.
fn opened_by(kind: EventType) -> &'static [EventType] {
    use EventType as E;
    match kind {
        E::CertificateIssued
        | E::CertificateRenewed
        | E::CertificateReissued
        | E::CertificateRemoved => &[E::CertificateFailed, E::CertificateExpiring],
        E::PolicyResolved => &[E::PolicyViolation],
        E::GateOverrideReviewed => &[E::GateOverrideOverdue],
        E::GateUnblocked => &[E::GateBlocked],
        _ => &[],
    }
}

/// Whether a sink takes an event of type `kind` and `severity`. An event that clears a
/// problem goes wherever the event that opened it could go, whatever its own severity: an
/// incident opened by a `high` event must be able to close.
pub fn passes(sink: &SinkSpec, kind: EventType, severity: FindingSeverity, clears: bool) -> bool {
    if clears {
        return sink.events.contains(&kind)
            || opened_by(kind)
                .iter()
                .any(|opener| sink.events.contains(opener));
    }
    sink.events.contains(&kind) && rank(severity) >= rank(sink.min_severity)
}

/// The SQL condition (on columns `type`, `severity`, `clears`) that [`passes`] states, for
/// counting a sink's backlog in the database.
pub fn passes_sql(sink: &SinkSpec) -> String {
    let quoted = |kinds: &mut dyn Iterator<Item = EventType>| {
        kinds
            .map(|k| format!("'{}'", k.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let subscribed = quoted(&mut sink.events.iter().copied());
    let clearing = quoted(
        &mut EventType::ALL
            .iter()
            .copied()
            .filter(|k| passes(sink, *k, FindingSeverity::Info, true)),
    );
    format!(
        "((clears = 0 AND type IN ({subscribed}) AND severity >= {}) \
         OR (clears = 1 AND type IN ({clearing})))",
        rank(sink.min_severity)
    )
}

/// An event before it is dated and addressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub kind: EventType,
    /// What the event is anchored to: the commit, or the certificate's serial.
    pub anchor: String,
    pub subject: String,
    pub data: EventData,
}

impl Draft {
    /// The event's id: the same for the same source, anchor, subject, type and fingerprint —
    /// and another for another repository, whose commits may be the same.
    pub fn id(&self, source: &str) -> String {
        let mut digest = sha2::Sha256::new();
        for part in [
            source,
            self.anchor.as_str(),
            self.subject.as_str(),
            self.kind.as_str(),
            self.data.fingerprint.as_str(),
        ] {
            digest.update(part.as_bytes());
            digest.update([0]);
        }
        hex::encode(&digest.finalize()[..16])
    }

    /// The event, from `source` at `time`.
    pub fn seal(self, source: &str, time: DateTime<Utc>) -> Event {
        Event {
            specversion: "1.0".to_owned(),
            id: self.id(source),
            source: source.to_owned(),
            type_: format!("{TYPE_PREFIX}{}", self.kind.as_str()),
            subject: self.subject,
            time,
            datacontenttype: "application/json".to_owned(),
            data: self.data,
            starts: false,
        }
    }
}

/// The `source` of events about the repository at `url`: the URL without credentials, a
/// local path as a `file://` URL.
pub fn source_of(url: &str) -> String {
    let url = crate::redact::credentials(url);
    if crate::config::is_remote(&url) {
        url.into_owned()
    } else {
        format!("file://{url}")
    }
}

/// A file sink taking `events` from `min` severity up, for tests of filters and the outbox.
#[cfg(test)]
pub(crate) fn test_sink(events: &[EventType], min: FindingSeverity) -> SinkSpec {
    SinkSpec {
        type_: crate::model::SinkType::File,
        endpoint: crate::model::Name("out".into()),
        events: events.to_vec(),
        min_severity: min,
        splunk: None,
        sentinel: None,
        syslog: None,
        jira: None,
        servicenow: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(events: &[EventType], min: FindingSeverity) -> SinkSpec {
        test_sink(events, min)
    }

    #[test]
    fn a_clearing_event_goes_where_its_opener_went_whatever_its_severity() {
        let pager = sink(&[EventType::CertificateFailed], FindingSeverity::High);
        assert!(passes(
            &pager,
            EventType::CertificateFailed,
            FindingSeverity::High,
            false
        ));
        assert!(!passes(
            &pager,
            EventType::CertificateFailed,
            FindingSeverity::Medium,
            false
        ));
        assert!(passes(
            &pager,
            EventType::CertificateRenewed,
            FindingSeverity::Low,
            true
        ));
        assert!(!passes(
            &pager,
            EventType::CertificateRenewed,
            FindingSeverity::Low,
            false
        ));
        assert!(!passes(
            &pager,
            EventType::PolicyResolved,
            FindingSeverity::Low,
            true
        ));
    }

    #[test]
    fn the_same_draft_has_the_same_id_whenever_it_is_made() {
        let draft = Draft {
            kind: EventType::CertificateIssued,
            anchor: "01:02".into(),
            subject: "Certificate/web".into(),
            data: EventData {
                severity: FindingSeverity::Low,
                resource: None,
                commit: None,
                message: "issued".into(),
                details: Default::default(),
                compliance: vec![],
                fingerprint: "Certificate/web".into(),
                condition: None,
            },
        };
        let early = draft.clone().seal("file:///srv/pki", DateTime::UNIX_EPOCH);
        let late = draft.seal("file:///srv/pki", Utc::now());
        assert_eq!(early.id, late.id);
        assert_eq!(early.type_, "dev.gitward.certificate.issued");
        assert_eq!(early.kind(), Some(EventType::CertificateIssued));
    }
}
