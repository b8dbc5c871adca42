//! Recording a reconcile in Git: the status branch (summary, resource statuses, each gate's
//! last decision, open override reviews) and the note on the reconciled commit.

use std::collections::BTreeMap;

use super::decide::Decision;
use super::{Executed, count_line};
use crate::config::HostConfig;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::git::CommitInfo;
use crate::model::Kind;
use crate::source::ConfigRepo;
use crate::status::{self, Change, Note, Observed, Record, ResourceOutcome, Summary};

/// What a reconcile records.
pub(super) struct Outcome<'a> {
    pub head: &'a CommitInfo,
    pub summary: &'a Summary,
    pub executed: &'a Executed,
    pub decision: &'a Decision,
    /// The head's policy findings, as the note lists them.
    pub findings: Vec<String>,
    /// The head's policy evaluation, when it was evaluated.
    pub evaluation: Option<status::NoteEvaluation>,
    /// The delivery state of the sinks.
    pub sinks: Vec<crate::events::outbox::SinkState>,
    /// The problems of the ticket sinks and their tickets.
    pub tickets: Vec<crate::tickets::store::Record>,
}

/// Where the outcome was recorded.
pub(super) struct Recorded {
    /// The status-branch commit that records it.
    pub status_commit: git2::Oid,
    /// Whether a new status commit was written (a reconcile that changes nothing writes none).
    pub wrote_status: bool,
}

/// Commits the status (unless the tip already records it) and writes the note.
pub(super) fn record(
    config_repo: &ConfigRepo,
    config: &HostConfig,
    observed: &Observed,
    outcome: &Outcome<'_>,
) -> Result<Recorded> {
    let repo = &config_repo.repo;
    let (executed, decision) = (outcome.executed, outcome.decision);
    let counts = count_line(&executed.outcomes);
    failpoint::point("before status commit");
    let unchanged = observed.summary.as_ref() == Some(outcome.summary)
        && observed.resources == executed.statuses
        && observed.reviews == decision.open_reviews
        && decision.gates.is_empty()
        && observed
            .tip
            .is_some_and(|tip| status::tickets_recorded(repo, tip, &outcome.tickets));
    let (status_commit, wrote_status) = match observed.tip {
        // Nothing observed changed: the tip already records it, no need to render it again.
        Some(tip) if unchanged => (status::record(repo, tip), false),
        _ => {
            let commit = status::commit(
                repo,
                &config.status_branch,
                observed,
                &Record {
                    summary: outcome.summary,
                    resources: &executed.statuses,
                    reviews: &decision.open_reviews,
                    gates: (!decision.gates.is_empty()).then_some(decision.gates.as_slice()),
                    sinks: &outcome.sinks,
                    tickets: &outcome.tickets,
                },
                &status::message(&outcome.head.sha, executed.result, &counts),
            )?;
            (commit, Some(commit) != observed.tip)
        }
    };
    failpoint::point("status committed");
    let source =
        git2::Oid::from_str(&outcome.head.sha).map_err(Error::git("reading the head commit id"))?;
    // The note tells what reconciling this commit changed: what an earlier reconcile of the
    // same commit did stays listed, what this one changed is added or updated.
    let earlier = status::read_note(repo, source);
    let mut changed: BTreeMap<(Kind, String), ResourceOutcome> = earlier
        .as_ref()
        .map(|n| {
            n.resources
                .iter()
                .map(|r| ((r.kind, r.name.clone()), r.clone()))
                .collect()
        })
        .unwrap_or_default();
    for r in executed
        .outcomes
        .iter()
        .filter(|r| r.change != Change::Unchanged)
    {
        log_outcome(r);
        changed.insert((r.kind, r.name.clone()), r.clone());
    }
    // A commit reconciled again after it was applied keeps the gate decisions that let it in,
    // and the evaluation it was applied with.
    let evaluation = outcome
        .evaluation
        .clone()
        .or_else(|| earlier.as_ref().and_then(|e| e.evaluation.clone()));
    let (gates, overrides) = match (decision.gates.is_empty(), earlier) {
        (true, Some(earlier)) => (earlier.gates, earlier.overrides),
        _ => (decision.gates.clone(), decision.overrides.clone()),
    };
    let note = Note {
        result: executed.result,
        status_commit: status_commit.to_string(),
        problems: executed.problems.clone(),
        resources: changed.into_values().collect(),
        findings: outcome.findings.clone(),
        gates,
        overrides,
        evaluation,
    };
    status::write_note(repo, source, &note)?;
    failpoint::point("note written");
    Ok(Recorded {
        status_commit,
        wrote_status,
    })
}

/// One event per changed resource, at the level its outcome deserves.
fn log_outcome(r: &ResourceOutcome) {
    macro_rules! resource_event {
        ($level:ident) => {
            tracing::$level!(
                kind = %r.kind,
                resource = %r.name,
                change = ?r.change,
                serial = r.serial.as_deref().unwrap_or_default(),
                detail = %r.message,
                "resource"
            )
        };
    }
    if r.change == Change::Failed {
        resource_event!(warn);
    } else {
        resource_event!(info);
    }
}
