//! Approvals from a forge's reviews (`approvals.source: github | gitlab`): the pull request a
//! commit belongs to and its reviews, read through the host's forge with the host's token,
//! and which reviews count — decided without I/O.
//!
//! What counts is each reviewer's latest review (comments aside) when it approves the pull
//! request's final head; never the author's. A pull request counts for a commit of the tracked
//! branch only when it was merged into that branch as that commit: an approved head pushed
//! to the branch some other way proves nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::forge::{Forge, ForgeKind, PullRequest, Review};
use crate::model::ApprovalSource;
use crate::trust::Approval;

/// Longest the reviews of one change are waited for.
const LOOKUP_BUDGET: Duration = Duration::from_secs(30);

/// Which pull request of a commit's is the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The one merged into `branch` as the commit (the daemon, after the merge).
    Merged { branch: String },
    /// The open one whose head the commit is, or the one numbered so (a plan in CI).
    Open { number: Option<u64> },
}

/// A pull request and its reviews, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub forge: ForgeKind,
    pub pull: PullRequest,
    /// Oldest first.
    pub reviews: Vec<Review>,
}

/// The reviews read, or why they could not be.
pub type Answer = Result<Read, String>;

/// The commit whose pull request's reviews are asked for.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub sha: &'a str,
    /// Whether its first parent is the commit in force (or nothing is in force): then the
    /// pull request merged as it is all that changed since.
    pub follows_in_force: bool,
}

/// Reads the reviews of the pull request a commit is.
pub trait PullReviews: Sync {
    fn read(&self, asked: Asked<'_>) -> Answer;
}

/// Reviews that cannot be read, and why.
pub struct Unreadable(pub String);

impl Unreadable {
    pub fn no_forge() -> Unreadable {
        Unreadable(
            "no forge to read reviews from: the host config names none (`forge:`)".to_owned(),
        )
    }
}

impl PullReviews for Unreadable {
    fn read(&self, _asked: Asked<'_>) -> Answer {
        Err(self.0.clone())
    }
}

/// Reviews through the host config's forge, whose client is made only when a gate asks.
pub struct Hosted<'a> {
    pub config: &'a crate::config::HostConfig,
    pub wanted: Wanted,
}

impl PullReviews for Hosted<'_> {
    fn read(&self, asked: Asked<'_>) -> Answer {
        match self.config.forge_client() {
            None => Unreadable::no_forge().read(asked),
            Some(Err(error)) => Err(error.to_string()),
            Some(Ok(forge)) => Online {
                forge: forge.as_ref(),
                wanted: self.wanted.clone(),
                sha: None,
            }
            .read(asked),
        }
    }
}

/// Reviews read through a forge's API.
pub struct Online<'a> {
    pub forge: &'a dyn Forge,
    pub wanted: Wanted,
    /// The commit to look up instead of the change's head: in CI the head planned may be a
    /// test merge the forge knows nothing of.
    pub sha: Option<String>,
}

impl PullReviews for Online<'_> {
    fn read(&self, asked: Asked<'_>) -> Answer {
        let sha = self.sha.as_deref().unwrap_or(asked.sha);
        // On a thread of its own with a runtime of its own: gathering is synchronous, and its
        // caller may or may not be inside a runtime.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("reviews not read: {e}"))?;
                    runtime.block_on(async {
                        tokio::time::timeout(
                            LOOKUP_BUDGET,
                            self.lookup(sha, asked.follows_in_force),
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Err(format!(
                                "no answer within {} seconds",
                                LOOKUP_BUDGET.as_secs()
                            ))
                        })
                    })
                })
                .join()
                .unwrap_or_else(|_| Err("reviews not read: the reader failed".to_owned()))
        })
    }
}

impl Online<'_> {
    async fn lookup(&self, sha: &str, follows_in_force: bool) -> Answer {
        let pulls = self.forge.pulls_for(sha).await.map_err(|e| e.to_string())?;
        let pull = choose(&pulls, sha, &self.wanted).ok_or_else(|| match &self.wanted {
            Wanted::Merged { branch } => {
                format!(
                    "no pull request was merged into `{branch}` as {}",
                    short(sha)
                )
            }
            Wanted::Open { number: Some(n) } => {
                format!("pull request #{n} does not have {} as its head", short(sha))
            }
            Wanted::Open { number: None } => {
                format!("no pull request has {} as its head", short(sha))
            }
        })?;
        // The reviews are of the pull request's change: they speak for the commit only when
        // nothing else came in since the commit in force (a commit pushed to the branch and
        // then merged over is in the tree, unreviewed).
        if matches!(self.wanted, Wanted::Merged { .. }) && !follows_in_force {
            return Err(format!(
                "not every commit since the commit in force came through pull request #{}: \
                 merge pull requests one at a time, with a merge or squash commit",
                pull.number
            ));
        }
        let reviews = self.forge.reviews(&pull).await.map_err(|e| e.to_string())?;
        Ok(Read {
            forge: self.forge.kind(),
            pull,
            reviews,
        })
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The pull request of `pulls` that is the change `sha` brings.
pub fn choose(pulls: &[PullRequest], sha: &str, wanted: &Wanted) -> Option<PullRequest> {
    pulls
        .iter()
        .find(|p| match wanted {
            Wanted::Merged { branch } => {
                p.merged
                    && &p.base == branch
                    && (p.merge_sha.as_deref() == Some(sha) || p.head_sha == sha)
            }
            Wanted::Open { number: Some(n) } => p.number == *n && p.head_sha == sha,
            Wanted::Open { number: None } => !p.merged && p.head_sha == sha,
        })
        .cloned()
}

/// The forge whose reviews `source` counts.
pub fn forge_of(source: ApprovalSource) -> Option<ForgeKind> {
    match source {
        ApprovalSource::Github => Some(ForgeKind::GitHub),
        ApprovalSource::Gitlab => Some(ForgeKind::GitLab),
        ApprovalSource::Signatures | ApprovalSource::Trailers => None,
    }
}

/// The approvals a gate's `source` finds in `answer`, each with why it does not count when it
/// does not; or why there are none to look at.
pub fn approvals(
    gate: &str,
    source: ApprovalSource,
    answer: Option<&Answer>,
) -> Result<Vec<Approval>, String> {
    let wanted = forge_of(source).ok_or_else(|| format!("`{source}` is not a forge"))?;
    let read = match answer {
        Some(Ok(read)) => read,
        Some(Err(why)) => return Err(format!("reviews not read: {why}")),
        None => return Err("reviews not read".to_owned()),
    };
    if read.forge != wanted {
        return Err(format!(
            "the gate counts {wanted} reviews; this host's forge is {}",
            read.forge
        ));
    }
    let pull = &read.pull;
    // Each reviewer's latest review that says something (a comment neither approves nor
    // takes an approval back).
    let mut latest: BTreeMap<String, &Review> = BTreeMap::new();
    for review in &read.reviews {
        if matches!(review.state.as_str(), "COMMENTED" | "PENDING") {
            continue;
        }
        latest.insert(review.reviewer.to_lowercase(), review);
    }
    Ok(latest
        .into_values()
        .map(|review| {
            let refused = if review.reviewer.eq_ignore_ascii_case(&pull.author) {
                Some("opened the pull request (separation of duties)".to_owned())
            } else if !review.approved {
                Some(format!(
                    "their latest review is {}",
                    review.state.to_lowercase().replace('_', " ")
                ))
            } else if review.writer == Some(false) {
                Some("may not write to the repository".to_owned())
            } else if review.commit.as_deref() != Some(pull.head_sha.as_str()) {
                Some(match review.commit.as_deref() {
                    Some(commit) => format!(
                        "approved {}, not the final head {}",
                        short(commit),
                        short(&pull.head_sha)
                    ),
                    None => format!(
                        "approved a commit the forge no longer knows, not the final head {}",
                        short(&pull.head_sha)
                    ),
                })
            } else {
                None
            };
            Approval {
                gate: gate.to_owned(),
                approver: review.reviewer.clone(),
                source,
                key_fingerprint: None,
                refused,
                at: review.at,
                url: Some(review.url.clone()).filter(|u| !u.is_empty()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(merged: bool) -> PullRequest {
        PullRequest {
            number: 7,
            author: "octocat".to_owned(),
            head_sha: "head".to_owned(),
            base: "main".to_owned(),
            merged,
            merge_sha: merged.then(|| "merge".to_owned()),
            url: "https://github.com/acme/pki/pull/7".to_owned(),
        }
    }

    fn review(reviewer: &str, state: &str, commit: &str) -> Review {
        Review {
            reviewer: reviewer.to_owned(),
            approved: state == "APPROVED",
            state: state.to_owned(),
            at: None,
            commit: Some(commit.to_owned()),
            url: format!("https://github.com/acme/pki/pull/7#review-{reviewer}"),
            writer: Some(true),
        }
    }

    fn standing(reviews: Vec<Review>) -> Vec<(String, Option<String>)> {
        let read = Read {
            forge: ForgeKind::GitHub,
            pull: pull(true),
            reviews,
        };
        approvals("prod", ApprovalSource::Github, Some(&Ok(read)))
            .unwrap()
            .into_iter()
            .map(|a| (a.approver, a.refused))
            .collect()
    }

    #[test]
    fn each_reviewers_latest_word_on_the_final_head_counts() {
        let shown = standing(vec![
            review("alice", "APPROVED", "head"),
            review("alice", "COMMENTED", "head"),
            review("bob", "APPROVED", "head"),
            review("bob", "CHANGES_REQUESTED", "head"),
            review("carol", "APPROVED", "older"),
            review("dave", "CHANGES_REQUESTED", "older"),
            review("dave", "APPROVED", "head"),
            review("octocat", "APPROVED", "head"),
            review("erin", "APPROVED", "head"),
            review("erin", "DISMISSED", "head"),
        ]);
        assert_eq!(
            shown,
            [
                ("alice".to_owned(), None),
                (
                    "bob".to_owned(),
                    Some("their latest review is changes requested".to_owned())
                ),
                (
                    "carol".to_owned(),
                    Some("approved older, not the final head head".to_owned())
                ),
                ("dave".to_owned(), None),
                (
                    "erin".to_owned(),
                    Some("their latest review is dismissed".to_owned())
                ),
                (
                    "octocat".to_owned(),
                    Some("opened the pull request (separation of duties)".to_owned())
                ),
            ]
        );
    }

    #[test]
    fn only_a_pull_request_merged_into_the_branch_as_the_commit_is_the_change() {
        let merged = Wanted::Merged {
            branch: "main".to_owned(),
        };
        assert_eq!(
            choose(&[pull(true)], "merge", &merged).map(|p| p.number),
            Some(7)
        );
        // Fast-forward and rebase merges make the head the branch's commit.
        assert!(choose(&[pull(true)], "head", &merged).is_some());
        assert!(choose(&[pull(false)], "head", &merged).is_none());
        let elsewhere = PullRequest {
            base: "dev".to_owned(),
            ..pull(true)
        };
        assert!(choose(&[elsewhere], "merge", &merged).is_none());
        let open = Wanted::Open { number: Some(7) };
        assert!(choose(&[pull(false)], "head", &open).is_some());
        assert!(choose(&[pull(false)], "other", &open).is_none());
        assert!(choose(&[pull(false)], "head", &Wanted::Open { number: Some(8) }).is_none());
    }

    #[test]
    fn reviews_from_another_forge_or_unread_count_for_nothing() {
        let read = Read {
            forge: ForgeKind::GitLab,
            pull: pull(true),
            reviews: Vec::new(),
        };
        let error = approvals("prod", ApprovalSource::Github, Some(&Ok(read))).unwrap_err();
        assert_eq!(
            error,
            "the gate counts github reviews; this host's forge is gitlab"
        );
        let error =
            approvals("prod", ApprovalSource::Github, Some(&Err("x".to_owned()))).unwrap_err();
        assert_eq!(error, "reviews not read: x");
    }
}
