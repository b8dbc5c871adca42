//! Pull requests planned by the daemon itself, with no CI: a delivery names a pull request
//! into the tracked branch, its head is fetched from the tracked remote's own ref for it,
//! planned against the commit in force — parsing and Rego only, the same sandbox as any
//! commit — and the status and comment are posted through the host's forge. After each new
//! outcome, the reconciled commit gets its `gitward/apply` status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use tokio::sync::Notify;

use crate::commands::{Judging, Readers, plan_report_reading};
use crate::config::HostConfig;
use crate::error::{Error, Result};
use crate::forge::post::{self, APPLY_CONTEXT};
use crate::forge::{Check, CheckState, CommentOutcome, ForgeError, ForgeKind};
use crate::gate::change::Online;
use crate::gate::reviews::{Hosted, Wanted};
use crate::remote::Workspace;
use crate::status::Outcome;
use crate::webhook::PullRequestEvent;

/// Pull requests waiting to be planned at most: a flood of authentic deliveries for new
/// numbers is refused beyond it; one pull request pushed to again is planned once.
const MOST_WAITING: usize = 256;

/// Pull requests waiting to be planned, the latest delivery of each.
#[derive(Default)]
pub struct Queue {
    waiting: Mutex<BTreeMap<u64, PullRequestEvent>>,
    wake: Notify,
}

impl Queue {
    /// Queues `event`; false when the queue is full.
    pub fn push(&self, event: PullRequestEvent) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.len() >= MOST_WAITING && !waiting.contains_key(&event.number) {
            return false;
        }
        waiting.insert(event.number, event);
        drop(waiting);
        self.wake.notify_one();
        true
    }

    async fn pop(&self) -> PullRequestEvent {
        loop {
            let next = {
                let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                waiting.pop_first().map(|(_, event)| event)
            };
            match next {
                Some(event) => return event,
                None => self.wake.notified().await,
            }
        }
    }
}

/// What planning a pull request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub number: u64,
    pub head: String,
    pub state: CheckState,
    pub comment: CommentOutcome,
}

/// Plans the pull requests queued, one at a time, until the daemon stops; `config` gives
/// the host config in force when each is planned.
pub async fn plan_queued(
    queue: Arc<Queue>,
    config: Arc<dyn Fn() -> HostConfig + Send + Sync>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            event = queue.pop() => event,
            _ = stopped.changed() => return,
        };
        let config = config();
        let number = event.number;
        let planned = tokio::task::spawn_blocking(move || plan_pull(&config, &event)).await;
        match planned {
            Ok(Ok(p)) => tracing::info!(
                pull = p.number,
                head = %p.head,
                state = p.state.as_str(),
                comment = p.comment.as_str(),
                "pull request planned"
            ),
            Ok(Err(error)) => tracing::warn!(pull = number, %error, "pull request not planned"),
            Err(error) => tracing::error!(pull = number, %error, "pull request planning stopped"),
        }
    }
}

/// The ref a forge keeps a pull request's head under, in the repository itself.
fn pull_ref(kind: ForgeKind, number: u64) -> Option<String> {
    match kind {
        ForgeKind::GitHub | ForgeKind::Gitea => Some(format!("refs/pull/{number}/head")),
        ForgeKind::GitLab => Some(format!("refs/merge-requests/{number}/head")),
        ForgeKind::Bitbucket | ForgeKind::AzureDevOps => None,
    }
}

/// Plans pull request `event.number` and posts the outcome: blocking work (git, Rego in
/// child processes, the forge's API).
pub fn plan_pull(config: &HostConfig, event: &PullRequestEvent) -> Result<Planned> {
    let setup = |why: String| Error::Forge(ForgeError::Setup(why));
    let Some(forge_config) = &config.forge else {
        return Err(setup("the host config names no forge".to_owned()));
    };
    let pull_ref = pull_ref(forge_config.type_, event.number).ok_or_else(|| {
        setup(format!(
            "{} keeps no ref of a pull request's head to plan from",
            forge_config.type_
        ))
    })?;
    let forge = config
        .forge_client()
        .ok_or_else(|| setup("the host config names no forge".to_owned()))??;
    let workspace = Workspace::of(config);
    let head = workspace.pull_head(&pull_ref, event.number)?.to_string();
    if head != event.head {
        tracing::debug!(pull = event.number, delivered = %event.head, fetched = %head,
            "the delivery's head is not the pull request's now: planning the one fetched");
    }
    let repo = crate::git::Repo::discover(workspace.path())?;
    let observed = crate::status::read(&repo, &config.status_branch)?;
    let base = match observed.summary.and_then(|s| s.applied) {
        Some(applied) => applied,
        None => format!("refs/heads/{}", config.repo.branch),
    };
    let now = Utc::now();
    let signers = config.allowed_signers();
    let planned = plan_report_reading(
        workspace.path(),
        &base,
        &head,
        &Judging {
            today: now.date_naive(),
            now,
            signers: signers.as_deref(),
            trust_trailers: config.trust_trailers(),
            list_pairs: false,
        },
        &Readers {
            changes: &Online {
                endpoints: &config.endpoints,
            },
            reviews: &Hosted {
                config,
                wanted: Wanted::Open {
                    number: Some(event.number),
                },
            },
        },
        true,
    );
    let report = match planned {
        Ok(report) => report,
        Err(error) => {
            // The author is told, without what only the host should know.
            let check = Check {
                context: post::PLAN_CONTEXT.to_owned(),
                state: CheckState::Error,
                description: post::one_line(&unplanned(&error), post::DESCRIPTION_CHARS),
                url: None,
            };
            if let Err(posting) = block_on(forge.set_check(&head, &check)) {
                tracing::warn!(pull = event.number, error = %posting, "the plan's failure not posted");
            }
            return Err(error);
        }
    };
    let posting = post::posting(&report, None, forge.comment_limit());
    let posted = block_on(post::post(
        forge.as_ref(),
        event.number,
        &head,
        &posting,
        &report,
    ))?;
    Ok(Planned {
        number: event.number,
        head,
        state: posting.check.state,
        comment: posted.comment,
    })
}

/// Why a pull request could not be planned, as its author may read it: what the repository
/// causes in its own words, anything else (the host's disk, its remote) only as a pointer to
/// the daemon's log.
fn unplanned(error: &Error) -> String {
    match error {
        Error::MergeConflict { .. } | Error::EmptyConfiguration { .. } => {
            format!("cannot be planned: {error}")
        }
        _ => "gitward could not plan this pull request; the daemon's log says why".to_owned(),
    }
}

/// The `gitward/apply` status of a reconciled commit: success when applied, failure when
/// blocked or failed, pending with the window's opening while it waits.
pub fn apply_check(report: &crate::reconcile::Report) -> Check {
    let problems = report.problems.join("; ");
    let (state, description) = match report.result {
        Outcome::Applied => (CheckState::Success, "applied".to_owned()),
        Outcome::Blocked => (CheckState::Failure, format!("blocked: {problems}")),
        Outcome::Failed => (CheckState::Failure, format!("failed: {problems}")),
        Outcome::Pending => (
            CheckState::Pending,
            match report.retry_at {
                Some(at) => format!(
                    "pending: applied when the window opens, {}",
                    at.format("%Y-%m-%d %H:%M UTC")
                ),
                None => "pending: applied when the window opens".to_owned(),
            },
        ),
    };
    Check {
        context: APPLY_CONTEXT.to_owned(),
        state,
        description: post::one_line(&description, post::DESCRIPTION_CHARS),
        url: None,
    }
}

/// Sets the `gitward/apply` status of the commit `report` reconciled.
pub fn post_apply_status(config: &HostConfig, report: &crate::reconcile::Report) -> Result<()> {
    let Some(forge) = config.forge_client() else {
        return Ok(());
    };
    let forge = forge?;
    let check = apply_check(report);
    Ok(block_on(forge.set_check(&report.source, &check))?)
}

/// Runs a forge call to its end on a thread and runtime of its own: the callers block, and
/// may or may not be on a runtime's thread.
fn block_on<T: Send>(
    work: impl std::future::Future<Output = std::result::Result<T, ForgeError>> + Send,
) -> std::result::Result<T, ForgeError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ForgeError::Setup(format!("no runtime: {e}")))?
                    .block_on(post::within_deadline(work))
            })
            .join()
            .unwrap_or_else(|_| Err(ForgeError::Setup("the forge call failed".to_owned())))
    })
}
