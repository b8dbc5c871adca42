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
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use nix::unistd::{Gid, Group, UnlinkatFlags, fchown, fsync, unlinkat};
use wait_timeout::ChildExt;

use crate::config::Target;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: is a symbolic link; gitward never follows links in output directories")]
    Link { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
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

fn io(path: &str) -> impl FnOnce(Errno) -> OutputError + '_ {
    move |errno| match errno {
        Errno::ELOOP | Errno::ENOTDIR => OutputError::Link {
            path: path.to_owned(),
        },
        other => OutputError::Io {
            path: path.to_owned(),
            source: other.into(),
        },
    }
}

fn open_dir(parent: impl AsFd, name: &Path, shown: &str) -> Result<OwnedFd, OutputError> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(shown))
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
fn open_target(target: &Target) -> Result<OwnedFd, OutputError> {
    let shown = target.dir.display().to_string();
    if std::fs::symlink_metadata(&target.dir).is_err() {
        std::fs::create_dir_all(&target.dir).map_err(|source| OutputError::Io {
            path: shown.clone(),
            source,
        })?;
    }
    open_dir(nix::fcntl::AT_FDCWD, &target.dir, &shown)
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
    shown_dir: &str,
    name: &str,
    bytes: &[u8],
    mode: Mode,
    group: Option<Gid>,
) -> Result<String, OutputError> {
    let shown = format!("{shown_dir}/{name}");
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| OutputError::Io {
        path: shown.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
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
    .map_err(io(&shown))?;
    let mut file = std::fs::File::from(fd);
    let written = file
        .write_all(bytes)
        .map_err(|source| OutputError::Io {
            path: shown.clone(),
            source,
        })
        .and_then(|()| {
            if group.is_some() {
                fchown(file.as_fd(), None, group).map_err(io(&shown))?;
            }
            fchmod(file.as_fd(), mode).map_err(io(&shown))?;
            fsync(file.as_fd()).map_err(io(&shown))
        });
    if let Err(error) = written {
        let _ = unlinkat(dir, temporary.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(error);
    }
    Ok(temporary)
}

/// Writes the files of certificate `name` into `target`.
pub fn write(target: &Target, name: &str, files: &Files<'_>) -> Result<(), OutputError> {
    let name = checked(name)?;
    let root = open_target(target)?;
    let shown = format!("{}/{name}", target.dir.display());
    let created = match mkdirat(&root, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(errno) => return Err(io(&shown)(errno)),
    };
    let dir = open_dir(&root, Path::new(name), &shown)?;
    if created {
        // Readable by the web server whatever the daemon's umask (systemd's unit sets 0077).
        fchmod(dir.as_fd(), Mode::from_bits_truncate(0o755)).map_err(io(&shown))?;
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
    // Every file is staged before any is renamed, so the window in which a reader sees a mix
    // of old and new files is only the renames.
    let mut staged = Vec::new();
    for (file, text, mode) in contents {
        match write_file(&dir, &shown, file, text.as_bytes(), mode, group) {
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
        renameat(&dir, temporary.as_str(), &dir, *file).map_err(io(&format!("{shown}/{file}")))?;
    }
    fsync(&dir).map_err(io(&shown))?;
    fsync(&root).map_err(io(&shown))
}

/// The certificate currently written for `name`, if there is one (and no link in the way).
pub fn read_certificate(target: &Target, name: &str) -> Option<String> {
    let name = checked(name).ok()?;
    let root = open_dir(nix::fcntl::AT_FDCWD, &target.dir, "").ok()?;
    let dir = open_dir(&root, Path::new(name), "").ok()?;
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
    let shown = format!("{}/{name}", target.dir.display());
    let root = match open_dir(nix::fcntl::AT_FDCWD, &target.dir, &shown) {
        Ok(root) => root,
        Err(OutputError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let dir = match open_dir(&root, Path::new(name), &shown) {
        Ok(dir) => dir,
        Err(OutputError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    for file in [
        "key.pem",
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "ca.pem",
    ] {
        match unlinkat(&dir, file, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(errno) => return Err(io(&format!("{shown}/{file}"))(errno)),
        }
    }
    // Something else in the directory is not gitward's to remove.
    let _ = unlinkat(&root, name, UnlinkatFlags::RemoveDir);
    fsync(&root).map_err(io(&shown))
}

/// How a reload command failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot start `{program}`: {source}")]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` did not finish within {seconds}s and was killed")]
    Timeout { program: String, seconds: u64 },
    #[error("`{program}` exited with {status}: {output}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        output: String,
    },
}

/// Runs a target's reload command (an argument vector, never a shell) with its timeout.
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
    let status = match child.wait_timeout(timeout) {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ReloadError::Timeout {
                program: program.clone(),
                seconds: timeout.as_secs(),
            });
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut output = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut output);
    }
    let output: String = output.trim().chars().take(500).collect();
    Err(ReloadError::Failed {
        program: program.clone(),
        status,
        output: crate::diag::escaped(&output).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use super::*;
    use crate::model::Duration as ModelDuration;

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
