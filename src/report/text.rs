//! The plan for a terminal.

use std::fmt::Write;

use super::{PlanReport, describe_change};
use crate::plan::{Change, ResourcePlan};

fn marker(r: &ResourcePlan) -> char {
    match r.change {
        Change::Create => '+',
        Change::Update => '~',
        Change::Delete => '-',
        Change::None => '=',
    }
}

pub fn render(report: &PlanReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gitward plan: {} ({}) → {} ({})\n",
        report.base.short(),
        report.base.summary,
        report.head.short(),
        report.head.summary
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
            r.file,
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
        "\nPlan: {} to issue, {} to reissue, {} to remove. Resources: {} created, {} updated, {} deleted, {} unchanged.",
        s.issue, s.reissue, s.remove, s.create, s.update, s.delete, s.unchanged
    );
    out
}
