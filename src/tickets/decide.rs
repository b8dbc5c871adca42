//! What a ticket sink does with an event about a problem, from plain values: the record of
//! the problem's ticket (if any) and the change the event brings.

use serde::{Deserialize, Serialize};

use crate::events::rank;
use crate::model::{FindingSeverity, OnReturn};

/// Where a problem's ticket stands, as gitward knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TicketState {
    /// A create was sent and its answer did not come: the ticket may exist.
    Creating,
    /// Open in the ticket system.
    Open,
    /// Resolved by gitward when its problem cleared.
    Resolved,
    /// Closed by a person as "won't fix": never reopened; its problem is accepted.
    Accepted,
    /// Closed by a person otherwise, or deleted there.
    Closed,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Creating => "creating",
            TicketState::Open => "open",
            TicketState::Resolved => "resolved",
            TicketState::Accepted => "accepted",
            TicketState::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<TicketState> {
        [
            TicketState::Creating,
            TicketState::Open,
            TicketState::Resolved,
            TicketState::Accepted,
            TicketState::Closed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What is recorded of a problem and its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub state: TicketState,
    /// Whether the problem is open, as the events told.
    pub problem_open: bool,
    pub severity: FindingSeverity,
    /// The outbox sequence number of the last event applied to it.
    pub last_seq: i64,
}

/// What an event says about a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The problem opens (or is still open and changed) rather than clears.
    pub open: bool,
    pub severity: FindingSeverity,
    pub seq: i64,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Open a ticket.
    Create,
    /// A create's outcome is unknown: look the ticket up by its tag, create it if absent.
    FindThenCreate,
    /// Comment on the open ticket (and raise its priority when the severity rose).
    Update,
    /// Resolve the ticket: its problem cleared.
    Resolve,
    /// A create's outcome is unknown and the problem cleared: resolve the ticket if it
    /// exists.
    FindThenResolve,
    /// Reopen the ticket: its problem is back (or still there after a person closed it).
    Reopen,
    /// Open a new ticket for a problem that came back; the old one stays closed.
    Replace,
    /// Nothing to send; the record takes the change (a won't-fix problem cleared...).
    Record,
    /// Nothing at all: the event was applied already, or concerns no ticket.
    Skip,
}

/// What to do with `change`, given what is recorded.
pub fn decide(standing: Option<&Standing>, change: &Change, on_return: OnReturn) -> Step {
    let Some(standing) = standing else {
        return if change.open {
            Step::Create
        } else {
            Step::Skip
        };
    };
    if change.seq <= standing.last_seq {
        return Step::Skip;
    }
    let back = match on_return {
        OnReturn::Reopen => Step::Reopen,
        OnReturn::New => Step::Replace,
    };
    match (change.open, standing.state) {
        (true, TicketState::Creating) => Step::FindThenCreate,
        (true, TicketState::Open) => Step::Update,
        (true, TicketState::Resolved) => back,
        // A person said "won't fix": while the problem lasts it stays accepted; once it
        // cleared, its return is a new problem, and that ticket is never reopened.
        (true, TicketState::Accepted) if standing.problem_open => Step::Record,
        (true, TicketState::Accepted) => Step::Replace,
        // Closed by a person while the problem is still there: it is reopened, as it would
        // be had it come back.
        (true, TicketState::Closed) if standing.problem_open => Step::Reopen,
        (true, TicketState::Closed) => back,
        (false, TicketState::Creating) => Step::FindThenResolve,
        (false, TicketState::Open) => Step::Resolve,
        (false, _) if standing.problem_open => Step::Record,
        (false, _) => Step::Skip,
    }
}

/// Whether `now` is more severe than `before`.
pub fn rose(before: FindingSeverity, now: FindingSeverity) -> bool {
    rank(now) > rank(before)
}

/// What a ticket observed in its system means for the record: the ticket's state after a
/// person's change, if it changed. A ticket of a cleared problem that a person reopens is
/// theirs to close; gitward only follows it.
pub fn observed(state: TicketState, done: bool, accepted: bool) -> TicketState {
    match (state, done, accepted) {
        (_, true, true) => TicketState::Accepted,
        (TicketState::Open | TicketState::Creating, true, false) => TicketState::Closed,
        (TicketState::Resolved, true, false) => TicketState::Resolved,
        (TicketState::Closed, true, false) => TicketState::Closed,
        (TicketState::Accepted, true, false) => TicketState::Closed,
        (_, false, _) => TicketState::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FindingSeverity::{High, Medium};

    fn standing(state: TicketState, problem_open: bool) -> Standing {
        Standing {
            state,
            problem_open,
            severity: Medium,
            last_seq: 10,
        }
    }

    fn opens(seq: i64) -> Change {
        Change {
            open: true,
            severity: High,
            seq,
        }
    }

    fn clears(seq: i64) -> Change {
        Change {
            open: false,
            severity: Medium,
            seq,
        }
    }

    #[test]
    fn a_problem_opens_changes_clears_and_returns() {
        use TicketState::*;
        let reopen = OnReturn::Reopen;
        assert_eq!(decide(None, &opens(1), reopen), Step::Create);
        assert_eq!(decide(None, &clears(1), reopen), Step::Skip);
        assert_eq!(
            decide(Some(&standing(Open, true)), &opens(11), reopen),
            Step::Update
        );
        assert_eq!(
            decide(Some(&standing(Open, true)), &clears(11), reopen),
            Step::Resolve
        );
        assert_eq!(
            decide(Some(&standing(Resolved, false)), &opens(11), reopen),
            Step::Reopen
        );
        assert_eq!(
            decide(Some(&standing(Resolved, false)), &opens(11), OnReturn::New),
            Step::Replace
        );
    }

    #[test]
    fn an_event_applied_already_is_skipped() {
        let open = standing(TicketState::Open, true);
        assert_eq!(
            decide(Some(&open), &opens(10), OnReturn::Reopen),
            Step::Skip
        );
        assert_eq!(
            decide(Some(&open), &clears(3), OnReturn::Reopen),
            Step::Skip
        );
    }

    #[test]
    fn an_unknown_create_is_looked_up_before_anything_else() {
        let creating = standing(TicketState::Creating, true);
        assert_eq!(
            decide(Some(&creating), &opens(11), OnReturn::Reopen),
            Step::FindThenCreate
        );
        assert_eq!(
            decide(Some(&creating), &clears(11), OnReturn::Reopen),
            Step::FindThenResolve
        );
    }

    #[test]
    fn a_wont_fix_is_never_reopened() {
        let accepted = standing(TicketState::Accepted, true);
        assert_eq!(
            decide(Some(&accepted), &opens(11), OnReturn::Reopen),
            Step::Record
        );
        assert_eq!(
            decide(Some(&accepted), &clears(11), OnReturn::Reopen),
            Step::Record
        );
        let cleared = standing(TicketState::Accepted, false);
        assert_eq!(
            decide(Some(&cleared), &opens(11), OnReturn::Reopen),
            Step::Replace
        );
    }

    #[test]
    fn a_ticket_a_person_closed_reopens_while_its_problem_lasts() {
        let closed = standing(TicketState::Closed, true);
        assert_eq!(
            decide(Some(&closed), &opens(11), OnReturn::New),
            Step::Reopen
        );
        assert_eq!(
            decide(Some(&closed), &clears(11), OnReturn::New),
            Step::Record
        );
    }

    #[test]
    fn what_a_person_did_is_followed() {
        use TicketState::*;
        assert_eq!(observed(Open, true, true), Accepted);
        assert_eq!(observed(Open, true, false), Closed);
        assert_eq!(observed(Open, false, false), Open);
        assert_eq!(observed(Resolved, false, false), Open);
        assert_eq!(observed(Resolved, true, false), Resolved);
        assert_eq!(observed(Accepted, false, false), Open);
    }
}
