//! The plan as a pull-request comment (or `$GITHUB_STEP_SUMMARY`).

use std::fmt::Write;

use super::text::{approval_standing, change_lines, counted, pending_until};
use super::{Compared, PlanReport, describe_change, findings_in_order};
use crate::diag::escaped;
use crate::gate::NOT_APPLICABLE;
use crate::gate::scans::ScanHit;
use crate::gate::{GateOutcome, GateReport, Governing, Limit, Met, RequirementEvidence};
use crate::model::{ApprovalSource, FindingSeverity};
use crate::plan::Change;
use crate::policy::{ExceptionState, Finding, FindingStatus};
use crate::reconcile::decide::Verdict;
use crate::trust::Approval;

/// Marks the comment so a bot can find and update it instead of posting a new one.
pub const COMMENT_MARKER: &str = "<!-- gitward:plan -->";

/// Text from the repository as Markdown that renders as the text it is, in a table cell:
/// no HTML (`<!--` would hide the rest of the comment), no link, image or emphasis, no
/// mention (`@team` would notify the team: a zero-width space follows the `@`), no `|` that
/// ends the cell. Bare `https://…` and `www.…` would be links on GitHub: a backslash before
/// the `:` or `.` stops that and renders nothing, so a DNS name copied from the comment is
/// still the name. `#12`, `!3` and `acme/other#1` would reference issues and merge requests
/// (and tell them they were mentioned): a zero-width space follows the `#` or `!`.
fn cell(text: &str) -> String {
    let text = escaped(text);
    let mut out = String::with_capacity(text.len());
    for (at, c) in text.char_indices() {
        match c {
            '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '<' | '>' | '&' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@&#8203;"),
            '#' | '!' if text[at + 1..].starts_with(|d: char| d.is_ascii_digit()) => {
                out.push(c);
                out.push_str("&#8203;");
            }
            ':' if text[at + 1..].starts_with("//") => out.push_str("\\:"),
            '.' if text
                .get(at.saturating_sub(3)..at)
                .is_some_and(|w| w.eq_ignore_ascii_case("www")) =>
            {
                out.push_str("\\.");
            }
            c => out.push(c),
        }
    }
    out
}

/// Text in raw HTML (a `<summary>`), where Markdown escapes are not read: entities instead,
/// and the zero-width space that keeps `@` from mentioning.
fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in escaped(text).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
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
/// Affected resources, approvals and failing scan results listed per gate.
const LISTED_PER_GATE: usize = 20;

fn met_icon(met: Met) -> &'static str {
    match met {
        Met::Yes => "✅",
        Met::No => "❌",
        Met::Waiting => "⏳",
    }
}

fn outcome_text(outcome: GateOutcome) -> &'static str {
    match outcome {
        GateOutcome::Pass => "✅ pass",
        GateOutcome::Fail => "⛔ **fail**",
        GateOutcome::Pending => "⏳ pending",
        GateOutcome::Overridden => "⚠️ overridden",
        GateOutcome::NotApplicable => "➖ not applicable",
    }
}

/// The requirements of a gate in one table cell, a line each.
fn requirements_cell(gate: &GateReport) -> String {
    if gate.outcome == GateOutcome::NotApplicable {
        return NOT_APPLICABLE.to_owned();
    }
    let mut lines: Vec<String> = gate
        .requirements
        .iter()
        .map(|r| {
            format!(
                "{} {}: {}",
                met_icon(r.met),
                r.evidence.name(),
                cell(&r.summary)
            )
        })
        .collect();
    if let Some(o) = &gate.override_ {
        if let Some(used) = &o.used {
            lines.push(format!(
                "⚠️ overridden by {}: {}",
                cell(&used.principal),
                cell(&used.reason)
            ));
        }
        if let Some(why) = &o.refused {
            lines.push(format!("override refused: {}", cell(why)));
        }
    }
    lines.join("<br>")
}

/// "deny 0 (at most 0) · warn 2 (at most 5) · audit 1".
fn limits(limits: [(&str, &Limit); 3]) -> String {
    limits
        .iter()
        .map(|(what, l)| match l.max {
            Some(max) => format!("{what} {} (at most {max})", l.found),
            None => format!("{what} {}", l.found),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// "… N more (the JSON report lists all)" under a list cut short.
fn more_row(out: &mut String, columns: usize, more: usize) {
    if more > 0 {
        let _ = writeln!(
            out,
            "| … {more} more (the JSON report lists all) |{}",
            " |".repeat(columns - 1)
        );
    }
}

/// Each approval: who, signed with which key or read from a trailer, and whether it counts.
fn approvals_table(out: &mut String, approvals: &[Approval], unverified: bool) {
    if unverified {
        let _ = writeln!(
            out,
            "Read from `Approved-by:` trailers: *unverified*, anyone can write them.\n"
        );
    }
    if approvals.is_empty() {
        let _ = writeln!(out, "No approval found.\n");
        return;
    }
    let _ = writeln!(out, "| Approver | From | Counts |");
    let _ = writeln!(out, "|---|---|---|");
    for a in approvals.iter().take(LISTED_PER_GATE) {
        let from = match (a.source, &a.key_fingerprint) {
            (ApprovalSource::Trailers, _) => "`Approved-by` trailer, *unverified*".to_owned(),
            (ApprovalSource::Signatures, Some(key)) => format!("signed with {}", code(key)),
            (ApprovalSource::Signatures, None) => "signature".to_owned(),
            (ApprovalSource::Github | ApprovalSource::Gitlab, _) => {
                cell(&super::text::forge_review(a))
            }
        };
        let counts = match &a.refused {
            None => "✅ counts".to_owned(),
            Some(_) => format!("❌ {}", cell(&approval_standing(a))),
        };
        let _ = writeln!(out, "| {} | {from} | {counts} |", cell(&a.approver));
    }
    more_row(out, 3, approvals.len().saturating_sub(LISTED_PER_GATE));
    let _ = writeln!(out);
}

/// The reports read, the results counted and the failing ones.
fn scan_results(
    out: &mut String,
    files: &[String],
    results: usize,
    failing_total: usize,
    failing: &[ScanHit],
) {
    let listed: Vec<String> = files
        .iter()
        .take(LISTED_PER_GATE)
        .map(|f| code(f))
        .collect();
    let _ = writeln!(
        out,
        "{} counted in {}{}{}; {failing_total} failing.\n",
        counted(results, "result"),
        counted(files.len(), "report"),
        if listed.is_empty() { "" } else { ": " },
        listed.join(", ")
    );
    if failing.is_empty() {
        return;
    }
    let _ = writeln!(out, "| Level | Rule | Location | Message |");
    let _ = writeln!(out, "|---|---|---|---|");
    for hit in failing.iter().take(LISTED_PER_GATE) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            hit.level,
            code(&hit.rule_id),
            code(hit.location.as_deref().unwrap_or(&hit.file)),
            cell(&hit.message)
        );
    }
    more_row(
        out,
        4,
        failing_total.saturating_sub(failing.len().min(LISTED_PER_GATE)),
    );
    let _ = writeln!(out);
}

/// What a requirement was judged on, below its summary.
fn evidence_details(out: &mut String, evidence: &RequirementEvidence) {
    match evidence {
        RequirementEvidence::Violations { deny, warn, audit } => {
            let _ = writeln!(
                out,
                "Unexcepted findings on the affected resources: {}\n",
                limits([("deny", deny), ("warn", warn), ("audit", audit)])
            );
        }
        RequirementEvidence::Approvals {
            approvals,
            unverified,
            ..
        } => approvals_table(out, approvals, *unverified),
        RequirementEvidence::Scans {
            files,
            counted,
            failing_total,
            failing,
            ..
        } => scan_results(out, files, *counted, *failing_total, failing),
        RequirementEvidence::SignedBy {
            principals,
            signature,
        } => {
            let principals: Vec<String> = principals.iter().map(|p| cell(p)).collect();
            let _ = writeln!(
                out,
                "Signers the gate accepts: {}{}\n",
                principals.join(", "),
                signature
                    .key_fingerprint
                    .as_deref()
                    .map(|key| format!("; the commit is signed with {}", code(key)))
                    .unwrap_or_default()
            );
        }
        RequirementEvidence::Change { url, .. } => {
            let mut lines: Vec<String> = change_lines(evidence).iter().map(|l| cell(l)).collect();
            // The link is the host's endpoint with a checked id: shown as code, not followed.
            if let Some(url) = url
                && let Some(last) = lines.last_mut()
                && *last == cell(url)
            {
                *last = code(url);
            }
            if !lines.is_empty() {
                let _ = writeln!(out, "{}\n", lines.join("<br>"));
            }
        }
        RequirementEvidence::Window {
            timezone,
            opens_local,
            ..
        } => {
            let _ = writeln!(
                out,
                "Time zone {}{}\n",
                code(timezone),
                opens_local
                    .as_deref()
                    .map(|at| format!("; opens **{}**", cell(at)))
                    .unwrap_or_default()
            );
        }
    }
}

/// A gate's evidence, folded: who approved with which key, scan results, the window.
fn gate_details(out: &mut String, gate: &GateReport) {
    let _ = writeln!(
        out,
        "<details><summary>Gate {}: evidence</summary>\n",
        html(&gate.name)
    );
    let affected: Vec<String> = gate
        .affected
        .iter()
        .take(LISTED_PER_GATE)
        .map(|a| code(a))
        .collect();
    let more = gate.affected_total.saturating_sub(affected.len());
    let _ = writeln!(
        out,
        "Defined in {}:{} ({}). Applies to {}: {}{}\n",
        code(&gate.file),
        gate.line,
        match gate.governing {
            Governing::InForce => "the commit in force",
            Governing::Head => "the head: nothing is in force",
        },
        counted(gate.affected_total, "resource"),
        affected.join(", "),
        if more > 0 {
            format!(" … and {more} more")
        } else {
            String::new()
        }
    );
    for r in &gate.requirements {
        let _ = writeln!(
            out,
            "**{} {}**: {}\n",
            met_icon(r.met),
            r.evidence.name(),
            cell(&r.summary)
        );
        evidence_details(out, &r.evidence);
    }
    if let Some(used) = gate.override_.as_ref().and_then(|o| o.used.as_ref()) {
        let _ = writeln!(
            out,
            "**⚠️ Overridden** by {} (signed with {}) in {}: {}. To be reviewed by another principal by {}.\n",
            cell(&used.principal),
            code(&used.key_fingerprint),
            code(&used.commit),
            cell(&used.reason),
            used.review_due.format("%Y-%m-%d %H:%M UTC")
        );
    }
    let _ = writeln!(out, "</details>\n");
}

/// The gates of the base and what each says of the change: a table, then each gate's
/// evidence folded.
fn gates_section(out: &mut String, report: &PlanReport) {
    if report.gates.is_empty() {
        return;
    }
    let _ = writeln!(out, "#### Gates\n");
    let _ = writeln!(out, "| Gate | Outcome | Requirements |");
    let _ = writeln!(out, "|---|---|---|");
    for gate in &report.gates {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            code(&gate.name),
            outcome_text(gate.outcome),
            requirements_cell(gate)
        );
    }
    let _ = writeln!(out);
    for gate in report
        .gates
        .iter()
        .filter(|g| g.outcome != GateOutcome::NotApplicable)
    {
        gate_details(out, gate);
    }
}

pub fn render(report: &PlanReport) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let status = match report.verdict {
        Verdict::Failed => "❌ invalid".to_owned(),
        Verdict::Blocked => "⛔ blocked".to_owned(),
        Verdict::Pending { .. } => format!(
            "⏳ pending until {}",
            cell(&pending_until(report).unwrap_or_default())
        ),
        Verdict::Apply => "✅ would apply".to_owned(),
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
    gates_section(&mut out, report);
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
    let _ = writeln!(out, "<sub>Policies: {}</sub>", report.evaluation.line());
    out
}

#[cfg(test)]
mod tests {
    use super::super::text::tests::{HOSTILE, gated_report, pending_report};
    use super::*;

    /// The separators of a table row that end cells: those no odd run of backslashes escapes.
    fn separators(row: &str) -> usize {
        let mut backslashes = 0;
        let mut count = 0;
        for c in row.chars() {
            if c == '|' && backslashes % 2 == 0 {
                count += 1;
            }
            backslashes = if c == '\\' { backslashes + 1 } else { 0 };
        }
        count
    }

    /// The hostile text as a cell shows it.
    const INERT: &str = "\\<!-- x --\\> @&#8203;platform-team \\| \\`rm -rf\\` \\[click\\](https\\://evil.example) \\*bold\\* \\\\u{1b}\\[31m\\\\u{202e}";

    #[test]
    fn the_header_says_what_merging_now_would_do() {
        let header = |report: &PlanReport| render(report).lines().nth(1).unwrap().to_owned();
        let mut report = gated_report();
        assert_eq!(
            header(&report),
            "### gitward plan: ⛔ blocked · 0 to issue · 1 to reissue · 0 to remove"
        );
        assert_eq!(
            header(&pending_report()),
            "### gitward plan: ⏳ pending until Mon 2026-12-07 09:00 CET · 0 to issue · 1 to reissue · 0 to remove"
        );
        report.verdict = Verdict::Apply;
        assert!(header(&report).starts_with("### gitward plan: ✅ would apply ·"));
        report.verdict = Verdict::Failed;
        assert!(header(&report).starts_with("### gitward plan: ❌ invalid ·"));
    }

    #[test]
    fn gates_come_first_in_a_table_with_each_gate_s_evidence_folded() {
        let md = render(&gated_report());
        let at = |what: &str| md.find(what).unwrap_or_else(|| panic!("{what} in {md}"));
        assert!(at("#### Gates") < at("| | Resource |"), "{md}");
        assert!(at("| | Resource |") < at("#### Policy findings"), "{md}");
        let table: Vec<&str> = md[at("| Gate |")..]
            .lines()
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(
            table,
            [
                "| Gate | Outcome | Requirements |",
                "|---|---|---|",
                "| `audit-log` | ✅ pass | ✅ approvals: 1 of 1 approval: dana@&#8203;example.com |",
                &format!(
                    "| `emergency` | ⚠️ overridden | ❌ signedBy: signed by security-lead@&#8203;example.com, who is not one of release@&#8203;example.com<br>⚠️ overridden by security-lead@&#8203;example.com: {INERT} |"
                ),
                "| `prod-changes` | ⛔ **fail** | ✅ violations: findings within limits (0 deny, 2 warn, 0 audit)<br>❌ approvals: 1 of 2 approvals: carol@&#8203;example.com (unverified trailers); 2 not counted<br>❌ scans: 3 scan results over the limits |",
                &format!(
                    "| `prod-window` | ⏳ pending | ⏳ window: window closed ({INERT}); opens Mon 2026-12-07 09:00 CET |"
                ),
                "| `staging-changes` | ➖ not applicable | the change touches nothing it applies to |",
            ],
            "{md}"
        );
        // Evidence for each gate that applies; none for the one that does not.
        assert_eq!(md.matches("<details><summary>Gate ").count(), 4, "{md}");
        assert!(!md.contains("<summary>Gate staging-changes"), "{md}");
        for row in [
            "| dana@&#8203;example.com | signed with `SHA256:dAnAkEy` | ✅ counts |",
            "| carol@&#8203;example.com | `Approved-by` trailer, *unverified* | ✅ counts |",
            "| test@&#8203;example.com | `Approved-by` trailer, *unverified* | ❌ does not count: wrote or committed part of the change (separation of duties) |",
            &format!(
                "| {INERT} | `Approved-by` trailer, *unverified* | ❌ does not count: not one of the gate's approvers |"
            ),
            "| error | `CVE-2026-0001` | `Cargo.lock:12` | openssl 3.0.1 is vulnerable |",
            "| … 1 more (the JSON report lists all) | | | |",
            "12 results counted in 1 report: `reports/deps.sarif`; 3 failing.",
            "Unexcepted findings on the affected resources: deny 0 (at most 0) · warn 2 (at most 5) · audit 0",
            "Time zone `Europe/Berlin`; opens **Mon 2026-12-07 09:00 CET**",
        ] {
            assert!(md.contains(&format!("\n{row}\n")), "{row} in {md}");
        }
    }

    /// Asserts that no table row of `md` gains or loses a cell.
    fn assert_rows_keep_their_cells(md: &str) {
        let mut columns = 0;
        for line in md.lines() {
            if !line.starts_with('|') {
                columns = 0;
            } else if columns == 0 {
                columns = separators(line);
            } else {
                assert_eq!(separators(line), columns, "{line}");
            }
        }
    }

    #[test]
    fn hostile_approvers_reasons_and_scan_messages_render_inert() {
        let md = render(&gated_report());
        // The only comment is the marker: every other `<` is escaped.
        assert_eq!(
            md.matches("<!--").count() - md.matches("\\<!--").count(),
            1,
            "{md}"
        );
        for raw in [
            "@platform-team",
            "https://",
            "| `rm",
            "[click]",
            "\u{1b}",
            "\u{202e}",
        ] {
            assert!(!md.contains(raw), "{raw:?} in {md}");
        }
        assert_rows_keep_their_cells(&md);
    }

    #[test]
    fn a_hostile_gate_name_is_code_in_the_table_and_entities_in_its_summary() {
        let mut report = gated_report();
        report.gates[2].name = HOSTILE.to_owned();
        let md = render(&report);
        assert!(
            md.contains("\n| `` <!-- x --> @platform-team \\| `rm -rf` [click](https://evil.example) *bold* \\u{1b}[31m\\u{202e} `` | ⛔ **fail** |"),
            "{md}"
        );
        // Raw HTML reads no Markdown escapes.
        assert!(
            md.contains("\n<details><summary>Gate &lt;!-- x --&gt; @&#8203;platform-team | `rm -rf` [click](https://evil.example) *bold* \\u{1b}[31m\\u{202e}: evidence</summary>\n"),
            "{md}"
        );
        assert_rows_keep_their_cells(&md);
    }

    #[test]
    fn bare_urls_and_www_names_are_not_links_but_read_the_same() {
        assert_eq!(
            cell("see https://evil.example or WWW.evil.example, not www-x"),
            "see https\\://evil.example or WWW\\.evil.example, not www-x"
        );
        assert_eq!(cell("é:// ww.x"), "é\\:// ww.x");
    }
}
