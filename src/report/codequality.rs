//! The plan as a GitLab Code Quality report: a JSON array of issues, each with
//! `description`, `check_name`, `fingerprint`, `severity` and `location` (`path` from the
//! repository root, `lines.begin`); `type` and `categories` make each a Code Climate issue too.
//!
//! GitLab shows in a merge request the issues whose fingerprint the target branch's report
//! lacks (new) and those it has that the merge request's lacks (resolved); it keeps one issue
//! per fingerprint. So a finding's fingerprint is made from what makes it the same finding in
//! the base and the head ([`Finding::identity`]: policy, resource, the rule's id or the field
//! and message; never the line or the file), a problem's from its file and message, an unmet
//! gate requirement's from the gate and the requirement. Entries that would share one are
//! numbered in file order, so each is unique. Resolved findings are not listed: GitLab finds
//! them by comparing the two reports.
//!
//! Severities:
//! - `blocker`: what stops the change: an error in the head, a new `deny` finding without an
//!   exception, an unmet requirement of a gate it fails;
//! - findings otherwise by their policy's severity: `critical` → `critical`, `high` and
//!   `medium` → `major`, `low` → `minor`, `info` → `info`; `audit` and excepted findings are
//!   `info` (recorded, not acted on);
//! - a warning in the head is `minor`; a gate's closed window is `info`.

use std::collections::HashMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{PlanReport, repo_path};
use crate::diag::{Severity, bounded, escaped};
use crate::gate::{GateOutcome, Met};
use crate::model::{Enforcement, FindingSeverity};
use crate::policy::{Finding, FindingStatus};

/// Longest description, in characters: GitLab lists them in the merge request widget.
const DESCRIPTION_CHARS: usize = 2000;
/// Changes only if fingerprints are made differently: every issue would look new once.
const FINGERPRINT_VERSION: &str = "gitward/codequality/v1";

struct Issue {
    description: String,
    check_name: String,
    /// What makes the issue the same one in another commit's report.
    identity: Vec<String>,
    severity: &'static str,
    category: &'static str,
    path: String,
    line: u32,
}

fn finding_severity(f: &Finding) -> &'static str {
    if f.blocks() {
        return "blocker";
    }
    if f.enforcement == Enforcement::Audit || f.exception.is_some() {
        return "info";
    }
    match f.severity {
        FindingSeverity::Critical => "critical",
        FindingSeverity::High | FindingSeverity::Medium => "major",
        FindingSeverity::Low => "minor",
        FindingSeverity::Info => "info",
    }
}

fn finding_issue(root: &str, f: &Finding) -> Issue {
    let mut description = format!("{}: {}", f.resource_id(), escaped(&f.message));
    let standing = match (f.status, &f.exception) {
        (_, Some(e)) => format!(
            " (excepted until {}, owner {}: {})",
            e.expires,
            escaped(&e.owner),
            escaped(&e.reason)
        ),
        _ if f.blocks() => " (new deny finding: blocks the merge)".to_owned(),
        _ => String::new(),
    };
    description.push_str(&standing);
    let (policy, kind, name, detail) = f.identity();
    Issue {
        description,
        check_name: format!("gitward/policy/{}", f.policy),
        identity: vec!["finding".to_owned(), policy, kind.to_string(), name, detail],
        severity: finding_severity(f),
        category: "Security",
        path: repo_path(root, &f.file),
        line: f.line,
    }
}

fn issues(report: &PlanReport) -> Vec<Issue> {
    let mut all: Vec<Issue> = report
        .diagnostics
        .iter()
        .map(|d| {
            let (check, severity) = match d.severity {
                Severity::Error => ("gitward/invalid", "blocker"),
                Severity::Warning => ("gitward/warning", "minor"),
            };
            Issue {
                description: escaped(&d.message).into_owned(),
                check_name: check.to_owned(),
                identity: vec![
                    "diagnostic".to_owned(),
                    check.to_owned(),
                    d.file.clone(),
                    d.message.clone(),
                ],
                severity,
                category: "Bug Risk",
                path: repo_path(&report.root, &d.file),
                line: d.line,
            }
        })
        .collect();
    for gate in report
        .gates
        .iter()
        .filter(|g| matches!(g.outcome, GateOutcome::Fail | GateOutcome::Pending))
    {
        all.extend(
            gate.requirements
                .iter()
                .filter(|r| r.met != Met::Yes)
                .map(|r| Issue {
                    description: format!(
                        "gate {} ({}): {}",
                        gate.name,
                        gate.outcome.as_str(),
                        escaped(&r.summary)
                    ),
                    check_name: format!("gate/{}", r.evidence.name()),
                    identity: vec![
                        "gate".to_owned(),
                        gate.name.clone(),
                        r.evidence.name().to_owned(),
                    ],
                    severity: if r.met == Met::Waiting {
                        "info"
                    } else {
                        "blocker"
                    },
                    category: "Security",
                    path: repo_path(&report.root, &gate.file),
                    line: gate.line,
                }),
        );
    }
    all.extend(
        report
            .findings
            .iter()
            .filter(|f| f.status != FindingStatus::Resolved)
            .map(|f| finding_issue(&report.root, f)),
    );
    // File order, so entries that share an identity are numbered the same way each time.
    all.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    all
}

/// A hex SHA-256 of the parts, each length-prefixed so no two lists of parts hash alike.
fn fingerprint(parts: &[String], occurrence: usize) -> String {
    let mut hash = Sha256::new();
    for part in std::iter::once(FINGERPRINT_VERSION)
        .chain(parts.iter().map(String::as_str))
        .chain(std::iter::once(occurrence.to_string().as_str()))
    {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

pub fn render(report: &PlanReport) -> Value {
    let mut seen: HashMap<Vec<String>, usize> = HashMap::new();
    let issues: Vec<Value> = issues(report)
        .into_iter()
        .map(|issue| {
            let occurrence = seen.entry(issue.identity.clone()).or_insert(0);
            let fingerprint = fingerprint(&issue.identity, *occurrence);
            *occurrence += 1;
            json!({
                "type": "issue",
                "check_name": issue.check_name,
                "description": bounded(issue.description, DESCRIPTION_CHARS),
                "categories": [issue.category],
                "severity": issue.severity,
                "fingerprint": fingerprint,
                "location": {
                    "path": issue.path,
                    "lines": {"begin": issue.line.max(1)},
                },
            })
        })
        .collect();
    Value::Array(issues)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::text::tests::{HOSTILE, gated_report};
    use super::*;
    use crate::diag::{Diagnostic, Pos};

    fn schema_errors(schema: &str, issue: &Value) -> Vec<String> {
        let path = format!(
            "{}/tests/fixtures/formats/{schema}",
            env!("CARGO_MANIFEST_DIR")
        );
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        validator
            .iter_errors(issue)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }

    /// (check_name, severity, path, line) of each issue.
    fn summary(report: &Value) -> Vec<(String, String, String, u64)> {
        report
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["check_name"].as_str().unwrap().to_owned(),
                    i["severity"].as_str().unwrap().to_owned(),
                    i["location"]["path"].as_str().unwrap().to_owned(),
                    i["location"]["lines"]["begin"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn unmet_requirements_and_findings_are_issues_at_their_lines() {
        let report = render(&gated_report());
        assert!(schema_errors("gitlab-codequality.documented.schema.json", &report).is_empty());
        let row = |check: &str, severity: &str, path: &str, line: u64| {
            (check.to_owned(), severity.to_owned(), path.to_owned(), line)
        };
        assert_eq!(
            summary(&report),
            [
                row(
                    "gitward/policy/short-lived",
                    "minor",
                    "infra/pki/certificates/api.yaml",
                    9
                ),
                row(
                    "gate/approvals",
                    "blocker",
                    "infra/pki/gates/prod-changes.yaml",
                    2
                ),
                row(
                    "gate/scans",
                    "blocker",
                    "infra/pki/gates/prod-changes.yaml",
                    2
                ),
                row("gate/window", "info", "infra/pki/gates/prod-window.yaml", 2),
            ]
        );
        assert_eq!(
            report[1]["description"],
            "gate prod-changes (fail): 1 of 2 approvals: carol@example.com (unverified trailers); 2 not counted"
        );
    }

    #[test]
    fn fingerprints_follow_the_finding_not_its_line_and_never_repeat() {
        let mut report = gated_report();
        let first = render(&report);
        // The same finding further down, another message on another field, and the same
        // message on another item of a list: the first keeps its fingerprint, each is unique.
        let mut moved = report.findings[0].clone();
        moved.line = 30;
        let mut other = moved.clone();
        other.field = Some("spec.renewBefore".to_owned());
        other.message = "renews late".to_owned();
        let mut listed = moved.clone();
        listed.field = Some("spec.dnsNames[0]".to_owned());
        let mut listed_again = listed.clone();
        listed_again.field = Some("spec.dnsNames[1]".to_owned());
        listed_again.line = 31;
        report.findings = vec![moved, other, listed, listed_again];
        report.diagnostics = vec![
            Diagnostic::warning("a.yaml", Pos::START, "x"),
            Diagnostic::warning("a.yaml", Pos::new(9, 1), "x"),
        ];
        let second = render(&report);
        let prints: Vec<&str> = second
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["fingerprint"].as_str().unwrap())
            .collect();
        assert_eq!(prints.iter().collect::<HashSet<_>>().len(), prints.len());
        let print_at = |report: &Value, check: &str, line: u64| {
            report
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["check_name"] == check && i["location"]["lines"]["begin"] == line)
                .map(|i| i["fingerprint"].clone())
                .unwrap()
        };
        assert_eq!(
            print_at(&first, "gitward/policy/short-lived", 9),
            print_at(&second, "gitward/policy/short-lived", 30)
        );
        assert!(prints.iter().all(|p| p.len() == 64));
    }

    #[test]
    fn hostile_and_huge_descriptions_are_escaped_and_bounded() {
        let mut report = gated_report();
        report.findings[0].message = format!("{HOSTILE}\n{}", "x".repeat(1 << 20));
        let rendered = render(&report);
        let description = rendered[0]["description"].as_str().unwrap();
        assert!(
            !description.contains(['\n', '\u{1b}', '\u{202e}']),
            "{description}"
        );
        assert!(
            description.contains("\\u{1b}[31m\\u{202e}\\n"),
            "{description}"
        );
        assert!(description.chars().count() < DESCRIPTION_CHARS + 40);
        assert!(schema_errors("gitlab-codequality.documented.schema.json", &rendered).is_empty());
    }
}
