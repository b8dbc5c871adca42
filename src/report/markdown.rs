//! The plan as a pull-request comment (or `$GITHUB_STEP_SUMMARY`).

use std::fmt::Write;

use super::{Compared, PlanReport, describe_change, findings_in_order};
use crate::diag::escaped;
use crate::model::FindingSeverity;
use crate::plan::Change;
use crate::policy::{ExceptionState, Finding, FindingStatus};

/// Marks the comment so a bot can find and update it instead of posting a new one.
pub const COMMENT_MARKER: &str = "<!-- gitward:plan -->";

/// Text from the repository as Markdown that renders as the text it is, in a table cell:
/// no HTML (`<!--` would hide the rest of the comment), no link, image or emphasis, no
/// mention (`@team` would notify the team: a zero-width space follows the `@`), no `|` that
/// ends the cell.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in escaped(text).chars() {
        match c {
            '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '<' | '>' | '&' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@&#8203;"),
            c => out.push(c),
        }
    }
    out
}

/// Backticks enough to open and close code around `text`: one more than its longest run,
/// and at least `least`.
fn fence(text: &str, least: usize) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat((longest + 1).max(least))
}

/// Text in a code span, where Markdown is not read; only `|` would end the table cell.
fn code(text: &str) -> String {
    let text = escaped(text).replace('|', "\\|");
    let fence = fence(&text, 1);
    if fence.len() > 1 {
        format!("{fence} {text} {fence}")
    } else {
        format!("`{text}`")
    }
}

fn status_text(f: &Finding) -> &'static str {
    match (f.status, f.exception.is_some()) {
        (FindingStatus::Resolved, _) => "✅ resolved",
        (_, true) => "💤 excepted",
        (FindingStatus::New, false) if f.blocks() => "🆕 **new, blocking**",
        (FindingStatus::New, false) => "🆕 new",
        (FindingStatus::Existing, false) => "existing",
    }
}

fn findings_section(out: &mut String, report: &PlanReport) {
    if report.findings.is_empty() {
        return;
    }
    let c = report.finding_counts();
    let _ = writeln!(
        out,
        "\n#### Policy findings: {} new · {} existing · {} resolved · {} excepted\n",
        c.new, c.existing, c.resolved, c.excepted
    );
    let ordered = findings_in_order(report);
    for severity in FindingSeverity::ALL {
        let group: Vec<&&Finding> = ordered.iter().filter(|f| f.severity == *severity).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "**{}** ({})\n",
            severity.as_str().to_uppercase(),
            group.len()
        );
        let _ = writeln!(out, "| Status | Policy | Resource | Message | Location |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for (shown, f) in group.iter().enumerate() {
            if shown == ROWS_SHOWN_PER_SEVERITY {
                let _ = writeln!(
                    out,
                    "| | | | … {} more (the JSON report lists all) | |",
                    group.len() - shown
                );
                break;
            }
            let mut message = cell(&f.message);
            if let Some(e) = &f.exception {
                message.push_str(&format!(
                    " — *excepted until {} ({}): {}*",
                    e.expires,
                    cell(&e.owner),
                    cell(&e.reason)
                ));
            }
            let _ = writeln!(
                out,
                "| {} | {} ({}) | {} | {} | {}:{} |",
                status_text(f),
                code(&f.policy),
                f.enforcement.as_str(),
                code(&f.resource_id()),
                message,
                code(&f.file),
                f.line
            );
        }
        let _ = writeln!(out);
    }
    let ending = report.ending_exceptions();
    if !ending.is_empty() {
        let _ = writeln!(out, "**Exceptions ending**\n");
        let _ = writeln!(out, "| Policy | Resources | Expires | Owner | Reason |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for e in ending {
            let state = if e.state == ExceptionState::Expired {
                "expired "
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {} | {} | {state}{} | {} | {} |",
                code(&e.policy),
                cell(&e.resources.join(", ")),
                e.expires,
                cell(&e.owner),
                cell(&e.reason)
            );
        }
        let _ = writeln!(out);
    }
}

/// Rows per severity before the rest is only counted: a comment has a size limit.
const ROWS_SHOWN_PER_SEVERITY: usize = 30;

pub fn render(report: &PlanReport) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let status = match (report.valid, report.blocked) {
        (false, _) => "❌ invalid",
        (true, true) => "⛔ blocked",
        (true, false) => "✅ valid",
    };
    let _ = writeln!(out, "{COMMENT_MARKER}");
    let _ = writeln!(
        out,
        "### gitward plan: {status} · {} to issue · {} to reissue · {} to remove{}\n",
        s.issue,
        s.reissue,
        s.remove,
        super::text::moved(s.moved).replacen(',', " ·", 1)
    );
    let head = format!("`{}` {}", report.head.short(), cell(&report.head.summary));
    let _ = writeln!(
        out,
        "`{}` {} → {}\n",
        report.base.short(),
        cell(&report.base.summary),
        match report.compared {
            Compared::Head => head,
            Compared::Merge => format!("merge of {head} into it"),
        }
    );
    if !report.valid {
        let _ = writeln!(
            out,
            "**The head is not a valid configuration; nothing would be applied.**\n"
        );
        let errors: String = report.errors().map(|d| format!("{d}\n")).collect();
        let fence = fence(&errors, 3);
        let _ = writeln!(out, "{fence}\n{errors}{fence}\n");
    }
    let warnings: String = report.warnings().map(|d| format!("{d}\n")).collect();
    if !warnings.is_empty() {
        let _ = writeln!(out, "**Warnings**\n");
        let fence = fence(&warnings, 3);
        let _ = writeln!(out, "{fence}\n{warnings}{fence}\n");
    }
    if report.resources.is_empty() {
        let _ = writeln!(out, "No changes to resources.");
    } else {
        let _ = writeln!(out, "| | Resource | Change | Action | Why | File |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for r in &report.resources {
            let icon = match r.change {
                Change::Create => "➕",
                Change::Update => "✏️",
                Change::Delete => "➖",
                Change::None => "🔁",
            };
            let _ = writeln!(
                out,
                "| {icon} | {} | {} | **{}** | {} | {}:{} |",
                code(&r.id()),
                r.change.as_str(),
                r.action.as_str(),
                cell(&r.reasons.join("; ")),
                code(&r.file),
                r.line
            );
        }
    }
    let updated: Vec<_> = report
        .resources
        .iter()
        .filter(|r| !r.diff.is_empty())
        .collect();
    if !updated.is_empty() {
        let _ = writeln!(out, "\n<details><summary>Field changes</summary>\n");
        for r in updated {
            let _ = writeln!(out, "**{}**\n", code(&r.id()));
            let _ = writeln!(out, "| Field | Change |");
            let _ = writeln!(out, "|---|---|");
            for f in &r.diff {
                let _ = writeln!(
                    out,
                    "| {} | {} |",
                    code(&f.path),
                    cell(&describe_change(f.before.as_ref(), f.after.as_ref()))
                );
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "</details>");
    }
    findings_section(&mut out, report);
    let _ = writeln!(
        out,
        "\n<sub>{} created · {} updated · {} deleted · {} unchanged</sub>",
        s.create, s.update, s.delete, s.unchanged
    );
    out
}
