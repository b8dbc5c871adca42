//! Signed approvals. An approval is an SSH signature (namespace `gitward-approval`) over
//! [`payload`]: a tree, a gate and the approver. `gitward approve` stores them in
//! [`APPROVALS_REF`], one note per approved **tree** (the note annotates the tree object), so
//! an approval follows the content: a squash or a rebase that keeps the tree keeps it, and any
//! change to the content voids it.
//!
//! A note holds entries separated by blank lines, each one readable with `git notes show`:
//!
//! ```text
//! gate: prod-changes
//! approver: alice@example.com
//! -----BEGIN SSH SIGNATURE-----
//! U1NIU0lH...
//! -----END SSH SIGNATURE-----
//! ```
//!
//! Anyone who can push writes these notes: a note is read up to a size and a number of
//! entries, what cannot be read is ignored with the reason, and every signature is checked
//! against the host's allowed signers before it counts.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use git2::{ObjectType, Oid, Repository};

use super::Approval;
use super::signers::{AllowedSigners, MAX_SIGNATURE_BYTES, MISMATCH, check};
use crate::diag::{bounded, escaped};
use crate::error::{Error, Result};
use crate::model::ApprovalSource;

/// The notes ref holding approvals, one note per approved tree.
pub const APPROVALS_REF: &str = "refs/notes/gitward-approvals";
/// The sshsig namespace of approvals: a signature made for anything else never counts here.
pub const APPROVAL_NAMESPACE: &str = "gitward-approval";
/// Most approvals of one tree read; the rest of a note is ignored.
pub const MAX_APPROVALS_PER_TREE: usize = 256;
/// Largest note read: 256 approvals with RSA-4096 signatures take well under half of it.
const MAX_NOTE_BYTES: usize = 1 << 20;
/// Longest gate name and approver read from a note.
const MAX_NAME_CHARS: usize = 256;

const BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const END: &str = "-----END SSH SIGNATURE-----";

/// The bytes an approval signs: versioned, one field a line, so that no two approvals sign
/// the same bytes.
pub fn payload(tree: Oid, gate: &str, approver: &str) -> Vec<u8> {
    format!("gitward-approval v1\ntree {tree}\ngate {gate}\napprover {approver}\n").into_bytes()
}

/// An approval as a note holds it: claimed, until checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SignedApproval {
    pub gate: String,
    pub approver: String,
    /// The armored sshsig over [`payload`].
    pub signature: String,
}

impl SignedApproval {
    /// Whether this approval of `tree` counts: signed by a key the host lists for the
    /// approver, valid `now`, over this tree and gate.
    pub fn check(
        &self,
        tree: Oid,
        signers: Option<&AllowedSigners>,
        now: DateTime<Utc>,
    ) -> Approval {
        let checked = check(
            signers,
            APPROVAL_NAMESPACE,
            &payload(tree, &self.gate, &self.approver),
            &self.signature,
            Some(&self.approver),
            now,
        );
        let refused = checked.problem.map(|problem| {
            if problem == MISMATCH {
                "the signature is not over this tree, gate and approver: made for another tree or gate, or altered".to_owned()
            } else {
                problem
            }
        });
        Approval {
            gate: self.gate.clone(),
            approver: self.approver.clone(),
            source: ApprovalSource::Signatures,
            key_fingerprint: checked.key_fingerprint,
            refused,
            at: None,
            url: None,
        }
    }
}

/// The text of a note holding `entries`: sorted and without repeats, so that two sides that
/// hold the same approvals write the same note.
pub fn note_text(entries: &[SignedApproval]) -> String {
    let unique: BTreeSet<&SignedApproval> = entries.iter().collect();
    let mut text = String::new();
    for entry in unique {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "gate: {}\napprover: {}\n{}\n",
            entry.gate,
            entry.approver,
            entry.signature.trim()
        ));
    }
    text
}

/// The entries of a note, at most [`MAX_APPROVALS_PER_TREE`], and why the rest of it was
/// not read.
pub fn parse_note(text: &str) -> (Vec<SignedApproval>, Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut entries = Vec::new();
    let mut ignored = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        if lines[at].trim().is_empty() {
            at += 1;
            continue;
        }
        if entries.len() == MAX_APPROVALS_PER_TREE {
            ignored.push(format!(
                "line {}: more than {MAX_APPROVALS_PER_TREE} approvals of one tree; the rest are not read",
                at + 1
            ));
            break;
        }
        let start = at;
        match parse_entry(&lines, &mut at) {
            Ok(entry) => entries.push(entry),
            Err(why) => {
                ignored.push(format!("line {}: {why}; entry ignored", start + 1));
                // On to the next entry that starts as one should.
                at = (start + 1..lines.len())
                    .find(|&i| lines[i].starts_with("gate: "))
                    .unwrap_or(lines.len());
            }
        }
    }
    (entries, ignored)
}

/// The entry starting at line `at`; moves `at` past it.
fn parse_entry(lines: &[&str], at: &mut usize) -> std::result::Result<SignedApproval, String> {
    let mut field = |name: &str| -> std::result::Result<String, String> {
        let value = lines
            .get(*at)
            .and_then(|line| line.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix(": "))
            .ok_or_else(|| format!("expected `{name}: …`"))?;
        if value.is_empty() || value.chars().count() > MAX_NAME_CHARS {
            return Err(format!("a {name} is 1 to {MAX_NAME_CHARS} characters long"));
        }
        *at += 1;
        Ok(value.to_owned())
    };
    let gate = field("gate")?;
    let approver = field("approver")?;
    if lines.get(*at).map(|l| l.trim_end()) != Some(BEGIN) {
        return Err(format!("expected `{BEGIN}`"));
    }
    let mut signature = format!("{BEGIN}\n");
    for line in &lines[*at + 1..] {
        let line = line.trim_end();
        let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
        if line != END && (line.is_empty() || !line.chars().all(base64)) {
            break;
        }
        *at += 1;
        signature.push_str(line);
        signature.push('\n');
        if signature.len() > MAX_SIGNATURE_BYTES {
            return Err(format!(
                "the signature is longer than {MAX_SIGNATURE_BYTES} bytes"
            ));
        }
        if line == END {
            *at += 1;
            return Ok(SignedApproval {
                gate,
                approver,
                signature,
            });
        }
    }
    Err(format!("the signature ends without a `{END}` line"))
}

/// The approvals of a tree as found and checked, and what was ignored in its note.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeApprovals {
    /// One approval per gate and approver: a verified one where there is one.
    pub approvals: Vec<Approval>,
    /// Why parts of the note do not count: unreadable, beyond the limits, repeated.
    pub ignored: Vec<String>,
}

/// The approvals of `tree`, each checked (`refused` says why one does not count), and why
/// parts of its note were ignored.
pub fn read_approvals(
    repo: &Repository,
    tree: Oid,
    signers: Option<&AllowedSigners>,
    now: DateTime<Utc>,
) -> TreeApprovals {
    let (entries, mut ignored) = match stored(repo, tree) {
        Ok(found) => found,
        Err(why) => {
            return TreeApprovals {
                approvals: Vec::new(),
                ignored: vec![why],
            };
        }
    };
    // One approval per gate and approver, the first verified one if any: copying a
    // signature, or adding forged ones next to it, adds nothing.
    let mut kept: Vec<Approval> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut seen = BTreeSet::new();
    for entry in &entries {
        let shown = || {
            format!(
                "gate {} by {}",
                escaped(&bounded(entry.gate.clone(), 63)),
                escaped(&bounded(entry.approver.clone(), 100))
            )
        };
        if !seen.insert(entry) {
            ignored.push(format!("the approval of {} is repeated", shown()));
            continue;
        }
        let key = (entry.gate.clone(), entry.approver.clone());
        match index.get(&key) {
            None => {
                index.insert(key, kept.len());
                kept.push(entry.check(tree, signers, now));
            }
            Some(&i) => {
                // A verified one takes the place of a refused one; one of the two is dropped.
                if kept[i].refused.is_some() {
                    let checked = entry.check(tree, signers, now);
                    if checked.refused.is_none() {
                        kept[i] = checked;
                    }
                }
                ignored.push(format!("more than one approval of {}: one counts", shown()));
            }
        }
    }
    TreeApprovals {
        approvals: kept,
        ignored,
    }
}

/// The approvals of `tree` for its gates, each checked (`refused` says why one does not
/// count). What of its note was ignored is logged.
pub fn approvals_of(
    repo: &Repository,
    tree: Oid,
    signers: Option<&AllowedSigners>,
    now: DateTime<Utc>,
) -> Vec<Approval> {
    let found = read_approvals(repo, tree, signers, now);
    for why in &found.ignored {
        tracing::warn!(%tree, "approvals note: {why}");
    }
    found.approvals
}

/// The entries of the note on `tree` (none without one) and what of it was not read; an
/// error when the note cannot be read at all.
pub fn stored(
    repo: &Repository,
    tree: Oid,
) -> std::result::Result<(Vec<SignedApproval>, Vec<String>), String> {
    let Some(blob) = note_blob(repo, tree) else {
        return Ok((Vec::new(), Vec::new()));
    };
    Ok(parse_note(&bounded_text(repo, blob)?))
}

/// The note blob on `annotated` in [`APPROVALS_REF`], flat or fanned out as git writes it.
fn note_blob(repo: &Repository, annotated: Oid) -> Option<Oid> {
    let tree = repo
        .find_reference(APPROVALS_REF)
        .ok()?
        .peel_to_commit()
        .ok()?
        .tree()
        .ok()?;
    let hex = annotated.to_string();
    [
        hex.clone(),
        format!("{}/{}", &hex[..2], &hex[2..]),
        format!("{}/{}/{}", &hex[..2], &hex[2..4], &hex[4..]),
    ]
    .iter()
    .find_map(|path| tree.get_path(std::path::Path::new(path)).ok())
    .map(|entry| entry.id())
}

/// The text of blob `id`, refused unread when it is over [`MAX_NOTE_BYTES`].
fn bounded_text(repo: &Repository, id: Oid) -> std::result::Result<String, String> {
    let odb = repo.odb().map_err(|e| e.message().to_owned())?;
    let (size, kind) = odb.read_header(id).map_err(|e| e.message().to_owned())?;
    if kind != ObjectType::Blob {
        return Err("the approvals note is not a file".to_owned());
    }
    if size > MAX_NOTE_BYTES {
        return Err(format!(
            "the approvals note is {size} bytes, more than the {MAX_NOTE_BYTES} read; ignored"
        ));
    }
    let blob = repo.find_blob(id).map_err(|e| e.message().to_owned())?;
    String::from_utf8(blob.content().to_vec())
        .map_err(|_| "the approvals note is not UTF-8 text; ignored".to_owned())
}

/// A note blob holding the approvals of both `ours` and `theirs`: what either side could
/// read, none lost.
pub fn union_blob(repo: &Repository, ours: Oid, theirs: Oid) -> Result<Oid> {
    let mut entries = Vec::new();
    for side in [ours, theirs] {
        // A side that cannot be read adds nothing, and does not stop the other's.
        if let Ok(text) = bounded_text(repo, side) {
            entries.extend(parse_note(&text).0);
        }
    }
    repo.blob(note_text(&entries).as_bytes())
        .map_err(Error::git(format!(
            "writing a merged note of {APPROVALS_REF}"
        )))
}

/// Adds `approvals` of `tree` to its note, replacing earlier ones of the same gate by the
/// same approver.
pub fn record(repo: &Repository, tree: Oid, approvals: &[SignedApproval]) -> Result<()> {
    let (mut entries, _) = stored(repo, tree).unwrap_or_default();
    entries.retain(|old| {
        !approvals
            .iter()
            .any(|new| new.gate == old.gate && new.approver == old.approver)
    });
    entries.extend(approvals.iter().cloned());
    let sig = crate::git::signature(repo)?;
    let message = note_text(&entries);
    repo.note(&sig, &sig, Some(APPROVALS_REF), tree, &message, true)
        .map_err(Error::git(format!(
            "writing the approvals note on tree {tree}"
        )))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(gate: &str, approver: &str) -> SignedApproval {
        SignedApproval {
            gate: gate.into(),
            approver: approver.into(),
            signature: format!("{BEGIN}\nAAAA\n{END}\n"),
        }
    }

    #[test]
    fn the_payload_names_each_field_on_its_own_line() {
        let tree = Oid::from_str("4b825dc642cb6eb9a060e54bf8d69288fbee4904").unwrap();
        assert_eq!(
            payload(tree, "prod-changes", "alice@example.com"),
            b"gitward-approval v1\ntree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ngate prod-changes\napprover alice@example.com\n"
        );
    }

    #[test]
    fn notes_read_back_what_was_written_sorted_and_once() {
        let entries = [
            entry("b", "x@example.com"),
            entry("a", "y@example.com"),
            entry("b", "x@example.com"),
        ];
        let text = note_text(&entries);
        let (read, ignored) = parse_note(&text);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(
            read,
            [entry("a", "y@example.com"), entry("b", "x@example.com")]
        );
        // Two notes concatenated (git's `cat_sort_uniq`-style merges) still read.
        let (both, _) = parse_note(&format!("{text}\n{}", note_text(&[entry("c", "z")])));
        assert_eq!(both.len(), 3);
    }

    #[test]
    fn what_cannot_be_read_is_skipped_with_the_reason_and_the_rest_kept() {
        let good = note_text(&[entry("a", "x@example.com")]);
        let text = format!(
            "garbage\nmore\n\ngate: b\napprover: y\nnot armor\n\ngate: c\napprover: z\n{BEGIN}\nAAAA\n\n{good}"
        );
        let (read, ignored) = parse_note(&text);
        assert_eq!(read, [entry("a", "x@example.com")]);
        assert_eq!(
            ignored,
            [
                "line 1: expected `gate: …`; entry ignored",
                "line 4: expected `-----BEGIN SSH SIGNATURE-----`; entry ignored",
                "line 8: the signature ends without a `-----END SSH SIGNATURE-----` line; entry ignored",
            ]
        );
    }

    #[test]
    fn a_note_is_read_up_to_its_limit() {
        let many: Vec<SignedApproval> = (0..MAX_APPROVALS_PER_TREE + 5)
            .map(|i| entry(&format!("g{i:04}"), "x"))
            .collect();
        let (read, ignored) = parse_note(&note_text(&many));
        assert_eq!(read.len(), MAX_APPROVALS_PER_TREE);
        assert_eq!(ignored.len(), 1);
        assert!(
            ignored[0].contains("more than 256 approvals"),
            "{ignored:?}"
        );
        let huge = format!(
            "gate: a\napprover: b\n{BEGIN}\n{}\n{END}\n",
            "A".repeat(MAX_SIGNATURE_BYTES)
        );
        let (read, ignored) = parse_note(&huge);
        assert!(read.is_empty());
        assert!(ignored[0].contains("longer than"), "{ignored:?}");
    }
}
