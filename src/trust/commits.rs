//! Commit signatures: an SSH signature in a commit's `gpgsig` header (`git commit -S` with
//! `gpg.format=ssh`), checked as `git verify-commit` checks it: namespace `git`, against the
//! host's allowed signers, at the committer's time.

use chrono::{DateTime, Utc};
use git2::{ObjectType, Oid, Repository};

use super::SignatureCheck;
use super::signers::{AllowedSigners, check};

/// The namespace git signs commits in.
pub const COMMIT_NAMESPACE: &str = "git";

/// Largest commit object checked: its signature covers all of it, and anyone who can push
/// writes it.
const MAX_COMMIT_BYTES: usize = 4 << 20;

/// What the signature of `commit` proves, checked against `signers` (none configured:
/// nothing verifies).
pub fn check_commit(
    repo: &Repository,
    commit: Oid,
    signers: Option<&AllowedSigners>,
) -> SignatureCheck {
    checked(repo, commit, signers, None)
}

/// [`check_commit`] with the key's validity judged at `now`, not at the committer time: the
/// signer writes the committer time, so a key that expired (or is revoked) cannot let a
/// backdated commit pass a gate.
pub fn check_commit_now(
    repo: &Repository,
    commit: Oid,
    signers: Option<&AllowedSigners>,
    now: DateTime<Utc>,
) -> SignatureCheck {
    checked(repo, commit, signers, Some(now))
}

fn checked(
    repo: &Repository,
    commit: Oid,
    signers: Option<&AllowedSigners>,
    now: Option<DateTime<Utc>>,
) -> SignatureCheck {
    let problem = |problem: String| SignatureCheck {
        problem: Some(problem),
        ..SignatureCheck::default()
    };
    let size = repo
        .odb()
        .and_then(|odb| odb.read_header(commit))
        .map(|(size, kind)| (kind == ObjectType::Commit).then_some(size));
    match size {
        Ok(Some(size)) if size <= MAX_COMMIT_BYTES => {}
        Ok(Some(size)) => {
            return problem(format!(
                "the commit is {size} bytes, more than the {MAX_COMMIT_BYTES} whose signature is checked"
            ));
        }
        Ok(None) => return problem(format!("{commit} is not a commit")),
        Err(e) => return problem(format!("reading commit {commit}: {}", e.message())),
    }
    let (signature, signed) = match repo.extract_signature(&commit, None) {
        Ok(parts) => parts,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return problem("unsigned".to_owned()),
        Err(e) => return problem(format!("reading the signature: {}", e.message())),
    };
    let Ok(armored) = std::str::from_utf8(&signature) else {
        return problem("the signature is not text".to_owned());
    };
    if let Some(kind) = unverifiable_kind(armored) {
        return problem(format!(
            "{kind}: gitward verifies SSH signatures only (gpg.format=ssh)"
        ));
    }
    let at = match now.map(Ok).unwrap_or_else(|| committer_time(repo, commit)) {
        Ok(at) => at,
        Err(problem_text) => return problem(problem_text),
    };
    check(signers, COMMIT_NAMESPACE, &signed, armored, None, at)
}

/// When the commit says it was committed.
fn committer_time(repo: &Repository, commit: Oid) -> Result<DateTime<Utc>, String> {
    match repo
        .find_commit(commit)
        .map(|c| DateTime::<Utc>::from_timestamp(c.committer().when().seconds(), 0))
    {
        Ok(Some(at)) => Ok(at),
        Ok(None) => Err("the committer time is out of range".to_owned()),
        Err(e) => Err(format!("reading commit {commit}: {}", e.message())),
    }
}

/// What a signature that is not an SSH one is, by its armor.
fn unverifiable_kind(armored: &str) -> Option<&'static str> {
    let start = armored.trim_start();
    if start.starts_with("-----BEGIN SSH SIGNATURE-----") {
        None
    } else if start.starts_with("-----BEGIN PGP SIGNATURE-----") {
        Some("a GPG signature")
    } else if start.starts_with("-----BEGIN SIGNED MESSAGE-----") {
        Some("an X.509 signature")
    } else {
        Some("an unknown kind of signature")
    }
}
