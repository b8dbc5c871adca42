//! Reading the files of a configuration: the tree of a Git commit (straight from the object
//! database, no checkout) or a directory on disk, read as the commit that would be made of it.
//! Both list entries the same way and feed the same loader, which skips what `.gitwardignore`
//! lists, never follows a symbolic link, refuses oversized files before reading them, and
//! parses each blob once per [`BlobCache`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::{ObjectType, Oid, TreeWalkMode, TreeWalkResult};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::diag::{Diagnostic, Pos};
use crate::error::{Error, Result};
use crate::git::Repo;
use crate::model::parse::{self, MAX_FILE_BYTES, parse_file, text_of};
use crate::model::{Catalog, LoadedFile, ParsedFile, Role};

pub const IGNORE_FILE: &str = ".gitwardignore";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Symlink,
    Submodule,
}

/// A file of a configuration, before it is read.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Repository-relative, `/`-separated.
    pub path: String,
    pub kind: EntryKind,
    /// The blob id, when the entry comes from Git.
    pub blob: Option<Oid>,
}

/// Why a file could not be read.
pub enum ReadFailure {
    TooLarge(u64),
    Failed(String),
}

/// A set of files to load.
pub trait Source {
    /// Every entry, and problems met while listing (names that are not UTF-8...).
    fn entries(&self) -> Result<(Vec<Entry>, Vec<Diagnostic>)>;
    /// The bytes of a file entry, refusing files over [`MAX_FILE_BYTES`] before reading them.
    fn read(&self, entry: &Entry) -> Result<Vec<u8>, ReadFailure>;
}

/// The tree of a commit.
pub struct GitTree<'r> {
    pub repo: &'r Repo,
    pub tree: Oid,
}

impl Source for GitTree<'_> {
    fn entries(&self) -> Result<(Vec<Entry>, Vec<Diagnostic>)> {
        let git = self.repo.inner();
        let tree = git
            .find_tree(self.tree)
            .map_err(Error::git("reading the commit tree"))?;
        let mut entries = Vec::new();
        let mut diagnostics = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            let kind = match entry.filemode() {
                0o120000 => EntryKind::Symlink,
                0o160000 => EntryKind::Submodule,
                _ if entry.kind() == Some(ObjectType::Blob) => EntryKind::File,
                _ => return TreeWalkResult::Ok,
            };
            let Ok(name) = entry.name() else {
                let shown = format!("{dir}{}", String::from_utf8_lossy(entry.name_bytes()));
                diagnostics.push(Diagnostic::warning(
                    &shown,
                    Pos::START,
                    "file name is not valid UTF-8; skipped",
                ));
                return TreeWalkResult::Ok;
            };
            entries.push(Entry {
                path: format!("{dir}{name}"),
                kind,
                blob: Some(entry.id()),
            });
            TreeWalkResult::Ok
        })
        .map_err(Error::git("walking the commit tree"))?;
        Ok((entries, diagnostics))
    }

    fn read(&self, entry: &Entry) -> Result<Vec<u8>, ReadFailure> {
        let odb = self
            .repo
            .inner()
            .odb()
            .map_err(|e| ReadFailure::Failed(e.message().to_owned()))?;
        let oid = entry
            .blob
            .ok_or_else(|| ReadFailure::Failed("no blob id".to_owned()))?;
        let (size, _) = odb
            .read_header(oid)
            .map_err(|e| ReadFailure::Failed(e.message().to_owned()))?;
        if size as u64 > MAX_FILE_BYTES {
            return Err(ReadFailure::TooLarge(size as u64));
        }
        let object = odb
            .read(oid)
            .map_err(|e| ReadFailure::Failed(e.message().to_owned()))?;
        Ok(object.data().to_vec())
    }
}

/// A directory on disk: a Git working tree, or a plain directory.
///
/// A working tree is read as the commit that would be made of it once its changes are added:
/// every file Git tracks, as it is on disk (a file that `.gitignore` lists but that was added
/// anyway is in every commit), and every file not yet added unless Git ignores it
/// (`.gitignore`, `.git/info/exclude`; such a file enters no commit without force). Not the
/// index: an edit is checked before it is staged. Submodules and nested repositories are not
/// entered, as a commit holds only their commit id; `.git` is never read; `.gitwardignore`
/// then applies as it does to a commit. Outside a Git repository nothing is tracked or
/// ignored by Git: every file is read.
pub struct Directory {
    root: PathBuf,
    git: Option<WorkTree>,
}

/// What Git knows of the working tree a [`Directory`] is in.
struct WorkTree {
    repo: git2::Repository,
    /// The directory's place in the working tree (empty at its root).
    prefix: PathBuf,
    /// Every path in the index, relative to the working tree's root.
    tracked: BTreeSet<PathBuf>,
    /// The paths in the index that are submodules.
    submodules: HashSet<PathBuf>,
}

/// What to do with an entry of the directory.
#[derive(Debug, PartialEq, Eq)]
enum Visit {
    Read,
    Skip,
    Submodule,
}

impl Directory {
    /// The directory `root`, with what Git tracks and ignores when it is in a working tree.
    pub fn open(root: &Path) -> Result<Directory> {
        if !root.is_dir() {
            return Err(Error::Io {
                path: root.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let repo = match git2::Repository::discover(root) {
            Ok(repo) => repo,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                return Ok(Directory {
                    root: root.to_path_buf(),
                    git: None,
                });
            }
            Err(e) => {
                return Err(Error::Git {
                    step: format!("opening the repository of {}", root.display()),
                    source: e,
                });
            }
        };
        let canonical = |p: &Path| p.canonicalize().map_err(Error::io(p));
        let dir = canonical(root)?;
        let no_work_tree = || {
            Error::Usage(format!(
                "{} is not in a working tree (a Git directory or a bare repository); name a commit with --rev",
                root.display()
            ))
        };
        let workdir = canonical(repo.workdir().ok_or_else(no_work_tree)?)?;
        if dir.starts_with(canonical(repo.path())?) {
            return Err(no_work_tree());
        }
        let prefix = dir
            .strip_prefix(&workdir)
            .map_err(|_| no_work_tree())?
            .to_path_buf();
        let index = repo.index().map_err(Error::git(format!(
            "reading the index of {}",
            workdir.display()
        )))?;
        let mut tracked = BTreeSet::new();
        let mut submodules = HashSet::new();
        for entry in index.iter() {
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(&entry.path));
            if entry.mode == 0o160000 {
                submodules.insert(path.clone());
            }
            tracked.insert(path);
        }
        Ok(Directory {
            root: root.to_path_buf(),
            git: Some(WorkTree {
                repo,
                prefix,
                tracked,
                submodules,
            }),
        })
    }

    /// Whether to read an entry (`relative` to the root), skip it, or report a submodule.
    fn visit(&self, relative: &Path, is_dir: bool) -> Result<Visit> {
        let nested_repository = || {
            self.root
                .join(relative)
                .join(".git")
                .symlink_metadata()
                .is_ok()
        };
        let Some(git) = &self.git else {
            return Ok(if is_dir && nested_repository() {
                Visit::Submodule
            } else {
                Visit::Read
            });
        };
        let path = git.prefix.join(relative);
        if git.submodules.contains(&path) {
            return Ok(Visit::Submodule);
        }
        // Tracked paths sort right after their directory: a directory holds a tracked file
        // when the first one after it is under it.
        let tracked = if is_dir {
            git.tracked
                .range(path.clone()..)
                .next()
                .is_some_and(|p| p.starts_with(&path))
        } else {
            git.tracked.contains(&path)
        };
        if !tracked
            && git.repo.is_path_ignored(&path).map_err(Error::git(format!(
                "reading the ignore rules for {}",
                path.display()
            )))?
        {
            return Ok(Visit::Skip);
        }
        Ok(if is_dir && nested_repository() {
            Visit::Submodule
        } else {
            Visit::Read
        })
    }
}

impl Source for Directory {
    fn entries(&self) -> Result<(Vec<Entry>, Vec<Diagnostic>)> {
        let mut entries = Vec::new();
        let mut diagnostics = Vec::new();
        let mut walk = walkdir::WalkDir::new(&self.root)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(item) = walk.next() {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    diagnostics.push(Diagnostic::warning(
                        ".",
                        Pos::START,
                        format!("cannot list a directory: {e}"),
                    ));
                    continue;
                }
            };
            let file_type = item.file_type();
            let Ok(relative) = item.path().strip_prefix(&self.root) else {
                continue;
            };
            if item.file_name() == ".git" {
                if file_type.is_dir() {
                    walk.skip_current_dir();
                }
                continue;
            }
            let kind = if file_type.is_dir() {
                match self.visit(relative, true)? {
                    Visit::Read => continue,
                    Visit::Skip => {
                        walk.skip_current_dir();
                        continue;
                    }
                    Visit::Submodule => {
                        walk.skip_current_dir();
                        EntryKind::Submodule
                    }
                }
            } else if self.visit(relative, false)? == Visit::Skip {
                continue;
            } else if file_type.is_symlink() {
                EntryKind::Symlink
            } else if file_type.is_file() {
                EntryKind::File
            } else {
                continue;
            };
            let Some(path) = relative_path(relative) else {
                let shown = relative.to_string_lossy().into_owned();
                diagnostics.push(Diagnostic::warning(
                    &shown,
                    Pos::START,
                    "file name is not valid UTF-8; skipped",
                ));
                continue;
            };
            entries.push(Entry {
                path,
                kind,
                blob: None,
            });
        }
        Ok((entries, diagnostics))
    }

    fn read(&self, entry: &Entry) -> Result<Vec<u8>, ReadFailure> {
        let path = self.root.join(&entry.path);
        let failed = |e: std::io::Error| ReadFailure::Failed(e.to_string());
        let size = std::fs::symlink_metadata(&path).map_err(failed)?.len();
        if size > MAX_FILE_BYTES {
            return Err(ReadFailure::TooLarge(size));
        }
        std::fs::read(&path).map_err(failed)
    }
}

fn relative_path(path: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = path.components().map(|c| c.as_os_str().to_str()).collect();
    parts.map(|p| p.join("/"))
}

/// Parsed files by blob id, shared between the commits a process loads.
#[derive(Default)]
pub struct BlobCache {
    parsed: HashMap<(Oid, Role), Arc<ParsedFile>>,
    /// Entries read since the last [`BlobCache::keep_only_used`].
    used: HashSet<(Oid, Role)>,
}

impl BlobCache {
    /// Forgets the files not read since the last call: a cache kept across commits holds
    /// what the latest ones have, not every version ever read.
    pub fn keep_only_used(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.parsed.retain(|key, _| used.contains(key));
    }
}

/// The `.gitwardignore` matcher, and problems with its patterns.
fn ignore_matcher(source: &dyn Source, entries: &[Entry]) -> (Gitignore, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut builder = GitignoreBuilder::new("");
    let file = entries
        .iter()
        .find(|e| e.path == IGNORE_FILE && e.kind == EntryKind::File);
    if let Some(entry) = file {
        let bytes = source.read(entry);
        match bytes
            .as_deref()
            .map_err(read_problem)
            .and_then(|b| text_of(b).map_err(|p| (p.pos, p.message)))
        {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    if let Err(e) = builder.add_line(None, line) {
                        diagnostics.push(Diagnostic::error(
                            IGNORE_FILE,
                            Pos::new(n + 1, 1),
                            format!("invalid pattern: {e}"),
                        ));
                    }
                }
            }
            Err((pos, message)) => diagnostics.push(Diagnostic::error(IGNORE_FILE, pos, message)),
        }
    }
    let matcher = builder.build().unwrap_or_else(|e| {
        diagnostics.push(Diagnostic::error(
            IGNORE_FILE,
            Pos::START,
            format!("invalid patterns: {e}"),
        ));
        Gitignore::empty()
    });
    (matcher, diagnostics)
}

fn read_problem(failure: &ReadFailure) -> (Pos, String) {
    match failure {
        ReadFailure::TooLarge(size) => {
            let p = parse::too_large(*size);
            (p.pos, p.message)
        }
        ReadFailure::Failed(message) => (Pos::START, format!("cannot read file: {message}")),
    }
}

/// Loads every file of a source into a catalog.
pub fn load(source: &dyn Source, cache: &mut BlobCache) -> Result<Catalog> {
    let (entries, mut diagnostics) = source.entries()?;
    let (ignore, ignore_problems) = ignore_matcher(source, &entries);
    diagnostics.extend(ignore_problems);
    let mut files = Vec::new();
    for entry in entries {
        if ignore
            .matched_path_or_any_parents(&entry.path, false)
            .is_ignore()
        {
            continue;
        }
        let role = Role::of(&entry.path);
        match (entry.kind, role) {
            (EntryKind::Symlink, Some(_)) => diagnostics.push(Diagnostic::error(
                &entry.path,
                Pos::START,
                "symbolic link: gitward never follows links; commit the file itself",
            )),
            (EntryKind::Symlink, None)
                if !entry.path.rsplit('/').next().unwrap_or("").contains('.') =>
            {
                diagnostics.push(Diagnostic::warning(
                    &entry.path,
                    Pos::START,
                    "symbolic link not followed; anything it points to is not loaded",
                ))
            }
            (EntryKind::Submodule, _) => diagnostics.push(Diagnostic::warning(
                &entry.path,
                Pos::START,
                "submodule not read; gitward loads only this repository's files",
            )),
            (EntryKind::File, Some(role)) => {
                let parsed = parsed_entry(source, &entry, role, cache);
                files.push(LoadedFile {
                    path: Arc::from(entry.path.as_str()),
                    role,
                    parsed,
                });
            }
            _ => {}
        }
    }
    Ok(Catalog::assemble(files, diagnostics))
}

fn parsed_entry(
    source: &dyn Source,
    entry: &Entry,
    role: Role,
    cache: &mut BlobCache,
) -> Arc<ParsedFile> {
    if let Some(id) = entry.blob {
        cache.used.insert((id, role));
        if let Some(hit) = cache.parsed.get(&(id, role)) {
            return hit.clone();
        }
    }
    let parsed = Arc::new(match source.read(entry) {
        Ok(bytes) => parse_file(role, &bytes),
        Err(failure) => {
            let (pos, message) = read_problem(&failure);
            ParsedFile {
                problems: vec![crate::diag::Problem::error(pos, message)],
                ..ParsedFile::default()
            }
        }
    });
    if let Some(id) = entry.blob {
        cache.parsed.insert((id, role), parsed.clone());
    }
    parsed
}

/// A configuration inside a Git repository: the repository and the directory of the
/// configuration in it (empty for the repository root; a subdirectory in a monorepo).
pub struct ConfigRepo {
    pub repo: Repo,
    prefix: String,
}

impl ConfigRepo {
    /// Opens the configuration at `dir`, searching upwards for its repository.
    pub fn open(dir: &Path) -> Result<ConfigRepo> {
        let repo = Repo::discover(dir)?;
        let canonical = |p: &Path| p.canonicalize().map_err(Error::io(p));
        let dir = canonical(dir)?;
        // Inside the `.git` directory (or a bare repository) there is no configuration
        // directory to speak of: the configuration is the whole tree.
        let in_git_dir = dir.starts_with(canonical(repo.inner().path())?);
        let prefix = match repo.inner().workdir() {
            Some(workdir) if !in_git_dir => dir
                .strip_prefix(canonical(workdir)?)
                .ok()
                .and_then(relative_path)
                .unwrap_or_default(),
            _ => String::new(),
        };
        Ok(ConfigRepo { repo, prefix })
    }

    /// The configuration's directory in the repository (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The commit `rev` and the catalog of the configuration in it.
    pub fn load(
        &self,
        rev: &str,
        cache: &mut BlobCache,
    ) -> Result<(crate::git::CommitInfo, Catalog)> {
        let commit = self.repo.commit(rev)?;
        let catalog = self.load_tree(commit.tree, commit.short(), cache)?;
        Ok((commit, catalog))
    }

    /// The catalog of the configuration in `tree`, of the commit (or merge) `name`. A tree in
    /// which the configuration's directory does not exist has an empty configuration, with a
    /// warning.
    pub fn load_tree(&self, tree: Oid, name: &str, cache: &mut BlobCache) -> Result<Catalog> {
        let tree = if self.prefix.is_empty() {
            Some(tree)
        } else {
            let root = self
                .repo
                .inner()
                .find_tree(tree)
                .map_err(Error::git("reading the commit tree"))?;
            root.get_path(Path::new(&self.prefix))
                .ok()
                .filter(|e| e.kind() == Some(ObjectType::Tree))
                .map(|e| e.id())
        };
        match tree {
            Some(tree) => load(
                &GitTree {
                    repo: &self.repo,
                    tree,
                },
                cache,
            ),
            None => Ok(Catalog::assemble(
                Vec::new(),
                vec![Diagnostic::warning(
                    &self.prefix,
                    Pos::START,
                    format!("no such directory in {name}: the configuration is empty"),
                )],
            )),
        }
    }
}
