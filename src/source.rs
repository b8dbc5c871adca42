//! Reading the files of a configuration: the tree of a Git commit (straight from the object
//! database, no checkout) or a working directory. Both list entries the same way and feed
//! the same loader, which skips what `.gitwardignore` lists, never follows a symbolic link,
//! refuses oversized files before reading them, and parses each blob once per [`BlobCache`].

use std::collections::{HashMap, HashSet};
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

/// A directory on disk (a working tree). Files that Git ignores are skipped, as they would
/// not be in a commit; `.git` is never read.
pub struct Directory {
    pub root: PathBuf,
}

impl Source for Directory {
    fn entries(&self) -> Result<(Vec<Entry>, Vec<Diagnostic>)> {
        let mut entries = Vec::new();
        let mut diagnostics = Vec::new();
        if !self.root.is_dir() {
            return Err(Error::Io {
                path: self.root.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let walker = ignore::WalkBuilder::new(&self.root)
            .hidden(false)
            .ignore(false)
            .parents(false)
            .follow_links(false)
            .filter_entry(|e| e.file_name() != ".git")
            .build();
        for item in walker {
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
            let Some(file_type) = item.file_type() else {
                continue;
            };
            let kind = if file_type.is_symlink() {
                EntryKind::Symlink
            } else if file_type.is_file() {
                EntryKind::File
            } else {
                continue;
            };
            let Ok(relative) = item.path().strip_prefix(&self.root) else {
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

    /// The commit `rev` and the catalog of the configuration in it. A commit in which the
    /// configuration's directory does not exist has an empty configuration, with a warning.
    pub fn load(
        &self,
        rev: &str,
        cache: &mut BlobCache,
    ) -> Result<(crate::git::CommitInfo, Catalog)> {
        let commit = self.repo.commit(rev)?;
        let tree = if self.prefix.is_empty() {
            Some(commit.tree)
        } else {
            let root = self
                .repo
                .inner()
                .find_tree(commit.tree)
                .map_err(Error::git("reading the commit tree"))?;
            root.get_path(Path::new(&self.prefix))
                .ok()
                .filter(|e| e.kind() == Some(ObjectType::Tree))
                .map(|e| e.id())
        };
        let catalog = match tree {
            Some(tree) => load(
                &GitTree {
                    repo: &self.repo,
                    tree,
                },
                cache,
            )?,
            None => Catalog::assemble(
                Vec::new(),
                vec![Diagnostic::warning(
                    &self.prefix,
                    Pos::START,
                    format!(
                        "no such directory in {}: the configuration is empty",
                        commit.short()
                    ),
                )],
            ),
        };
        Ok((commit, catalog))
    }
}
