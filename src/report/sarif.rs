//! The plan as SARIF 2.1.0, for GitHub code scanning and other SARIF viewers: problems in the
//! head are errors and warnings, planned changes are notes, each at the line of its YAML;
//! a gate's unmet requirements are errors (notes while only a window is closed) at the gate's.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Value, json};

use super::PolicyInfo;
use super::{PlanReport, repo_path};
use crate::diag::Severity;
use crate::gate::{GateOutcome, GateReport, Met, RequirementReport};
use crate::model::{Enforcement, FindingSeverity};
use crate::plan::{Action, Change, ResourcePlan};
use crate::policy::{Finding, FindingStatus};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFORMATION_URI: &str = "https://github.com/gitward/gitward";

struct Rule {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    level: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        id: "gitward/invalid",
        name: "InvalidConfiguration",
        description: "The configuration is not valid; nothing from this commit would be applied.",
        level: "error",
    },
    Rule {
        id: "gitward/warning",
        name: "ConfigurationWarning",
        description: "Something in the configuration is probably not what was meant.",
        level: "warning",
    },
    Rule {
        id: "gitward/plan/issue",
        name: "WillIssue",
        description: "A certificate or CA will be issued.",
        level: "note",
    },
    Rule {
        id: "gitward/plan/reissue",
        name: "WillReissue",
        description: "A certificate or CA will be issued again.",
        level: "note",
    },
    Rule {
        id: "gitward/plan/remove",
        name: "WillRemove",
        description: "gitward will stop managing a resource.",
        level: "note",
    },
    Rule {
        id: "gitward/plan/move",
        name: "WillMove",
        description: "gitward will write a certificate's files to another target.",
        level: "note",
    },
    Rule {
        id: "gitward/plan/change",
        name: "WillChange",
        description: "A resource changes without anything being issued.",
        level: "note",
    },
    Rule {
        id: "gate/violations",
        name: "GateViolations",
        description: "The resources a change touches have more policy findings than a gate allows.",
        level: "error",
    },
    Rule {
        id: "gate/scans",
        name: "GateScans",
        description: "The SARIF reports a gate reads have results over its limits, or cannot be read.",
        level: "error",
    },
    Rule {
        id: "gate/approvals",
        name: "GateApprovals",
        description: "A gate needs more approvals than count for the change.",
        level: "error",
    },
    Rule {
        id: "gate/signedBy",
        name: "GateSignedBy",
        description: "A gate needs the applied commit signed by one of its principals.",
        level: "error",
    },
    Rule {
        id: "gate/window",
        name: "GateWindow",
        description: "A gate's change window is closed: the change is applied when it opens.",
        level: "note",
    },
];

fn rule_index(id: &str) -> usize {
    RULES.iter().position(|r| r.id == id).unwrap_or(0)
}

fn policy_rule_id(policy: &str) -> String {
    format!("gitward/policy/{policy}")
}

fn level_of(enforcement: Enforcement) -> &'static str {
    match enforcement {
        Enforcement::Deny => "error",
        Enforcement::Warn => "warning",
        Enforcement::Audit => "note",
    }
}

/// GitHub code scanning ranks security alerts by this CVSS-like score.
fn security_severity(severity: FindingSeverity) -> &'static str {
    match severity {
        FindingSeverity::Critical => "9.5",
        FindingSeverity::High => "8.0",
        FindingSeverity::Medium => "5.5",
        FindingSeverity::Low => "3.0",
        FindingSeverity::Info => "0.0",
    }
}

fn policy_rule(policy: &PolicyInfo) -> Value {
    let description = policy
        .description
        .clone()
        .unwrap_or_else(|| format!("gitward policy {}", policy.name));
    let mut tags: Vec<String> = vec!["security".to_owned(), "gitward-policy".to_owned()];
    tags.extend(policy.compliance.iter().cloned());
    json!({
        "id": policy_rule_id(&policy.name),
        "name": policy.name,
        "shortDescription": {"text": description},
        "fullDescription": {"text": format!("{description} Compliance: {}.", if policy.compliance.is_empty() { "none".to_owned() } else { policy.compliance.join(", ") })},
        "defaultConfiguration": {"level": level_of(policy.enforcement)},
        "helpUri": policy.url.clone().unwrap_or_else(|| INFORMATION_URI.to_owned()),
        "help": {"text": format!("Defined in {}:{}.", policy.file, policy.line)},
        "properties": {
            "tags": tags,
            "security-severity": security_severity(policy.severity),
            "enforcement": policy.enforcement,
        },
    })
}

fn finding_result(root: &str, f: &Finding, rule_index: usize) -> Value {
    let mut result = json!({
        "ruleId": policy_rule_id(&f.policy),
        "ruleIndex": rule_index,
        "level": level_of(f.enforcement),
        "message": {"text": format!("{}: {}", f.resource_id(), f.message)},
        "locations": [location(root, &f.file, f.line, f.column)],
        "baselineState": if f.status == FindingStatus::New { "new" } else { "unchanged" },
        "partialFingerprints": {"gitwardFinding/v1": format!("{}|{}|{}", f.policy, f.resource_id(), f.field.clone().unwrap_or_else(|| f.message.clone()))},
        "properties": {"severity": f.severity, "enforcement": f.enforcement, "compliance": f.compliance, "resource": f.resource_id()},
    });
    if let Some(e) = &f.exception {
        result["suppressions"] = json!([{
            "kind": "external",
            "status": "accepted",
            "justification": format!("{} (owner {}, until {})", e.reason, e.owner, e.expires),
        }]);
    }
    result
}

/// Characters a relative URI reference cannot hold as they are.
const URI_ESCAPED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A location relative to the repository root (`%SRCROOT%`), where code scanning looks for
/// the file: the configuration's directory comes first.
fn location(root: &str, file: &str, line: u32, column: u32) -> Value {
    let uri = utf8_percent_encode(&repo_path(root, file), URI_ESCAPED).to_string();
    json!({
        "physicalLocation": {
            "artifactLocation": {"uri": uri, "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": line.max(1), "startColumn": column.max(1)},
        }
    })
}

fn change_result(root: &str, r: &ResourcePlan) -> Value {
    let rule = match r.action {
        Action::Issue => "gitward/plan/issue",
        Action::Reissue => "gitward/plan/reissue",
        Action::Remove => "gitward/plan/remove",
        Action::Move => "gitward/plan/move",
        Action::None => "gitward/plan/change",
    };
    let mut message = format!("{}: {} ({})", r.id(), r.action.as_str(), r.change.as_str());
    if !r.reasons.is_empty() {
        message.push_str(&format!(": {}", r.reasons.join("; ")));
    }
    let mut result = json!({
        "ruleId": rule,
        "ruleIndex": rule_index(rule),
        "level": "note",
        "message": {"text": message},
        "partialFingerprints": {"gitwardResource/v1": r.id()},
        "properties": {"kind": r.kind, "name": r.name, "change": r.change, "action": r.action},
    });
    // A deleted resource's file may not exist in the head: no location to annotate.
    if r.change != Change::Delete {
        result["locations"] = json!([location(root, &r.file, r.line, 1)]);
    }
    result
}

/// An unmet requirement of a gate that holds the change, at the gate's definition: an error
/// when it blocks, a note when the change only waits for the window.
fn gate_result(root: &str, gate: &GateReport, requirement: &RequirementReport) -> Value {
    let name = requirement.evidence.name();
    let rule = format!("gate/{name}");
    json!({
        "ruleId": rule,
        "ruleIndex": rule_index(&rule),
        "level": if requirement.met == Met::Waiting { "note" } else { "error" },
        "message": {"text": requirement.summary},
        "locations": [location(root, &gate.file, gate.line, 1)],
        "partialFingerprints": {"gitwardGate/v1": format!("{}|{name}", gate.name)},
        "properties": {
            "gate": gate.name,
            "outcome": gate.outcome,
            "affected": gate.affected_total,
        },
    })
}

pub fn render(report: &PlanReport) -> Value {
    let mut results: Vec<Value> = report
        .diagnostics
        .iter()
        .map(|d| {
            let (rule, level) = match d.severity {
                Severity::Error => ("gitward/invalid", "error"),
                Severity::Warning => ("gitward/warning", "warning"),
            };
            json!({
                "ruleId": rule,
                "ruleIndex": rule_index(rule),
                "level": level,
                "message": {"text": d.message},
                "locations": [location(&report.root, &d.file, d.line, d.column)],
            })
        })
        .collect();
    results.extend(
        report
            .resources
            .iter()
            .map(|r| change_result(&report.root, r)),
    );
    for gate in report
        .gates
        .iter()
        .filter(|g| matches!(g.outcome, GateOutcome::Fail | GateOutcome::Pending))
    {
        results.extend(
            gate.requirements
                .iter()
                .filter(|r| r.met != Met::Yes)
                .map(|r| gate_result(&report.root, gate, r)),
        );
    }
    // Resolved findings are not reported: code scanning closes alerts that stop appearing.
    for f in report
        .findings
        .iter()
        .filter(|f| f.status != FindingStatus::Resolved)
    {
        let index = RULES.len()
            + report
                .policies
                .iter()
                .position(|p| p.name == f.policy)
                .unwrap_or(0);
        results.push(finding_result(&report.root, f, index));
    }
    let mut rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": {"text": r.description},
                "defaultConfiguration": {"level": r.level},
                "helpUri": INFORMATION_URI,
            })
        })
        .collect();
    rules.extend(report.policies.iter().map(policy_rule));
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "gitward",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }},
            "automationDetails": {"id": format!("gitward/plan/{}", report.head.sha)},
            "properties": {
                "base": report.base.sha,
                "head": report.head.sha,
                "compared": report.compared,
            },
            "invocations": [{"executionSuccessful": true}],
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::super::text::tests::{gated_report, pending_report};
    use super::*;

    fn assert_valid_sarif(sarif: &Value) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/sarif-schema-2.1.0.json"
        );
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(sarif)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }

    /// (rule, level, gate, file, line, message) of each gate result.
    fn gate_results(sarif: &Value) -> Vec<(String, String, String, String, u64, String)> {
        let run = &sarif["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        run["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["ruleId"].as_str().unwrap().starts_with("gate/"))
            .map(|r| {
                let index = r["ruleIndex"].as_u64().unwrap() as usize;
                assert_eq!(rules[index]["id"], r["ruleId"], "{r}");
                let location = &r["locations"][0]["physicalLocation"];
                (
                    r["ruleId"].as_str().unwrap().to_owned(),
                    r["level"].as_str().unwrap().to_owned(),
                    r["properties"]["gate"].as_str().unwrap().to_owned(),
                    location["artifactLocation"]["uri"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    location["region"]["startLine"].as_u64().unwrap(),
                    r["message"]["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn each_unmet_requirement_of_a_gate_that_holds_the_change_is_a_result_at_the_gate() {
        let report = gated_report();
        let sarif = render(&report);
        assert_valid_sarif(&sarif);
        let result = |rule: &str, level: &str, gate: &str, message: &str| {
            (
                rule.to_owned(),
                level.to_owned(),
                gate.to_owned(),
                format!("infra/pki/gates/{gate}.yaml"),
                2,
                message.to_owned(),
            )
        };
        // Passing and overridden gates hold nothing; a closed window is only a note.
        assert_eq!(
            gate_results(&sarif),
            [
                result(
                    "gate/approvals",
                    "error",
                    "prod-changes",
                    "1 of 2 approvals: carol@example.com (unverified trailers); 2 not counted"
                ),
                result(
                    "gate/scans",
                    "error",
                    "prod-changes",
                    "3 scan results over the limits"
                ),
                result(
                    "gate/window",
                    "note",
                    "prod-window",
                    &report.gates[3].requirements[0].summary
                ),
            ]
        );
    }

    #[test]
    fn a_pending_change_has_notes_only() {
        let sarif = render(&pending_report());
        assert_valid_sarif(&sarif);
        let levels: Vec<String> = gate_results(&sarif)
            .into_iter()
            .map(|(rule, level, ..)| format!("{rule} {level}"))
            .collect();
        assert_eq!(levels, ["gate/window note"]);
    }
}
