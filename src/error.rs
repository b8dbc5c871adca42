//! Errors that stop a command before it can judge the repository: a path that is not a
//! repository, a revision that does not resolve, a file that cannot be written. Problems *in*
//! the repository are [`crate::diag::Diagnostic`]s instead, reported all at once.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{}: not a Git repository ({message})", path.display())]
    NotARepository { path: PathBuf, message: String },

    #[error("revision `{rev}` not found in {}: {message}", repo.display())]
    UnknownRevision {
        rev: String,
        repo: PathBuf,
        message: String,
    },

    #[error(
        "merging {head} into {base} conflicts in {}; a conflict cannot be planned: merge the base into the branch and resolve it first",
        listed(paths)
    )]
    MergeConflict {
        base: String,
        head: String,
        paths: Vec<String>,
    },

    #[error(
        "no gitward resources in {place}: check --repo and the revisions (--allow-empty accepts an empty configuration)"
    )]
    EmptyConfiguration { place: String },

    #[error("git: {step}: {source}")]
    Git {
        step: String,
        #[source]
        source: git2::Error,
    },

    #[error("remote {url}: {step}: {message}")]
    Remote {
        url: String,
        step: String,
        message: String,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{0}")]
    Usage(String),

    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    #[error(transparent)]
    Store(#[from] crate::store::StoreError),

    #[error("posting to the forge: {0}")]
    Forge(#[from] crate::forge::ForgeError),
}

impl From<crate::store::LockError> for Error {
    fn from(error: crate::store::LockError) -> Error {
        match error {
            crate::store::LockError::Store(error) => error.into(),
            busy => Error::Usage(busy.to_string()),
        }
    }
}

impl Error {
    pub fn git(step: impl Into<String>) -> impl FnOnce(git2::Error) -> Error {
        let step = step.into();
        move |source| Error::Git { step, source }
    }

    /// A failed exchange with the remote at `url`; credentials in the URL, or in libgit2's
    /// words about it, are masked: the message goes to logs, `/healthz` and `/status`.
    pub fn remote(url: &str, step: impl Into<String>, message: &str) -> Error {
        Error::Remote {
            url: crate::redact::credentials(url).into_owned(),
            step: step.into(),
            message: crate::redact::credentials(message).into_owned(),
        }
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// Paths as a message lists them: escaped, and at most a screenful.
fn listed(paths: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut text: Vec<String> = paths
        .iter()
        .take(SHOWN)
        .map(|p| crate::diag::escaped(p).into_owned())
        .collect();
    if paths.len() > SHOWN {
        text.push(format!("and {} more", paths.len() - SHOWN));
    }
    text.join(", ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
