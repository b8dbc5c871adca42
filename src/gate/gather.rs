//! Gathering the evidence gates judge on: from Git, the commits of the change with their
//! signatures and trailers, the approvals of the tree to apply, the SARIF reports; from the
//! systems that keep them, the change requests the applied commit names. Reads only; what
//! counts is decided elsewhere.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use git2::{Oid, Repository};

use super::change::{Ask, ChangeRequests};
use super::{CommitFacts, Evidence, change, scans};
use crate::model::{Catalog, Kind, Spec};
use crate::trust::approvals::approvals_of;
use crate::trust::commits::check_commit_now;
use crate::trust::signers::AllowedSigners;

/// Most commits of one change examined for authors, signatures and trailers. A longer
/// history is reported as incomplete, and approvals then do not count: separation of duties
/// cannot be checked.
pub const MOST_COMMITS: usize = 1000;

/// Where evidence comes from, and what the host trusts.
pub struct Sources<'a> {
    pub repo: &'a Repository,
    /// Directory of the configuration in the repository ("" at the root).
    pub root: &'a str,
    pub signers: Option<&'a AllowedSigners>,
    pub trust_trailers: bool,
    /// Where change requests are read (the host's endpoints).
    pub changes: &'a dyn ChangeRequests,
    /// Where pull request reviews are read (the host's forge).
    pub reviews: &'a dyn super::reviews::PullReviews,
}

/// The change to gather evidence for.
pub struct Change<'a> {
    /// The commit in force, when there is one.
    pub in_force: Option<Oid>,
    /// The tree in force (its reports are the base of `newOnly` scans).
    pub base_tree: Option<Oid>,
    /// The commit to apply.
    pub head: Oid,
    /// The tree to apply (approvals are of this tree).
    pub tree: Oid,
    /// The catalog whose gates govern the change.
    pub governing: &'a Catalog,
}

/// Gathers everything the governing gates may ask for; nothing when there is no gate.
pub fn gather(sources: &Sources<'_>, change: &Change<'_>, now: DateTime<Utc>) -> Evidence {
    let gates: Vec<_> = change
        .governing
        .of_kind(Kind::Gate)
        .filter_map(|l| match &l.resource.spec {
            Spec::Gate(spec) => Some((l.name(), spec)),
            _ => None,
        })
        .collect();
    let mut evidence = Evidence {
        trust_trailers: sources.trust_trailers,
        ..Evidence::default()
    };
    if gates.is_empty() {
        return evidence;
    }
    (evidence.commits, evidence.complete) = commits(sources, change.in_force, change.head, now);
    if gates.iter().any(|(_, g)| g.require.approvals.is_some()) {
        evidence.approvals = approvals_of(sources.repo, change.tree, sources.signers, now);
    }
    let counts_reviews = gates.iter().any(|(_, g)| {
        g.require
            .approvals
            .as_ref()
            .is_some_and(|a| super::reviews::forge_of(a.source).is_some())
    });
    if counts_reviews {
        let first_parent = sources
            .repo
            .find_commit(change.head)
            .ok()
            .and_then(|c| c.parent_id(0).ok());
        let sha = change.head.to_string();
        evidence.reviews = Some(sources.reviews.read(super::reviews::Asked {
            sha: &sha,
            follows_in_force: change.in_force.is_none() || first_parent == change.in_force,
        }));
    }
    let mut reports = Reports::new(sources);
    let mut scanned = HashMap::new();
    for (name, gate) in &gates {
        let Some(scan) = &gate.require.scans else {
            continue;
        };
        let head = reports.collect(change.tree, &scan.paths);
        let base = match change.base_tree {
            Some(tree) if scan.new_only => reports.collect(tree, &scan.paths),
            _ => Arc::default(),
        };
        scanned.insert((*name).to_owned(), (head, base));
    }
    evidence.scans = scanned;
    // One lookup per change request, however many gates ask about it.
    let asks: BTreeSet<Ask> = gates
        .iter()
        .filter_map(|(_, gate)| gate.require.change.as_ref())
        .filter_map(|requirement| change::ask_of(requirement, evidence.head()).ok())
        .collect();
    let asks: Vec<Ask> = asks.into_iter().collect();
    let answers = sources.changes.read(&asks);
    evidence.changes = asks.into_iter().zip(answers).collect();
    evidence
}

/// Most bytes of reports read for all the gates of one change together: each gate's reading
/// is bounded, and gates that read the same reports share them.
const MOST_REPORT_BYTES: usize = 64 << 20;

/// The SARIF reports read for a change's gates: a gate asking for what another already read
/// shares it, and all of them together stay within [`MOST_REPORT_BYTES`].
struct Reports<'a> {
    sources: &'a Sources<'a>,
    read: HashMap<(Oid, Vec<String>), Arc<scans::Collected>>,
    bytes: usize,
}

impl<'a> Reports<'a> {
    fn new(sources: &'a Sources<'a>) -> Reports<'a> {
        Reports {
            sources,
            read: HashMap::new(),
            bytes: 0,
        }
    }

    fn collect(&mut self, tree: Oid, patterns: &[String]) -> Arc<scans::Collected> {
        let key = (tree, patterns.to_vec());
        if let Some(known) = self.read.get(&key) {
            return known.clone();
        }
        let collected = if self.bytes >= MOST_REPORT_BYTES {
            scans::Collected {
                files: Vec::new(),
                problems: vec![format!(
                    "the gates' reports together are more than {} MiB; these are not read",
                    MOST_REPORT_BYTES >> 20
                )],
            }
        } else {
            let sources = self.sources;
            scans::collect(sources.repo, tree, sources.root, patterns)
        };
        self.bytes += collected.files.iter().map(|f| f.bytes.len()).sum::<usize>();
        let collected = Arc::new(collected);
        self.read.insert(key, collected.clone());
        collected
    }
}

/// The commits after `in_force` up to `head`, the head first, and whether that is all of
/// them. A head that cannot be walked yields the head alone.
fn commits(
    sources: &Sources<'_>,
    in_force: Option<Oid>,
    head: Oid,
    now: DateTime<Utc>,
) -> (Vec<CommitFacts>, bool) {
    let walk = || -> Result<Vec<Oid>, git2::Error> {
        let mut walk = sources.repo.revwalk()?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL)?;
        walk.push(head)?;
        if let Some(base) = in_force {
            walk.hide(base)?;
        }
        walk.take(MOST_COMMITS + 1).collect()
    };
    let (ids, complete) = match walk() {
        Ok(mut ids) => {
            let complete = ids.len() <= MOST_COMMITS;
            ids.truncate(MOST_COMMITS);
            (ids, complete)
        }
        Err(_) => (vec![head], false),
    };
    let facts = ids
        .into_iter()
        .filter_map(|id| facts_of(sources, id, now))
        .collect();
    (facts, complete)
}

fn facts_of(sources: &Sources<'_>, id: Oid, now: DateTime<Utc>) -> Option<CommitFacts> {
    let commit = sources.repo.find_commit(id).ok()?;
    let email = |s: git2::Signature<'_>| String::from_utf8_lossy(s.email_bytes()).into_owned();
    let message = String::from_utf8_lossy(commit.message_bytes());
    let trailers = git2::message_trailers_strs(&message)
        .map(|t| {
            t.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Some(CommitFacts {
        sha: id.to_string(),
        author_email: email(commit.author()),
        committer_email: email(commit.committer()),
        signature: check_commit_now(sources.repo, id, sources.signers, now),
        trailers,
    })
}
