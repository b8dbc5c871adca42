//! The Git repository: opening it, resolving revisions, reading commits and trees through
//! libgit2 (no checkout, no `git` process).

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use serde::Serialize;

use crate::diag::bounded;
use crate::error::{Error, Result};

/// Longest commit subject, author name and email kept: anyone who can push writes them, and
/// they are printed in plans, status and pull-request comments.
pub const MAX_SUMMARY_CHARS: usize = 200;

pub struct Repo {
    inner: Repository,
    path: PathBuf,
}

/// What gitward needs to know of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CommitInfo {
    /// Full object id.
    pub sha: String,
    #[serde(skip)]
    #[schemars(skip)]
    pub tree: Oid,
    pub author: String,
    pub email: String,
    /// First line of the message.
    pub summary: String,
    #[serde(skip)]
    #[schemars(skip)]
    pub message: String,
    /// Its SSH signature as checked against the allowed signers, when it was checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::trust::SignatureCheck>,
}

impl CommitInfo {
    pub fn short(&self) -> &str {
        abbreviated(&self.sha, 8)
    }
}

/// The first `chars` characters of an object id. Ids read from notes and status files are
/// anyone's text, so this cuts at a character, never inside one.
pub fn abbreviated(id: &str, chars: usize) -> &str {
    id.char_indices()
        .nth(chars)
        .map_or(id, |(end, _)| &id[..end])
}

impl Repo {
    /// Opens the repository containing `dir`, searching upwards as `git` does.
    pub fn discover(dir: &Path) -> Result<Repo> {
        // libgit2 re-hashes every object it reads by default; git itself does not, and with
        // thousands of status files that check is a large share of a reconcile.
        git2::opts::strict_hash_verification(false);
        let inner = Repository::discover(dir).map_err(|e| Error::NotARepository {
            path: dir.to_path_buf(),
            message: e.message().to_owned(),
        })?;
        Ok(Repo {
            inner,
            path: dir.to_path_buf(),
        })
    }

    pub fn inner(&self) -> &Repository {
        &self.inner
    }

    /// The branch HEAD names, born or not; `None` when HEAD is detached.
    pub fn head_branch(&self) -> Option<String> {
        let head = self.inner.find_reference("HEAD").ok()?;
        let target = head.symbolic_target().ok()??;
        target.strip_prefix("refs/heads/").map(str::to_owned)
    }

    /// Resolves a revision (`HEAD`, a branch, `main~2`, a sha) to its commit.
    pub fn commit(&self, rev: &str) -> Result<CommitInfo> {
        let unknown = |e: git2::Error| Error::UnknownRevision {
            rev: rev.to_owned(),
            repo: self.path.clone(),
            message: e.message().to_owned(),
        };
        let commit = self
            .inner
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(unknown)?;
        let author = commit.author();
        Ok(CommitInfo {
            sha: commit.id().to_string(),
            tree: commit.tree_id(),
            author: bounded(
                String::from_utf8_lossy(author.name_bytes()).into_owned(),
                MAX_SUMMARY_CHARS,
            ),
            email: bounded(
                String::from_utf8_lossy(author.email_bytes()).into_owned(),
                MAX_SUMMARY_CHARS,
            ),
            summary: bounded(
                String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into_owned(),
                MAX_SUMMARY_CHARS,
            ),
            message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
            signature: None,
        })
    }
}

/// What a plan compares with its base: the tree that merging the head into the base gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergedHead {
    pub tree: Oid,
    /// False when the head already contains the base: the merge fast-forwards to the head.
    pub merged: bool,
}

impl Repo {
    /// Keeps the objects this process writes from now on in memory, out of the repository:
    /// planning a merge writes its tree, and a check leaves the repository as it was (it may
    /// be read-only).
    pub fn write_in_memory(&self) -> Result<()> {
        let odb = self
            .inner
            .odb()
            .map_err(Error::git("opening the object database"))?;
        // Above the loose and packed backends, so that writes go to memory.
        odb.add_new_mempack_backend(1000)
            .map_err(Error::git("adding an in-memory object store"))?;
        Ok(())
    }

    /// What merging `head` into `base` gives, as a forge's test merge does: the head's own
    /// tree when it contains the base, else the tree of their merge, made in memory (no work
    /// tree or index touched). A conflict is an error naming the conflicting paths.
    pub fn merged_head(&self, base: &CommitInfo, head: &CommitInfo) -> Result<MergedHead> {
        let find = |commit: &CommitInfo| {
            Oid::from_str(&commit.sha)
                .and_then(|id| self.inner.find_commit(id))
                .map_err(Error::git(format!("reading commit {}", commit.short())))
        };
        let (ours, theirs) = (find(base)?, find(head)?);
        let fast_forward = match self.inner.merge_base(ours.id(), theirs.id()) {
            Ok(id) => id == ours.id(),
            // Unrelated histories merge as wholes, from an empty ancestor.
            Err(e) if e.code() == git2::ErrorCode::NotFound => false,
            Err(e) => return Err(Error::git("finding the merge base")(e)),
        };
        if fast_forward {
            return Ok(MergedHead {
                tree: head.tree,
                merged: false,
            });
        }
        let mut index = self
            .inner
            .merge_commits(&ours, &theirs, None)
            .map_err(Error::git("merging the head into the base"))?;
        if index.has_conflicts() {
            let conflicts = index
                .conflicts()
                .map_err(Error::git("listing merge conflicts"))?;
            let paths = conflicts
                .filter_map(|c| c.ok())
                .filter_map(|c| c.our.or(c.their).or(c.ancestor))
                .map(|entry| String::from_utf8_lossy(&entry.path).into_owned())
                .collect();
            return Err(Error::MergeConflict {
                base: base.short().to_owned(),
                head: head.short().to_owned(),
                paths,
            });
        }
        let tree = index
            .write_tree_to(&self.inner)
            .map_err(Error::git("writing the merged tree"))?;
        Ok(MergedHead { tree, merged: true })
    }
}

/// Who gitward commits as: the repository's configured identity, else its own.
pub fn signature(repo: &Repository) -> Result<git2::Signature<'static>> {
    repo.signature()
        .or_else(|_| git2::Signature::now("gitward", "gitward@localhost"))
        .map_err(Error::git("making a commit signature"))
}

impl Repo {
    /// Creates a repository at `dir` whose first branch is `main`.
    pub fn init(dir: &Path) -> Result<Repo> {
        let mut options = git2::RepositoryInitOptions::new();
        options.initial_head("main");
        let inner = Repository::init_opts(dir, &options)
            .map_err(Error::git(format!("git init {}", dir.display())))?;
        Ok(Repo {
            inner,
            path: dir.to_path_buf(),
        })
    }

    /// Writes `files` (path → contents) as blobs and nested trees; returns the root tree.
    /// Objects that exist already are not written again, so this is also how to learn
    /// whether a tree would differ from one in the repository.
    pub fn write_files(
        &self,
        files: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<[u8]>)>,
    ) -> Result<Oid> {
        let mut blobs = Vec::new();
        // One file's bytes at a time: the iterator may make them as they are written.
        for (path, bytes) in files {
            blobs.push((
                path.as_ref().to_owned(),
                self.inner
                    .blob(bytes.as_ref())
                    .map_err(Error::git("writing a blob"))?,
            ));
        }
        self.write_tree(&blobs)
            .map_err(Error::git("writing the tree"))
    }

    /// Commits `tree` on `refname` with `parent` as its parent; no work tree or index.
    pub fn commit_tree(
        &self,
        refname: &str,
        parent: Option<Oid>,
        tree: Oid,
        message: &str,
    ) -> Result<Oid> {
        let step = |what: &str| Error::git(format!("{what} for {refname}"));
        let tree = self
            .inner
            .find_tree(tree)
            .map_err(step("reading the tree"))?;
        let parents = match parent {
            Some(id) => vec![
                self.inner
                    .find_commit(id)
                    .map_err(step("reading the parent"))?,
            ],
            None => Vec::new(),
        };
        let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let sig = signature(&self.inner)?;
        self.inner
            .commit(Some(refname), &sig, &sig, message, &tree, &parent_refs)
            .map_err(step("committing"))
    }

    /// Commits `files` (path → contents) as the whole tree of a new commit on `refname`.
    pub fn commit_files<'a>(
        &self,
        refname: &str,
        parent: Option<Oid>,
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        message: &str,
    ) -> Result<Oid> {
        let tree = self.write_files(files)?;
        self.commit_tree(refname, parent, tree, message)
    }

    /// Writes nested tree objects for blobs at `/`-separated paths.
    fn write_tree(&self, blobs: &[(String, Oid)]) -> std::result::Result<Oid, git2::Error> {
        let mut builder = self.inner.treebuilder(None)?;
        let mut subdirs: std::collections::BTreeMap<&str, Vec<(String, Oid)>> = Default::default();
        for (path, id) in blobs {
            match path.split_once('/') {
                Some((dir, rest)) => subdirs.entry(dir).or_default().push((rest.to_owned(), *id)),
                None => {
                    builder.insert(path, *id, 0o100644)?;
                }
            }
        }
        for (dir, entries) in subdirs {
            let sub = self.write_tree(&entries)?;
            builder.insert(dir, sub, 0o040000)?;
        }
        builder.write()
    }

    /// Points HEAD at `refname` and makes the work tree match it.
    pub fn checkout(&self, refname: &str) -> Result<()> {
        self.inner
            .set_head(refname)
            .map_err(Error::git(format!("setting HEAD to {refname}")))?;
        let mut options = git2::build::CheckoutBuilder::new();
        options.force();
        self.inner
            .checkout_head(Some(&mut options))
            .map_err(Error::git(format!("checking out {refname}")))
    }
}
