//! `gitward explain`: why a commit was applied, blocked, pending or failed, in plain words,
//! from Git alone — the note the daemon wrote on it and the approvals of its tree — for an
//! auditor who has nothing but a clone.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::commands::write_out;
use crate::diag::{escaped, shown_bounded};
use crate::error::{Error, Result};
use crate::gate::GateOutcome;
use crate::git::{Repo, abbreviated};
use crate::report::text::gate_block;
use crate::status::{Change, Note, Outcome, read_note};
use crate::trust::approvals::{APPROVALS_REF, approvals_of};
use crate::trust::signers::AllowedSigners;

/// Writes the explanation of `rev`; 1 when the daemon left no record on it.
pub fn explain(
    repo: &Path,
    rev: &str,
    signers: Option<&AllowedSigners>,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<u8> {
    let repo = Repo::discover(repo)?;
    let commit = repo.commit(rev)?;
    let id = git2::Oid::from_str(&commit.sha).map_err(Error::git("reading the commit id"))?;
    let mut text = format!(
        "{} {}\n  by {} <{}>\n\n",
        commit.short(),
        escaped(&commit.summary),
        escaped(&commit.author),
        escaped(&commit.email)
    );
    let Some(note) = read_note(&repo, id) else {
        text.push_str(
            "No record: the daemon has not reconciled this commit, or its notes were not \
             fetched (git fetch origin 'refs/notes/*:refs/notes/*').\n",
        );
        write_out(out, &text)?;
        return Ok(crate::commands::exit::FAILED);
    };
    text.push_str(&verdict(&note));
    if !note.problems.is_empty() {
        text.push_str("\nWhy:\n");
        for problem in &note.problems {
            let _ = writeln!(text, "  - {}", escaped(problem));
        }
    }
    if !note.gates.is_empty() {
        text.push_str("\nGates, in the version in force when it was decided:\n");
        for gate in &note.gates {
            text.push_str(&gate_block(gate));
        }
    }
    for used in &note.overrides {
        let _ = writeln!(
            text,
            "\nOverride of gate {} by {}, signed with key {}, {}: {}\n  \
             to be reviewed by another principal (`Override-Reviewed: {}` on a signed commit) by {}",
            escaped(&used.gate),
            escaped(&used.principal),
            escaped(&used.key_fingerprint),
            used.at.format("%Y-%m-%d %H:%M UTC"),
            escaped(&used.reason),
            abbreviated(&used.commit, 12),
            used.review_due.format("%Y-%m-%d %H:%M UTC"),
        );
    }
    let changed: Vec<_> = note
        .resources
        .iter()
        .filter(|r| r.change != Change::Unchanged)
        .collect();
    if !changed.is_empty() {
        text.push_str("\nWhat reconciling it did:\n");
        for r in changed {
            let change = serde_json::to_value(r.change)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let detail = if r.message.is_empty() {
                r.serial
                    .as_deref()
                    .map(|s| format!("  serial {}", escaped(s)))
                    .unwrap_or_default()
            } else {
                format!("  {}", escaped(&r.message))
            };
            let _ = writeln!(text, "  {change:9} {}/{}{detail}", r.kind, escaped(&r.name));
        }
    }
    text.push_str(&approvals(&repo, commit.tree, signers, now));
    let _ = writeln!(
        text,
        "\nRecorded in status commit {} (git show {}).",
        escaped(abbreviated(&note.status_commit, 12)),
        escaped(abbreviated(&note.status_commit, 12))
    );
    // The note is anyone's who can push its ref: shown escaped, and bounded.
    write_out(out, &shown_bounded(&text))?;
    Ok(crate::commands::exit::OK)
}

/// The outcome in plain words.
fn verdict(note: &Note) -> String {
    match note.result {
        Outcome::Applied => {
            "Applied: it is, or was until a later commit, the configuration in force.\n".to_owned()
        }
        Outcome::Blocked => "Blocked: nothing of it was applied; the commit in force before it \
                             stayed in force (and kept renewing).\n"
            .to_owned(),
        Outcome::Pending => {
            let opens = note
                .gates
                .iter()
                .filter(|g| g.outcome == GateOutcome::Pending)
                .filter_map(|g| g.opens_at)
                .max()
                .map(|at| format!(", at {}", at.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default();
            format!(
                "Pending: every requirement but a change window (or a change request's planned \
                 start) was met. It is applied without a new commit when the window opens{opens}, \
                 unless a newer commit supersedes it.\n"
            )
        }
        Outcome::Failed => "Failed: it is not a valid configuration, or applying it failed; \
                            what could be applied was, and the problems are below.\n"
            .to_owned(),
    }
}

/// The approvals recorded for the commit's tree, each checked when allowed signers are given.
fn approvals(
    repo: &Repo,
    tree: git2::Oid,
    signers: Option<&AllowedSigners>,
    now: DateTime<Utc>,
) -> String {
    let found = approvals_of(repo.inner(), tree, signers, now);
    if found.is_empty() {
        return String::new();
    }
    let mut text = format!("\nApprovals of its tree ({APPROVALS_REF}):\n");
    for a in &found {
        let key = a
            .key_fingerprint
            .as_deref()
            .map(|k| format!(" with key {}", escaped(k)))
            .unwrap_or_default();
        let standing = match (&a.refused, signers) {
            (None, _) => "verified".to_owned(),
            (Some(_), None) => "not checked here: give --allowed-signers".to_owned(),
            (Some(why), Some(_)) => format!("does not count: {}", escaped(why)),
        };
        let _ = writeln!(
            text,
            "  {} for gate {}{key}: {standing}",
            escaped(&a.approver),
            escaped(&a.gate)
        );
    }
    text
}
