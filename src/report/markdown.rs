//! The plan as a pull-request comment (or `$GITHUB_STEP_SUMMARY`).

use std::fmt::Write;

use super::{PlanReport, describe_change};
use crate::plan::Change;

/// Marks the comment so a bot can find and update it instead of posting a new one.
pub const COMMENT_MARKER: &str = "<!-- gitward:plan -->";

/// Escapes text for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('\n', " ")
}

/// Wraps text in a code span that survives backticks inside it.
fn code(text: &str) -> String {
    let text = cell(text);
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

pub fn render(report: &PlanReport) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let status = if report.valid {
        "✅ valid"
    } else {
        "❌ invalid"
    };
    let _ = writeln!(out, "{COMMENT_MARKER}");
    let _ = writeln!(
        out,
        "### gitward plan: {status} · {} to issue · {} to reissue · {} to remove\n",
        s.issue, s.reissue, s.remove
    );
    let _ = writeln!(
        out,
        "`{}` {} → `{}` {}\n",
        report.base.short(),
        cell(&report.base.summary),
        report.head.short(),
        cell(&report.head.summary)
    );
    if !report.valid {
        let _ = writeln!(
            out,
            "**The head is not a valid configuration; nothing would be applied.**\n"
        );
        let _ = writeln!(out, "```");
        for d in report.errors() {
            let _ = writeln!(out, "{d}");
        }
        let _ = writeln!(out, "```\n");
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
    let _ = writeln!(
        out,
        "\n<sub>{} created · {} updated · {} deleted · {} unchanged</sub>",
        s.create, s.update, s.delete, s.unchanged
    );
    out
}
