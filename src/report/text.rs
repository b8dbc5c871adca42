//! The plan for a terminal.

use std::fmt::Write;

use super::{Compared, PlanReport, describe_change, findings_in_order};
use crate::diag::Escaped;
use crate::plan::{Change, ResourcePlan};
use crate::policy::{ExceptionState, Finding, FindingStatus};

/// Existing findings shown before the rest is only counted; JSON and SARIF carry them all.
const EXISTING_SHOWN: usize = 20;

fn marker(r: &ResourcePlan) -> char {
    match r.change {
        Change::Create => '+',
        Change::Update => '~',
        Change::Delete => '-',
        Change::None => '=',
    }
}

fn finding_line(f: &Finding) -> String {
    let status = match f.status {
        FindingStatus::New => "NEW",
        FindingStatus::Existing => "EXISTING",
        FindingStatus::Resolved => "RESOLVED",
    };
    let mut line = format!(
        "  {status:8}  {:5}  {:8}  {}  {}:{}\n        {}\n",
        f.enforcement.as_str(),
        f.severity.as_str(),
        f.policy,
        Escaped(&f.file),
        f.line,
        Escaped(&f.message)
    );
    if let Some(e) = &f.exception {
        line.push_str(&format!(
            "        excepted until {} ({}): {}\n",
            e.expires,
            Escaped(&e.owner),
            Escaped(&e.reason)
        ));
    }
    line
}

/// ", N to move", when any certificate moves.
pub(super) fn moved(count: usize) -> String {
    if count == 0 {
        String::new()
    } else {
        format!(", {count} to move")
    }
}

pub fn render(report: &PlanReport) -> String {
    let mut out = String::new();
    let head = format!(
        "{} ({})",
        report.head.short(),
        Escaped(&report.head.summary)
    );
    let _ = writeln!(
        out,
        "gitward plan: {} ({}) → {}\n",
        report.base.short(),
        Escaped(&report.base.summary),
        match report.compared {
            Compared::Head => head,
            Compared::Merge => format!("merge of {head} into it"),
        }
    );
    if !report.valid {
        let _ = writeln!(
            out,
            "The head is not a valid configuration; nothing would be applied:"
        );
        for d in report.errors() {
            let _ = writeln!(out, "  {d}");
        }
        let _ = writeln!(out);
    }
    if report.warnings().next().is_some() {
        let _ = writeln!(out, "Warnings:");
        for d in report.warnings() {
            let _ = writeln!(out, "  {d}");
        }
        let _ = writeln!(out);
    }
    let width = report
        .resources
        .iter()
        .map(|r| r.id().len())
        .max()
        .unwrap_or(0);
    for r in &report.resources {
        let _ = writeln!(
            out,
            "  {} {:width$}  {:7}  {}:{}",
            marker(r),
            r.id(),
            r.action.as_str(),
            Escaped(&r.file),
            r.line
        );
        for field in &r.diff {
            let _ = writeln!(
                out,
                "        {}: {}",
                field.path,
                describe_change(field.before.as_ref(), field.after.as_ref())
            );
        }
        if !r.reasons.is_empty() {
            let _ = writeln!(out, "        why: {}", r.reasons.join("; "));
        }
    }
    if report.resources.is_empty() {
        let _ = writeln!(out, "  No changes.");
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "\nPlan: {} to issue, {} to reissue, {} to remove{}. Resources: {} created, {} updated, {} deleted, {} unchanged.",
        s.issue,
        s.reissue,
        s.remove,
        moved(s.moved),
        s.create,
        s.update,
        s.delete,
        s.unchanged
    );

    let c = report.finding_counts();
    if !report.findings.is_empty() {
        let _ = writeln!(
            out,
            "\nPolicy findings: {} new, {} existing, {} resolved ({} excepted)\n",
            c.new, c.existing, c.resolved, c.excepted
        );
        let mut existing_shown = 0;
        for f in findings_in_order(report) {
            if f.status == FindingStatus::Existing {
                existing_shown += 1;
                if existing_shown > EXISTING_SHOWN {
                    continue;
                }
            }
            out.push_str(&finding_line(f));
        }
        if existing_shown > EXISTING_SHOWN {
            let _ = writeln!(
                out,
                "  … and {} more existing findings (--format json lists them all)",
                existing_shown - EXISTING_SHOWN
            );
        }
    }
    let ending = report.ending_exceptions();
    if !ending.is_empty() {
        let _ = writeln!(out, "\nExceptions ending:");
        for e in ending {
            let when = match e.state {
                ExceptionState::Expired => {
                    format!("expired {} ({} days ago)", e.expires, -e.days_left)
                }
                _ => format!("expires {} (in {} days)", e.expires, e.days_left),
            };
            let _ = writeln!(
                out,
                "  {}  {}  {when}  owner {}  {}:{}",
                e.policy,
                e.resources.join(", "),
                Escaped(&e.owner),
                Escaped(&e.file),
                e.line
            );
        }
    }
    if report.blocked {
        let _ = writeln!(
            out,
            "\nBlocked: {} new deny finding(s) without an exception.",
            c.blocking
        );
    }
    out
}
