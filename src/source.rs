//! Reading the files of a configuration: the tree of a Git commit (straight from the object
//! database, no checkout) or a directory on disk, read as the commit that would be made of it.
//! Both list entries the same way and feed the same loader, which skips what `.gitwardignore`
//! lists, never follows a symbolic link, refuses oversized files before reading them, and
//! parses each blob once per [`BlobCache`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex};

use git2::{ObjectType, Oid, TreeWalkMode, TreeWalkResult};
use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::diag::{Diagnostic, Pos};
use crate::error::{Error, Result};
use crate::git::Repo;
use crate::model::parse::{self, EngineValues, MAX_FILE_BYTES, parse_file, text_of};
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
    engine_values: EngineValues,
}

impl BlobCache {
    /// A cache for a run that evaluates policies on few documents, or on none: their engine
    /// values are made when first read.
    pub fn evaluating_few() -> BlobCache {
        BlobCache {
            engine_values: EngineValues::OnFirstUse,
            ..BlobCache::default()
        }
    }

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

/// `.gitwardignore` as Git reads it — a file's own pattern, else its nearest directory's that
/// has one — with each directory's answer found once for all the files in it.
struct Ignored<'g> {
    matcher: &'g Gitignore,
    directories: HashMap<String, bool>,
}

impl Ignored<'_> {
    fn file(&mut self, path: &str) -> bool {
        if self.matcher.is_empty() {
            return false;
        }
        match self.matcher.matched(path, false) {
            Match::None => path
                .rsplit_once('/')
                .is_some_and(|(directory, _)| self.directory(directory)),
            own => own.is_ignore(),
        }
    }

    fn directory(&mut self, path: &str) -> bool {
        // Up to the nearest directory known (a loop: a tree may nest deeper than a stack),
        // then down again, each answered from its parent's.
        let mut unknown = Vec::new();
        let mut parents_answer = false;
        let mut next = Some(path);
        while let Some(directory) = next {
            if let Some(&known) = self.directories.get(directory) {
                parents_answer = known;
                break;
            }
            unknown.push(directory);
            next = directory.rsplit_once('/').map(|(parent, _)| parent);
        }
        for directory in unknown.into_iter().rev() {
            parents_answer = match self.matcher.matched(directory, true) {
                Match::None => parents_answer,
                own => own.is_ignore(),
            };
            self.directories
                .insert(directory.to_owned(), parents_answer);
        }
        parents_answer
    }
}

/// Loads every file of a source into a catalog.
pub fn load(source: &dyn Source, cache: &mut BlobCache) -> Result<Catalog> {
    let (entries, mut diagnostics) = source.entries()?;
    let (ignore, ignore_problems) = ignore_matcher(source, &entries);
    diagnostics.extend(ignore_problems);
    let mut ignored = Ignored {
        matcher: &ignore,
        directories: HashMap::new(),
    };
    let mut wanted = Vec::new();
    for entry in entries {
        if ignored.file(&entry.path) {
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
            (EntryKind::File, Some(role)) => wanted.push((entry, role)),
            _ => {}
        }
    }
    let parsed = parsed_entries(source, &wanted, cache);
    let files = wanted
        .into_iter()
        .zip(parsed)
        .map(|((entry, role), parsed)| LoadedFile {
            path: Arc::from(entry.path),
            role,
            parsed,
        })
        .collect();
    Ok(Catalog::assemble(files, diagnostics))
}

/// Fewest files to parse for which more threads than the caller's are worth starting.
const PARALLEL_FROM: usize = 64;

/// The parsed file of each entry: from the cache, or read and parsed. The caller's thread
/// reads every blob (a repository handle serves one thread) and parses along with one worker
/// per further core, so loading a large repository takes the time of its parsing divided by
/// the cores.
fn parsed_entries(
    source: &dyn Source,
    wanted: &[(Entry, Role)],
    cache: &mut BlobCache,
) -> Vec<Arc<ParsedFile>> {
    let mut parsed: Vec<Option<Arc<ParsedFile>>> = Vec::with_capacity(wanted.len());
    let mut missing = Vec::new();
    // Entries whose blob another entry before them reads too: parsed once, as one by one.
    let mut copies = Vec::new();
    let mut first_of: HashMap<(Oid, Role), usize> = HashMap::new();
    for (index, (entry, role)) in wanted.iter().enumerate() {
        let hit = entry.blob.and_then(|id| {
            cache.used.insert((id, *role));
            cache.parsed.get(&(id, *role)).cloned()
        });
        if hit.is_none() {
            match entry
                .blob
                .map(|id| *first_of.entry((id, *role)).or_insert(index))
            {
                Some(first) if first != index => copies.push((index, first)),
                _ => missing.push(index),
            }
        }
        parsed.push(hit);
    }
    let workers = if missing.len() < PARALLEL_FROM {
        0
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) - 1
    };
    let values = cache.engine_values;
    for (index, file) in parse_in_parallel(source, wanted, &missing, workers, values) {
        let file = Arc::new(file);
        let (entry, role) = &wanted[index];
        if let Some(id) = entry.blob {
            cache.parsed.insert((id, *role), file.clone());
        }
        parsed[index] = Some(file);
    }
    for (index, first) in copies {
        parsed[index] = parsed[first].clone();
    }
    parsed.into_iter().map(Option::unwrap_or_default).collect()
}

/// A read file waiting to be parsed: its index among the wanted entries, its role, its bytes.
type Job = (usize, Role, Result<Vec<u8>, ReadFailure>);

/// Most files read and waiting for a parser: a repository of large files is not held in
/// memory whole because reading outruns parsing.
const MOST_WAITING: usize = 64;

fn parse_in_parallel(
    source: &dyn Source,
    wanted: &[(Entry, Role)],
    missing: &[usize],
    workers: usize,
    values: EngineValues,
) -> Vec<(usize, ParsedFile)> {
    let (jobs, queue) = mpsc::sync_channel::<Job>(MOST_WAITING);
    let queue = Mutex::new(queue);
    let take = || queue.lock().ok()?.recv().ok();
    let work = || {
        let mut done = Vec::new();
        while let Some((index, role, bytes)) = take() {
            done.push((index, parsed_bytes(role, bytes, values)));
        }
        done
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        let mut done = Vec::new();
        for &index in missing {
            let (entry, role) = &wanted[index];
            // With the queue full, the reader parses what it just read.
            if let Err(
                TrySendError::Full((index, role, bytes))
                | TrySendError::Disconnected((index, role, bytes)),
            ) = jobs.try_send((index, *role, source.read(entry)))
            {
                done.push((index, parsed_bytes(role, bytes, values)));
            }
        }
        drop(jobs);
        done.extend(work());
        for helper in helpers {
            // A parser's panic is the caller's, as if it had parsed the file itself.
            done.extend(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        done
    })
}

fn parsed_bytes(
    role: Role,
    bytes: Result<Vec<u8>, ReadFailure>,
    values: EngineValues,
) -> ParsedFile {
    match bytes {
        Ok(bytes) => parse_file(role, &bytes, values),
        Err(failure) => {
            let (pos, message) = read_problem(&failure);
            ParsedFile {
                problems: vec![crate::diag::Problem::error(pos, message)],
                ..ParsedFile::default()
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Files held in memory, as a commit would list them (each with its own blob id).
    struct Files(Vec<(String, Vec<u8>)>);

    impl Source for Files {
        fn entries(&self) -> Result<(Vec<Entry>, Vec<Diagnostic>)> {
            let entries = self
                .0
                .iter()
                .map(|(path, bytes)| Entry {
                    path: path.clone(),
                    kind: EntryKind::File,
                    blob: Oid::hash_object(ObjectType::Blob, bytes).ok(),
                })
                .collect();
            Ok((entries, Vec::new()))
        }

        fn read(&self, entry: &Entry) -> Result<Vec<u8>, ReadFailure> {
            let (_, bytes) = self
                .0
                .iter()
                .find(|(path, _)| *path == entry.path)
                .ok_or_else(|| ReadFailure::Failed("no such file".to_owned()))?;
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(ReadFailure::TooLarge(bytes.len() as u64));
            }
            Ok(bytes.clone())
        }
    }

    fn messages(catalog: &Catalog) -> Vec<String> {
        catalog
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn many_files_load_as_one_by_one_whatever_thread_parses_them() {
        let mut files: Vec<(String, Vec<u8>)> = (0..300)
            .map(|n| {
                let text = if n % 7 == 3 {
                    format!("apiVersion: gitward/v1\nkind: Nope\nmetadata: {{name: x-{n}}}\n")
                } else {
                    format!(
                        "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {{name: root-{n:03}}}\nspec:\n  selfSigned: {{commonName: Root {n}}}\n"
                    )
                };
                (format!("issuers/{n:03}.yaml"), text.into_bytes())
            })
            .collect();
        files.push((
            "issuers/huge.yaml".to_owned(),
            vec![b'#'; MAX_FILE_BYTES as usize + 1],
        ));
        let source = Files(files);
        let mut cache = BlobCache::default();
        let catalog = load(&source, &mut cache).expect("load");
        let names: Vec<&str> = catalog.resources().iter().map(|l| l.name()).collect();
        let expected: Vec<String> = (0..300)
            .filter(|n| n % 7 != 3)
            .map(|n| format!("root-{n:03}"))
            .collect();
        assert_eq!(names, expected);
        let mut wanted: Vec<String> = (0..300)
            .filter(|n| n % 7 == 3)
            .map(|n| {
                format!(
                    "issuers/{n:03}.yaml:2:7: unknown kind `Nope`; expected Issuer, Certificate, Policy, Gate or Sink"
                )
            })
            .collect();
        wanted.push(format!(
            "issuers/huge.yaml:1:1: file is {} bytes; gitward reads files of at most {MAX_FILE_BYTES} bytes",
            MAX_FILE_BYTES + 1
        ));
        wanted.sort();
        assert_eq!(messages(&catalog), wanted);
        // Read again, every file from the cache: the same catalog.
        let again = load(&source, &mut cache).expect("load");
        assert_eq!(messages(&again), wanted);
        assert_eq!(again.resources().len(), expected.len());
    }

    #[test]
    fn a_blob_in_many_files_is_read_and_parsed_once() {
        /// [`Files`], counting the reads.
        struct Counted(Files, std::sync::atomic::AtomicUsize);
        impl Source for Counted {
            fn entries(&self) -> Result<(Vec<Entry>, Vec<Diagnostic>)> {
                self.0.entries()
            }
            fn read(&self, entry: &Entry) -> Result<Vec<u8>, ReadFailure> {
                self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.0.read(entry)
            }
        }
        let text = b"apiVersion: gitward/v1\nkind: Nope\n".to_vec();
        let files = (0..200)
            .map(|n| (format!("copies/{n:03}.yaml"), text.clone()))
            .collect();
        let source = Counted(Files(files), Default::default());
        let catalog = load(&source, &mut BlobCache::default()).expect("load");
        assert_eq!(source.1.into_inner(), 1);
        assert_eq!(catalog.diagnostics.len(), 200, "{:?}", messages(&catalog));
    }

    #[test]
    fn ignore_patterns_answer_as_the_gitignore_reader_does() {
        let mut builder = GitignoreBuilder::new("");
        for line in [
            "drafts/",
            "*.draft.yaml",
            "!keep.draft.yaml",
            "deep/**/skip/",
            "/rooted.yaml",
            "certs/old/",
            "!certs/old/kept.yaml",
            "a/a/a/",
            "!a/a/a/a/",
        ] {
            builder.add_line(None, line).expect("pattern");
        }
        let matcher = builder.build().expect("matcher");
        let deep = format!("{}x.yaml", "n/".repeat(5000));
        let paths = [
            "drafts/a.yaml",
            "x/drafts/b.yaml",
            "a.draft.yaml",
            "keep.draft.yaml",
            "sub/keep.draft.yaml",
            "deep/a/b/skip/c.yaml",
            "deep/skip/c.yaml",
            "deep/a/c.yaml",
            "rooted.yaml",
            "sub/rooted.yaml",
            "certs/old/kept.yaml",
            "certs/old/gone.yaml",
            "certs/new/x.yaml",
            "a/a/a/a/b.yaml",
            "a/a/a/b.yaml",
            "a/a/b.yaml",
            "plain.yaml",
            &deep,
        ];
        let mut ignored = Ignored {
            matcher: &matcher,
            directories: HashMap::new(),
        };
        // Twice, in both orders: answers found for a directory serve the files after it.
        for path in paths.iter().chain(paths.iter().rev()) {
            assert_eq!(
                ignored.file(path),
                matcher.matched_path_or_any_parents(path, false).is_ignore(),
                "{}",
                &path[..path.len().min(60)]
            );
        }
    }
}
