//! The plan for a terminal.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::{Compared, PlanReport, describe_change, findings_in_order};
use crate::diag::Escaped;
use crate::gate::window;
use crate::gate::{GateOutcome, GateReport, Governing, Met, RequirementEvidence};
use crate::model::ApprovalSource;
use crate::plan::{Change, ResourcePlan};
use crate::policy::{ExceptionState, Finding, FindingStatus};
use crate::reconcile::decide::Verdict;
use crate::trust::Approval;

/// Existing findings shown before the rest is only counted; JSON and SARIF carry them all.
const EXISTING_SHOWN: usize = 20;
/// Affected resources, approvals and failing scan results listed per gate before the rest
/// is only counted; the JSON report has them all.
const LISTED_PER_GATE: usize = 10;

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

/// "1 report", "3 reports".
pub(super) fn counted(count: usize, thing: &str) -> String {
    format!("{count} {thing}{}", if count == 1 { "" } else { "s" })
}

/// Where an approval comes from: the key that signed it, or a trailer anyone can write.
fn approval_origin(approval: &Approval) -> String {
    match (approval.source, &approval.key_fingerprint) {
        (ApprovalSource::Trailers, _) => "Approved-by trailer, unverified".to_owned(),
        (ApprovalSource::Signatures, Some(key)) => format!("signed with {key}"),
        (ApprovalSource::Signatures, None) => "signature".to_owned(),
        (ApprovalSource::Github | ApprovalSource::Gitlab, _) => forge_review(approval),
    }
}

/// A forge review as reports name it: the forge, when, and where.
pub(super) fn forge_review(approval: &Approval) -> String {
    let forge = match approval.source {
        ApprovalSource::Gitlab => "GitLab approval",
        _ => "GitHub review",
    };
    let at = approval
        .at
        .map(|at| format!(" {}", at.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default();
    let url = approval
        .url
        .as_deref()
        .map(|url| format!(" {url}"))
        .unwrap_or_default();
    format!("{forge}{at}{url}")
}

/// Whether an approval counts, and why not.
pub(super) fn approval_standing(approval: &Approval) -> String {
    match &approval.refused {
        None => "counts".to_owned(),
        Some(why) => format!("does not count: {why}"),
    }
}

/// An instant as the time zone of the window that opens then shows it, or in UTC.
fn local_opening(gate: &GateReport, at: DateTime<Utc>) -> String {
    gate.requirements
        .iter()
        .find_map(|r| match &r.evidence {
            RequirementEvidence::Window {
                opens_at: Some(opens_at),
                opens_local: Some(local),
                ..
            } if *opens_at == at => Some(local.clone()),
            _ => None,
        })
        .unwrap_or_else(|| window::local(at, "UTC"))
}

/// When a pending gate lets the change through, as its time zone shows it.
pub(super) fn opens_local(gate: &GateReport) -> Option<String> {
    gate.opens_at.map(|at| local_opening(gate, at))
}

/// When a pending change is applied: the last of the windows it waits for opens.
pub(super) fn pending_until(report: &PlanReport) -> Option<String> {
    let Verdict::Pending { opens_at } = report.verdict else {
        return None;
    };
    Some(
        report
            .gates
            .iter()
            .find(|g| g.opens_at == Some(opens_at))
            .map_or_else(
                || window::local(opens_at, "UTC"),
                |g| local_opening(g, opens_at),
            ),
    )
}

fn met_mark(met: Met) -> char {
    match met {
        Met::Yes => '✓',
        Met::No => '✗',
        Met::Waiting => '…',
    }
}

/// "3 resources: Certificate/a, Certificate/b, … and 1 more".
fn affected_list(gate: &GateReport) -> String {
    let shown: Vec<String> = gate
        .affected
        .iter()
        .take(LISTED_PER_GATE)
        .map(|a| Escaped(a).to_string())
        .collect();
    let more = gate.affected_total.saturating_sub(shown.len());
    format!(
        "{}: {}{}",
        counted(gate.affected_total, "resource"),
        shown.join(", "),
        if more > 0 {
            format!(", … and {more} more")
        } else {
            String::new()
        }
    )
}

/// The evidence behind a requirement's summary, a line each, indented under it.
fn evidence_lines(out: &mut String, evidence: &RequirementEvidence) {
    const INDENT: &str = "        ";
    match evidence {
        RequirementEvidence::Approvals { approvals, .. } => {
            for a in approvals.iter().take(LISTED_PER_GATE) {
                let _ = writeln!(
                    out,
                    "{INDENT}{} ({}): {}",
                    Escaped(&a.approver),
                    Escaped(&approval_origin(a)),
                    Escaped(&approval_standing(a))
                );
            }
            if approvals.len() > LISTED_PER_GATE {
                let _ = writeln!(
                    out,
                    "{INDENT}… and {} more approvals",
                    approvals.len() - LISTED_PER_GATE
                );
            }
        }
        RequirementEvidence::Scans {
            files,
            counted: results,
            failing_total,
            failing,
            ..
        } => {
            let _ = writeln!(
                out,
                "{INDENT}{} counted in {}, {failing_total} failing",
                counted(*results, "result"),
                counted(files.len(), "report")
            );
            for hit in failing.iter().take(LISTED_PER_GATE) {
                let _ = writeln!(
                    out,
                    "{INDENT}{}  {}  {}: {}",
                    hit.level,
                    Escaped(&hit.rule_id),
                    Escaped(hit.location.as_deref().unwrap_or(&hit.file)),
                    Escaped(&hit.message)
                );
            }
            let shown = failing.len().min(LISTED_PER_GATE);
            if *failing_total > shown {
                let _ = writeln!(
                    out,
                    "{INDENT}… and {} more failing results",
                    failing_total - shown
                );
            }
        }
        RequirementEvidence::SignedBy { signature, .. } => {
            if let Some(key) = &signature.key_fingerprint {
                let _ = writeln!(out, "{INDENT}key {}", Escaped(key));
            }
        }
        RequirementEvidence::Change { .. } => {
            for line in change_lines(evidence) {
                let _ = writeln!(out, "{INDENT}{}", Escaped(&line));
            }
        }
        // Their summaries say it all: the counts against the limits, the next opening.
        RequirementEvidence::Violations { .. } | RequirementEvidence::Window { .. } => {}
    }
}

/// What was read of a change request, a line each: its state and approval, its approvers,
/// its planned window, its link. Unescaped: each format escapes them its own way.
pub(super) fn change_lines(evidence: &RequirementEvidence) -> Vec<String> {
    let RequirementEvidence::Change {
        system,
        number: Some(number),
        state: Some(state),
        approval,
        approvers,
        start,
        end,
        url,
        ..
    } = evidence
    else {
        return Vec::new();
    };
    let mut lines = vec![format!(
        "{number} in {}: {state}{}",
        match system {
            crate::model::ChangeSystem::ServiceNow => "ServiceNow",
            crate::model::ChangeSystem::Jira => "Jira",
        },
        approval
            .as_deref()
            .map(|a| format!(", approval {a}"))
            .unwrap_or_default()
    )];
    if !approvers.is_empty() {
        lines.push(format!("approved by {}", approvers.join(", ")));
    }
    let at = |t: &Option<DateTime<Utc>>| {
        t.map_or("(not set)".to_owned(), |t| {
            t.format("%Y-%m-%d %H:%M UTC").to_string()
        })
    };
    if start.is_some() || end.is_some() {
        lines.push(format!("planned {} to {}", at(start), at(end)));
    }
    lines.extend(url.clone());
    lines
}

/// A gate as the text report shows it: its outcome, then a line per requirement with its
/// evidence; a gate the change does not concern in one line. JUnit shows the same lines.
pub(crate) fn gate_block(gate: &GateReport) -> String {
    let mut out = String::new();
    if gate.outcome == GateOutcome::NotApplicable {
        let _ = writeln!(out, "  {}", Escaped(&gate.line()));
        return out;
    }
    let _ = writeln!(
        out,
        "  {}: {}  {}:{}{}",
        Escaped(&gate.name),
        gate.outcome.as_str(),
        Escaped(&gate.file),
        gate.line,
        match gate.governing {
            Governing::InForce => "",
            Governing::Head => " (the head's version: nothing is in force)",
        }
    );
    let _ = writeln!(out, "    applies to {}", affected_list(gate));
    for r in &gate.requirements {
        let _ = writeln!(
            out,
            "    {} {}: {}",
            met_mark(r.met),
            r.evidence.name(),
            Escaped(&r.summary)
        );
        evidence_lines(&mut out, &r.evidence);
    }
    if let Some(o) = &gate.override_ {
        if let Some(used) = &o.used {
            let _ = writeln!(
                out,
                "    overridden by {} (signed with {}): {}; to be reviewed by {}",
                Escaped(&used.principal),
                Escaped(&used.key_fingerprint),
                Escaped(&used.reason),
                used.review_due.format("%Y-%m-%d %H:%M UTC")
            );
        }
        if let Some(why) = &o.refused {
            let _ = writeln!(out, "    override refused: {}", Escaped(why));
        }
    }
    out
}

/// What merging the change now does, and why.
fn verdict_lines(out: &mut String, report: &PlanReport) {
    let verdict = match report.verdict {
        Verdict::Apply => "applied".to_owned(),
        // The errors are listed at the top.
        Verdict::Failed => {
            let _ = writeln!(
                out,
                "\nIf merged now: nothing is applied; the head is not a valid configuration."
            );
            return;
        }
        Verdict::Blocked => "blocked; the commit in force stays".to_owned(),
        Verdict::Pending { .. } => format!(
            "pending; applied without a new commit when the window opens, {}",
            pending_until(report).unwrap_or_default()
        ),
    };
    let end = if report.reasons.is_empty() { '.' } else { ':' };
    let _ = writeln!(out, "\nIf merged now: {verdict}{end}");
    for reason in &report.reasons {
        let _ = writeln!(out, "  - {}", Escaped(reason));
    }
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
    let _ = writeln!(out, "Policies: {}.", report.evaluation.line());

    if !report.gates.is_empty() {
        let _ = writeln!(out, "\nGates:");
        for gate in &report.gates {
            out.push_str(&gate_block(gate));
        }
    }
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
    verdict_lines(&mut out, report);
    out
}

#[cfg(test)]
pub(super) mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::gate::scans::ScanHit;
    use crate::gate::{Limit, OverrideRecord, OverrideReport, RequirementReport};
    use crate::git::CommitInfo;
    use crate::model::{Enforcement, FindingSeverity, Kind, SarifLevel};
    use crate::plan::{Action, Summary};
    use crate::report::{FORMAT_VERSION, PolicyInfo};
    use crate::trust::SignatureCheck;

    /// What a hostile writer puts where reports show it: a comment that would hide the rest
    /// of a pull-request comment, a mention, a cell separator, code, a link, a terminal
    /// escape and a right-to-left override.
    pub(in crate::report) const HOSTILE: &str = "<!-- x --> @platform-team | `rm -rf` [click](https://evil.example) *bold* \u{1b}[31m\u{202e}";

    fn commit(sha: char, summary: &str) -> CommitInfo {
        CommitInfo {
            sha: sha.to_string().repeat(40),
            tree: git2::Oid::ZERO_SHA1,
            author: "Test User".to_owned(),
            email: "test@example.com".to_owned(),
            summary: summary.to_owned(),
            message: summary.to_owned(),
            signature: None,
        }
    }

    fn gate(name: &str, outcome: GateOutcome, requirements: Vec<RequirementReport>) -> GateReport {
        GateReport {
            name: name.to_owned(),
            file: format!("gates/{name}.yaml"),
            line: 2,
            governing: Governing::InForce,
            outcome,
            affected: vec!["Certificate/api-example-com".to_owned()],
            affected_total: 1,
            requirements,
            opens_at: None,
            override_: None,
        }
    }

    fn trailer(approver: &str, refused: Option<&str>) -> Approval {
        Approval {
            gate: "prod-changes".to_owned(),
            approver: approver.to_owned(),
            source: ApprovalSource::Trailers,
            key_fingerprint: None,
            refused: refused.map(str::to_owned),
            at: None,
            url: None,
        }
    }

    fn scan_hit(rule_id: &str, message: &str) -> ScanHit {
        ScanHit {
            file: "reports/deps.sarif".to_owned(),
            rule_id: rule_id.to_owned(),
            level: SarifLevel::Error,
            security_severity: Some(9.8),
            message: message.to_owned(),
            location: Some("Cargo.lock:12".to_owned()),
            fingerprint: format!("{rule_id}/1"),
        }
    }

    /// The opening of the pending gate's window: Monday 09:00 in Berlin.
    pub(in crate::report) fn monday_nine() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap()
    }

    fn window_closed(reason: &str) -> RequirementReport {
        RequirementReport {
            met: Met::Waiting,
            summary: format!("window closed ({reason}); opens Mon 2026-12-07 09:00 CET"),
            evidence: RequirementEvidence::Window {
                timezone: "Europe/Berlin".to_owned(),
                open: false,
                reason: Some(reason.to_owned()),
                opens_at: Some(monday_nine()),
                opens_local: Some("Mon 2026-12-07 09:00 CET".to_owned()),
            },
        }
    }

    /// A plan of a change to one prod certificate, judged by five gates: one passes (a
    /// signed approval), one is overridden, one fails (one approval of two counts: an
    /// unverified trailer; the author's own does not, nor a hostile stranger's), one waits
    /// for its window and one does not apply.
    pub(in crate::report) fn gated_report() -> PlanReport {
        let audit_log = gate(
            "audit-log",
            GateOutcome::Pass,
            vec![RequirementReport {
                met: Met::Yes,
                summary: "1 of 1 approval: dana@example.com".to_owned(),
                evidence: RequirementEvidence::Approvals {
                    required: 1,
                    counted: vec!["dana@example.com".to_owned()],
                    approvals: vec![Approval {
                        gate: "audit-log".to_owned(),
                        approver: "dana@example.com".to_owned(),
                        source: ApprovalSource::Signatures,
                        key_fingerprint: Some("SHA256:dAnAkEy".to_owned()),
                        refused: None,
                        at: None,
                        url: None,
                    }],
                    unverified: false,
                },
            }],
        );
        let mut emergency = gate(
            "emergency",
            GateOutcome::Overridden,
            vec![RequirementReport {
                met: Met::No,
                summary:
                    "signed by security-lead@example.com, who is not one of release@example.com"
                        .to_owned(),
                evidence: RequirementEvidence::SignedBy {
                    principals: vec!["release@example.com".to_owned()],
                    signature: SignatureCheck {
                        verified: true,
                        principal: Some("security-lead@example.com".to_owned()),
                        key_fingerprint: Some("SHA256:lEaDkEy".to_owned()),
                        problem: None,
                    },
                },
            }],
        );
        emergency.override_ = Some(OverrideReport {
            used: Some(OverrideRecord {
                gate: "emergency".to_owned(),
                commit: "b".repeat(40),
                principal: "security-lead@example.com".to_owned(),
                key_fingerprint: "SHA256:lEaDkEy".to_owned(),
                reason: HOSTILE.to_owned(),
                at: Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap(),
                review_due: Utc.with_ymd_and_hms(2026, 12, 8, 10, 0, 0).unwrap(),
            }),
            refused: None,
        });
        let prod_changes = gate(
            "prod-changes",
            GateOutcome::Fail,
            vec![
                RequirementReport {
                    met: Met::Yes,
                    summary: "findings within limits (0 deny, 2 warn, 0 audit)".to_owned(),
                    evidence: RequirementEvidence::Violations {
                        deny: Limit {
                            found: 0,
                            max: Some(0),
                        },
                        warn: Limit {
                            found: 2,
                            max: Some(5),
                        },
                        audit: Limit {
                            found: 0,
                            max: None,
                        },
                    },
                },
                RequirementReport {
                    met: Met::No,
                    summary:
                        "1 of 2 approvals: carol@example.com (unverified trailers); 2 not counted"
                            .to_owned(),
                    evidence: RequirementEvidence::Approvals {
                        required: 2,
                        counted: vec!["carol@example.com".to_owned()],
                        approvals: vec![
                            trailer("carol@example.com", None),
                            trailer(
                                "test@example.com",
                                Some(
                                    "wrote or committed part of the change (separation of duties)",
                                ),
                            ),
                            trailer(HOSTILE, Some("not one of the gate's approvers")),
                        ],
                        unverified: true,
                    },
                },
                RequirementReport {
                    met: Met::No,
                    summary: "3 scan results over the limits".to_owned(),
                    evidence: RequirementEvidence::Scans {
                        files: vec!["reports/deps.sarif".to_owned()],
                        counted: 12,
                        failing_total: 3,
                        failing: vec![
                            scan_hit("CVE-2026-0001", "openssl 3.0.1 is vulnerable"),
                            scan_hit("hostile", HOSTILE),
                        ],
                        problems: Vec::new(),
                    },
                },
            ],
        );
        let mut prod_window = gate(
            "prod-window",
            GateOutcome::Pending,
            vec![window_closed(HOSTILE)],
        );
        prod_window.opens_at = Some(monday_nine());
        let mut staging = gate("staging-changes", GateOutcome::NotApplicable, Vec::new());
        staging.affected = Vec::new();
        staging.affected_total = 0;
        let gates = vec![audit_log, emergency, prod_changes, prod_window, staging];
        PlanReport {
            format_version: FORMAT_VERSION,
            base: commit('a', "Base"),
            head: commit('b', "Change"),
            compared: Compared::Head,
            root: "infra/pki".to_owned(),
            valid: true,
            blocked: true,
            verdict: Verdict::Blocked,
            reasons: vec![format!("gate {}", gates[2].line())],
            gates,
            summary: Summary {
                update: 1,
                reissue: 1,
                unchanged: 3,
                ..Summary::default()
            },
            resources: vec![ResourcePlan {
                kind: Kind::Certificate,
                name: "api-example-com".to_owned(),
                file: "certificates/api.yaml".to_owned(),
                line: 1,
                change: Change::Update,
                action: Action::Reissue,
                reasons: vec!["dnsNames changed".to_owned()],
                diff: Vec::new(),
            }],
            findings: vec![Finding {
                policy: "short-lived".to_owned(),
                enforcement: Enforcement::Warn,
                severity: FindingSeverity::Low,
                kind: Kind::Certificate,
                name: "api-example-com".to_owned(),
                file: "certificates/api.yaml".to_owned(),
                line: 9,
                column: 3,
                field: Some("spec.duration".to_owned()),
                id: None,
                message: "api-example-com is valid for 90d; prefer 30d".to_owned(),
                compliance: Vec::new(),
                status: FindingStatus::New,
                exception: None,
            }],
            exceptions: Vec::new(),
            policies: vec![PolicyInfo {
                name: "short-lived".to_owned(),
                description: None,
                url: None,
                enforcement: Enforcement::Warn,
                severity: FindingSeverity::Low,
                compliance: Vec::new(),
                file: "policies/short-lived.yaml".to_owned(),
                line: 1,
            }],
            evaluated: vec![(
                "short-lived".to_owned(),
                Kind::Certificate,
                "api-example-com".to_owned(),
            )],
            diagnostics: Vec::new(),
            evaluation: crate::report::EvaluationInfo {
                base: crate::report::BaseEvaluation::Note,
                pairs: 1,
                total: 20_000,
                reason: None,
            },
        }
    }

    /// The same change once the failing gate is satisfied: only the window holds it.
    pub(in crate::report) fn pending_report() -> PlanReport {
        let mut report = gated_report();
        report.gates.retain(|g| g.outcome != GateOutcome::Fail);
        report.blocked = false;
        report.verdict = Verdict::Pending {
            opens_at: monday_nine(),
        };
        report.reasons = vec![format!("gate {}", report.gates[2].line())];
        report
    }

    /// The lines of `text` from the one that starts with `from`.
    fn lines_from<'a>(text: &'a str, from: &str) -> Vec<&'a str> {
        text.lines().skip_while(|l| !l.starts_with(from)).collect()
    }

    #[test]
    fn each_gate_shows_its_requirements_and_evidence_then_what_merging_now_does() {
        let text = render(&gated_report());
        let hostile = "<!-- x --> @platform-team | `rm -rf` [click](https://evil.example) *bold* \\u{1b}[31m\\u{202e}";
        let expected = [
            "Gates:",
            "  audit-log: pass  gates/audit-log.yaml:2",
            "    applies to 1 resource: Certificate/api-example-com",
            "    ✓ approvals: 1 of 1 approval: dana@example.com",
            "        dana@example.com (signed with SHA256:dAnAkEy): counts",
            "  emergency: overridden  gates/emergency.yaml:2",
            "    applies to 1 resource: Certificate/api-example-com",
            "    ✗ signedBy: signed by security-lead@example.com, who is not one of release@example.com",
            "        key SHA256:lEaDkEy",
            &format!(
                "    overridden by security-lead@example.com (signed with SHA256:lEaDkEy): {hostile}; to be reviewed by 2026-12-08 10:00 UTC"
            ),
            "  prod-changes: fail  gates/prod-changes.yaml:2",
            "    applies to 1 resource: Certificate/api-example-com",
            "    ✓ violations: findings within limits (0 deny, 2 warn, 0 audit)",
            "    ✗ approvals: 1 of 2 approvals: carol@example.com (unverified trailers); 2 not counted",
            "        carol@example.com (Approved-by trailer, unverified): counts",
            "        test@example.com (Approved-by trailer, unverified): does not count: wrote or committed part of the change (separation of duties)",
            &format!(
                "        {hostile} (Approved-by trailer, unverified): does not count: not one of the gate's approvers"
            ),
            "    ✗ scans: 3 scan results over the limits",
            "        12 results counted in 1 report, 3 failing",
            "        error  CVE-2026-0001  Cargo.lock:12: openssl 3.0.1 is vulnerable",
            &format!("        error  hostile  Cargo.lock:12: {hostile}"),
            "        … and 1 more failing results",
            "  prod-window: pending  gates/prod-window.yaml:2",
            "    applies to 1 resource: Certificate/api-example-com",
            &format!("    … window: window closed ({hostile}); opens Mon 2026-12-07 09:00 CET"),
            "  staging-changes: notApplicable — the change touches nothing it applies to",
            "",
        ];
        let gates = lines_from(&text, "Gates:");
        assert_eq!(gates[..expected.len()], expected, "{text}");
        assert_eq!(
            lines_from(&text, "If merged now:"),
            [
                "If merged now: blocked; the commit in force stays:",
                "  - gate prod-changes: fail — 1 of 2 approvals: carol@example.com (unverified trailers); 2 not counted; 3 scan results over the limits",
            ],
            "{text}"
        );
        // Gates come after the resources, before the findings.
        let at = |what: &str| text.find(what).unwrap();
        assert!(
            at("reissue  certificates/api.yaml:1") < at("Gates:"),
            "{text}"
        );
        assert!(at("Gates:") < at("Policy findings"), "{text}");
        // A terminal shows repository text; it does not obey it.
        assert!(!text.contains(['\u{1b}', '\u{202e}']), "{text}");
    }

    #[test]
    fn a_pending_change_says_when_its_window_opens_in_the_gate_s_time_zone() {
        let text = render(&pending_report());
        assert_eq!(
            lines_from(&text, "If merged now:"),
            [
                "If merged now: pending; applied without a new commit when the window opens, Mon 2026-12-07 09:00 CET:",
                "  - gate prod-window: pending — window closed (<!-- x --> @platform-team | `rm -rf` [click](https://evil.example) *bold* \\u{1b}[31m\\u{202e}); opens Mon 2026-12-07 09:00 CET",
            ],
            "{text}"
        );
    }

    #[test]
    fn a_change_without_gates_ends_with_applied_or_invalid() {
        let mut report = gated_report();
        report.gates.clear();
        report.reasons.clear();
        report.blocked = false;
        report.verdict = Verdict::Apply;
        let text = render(&report);
        assert!(!text.contains("Gates:"), "{text}");
        assert!(text.ends_with("\nIf merged now: applied.\n"), "{text}");
        report.valid = false;
        report.verdict = Verdict::Failed;
        report.reasons = vec!["certificates/a.yaml:1:1: broken".to_owned()];
        let text = render(&report);
        assert!(
            text.ends_with(
                "\nIf merged now: nothing is applied; the head is not a valid configuration.\n"
            ),
            "{text}"
        );
    }
}
