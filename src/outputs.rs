//! Writing certificates into granted output directories, and running their reload commands.
//!
//! The repository names the certificate (a DNS label) and the target; the host config grants
//! the directory. Files go to `<dir>/<name>/`, each written to a temporary file, synced and
//! renamed into place, then the directory is synced. Nothing here follows a symbolic link:
//! the target directory, the certificate's directory and every file are opened relative to
//! their parent with `O_NOFOLLOW`, and a link planted where a file goes is replaced by the
//! rename, not written through.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use nix::unistd::{Gid, Group, UnlinkatFlags, fchown, fsync, unlinkat};
use wait_timeout::ChildExt;

use crate::config::Target;

/// A failure to write or remove files. `dir` is the target's directory, `within` the path
/// under it (empty for the directory itself): only `within` is told outside the host.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{}: {LINK}", joined(dir, within))]
    Link { dir: String, within: String },
    #[error("{}: {source}", joined(dir, within))]
    Io {
        dir: String,
        within: String,
        #[source]
        source: std::io::Error,
    },
    #[error("group `{0}` does not exist on this host")]
    UnknownGroup(String),
    #[error("`{0}` is not a certificate name")]
    Name(String),
}

/// The files of one certificate.
pub struct Files<'a> {
    /// The certificate.
    pub cert: &'a str,
    /// The CAs between it and the root, nearest first.
    pub chain: &'a str,
    /// The root it chains to, when gitward knows it (an ACME CA does not send its root).
    pub ca: Option<&'a str>,
    /// Its private key.
    pub key: &'a str,
}

const LINK: &str = "is a symbolic link; gitward never follows links in output directories";

fn joined(dir: &str, within: &str) -> String {
    if within.is_empty() {
        dir.to_owned()
    } else {
        format!("{dir}/{within}")
    }
}

impl crate::redact::Private for OutputError {
    fn reason(&self) -> String {
        let place = |within: &str| {
            if within.is_empty() {
                "the target directory".to_owned()
            } else {
                within.to_owned()
            }
        };
        match self {
            OutputError::Link { within, .. } => format!("{}: {LINK}", place(within)),
            OutputError::Io { within, source, .. } => format!("{}: {source}", place(within)),
            other => other.to_string(),
        }
    }
}

/// Where a file operation happens: a target's directory and a path under it.
#[derive(Clone, Copy)]
struct At<'a> {
    dir: &'a str,
    within: &'a str,
}

impl At<'_> {
    fn io(self, source: std::io::Error) -> OutputError {
        OutputError::Io {
            dir: self.dir.to_owned(),
            within: self.within.to_owned(),
            source,
        }
    }

    fn errno(self, errno: Errno) -> OutputError {
        match errno {
            Errno::ELOOP | Errno::ENOTDIR => OutputError::Link {
                dir: self.dir.to_owned(),
                within: self.within.to_owned(),
            },
            other => self.io(other.into()),
        }
    }
}

fn open_dir(parent: impl AsFd, name: &Path, at: At<'_>) -> Result<OwnedFd, OutputError> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| at.errno(e))
}

/// A certificate's directory name: only what the model allows, so it cannot climb out.
fn checked(name: &str) -> Result<&str, OutputError> {
    let fine = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if fine {
        Ok(name)
    } else {
        Err(OutputError::Name(name.to_owned()))
    }
}

/// Opens the target directory, creating it (and its parents, which the host config names)
/// when missing; the directory itself must not be a link.
fn open_target(target: &Target, dir: &str) -> Result<OwnedFd, OutputError> {
    let at = At { dir, within: "" };
    if std::fs::symlink_metadata(&target.dir).is_err() {
        std::fs::create_dir_all(&target.dir).map_err(|e| at.io(e))?;
    }
    open_dir(nix::fcntl::AT_FDCWD, &target.dir, at)
}

fn group_id(target: &Target) -> Result<Option<Gid>, OutputError> {
    match &target.group {
        None => Ok(None),
        Some(name) => match Group::from_name(name) {
            Ok(Some(group)) => Ok(Some(group.gid)),
            _ => Err(OutputError::UnknownGroup(name.clone())),
        },
    }
}

/// Writes one file into `dir` atomically: a fresh temporary file (never opened through a
/// link), synced, then renamed over the final name.
fn write_file(
    dir: &OwnedFd,
    at: At<'_>,
    name: &str,
    bytes: &[u8],
    mode: Mode,
    group: Option<Gid>,
) -> Result<String, OutputError> {
    let within = format!("{}/{name}", at.within);
    let at = At {
        dir: at.dir,
        within: &within,
    };
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| at.io(std::io::Error::other(e.to_string())))?;
    let temporary = format!(
        ".{name}.{}.tmp",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let fd = openat(
        dir,
        temporary.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .map_err(|e| at.errno(e))?;
    let mut file = std::fs::File::from(fd);
    let written = file.write_all(bytes).map_err(|e| at.io(e)).and_then(|()| {
        if group.is_some() {
            fchown(file.as_fd(), None, group).map_err(|e| at.errno(e))?;
        }
        fchmod(file.as_fd(), mode).map_err(|e| at.errno(e))?;
        fsync(file.as_fd()).map_err(|e| at.errno(e))
    });
    if let Err(error) = written {
        let _ = unlinkat(dir, temporary.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(error);
    }
    Ok(temporary)
}

/// Whether `name` is a temporary file [`write_file`] makes: `.<file>.<16 hex digits>.tmp`.
fn is_temporary(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(file, random)| {
            !file.is_empty() && random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// Removes temporary files a writer killed mid-write left behind (one may be a copy of a
/// private key). Only one gitward writes a target at a time, so any found now is stale.
fn sweep_temporaries(dir: &OwnedFd) {
    let Ok(listed) = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    ) else {
        return;
    };
    let mut listed = listed;
    let stale: Vec<std::ffi::CString> = listed
        .iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_ok_and(is_temporary))
        .map(|entry| entry.file_name().to_owned())
        .collect();
    for name in stale {
        let _ = unlinkat(dir, name.as_c_str(), UnlinkatFlags::NoRemoveDir);
    }
}

/// Writes the files of certificate `name` into `target`.
pub fn write(target: &Target, name: &str, files: &Files<'_>) -> Result<(), OutputError> {
    let name = checked(name)?;
    let shown = target.dir.display().to_string();
    let root = open_target(target, &shown)?;
    let at = At {
        dir: &shown,
        within: name,
    };
    let created = match mkdirat(&root, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(errno) => return Err(at.errno(errno)),
    };
    let dir = open_dir(&root, Path::new(name), at)?;
    if created {
        // Readable by the web server whatever the daemon's umask (systemd's unit sets 0077).
        fchmod(dir.as_fd(), Mode::from_bits_truncate(0o755)).map_err(|e| at.errno(e))?;
    }
    let group = group_id(target)?;
    let public = Mode::from_bits_truncate(0o644);
    // With a group, the key is for that group to read (a web server's), no one else.
    let private = Mode::from_bits_truncate(if group.is_some() { 0o640 } else { 0o600 });
    let fullchain = format!("{}{}", files.cert, files.chain);
    let mut contents: Vec<(&str, &str, Mode)> = vec![
        ("key.pem", files.key, private),
        ("cert.pem", files.cert, public),
        ("chain.pem", files.chain, public),
        ("fullchain.pem", &fullchain, public),
    ];
    if let Some(ca) = files.ca {
        contents.push(("ca.pem", ca, public));
    }
    sweep_temporaries(&dir);
    // Every file is staged before any is renamed, so the window in which a reader sees a mix
    // of old and new files is only the renames.
    let mut staged = Vec::new();
    for (file, text, mode) in contents {
        match write_file(&dir, at, file, text.as_bytes(), mode, group) {
            Ok(temporary) => staged.push((temporary, file)),
            Err(error) => {
                for (temporary, _) in &staged {
                    let _ = unlinkat(&dir, temporary.as_str(), UnlinkatFlags::NoRemoveDir);
                }
                return Err(error);
            }
        }
    }
    for (temporary, file) in &staged {
        let within = format!("{name}/{file}");
        renameat(&dir, temporary.as_str(), &dir, *file).map_err(|e| {
            At {
                dir: &shown,
                within: &within,
            }
            .errno(e)
        })?;
    }
    fsync(&dir).map_err(|e| at.errno(e))?;
    fsync(&root).map_err(|e| at.errno(e))
}

/// The certificate currently written for `name`, if there is one (and no link in the way).
pub fn read_certificate(target: &Target, name: &str) -> Option<String> {
    let name = checked(name).ok()?;
    let at = At {
        dir: "",
        within: "",
    };
    let root = open_dir(nix::fcntl::AT_FDCWD, &target.dir, at).ok()?;
    let dir = open_dir(&root, Path::new(name), at).ok()?;
    let fd = openat(
        &dir,
        "cert.pem",
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Removes the files of `name` (only the files gitward writes) and its directory if empty.
pub fn remove(target: &Target, name: &str) -> Result<(), OutputError> {
    let name = checked(name)?;
    let shown = target.dir.display().to_string();
    let at = At {
        dir: &shown,
        within: name,
    };
    let root = match open_dir(nix::fcntl::AT_FDCWD, &target.dir, At { within: "", ..at }) {
        Ok(root) => root,
        Err(OutputError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let dir = match open_dir(&root, Path::new(name), at) {
        Ok(dir) => dir,
        Err(OutputError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    sweep_temporaries(&dir);
    for file in [
        "key.pem",
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "ca.pem",
    ] {
        match unlinkat(&dir, file, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(errno) => {
                let within = format!("{name}/{file}");
                return Err(At {
                    dir: &shown,
                    within: &within,
                }
                .errno(errno));
            }
        }
    }
    // Something else in the directory is not gitward's to remove.
    let _ = unlinkat(&root, name, UnlinkatFlags::RemoveDir);
    fsync(&root).map_err(|e| at.errno(e))
}

/// How a reload command failed. The text is for the host's log; [`Private::reason`] says it
/// without the command's path or output.
///
/// [`Private::reason`]: crate::redact::Private::reason
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot start `{program}`: {source}")]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{program}` did not finish within {seconds}s and was killed{}",
        said(output)
    )]
    Timeout {
        program: String,
        seconds: u64,
        output: String,
    },
    #[error("`{program}` exited with {status}{}", said(output))]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        output: String,
    },
}

fn said(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(": {output}")
    }
}

impl crate::redact::Private for ReloadError {
    fn reason(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match self {
            ReloadError::Start { source, .. } => {
                format!("reload command could not be started ({})", source.kind())
            }
            ReloadError::Timeout { seconds, .. } => {
                format!("reload command timed out after {seconds}s")
            }
            ReloadError::Failed { status, .. } => match (status.code(), status.signal()) {
                (Some(code), _) => format!("reload command exited {code}"),
                (None, Some(signal)) => format!("reload command was killed by signal {signal}"),
                (None, None) => "reload command failed".to_owned(),
            },
        }
    }
}

/// How much of the end of a reload command's stderr is kept for the host's log.
const STDERR_TAIL: usize = 2048;
/// How long the rest of the output is waited for once the command ended: a process it left
/// behind may hold its stderr open.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Reads `stream` to its end, keeping only its last [`STDERR_TAIL`] bytes in `kept`.
fn keep_tail(mut stream: impl Read, kept: &Mutex<Vec<u8>>) {
    let mut buffer = [0u8; 8192];
    while let Ok(read @ 1..) = stream.read(&mut buffer) {
        let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.extend_from_slice(&buffer[..read]);
        if kept.len() > 2 * STDERR_TAIL {
            let excess = kept.len() - STDERR_TAIL;
            kept.drain(..excess);
        }
    }
}

/// Runs a target's reload command (an argument vector, never a shell) with its timeout. Its
/// stderr is read while it runs, so a command that writes much never blocks on a full pipe.
pub fn reload(argv: &[String], timeout: Duration) -> Result<(), ReloadError> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ReloadError::Start {
            program: program.clone(),
            source,
        })?;
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (read_all, output_read) = mpsc::channel();
    if let Some(stderr) = child.stderr.take() {
        let kept = kept.clone();
        std::thread::spawn(move || {
            keep_tail(stderr, &kept);
            let _ = read_all.send(());
        });
    }
    let finished = child.wait_timeout(timeout);
    let output = || {
        let _ = output_read.recv_timeout(OUTPUT_GRACE);
        let kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
        let start = kept.len().saturating_sub(STDERR_TAIL);
        let text = String::from_utf8_lossy(&kept[start..]);
        let cut = if start > 0 { "…" } else { "" };
        format!("{cut}{}", crate::diag::escaped(text.trim()))
    };
    match finished {
        Ok(Some(status)) if status.success() => Ok(()),
        Ok(Some(status)) => Err(ReloadError::Failed {
            program: program.clone(),
            status,
            output: output(),
        }),
        Ok(None) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(ReloadError::Timeout {
                program: program.clone(),
                seconds: timeout.as_secs(),
                output: output(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use super::*;
    use crate::model::Duration as ModelDuration;
    use crate::redact::Private;

    fn target(dir: &Path) -> Target {
        Target {
            dir: dir.to_path_buf(),
            group: None,
            reload: Vec::new(),
            timeout: ModelDuration::from_secs(5),
            prune: true,
        }
    }

    const FILES: Files<'static> = Files {
        cert: "CERT\n",
        chain: "CHAIN\n",
        ca: Some("ROOT\n"),
        key: "KEY\n",
    };

    #[test]
    fn files_are_written_with_their_modes_and_replaced_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let t = target(&tmp.path().join("tls"));
        write(&t, "api", &FILES).unwrap();
        let dir = tmp.path().join("tls/api");
        assert_eq!(
            std::fs::read_to_string(dir.join("fullchain.pem")).unwrap(),
            "CERT\nCHAIN\n"
        );
        assert_eq!(
            std::fs::metadata(dir.join("key.pem"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.join("cert.pem"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
        let before = std::fs::metadata(dir.join("cert.pem")).unwrap().ino();
        write(
            &t,
            "api",
            &Files {
                cert: "NEW\n",
                ..FILES
            },
        )
        .unwrap();
        assert_eq!(read_certificate(&t, "api").as_deref(), Some("NEW\n"));
        assert_ne!(
            std::fs::metadata(dir.join("cert.pem")).unwrap().ino(),
            before,
            "a new file, renamed into place"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        remove(&t, "api").unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn links_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), "keep").unwrap();
        let tls = tmp.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        // A link where a certificate's directory goes.
        symlink(&outside, tls.join("api")).unwrap();
        let t = target(&tls);
        assert!(matches!(
            write(&t, "api", &FILES),
            Err(OutputError::Link { .. })
        ));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        // A link where a file goes is replaced, not written through.
        std::fs::create_dir(tls.join("web")).unwrap();
        symlink(outside.join("victim"), tls.join("web/key.pem")).unwrap();
        write(&t, "web", &FILES).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "keep"
        );
        assert!(
            !std::fs::symlink_metadata(tls.join("web/key.pem"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // The target directory itself must not be a link.
        let linked = target(&tmp.path().join("linked"));
        symlink(&outside, tmp.path().join("linked")).unwrap();
        assert!(matches!(
            write(&linked, "api", &FILES),
            Err(OutputError::Link { .. })
        ));
        // Names that could climb out are refused.
        assert!(matches!(
            write(&t, "../etc", &FILES),
            Err(OutputError::Name(_))
        ));
    }

    #[test]
    fn reload_commands_run_without_a_shell_and_time_out() {
        reload(&["true".to_owned()], Duration::from_secs(5)).unwrap();
        let failed = reload(
            &["sh".into(), "-c".into(), "echo broken >&2; exit 3".into()],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(
            failed.to_string(),
            "`sh` exited with exit status: 3: broken"
        );
        assert_eq!(failed.reason(), "reload command exited 3");
        let slow = reload(&["sleep".into(), "5".into()], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(slow, ReloadError::Timeout { .. }), "{slow}");
        let missing = reload(&["/nonexistent/reload".into()], Duration::from_secs(1)).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot start `/nonexistent/reload`"),
            "{missing}"
        );
    }
}
