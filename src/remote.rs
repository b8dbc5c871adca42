//! Following a remote repository. When `repo.url` names a remote (`https://`, `ssh://` or
//! scp-like `user@host:path`, `git://`, `file://`), gitward works in a bare mirror under `stateDir`: the tracked branch is
//! fetched into it before each reconcile, the status branch and the notes are written there and
//! pushed back without force. A push rejected because someone else pushed is answered by
//! fetching their refs, merging them under ours and pushing again: both histories stay, nothing
//! is pushed twice. A plain path is worked on in place, as `git` itself would.
//!
//! The mirror's own status branch and notes are the record the daemon trusts; what others push
//! to them is kept in history (a merge parent), never read back as observed state.
//!
//! Approvals ([`APPROVALS_REF`]) go the other way: people push them with `gitward approve`
//! and the mirror takes the remote's as they are; the daemon never writes or pushes them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use git2::{Oid, Repository};

use crate::config::{Credentials, HostConfig};
use crate::error::{Error, Result};
use crate::status::NOTES_REF;
use crate::trust::approvals::{APPROVALS_REF, union_blob};

/// Pushes tried before a publish gives up for this reconcile; the next one starts again.
const PUSH_ATTEMPTS: u32 = 5;
/// Where the remote's status refs are kept in the mirror.
const TRACKING_PREFIX: &str = "refs/remotes/origin/";
/// Where `gitward approve` keeps the remote's approvals while it merges them with its own.
const FETCHED_APPROVALS: &str = "refs/gitward/fetched-approvals";

/// Where a reconcile reads the configuration and writes status.
pub enum Workspace {
    /// The repository itself (a local path).
    InPlace(PathBuf),
    Mirror(Mirror),
}

/// A bare mirror of the remote at `url`.
pub struct Mirror {
    path: PathBuf,
    url: String,
    credentials: Option<Credentials>,
}

/// What the remote said during one reconcile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Why fetching failed, when it did; the reconcile then used the last fetched head.
    pub fetch_error: Option<String>,
    /// Why pushing failed, when it did; it is retried after the next reconcile.
    pub push_error: Option<String>,
    /// Pushes rejected because the remote had moved, then merged and retried.
    pub push_retries: u32,
}

impl Exchange {
    pub fn healthy(&self) -> bool {
        self.fetch_error.is_none() && self.push_error.is_none()
    }
}

impl Workspace {
    pub fn of(config: &HostConfig) -> Workspace {
        if !crate::config::is_remote(&config.repo.url) {
            return Workspace::InPlace(PathBuf::from(&config.repo.url));
        }
        Workspace::Mirror(Mirror {
            path: config.state_dir.join("mirror.git"),
            url: config.repo.url.clone(),
            credentials: config.repo.credentials.clone(),
        })
    }

    /// The repository a reconcile works in.
    pub fn path(&self) -> &Path {
        match self {
            Workspace::InPlace(path) | Workspace::Mirror(Mirror { path, .. }) => path,
        }
    }

    /// Whether the repository worked in holds `refname`.
    pub fn has(&self, refname: &str) -> bool {
        Repository::open(self.path()).is_ok_and(|repo| repo.find_reference(refname).is_ok())
    }

    /// Brings the tracked branch up to date (nothing to do in place).
    pub fn fetch(&self, branch: &str, status_branch: &str) -> Result<()> {
        match self {
            Workspace::InPlace(_) => Ok(()),
            Workspace::Mirror(mirror) => mirror.fetch(branch, status_branch),
        }
    }

    /// The head of a pull request, as the repository's own ref for it says (`refs/pull/N/head`
    /// on GitHub and Gitea, `refs/merge-requests/N/head` on GitLab): fetched from the tracked
    /// remote into `refs/gitward/pulls/N` of a mirror, read in place otherwise. Never from a
    /// URL a delivery names: a fork's head is planned as the forge publishes it here.
    pub fn pull_head(&self, pull_ref: &str, number: u64) -> Result<Oid> {
        let local = format!("refs/gitward/pulls/{number}");
        let name = match self {
            Workspace::InPlace(_) => pull_ref.to_owned(),
            Workspace::Mirror(mirror) => {
                let repo = open_or_init(&mirror.path)?;
                fetch(
                    &repo,
                    &mirror.url,
                    mirror.credentials.as_ref(),
                    &[format!("+{pull_ref}:{local}")],
                )?;
                local
            }
        };
        let repo = Repository::open(self.path())
            .map_err(Error::git(format!("opening {}", self.path().display())))?;
        repo.refname_to_id(&name)
            .map_err(Error::git(format!("reading {name}")))
    }

    /// Pushes status and notes (nothing to do in place); returns the rejections retried.
    pub fn publish(&self, status_branch: &str) -> Result<u32> {
        match self {
            Workspace::InPlace(_) => Ok(0),
            Workspace::Mirror(mirror) => mirror.publish(status_branch),
        }
    }
}

impl Mirror {
    /// Brings the tracked branch and the approvals up to date. On the first fetch into an
    /// empty mirror the remote's status branch and notes are adopted too, so a new host
    /// continues the record.
    fn fetch(&self, branch: &str, status_branch: &str) -> Result<()> {
        let repo = open_or_init(&self.path)?;
        let status = format!("refs/heads/{status_branch}");
        let mut refspecs = vec![
            format!("+refs/heads/{branch}:refs/heads/{branch}"),
            format!("+{APPROVALS_REF}:{APPROVALS_REF}"),
        ];
        let adopting = repo.find_reference(&status).is_err();
        if adopting {
            refspecs.extend(tracking_refspecs(status_branch));
        }
        fetch(&repo, &self.url, self.credentials.as_ref(), &refspecs)?;
        if adopting {
            for local in [status.as_str(), NOTES_REF] {
                if let Some(theirs) = oid_of(&repo, &tracking(local)) {
                    repo.reference(local, theirs, false, "gitward: adopt the remote's record")
                        .map_err(Error::git(format!("adopting {local}")))?;
                }
            }
        }
        Ok(())
    }

    /// Pushes the status branch and the notes without force; a rejection is fetched, merged
    /// and pushed again, up to [`PUSH_ATTEMPTS`] times. Returns the rejections retried.
    fn publish(&self, status_branch: &str) -> Result<u32> {
        let repo = open_or_init(&self.path)?;
        let status = format!("refs/heads/{status_branch}");
        let locals = [status.as_str(), NOTES_REF];
        let mut retries = 0;
        loop {
            let pending: Vec<&str> = locals
                .iter()
                .copied()
                .filter(|local| ahead_of_remote(&repo, local))
                .collect();
            if pending.is_empty() {
                return Ok(retries);
            }
            let rejected = push(&repo, &self.url, self.credentials.as_ref(), &pending)?;
            for local in pending
                .iter()
                .filter(|l| !rejected.iter().any(|(r, _)| r == *l))
            {
                if let Some(id) = oid_of(&repo, local) {
                    repo.reference(&tracking(local), id, true, "gitward: pushed")
                        .map_err(Error::git(format!("recording the push of {local}")))?;
                }
            }
            if rejected.is_empty() {
                return Ok(retries);
            }
            retries += 1;
            if retries >= PUSH_ATTEMPTS {
                let (name, why) = &rejected[0];
                return Err(Error::remote(
                    &self.url,
                    format!("pushing {name}"),
                    &format!("rejected {retries} times, last: {why}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100) * 2u32.pow(retries));
            fetch(
                &repo,
                &self.url,
                self.credentials.as_ref(),
                &tracking_refspecs(status_branch),
            )?;
            merge_status(&repo, &status)?;
            merge_notes(&repo)?;
        }
    }
}

fn tracking(local: &str) -> String {
    format!(
        "{TRACKING_PREFIX}{}",
        local
            .strip_prefix("refs/heads/")
            .unwrap_or(local.trim_start_matches("refs/"))
    )
}

fn tracking_refspecs(status_branch: &str) -> [String; 2] {
    let status = format!("refs/heads/{status_branch}");
    [
        format!("+{status}:{}", tracking(&status)),
        format!("+{NOTES_REF}:{}", tracking(NOTES_REF)),
    ]
}

fn oid_of(repo: &Repository, name: &str) -> Option<Oid> {
    repo.refname_to_id(name).ok()
}

/// Whether `local` holds commits the remote (as last seen) does not.
fn ahead_of_remote(repo: &Repository, local: &str) -> bool {
    let Some(ours) = oid_of(repo, local) else {
        return false;
    };
    match oid_of(repo, &tracking(local)) {
        None => true,
        Some(theirs) => ours != theirs && !repo.graph_descendant_of(theirs, ours).unwrap_or(false),
    }
}

fn open_or_init(path: &Path) -> Result<Repository> {
    match Repository::open_bare(path) {
        Ok(repo) => Ok(repo),
        Err(_) => {
            std::fs::create_dir_all(path).map_err(Error::io(path))?;
            Repository::init_bare(path).map_err(Error::git(format!("creating {}", path.display())))
        }
    }
}

/// Connection and read timeouts, so a remote that stops answering fails the step instead of
/// holding the daemon.
fn set_timeouts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: libgit2 reads these integers when it opens a connection; they are set once,
        // before the first connection this process makes.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(10_000);
            let _ = git2::opts::set_server_timeout_in_milliseconds(60_000);
        }
    });
}

/// Callbacks answering the remote's request for credentials with the ones the host config
/// names, once: a second request means they were refused; and checking an SSH server's host
/// key against the host config's known hosts when it names a file.
fn callbacks<'a>(
    url: &'a str,
    credentials: Option<&'a Credentials>,
    refused: &'a RefCell<Option<String>>,
) -> git2::RemoteCallbacks<'a> {
    let mut callbacks = git2::RemoteCallbacks::new();
    if let Some(file) = credentials.and_then(|c| c.known_hosts_file.as_deref()) {
        callbacks.certificate_check(move |cert, _| {
            // TLS certificates are libgit2's to check against the system's roots.
            let Some(hostkey) = cert.as_hostkey() else {
                return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
            };
            match (hostkey.hostkey_type(), hostkey.hostkey()) {
                (Some(kind), Some(key)) => known_host(file, &ssh_host(url), kind.name(), key)
                    .map(|()| git2::CertificateCheckStatus::CertificateOk)
                    .map_err(|why| {
                        let error = git2::Error::from_str(&why);
                        *refused.borrow_mut() = Some(why);
                        error
                    }),
                _ => Err(git2::Error::from_str("the SSH server sent no host key")),
            }
        });
    }
    let mut asked = false;
    callbacks.credentials(move |_url, username, allowed| {
        if std::mem::replace(&mut asked, true) {
            return Err(git2::Error::from_str("the remote refused the credentials"));
        }
        let Some(credentials) = credentials else {
            return Err(git2::Error::from_str(
                "the remote asks for credentials and the host config names none",
            ));
        };
        if let Some(key) = &credentials.ssh_key_file
            && allowed.contains(git2::CredentialType::SSH_KEY)
        {
            return git2::Cred::ssh_key(username.unwrap_or("git"), None, key, None);
        }
        if let Some(file) = &credentials.token_file
            && allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT)
        {
            let token = std::fs::read_to_string(file)
                .map_err(|e| git2::Error::from_str(&format!("reading {}: {e}", file.display())))?;
            // Forges take any user name with a token; GitHub documents this one.
            return git2::Cred::userpass_plaintext(
                username.unwrap_or("x-access-token"),
                token.trim_end_matches(['\r', '\n']),
            );
        }
        Err(git2::Error::from_str(
            "the remote asks for a kind of credentials the host config does not hold",
        ))
    });
    callbacks
}

/// How `known_hosts` names the SSH server of `url`: `host`, or `[host]:port` off port 22.
fn ssh_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // scp-like `host:path` has no port.
    match (url.contains("://"), host_port.rsplit_once(':')) {
        (true, Some((host, port))) if port != "22" => format!("[{host}]:{port}"),
        (true, Some((host, _))) => host.to_owned(),
        _ => host_port.split(':').next().unwrap_or(host_port).to_owned(),
    }
}

/// Whether `file` (in `known_hosts` format) lists `key` of type `kind` for `host`; if not, why.
fn known_host(file: &Path, host: &str, kind: &str, key: &[u8]) -> std::result::Result<(), String> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("reading the known hosts {}: {e}", file.display()))?;
    let listed = text.lines().any(|line| {
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(hosts), Some(k), Some(k64)) => {
                hosts.split(',').any(|h| h == host) && k == kind && k64 == encoded
            }
            _ => false,
        }
    });
    if listed {
        return Ok(());
    }
    let fingerprint = base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(<sha2::Sha256 as sha2::Digest>::digest(key));
    Err(format!(
        "the host key of {host} ({kind} SHA256:{fingerprint}) is not in {}",
        file.display()
    ))
}

fn fetch(
    repo: &Repository,
    url: &str,
    credentials: Option<&Credentials>,
    refspecs: &[String],
) -> Result<()> {
    set_timeouts();
    let refused = RefCell::new(None);
    let failed = failure(url, "fetching", &refused);
    let mut remote = repo.remote_anonymous(url).map_err(&failed)?;
    let mut options = git2::FetchOptions::new();
    // Nothing that names the URL, which may hold credentials, is written to the mirror:
    // no FETCH_HEAD, and a reflog message of our own.
    options
        .remote_callbacks(callbacks(url, credentials, &refused))
        .download_tags(git2::AutotagOption::None)
        .update_fetchhead(false);
    remote
        .fetch(refspecs, Some(&mut options), Some("gitward: fetch"))
        .map_err(&failed)
}

/// How a failed `step` is reported. libgit2 words a refused host key its own way; the reason
/// the check recorded in `refused` says which key and which file.
fn failure<'a>(
    url: &'a str,
    step: &'a str,
    refused: &'a RefCell<Option<String>>,
) -> impl Fn(git2::Error) -> Error + 'a {
    move |e| {
        let message = refused
            .borrow_mut()
            .take()
            .unwrap_or_else(|| e.message().to_owned());
        Error::remote(url, step, &message)
    }
}

/// Pushes `locals` to the same names on the remote without force; returns the refs the
/// remote rejected, with why. A failure to talk to the remote at all is an error.
fn push(
    repo: &Repository,
    url: &str,
    credentials: Option<&Credentials>,
    locals: &[&str],
) -> Result<Vec<(String, String)>> {
    set_timeouts();
    let refused = RefCell::new(None);
    let failed = failure(url, "pushing", &refused);
    let rejected = RefCell::new(Vec::new());
    let refspecs: Vec<String> = locals.iter().map(|l| format!("{l}:{l}")).collect();
    let mut remote = repo.remote_anonymous(url).map_err(&failed)?;
    let mut callbacks = callbacks(url, credentials, &refused);
    callbacks.push_update_reference(|name, status| {
        if let Some(why) = status {
            rejected
                .borrow_mut()
                .push((name.to_owned(), why.to_owned()));
        }
        Ok(())
    });
    let mut options = git2::PushOptions::new();
    options.remote_callbacks(callbacks);
    match remote.push(&refspecs, Some(&mut options)) {
        Ok(()) => {}
        // Checked before sending: the remote's ref is not an ancestor of ours.
        Err(e) if e.code() == git2::ErrorCode::NotFastForward => {
            drop(options);
            return Ok(locals
                .iter()
                .map(|l| ((*l).to_owned(), e.message().to_owned()))
                .collect());
        }
        Err(e) => return Err(failed(e)),
    }
    drop(options);
    Ok(rejected.into_inner())
}

/// When the remote's `local`, fetched into `fetched`, moved somewhere ours does not contain,
/// commits a merge with both tips as parents and the tree and message `merged` makes of
/// them, and moves `local` to it.
fn merge_with_remote(
    repo: &Repository,
    local: &str,
    fetched: &str,
    merged: impl FnOnce(&git2::Commit<'_>, &git2::Commit<'_>) -> Result<(Oid, String)>,
) -> Result<()> {
    let step = |what: &str| Error::git(format!("{what} {local}"));
    let (Some(ours), Some(theirs)) = (oid_of(repo, local), oid_of(repo, fetched)) else {
        return Ok(());
    };
    if ours == theirs || repo.graph_descendant_of(ours, theirs).unwrap_or(false) {
        return Ok(());
    }
    let our_commit = repo.find_commit(ours).map_err(step("reading"))?;
    let their_commit = repo
        .find_commit(theirs)
        .map_err(step("reading the remote's"))?;
    let (tree, message) = merged(&our_commit, &their_commit)?;
    let tree = repo
        .find_tree(tree)
        .map_err(step("reading the merged tree of"))?;
    let sig = crate::git::signature(repo)?;
    let merge = repo
        .commit(
            None,
            &sig,
            &sig,
            &message,
            &tree,
            &[&our_commit, &their_commit],
        )
        .map_err(step("merging"))?;
    repo.reference_matching(local, merge, true, ours, "gitward: merge the remote's")
        .map_err(step("moving"))?;
    Ok(())
}

/// The status branch keeps our tree, the record the daemon observes; the remote's commits stay
/// in history. The merge carries no `Gitward-` trailers: each source keeps one record.
fn merge_status(repo: &Repository, local: &str) -> Result<()> {
    merge_with_remote(repo, local, &tracking(local), |ours, _theirs| {
        let message = "Keep the status on top of what was pushed to the remote\n".to_owned();
        Ok((ours.tree_id(), message))
    })
}

/// Notes from both sides, one per annotated commit; where both annotate the same commit, ours
/// wins (the remote's version stays in history).
fn merge_notes(repo: &Repository) -> Result<()> {
    merge_with_remote(repo, NOTES_REF, &tracking(NOTES_REF), |ours, theirs| {
        let mut notes = note_entries(theirs, NOTES_REF)?;
        notes.extend(note_entries(ours, NOTES_REF)?);
        Ok((
            notes_tree(repo, NOTES_REF, &notes)?,
            "Notes merged with the remote's\n".to_owned(),
        ))
    })
}

/// A flat notes tree of `notes` (annotated id → note blob).
fn notes_tree(repo: &Repository, notes_ref: &str, notes: &BTreeMap<String, Oid>) -> Result<Oid> {
    let step = |what: &str| Error::git(format!("{what} {notes_ref}"));
    let mut builder = repo.treebuilder(None).map_err(step("merging"))?;
    for (annotated, blob) in notes {
        builder
            .insert(annotated, *blob, 0o100644)
            .map_err(step("merging"))?;
    }
    builder.write().map_err(step("writing the tree of"))
}

/// The notes in a notes commit's tree: annotated object id → note blob, with or without
/// fan-out directories.
fn note_entries(commit: &git2::Commit<'_>, notes_ref: &str) -> Result<BTreeMap<String, Oid>> {
    let tree = commit
        .tree()
        .map_err(Error::git(format!("reading the tree of {notes_ref}")))?;
    let mut notes = BTreeMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob)
            && let Ok(name) = entry.name()
        {
            let id = format!("{}{name}", dir.replace('/', ""));
            if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                notes.insert(id, entry.id());
            }
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(Error::git(format!("reading {notes_ref}")))?;
    Ok(notes)
}

/// Pushes the approvals of `repo` to `remote` (a remote's name or a URL) without force; a
/// push rejected because the remote's approvals moved is answered by fetching them, merging
/// them with ours (every approval of either side kept) and pushing again, up to
/// [`PUSH_ATTEMPTS`] times. Returns the rejections retried.
///
/// This runs `git` itself: `gitward approve` is run by people in their clones, whose remotes
/// are reached with their own SSH configuration, agent and credential helpers.
pub fn push_approvals(repo: &Repository, remote: &str) -> Result<u32> {
    let refspec = format!("{APPROVALS_REF}:{APPROVALS_REF}");
    let mut retries = 0;
    loop {
        let output = git(repo, &["push", "--porcelain", remote, &refspec])?;
        let why = match rejection(&output) {
            None if output.status.success() => return Ok(retries),
            None => return Err(git_failure(remote, "pushing", &output)),
            Some(why) => why,
        };
        retries += 1;
        if retries >= PUSH_ATTEMPTS {
            return Err(Error::remote(
                remote,
                format!("pushing {APPROVALS_REF}"),
                &format!("rejected {retries} times, last: {why}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100) * 2u32.pow(retries));
        // A remote without approvals has none to merge: it refused for another reason.
        let listed = git(repo, &["ls-remote", remote, APPROVALS_REF])?;
        if !listed.status.success() {
            return Err(git_failure(remote, "looking for", &listed));
        }
        if listed.stdout.is_empty() {
            continue;
        }
        let fetch = format!("+{APPROVALS_REF}:{FETCHED_APPROVALS}");
        let output = git(
            repo,
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                remote,
                &fetch,
            ],
        )?;
        if !output.status.success() {
            return Err(git_failure(remote, "fetching", &output));
        }
        merge_approvals(repo)?;
    }
}

/// Why `git push --porcelain` says the remote did not take the ref, if it did not, with what
/// the remote's hooks said. `!` flags it: `[rejected] (fetch first)` when the remote moved,
/// `[remote rejected] (…)` when it refused, or lost a race for the ref's lock.
fn rejection(output: &std::process::Output) -> Option<String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|line| line.starts_with('!'))?;
    let why = line.rsplit('\t').next().unwrap_or(line);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remote: "))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Some(if said.is_empty() {
        why.to_owned()
    } else {
        format!("{why}: {}", said.join(" "))
    })
}

/// Runs `git` on `repo`.
fn git(repo: &Repository, args: &[&str]) -> Result<std::process::Output> {
    std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo.path())
        .args(args)
        .output()
        .map_err(Error::io("git"))
}

fn git_failure(remote: &str, step: &str, output: &std::process::Output) -> Error {
    Error::remote(
        remote,
        format!("{step} {APPROVALS_REF}"),
        String::from_utf8_lossy(&output.stderr).trim(),
    )
}

/// Brings the fetched approvals into ours: a fast-forward when ours adds nothing, else a
/// merge whose notes hold the approvals of both sides.
fn merge_approvals(repo: &Repository) -> Result<()> {
    let (ours, theirs) = (oid_of(repo, APPROVALS_REF), oid_of(repo, FETCHED_APPROVALS));
    if let (Some(ours), Some(theirs)) = (ours, theirs)
        && repo.graph_descendant_of(theirs, ours).unwrap_or(false)
    {
        repo.reference_matching(
            APPROVALS_REF,
            theirs,
            true,
            ours,
            "gitward: fast-forward to the remote's approvals",
        )
        .map_err(Error::git(format!("moving {APPROVALS_REF}")))?;
    } else if ours.is_none()
        && let Some(theirs) = theirs
    {
        repo.reference(
            APPROVALS_REF,
            theirs,
            false,
            "gitward: the remote's approvals",
        )
        .map_err(Error::git(format!("creating {APPROVALS_REF}")))?;
    } else {
        merge_with_remote(repo, APPROVALS_REF, FETCHED_APPROVALS, |ours, theirs| {
            let mut notes = note_entries(theirs, APPROVALS_REF)?;
            for (annotated, blob) in note_entries(ours, APPROVALS_REF)? {
                let merged = match notes.get(&annotated) {
                    Some(&their_blob) if their_blob != blob => union_blob(repo, blob, their_blob)?,
                    _ => blob,
                };
                notes.insert(annotated, merged);
            }
            Ok((
                notes_tree(repo, APPROVALS_REF, &notes)?,
                "Approvals merged with the remote's\n".to_owned(),
            ))
        })?;
    }
    if let Ok(mut fetched) = repo.find_reference(FETCHED_APPROVALS) {
        fetched
            .delete()
            .map_err(Error::git(format!("removing {FETCHED_APPROVALS}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_name_the_server_as_openssh_does() {
        assert_eq!(
            ssh_host("ssh://git@git.example.com/ops/pki.git"),
            "git.example.com"
        );
        assert_eq!(
            ssh_host("ssh://git@git.example.com:22/pki.git"),
            "git.example.com"
        );
        assert_eq!(
            ssh_host("ssh://git@127.0.0.1:2222/srv/pki.git"),
            "[127.0.0.1]:2222"
        );
        assert_eq!(ssh_host("git@github.com:ops/pki.git"), "github.com");
    }

    #[test]
    fn a_host_key_is_trusted_only_as_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("known_hosts");
        let key = b"host key bytes";
        std::fs::write(
            &file,
            "# ours\nother.example.com ssh-ed25519 aG9zdCBrZXkgYnl0ZXM=\n[git.example.com]:2222,git2 ssh-ed25519 aG9zdCBrZXkgYnl0ZXM=\n",
        )
        .expect("write");
        assert_eq!(
            known_host(&file, "[git.example.com]:2222", "ssh-ed25519", key),
            Ok(())
        );
        assert_eq!(known_host(&file, "git2", "ssh-ed25519", key), Ok(()));
        let wrong_type = known_host(&file, "git2", "ssh-rsa", key).unwrap_err();
        assert!(
            wrong_type.starts_with("the host key of git2 (ssh-rsa SHA256:"),
            "{wrong_type}"
        );
        assert!(known_host(&file, "git.example.com", "ssh-ed25519", key).is_err());
        assert!(known_host(&file, "git2", "ssh-ed25519", b"another key").is_err());
    }
}
