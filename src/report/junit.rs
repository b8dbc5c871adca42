//! The plan as JUnit XML for CI test views. Valid against both the strict Ant schema and the
//! lenient Jenkins one: every suite carries `package`, `id`, `timestamp`, `hostname` and empty
//! `system-out` / `system-err`; every test case `classname` and `time`.
//!
//! Suites: `gitward.validate` (a case per file with errors), `gitward.plan` (a case per
//! planned change), `gates` (a case per gate of the base; not per gate and resource, as a
//! change may touch thousands) and one per policy, with a case per resource it was
//! evaluated on.

use std::collections::BTreeMap;
use std::io::Cursor;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use super::PlanReport;
use super::text::{gate_block, opens_local};
use crate::diag::{Diagnostic, Escaped, escaped};
use crate::gate::NOT_APPLICABLE;
use crate::gate::{GateOutcome, GateReport};
use crate::model::Kind;
use crate::policy::{Finding, FindingStatus};

enum Verdict {
    Pass,
    /// A message and the details.
    Failure(String, String),
    /// Why the case does not count.
    Skipped(String),
}

struct Case {
    name: String,
    classname: String,
    verdict: Verdict,
}

struct Suite {
    name: String,
    cases: Vec<Case>,
    /// What the suite says besides its cases' verdicts. Test cases cannot carry their own
    /// output in the strict schema.
    system_out: String,
}

fn validation_suite(report: &PlanReport) -> Suite {
    let mut by_file: BTreeMap<&str, Vec<&Diagnostic>> = BTreeMap::new();
    for d in report.errors() {
        by_file.entry(d.file.as_str()).or_default().push(d);
    }
    let mut cases: Vec<Case> = by_file
        .into_iter()
        .map(|(file, errors)| Case {
            name: escaped(file).into_owned(),
            classname: "gitward.validate".to_owned(),
            verdict: Verdict::Failure(
                format!("{} error(s)", errors.len()),
                errors.iter().map(|d| format!("{d}\n")).collect(),
            ),
        })
        .collect();
    if cases.is_empty() {
        cases.push(Case {
            name: "configuration is valid".to_owned(),
            classname: "gitward.validate".to_owned(),
            verdict: Verdict::Pass,
        });
    }
    Suite {
        name: "gitward.validate".to_owned(),
        cases,
        system_out: String::new(),
    }
}

fn plan_suite(report: &PlanReport) -> Suite {
    let cases = report
        .resources
        .iter()
        .map(|r| Case {
            name: format!("{}: {} ({})", r.id(), r.action.as_str(), r.change.as_str()),
            classname: format!("gitward.plan.{}", r.kind),
            verdict: Verdict::Pass,
        })
        .collect();
    Suite {
        name: "gitward.plan".to_owned(),
        cases,
        system_out: String::new(),
    }
}

fn verdict(enforcement: &str, found: &[&Finding]) -> Verdict {
    let counted: Vec<&&Finding> = found.iter().filter(|f| f.exception.is_none()).collect();
    if !counted.is_empty() {
        return Verdict::Failure(
            format!("{} {enforcement} finding(s)", counted.len()),
            counted
                .iter()
                .map(|f| {
                    format!(
                        "{}:{}:{}: {}\n",
                        Escaped(&f.file),
                        f.line,
                        f.column,
                        Escaped(&f.message)
                    )
                })
                .collect(),
        );
    }
    match found.iter().find_map(|f| f.exception.as_ref()) {
        Some(e) => Verdict::Skipped(format!(
            "excepted until {} ({}): {}",
            e.expires,
            Escaped(&e.owner),
            Escaped(&e.reason)
        )),
        None => Verdict::Pass,
    }
}

fn policy_suites(report: &PlanReport) -> Vec<Suite> {
    let mut findings: BTreeMap<(&str, Kind, &str), Vec<&Finding>> = BTreeMap::new();
    for f in report
        .findings
        .iter()
        .filter(|f| f.status != FindingStatus::Resolved)
    {
        findings
            .entry((f.policy.as_str(), f.kind, f.name.as_str()))
            .or_default()
            .push(f);
    }
    let mut evaluated: Vec<&(String, Kind, String)> = report.evaluated.iter().collect();
    evaluated.sort();
    report
        .policies
        .iter()
        .map(|policy| {
            let classname = format!("gitward.policy.{}", policy.name);
            let cases = evaluated
                .iter()
                .filter(|(p, _, _)| *p == policy.name)
                .map(|(p, kind, name)| {
                    let found = findings.get(&(p.as_str(), *kind, name.as_str()));
                    Case {
                        name: format!("{kind}/{name}"),
                        classname: classname.clone(),
                        verdict: verdict(
                            policy.enforcement.as_str(),
                            found.map_or(&[], Vec::as_slice),
                        ),
                    }
                })
                .collect();
            Suite {
                name: classname,
                cases,
                system_out: String::new(),
            }
        })
        .collect()
}

fn gate_case(gate: &GateReport) -> Case {
    let verdict = match gate.outcome {
        GateOutcome::Fail => Verdict::Failure(escaped(&gate.line()).into_owned(), gate_block(gate)),
        GateOutcome::NotApplicable => Verdict::Skipped(NOT_APPLICABLE.to_owned()),
        GateOutcome::Pass | GateOutcome::Pending | GateOutcome::Overridden => Verdict::Pass,
    };
    Case {
        name: escaped(&gate.name).into_owned(),
        classname: "gate".to_owned(),
        verdict,
    }
}

/// A case per gate; a pending gate passes, and the suite's output says when it applies.
fn gates_suite(report: &PlanReport) -> Option<Suite> {
    if report.gates.is_empty() {
        return None;
    }
    let system_out = report
        .gates
        .iter()
        .filter_map(|g| match g.outcome {
            GateOutcome::Pending => Some(format!(
                "{}: pending; the change is applied when the window opens, {}\n",
                Escaped(&g.name),
                opens_local(g).unwrap_or_default()
            )),
            GateOutcome::Overridden => Some(format!("{}\n", Escaped(&g.line()))),
            _ => None,
        })
        .collect();
    Some(Suite {
        name: "gates".to_owned(),
        cases: report.gates.iter().map(gate_case).collect(),
        system_out,
    })
}

pub fn render(report: &PlanReport) -> String {
    let mut suites = vec![validation_suite(report), plan_suite(report)];
    suites.extend(gates_suite(report));
    suites.extend(policy_suites(report));
    let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    let mut writer = Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2);
    let written = writer
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .and_then(|()| {
            writer
                .create_element("testsuites")
                .write_inner_content(|w| {
                    for (id, suite) in suites.iter().enumerate() {
                        write_suite(w, id, suite, &timestamp)?;
                    }
                    Ok(())
                })
        });
    match written {
        Ok(_) => {
            let mut xml = String::from_utf8_lossy(&writer.into_inner().into_inner()).into_owned();
            xml.push('\n');
            xml
        }
        Err(_) => String::new(),
    }
}

fn write_suite(
    w: &mut Writer<Cursor<Vec<u8>>>,
    id: usize,
    suite: &Suite,
    timestamp: &str,
) -> std::io::Result<()> {
    let count = |pick: fn(&Verdict) -> bool| {
        suite
            .cases
            .iter()
            .filter(|c| pick(&c.verdict))
            .count()
            .to_string()
    };
    let failures = count(|v| matches!(v, Verdict::Failure(..)));
    let skipped = count(|v| matches!(v, Verdict::Skipped(_)));
    let tests = suite.cases.len().to_string();
    let id = id.to_string();
    w.create_element("testsuite")
        .with_attributes([
            ("name", suite.name.as_str()),
            ("package", suite.name.as_str()),
            ("id", id.as_str()),
            ("timestamp", timestamp),
            ("hostname", "localhost"),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", "0"),
            ("skipped", skipped.as_str()),
            ("time", "0"),
        ])
        .write_inner_content(|w| {
            w.create_element("properties").write_empty()?;
            for case in &suite.cases {
                let element = w.create_element("testcase").with_attributes([
                    ("name", case.name.as_str()),
                    ("classname", case.classname.as_str()),
                    ("time", "0"),
                ]);
                match &case.verdict {
                    Verdict::Pass => {
                        element.write_empty()?;
                    }
                    Verdict::Failure(message, details) => {
                        element.write_inner_content(|w| {
                            w.create_element("failure")
                                .with_attributes([
                                    ("message", message.as_str()),
                                    ("type", "failure"),
                                ])
                                .write_text_content(BytesText::new(details))?;
                            Ok(())
                        })?;
                    }
                    Verdict::Skipped(message) => {
                        element.write_inner_content(|w| {
                            w.create_element("skipped")
                                .with_attribute(("message", message.as_str()))
                                .write_empty()?;
                            Ok(())
                        })?;
                    }
                }
            }
            let system_out = w.create_element("system-out");
            if suite.system_out.is_empty() {
                system_out.write_empty()?;
            } else {
                system_out.write_text_content(BytesText::new(&suite.system_out))?;
            }
            w.create_element("system-err").write_empty()?;
            Ok(())
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::super::text::tests::{gated_report, pending_report};
    use super::*;

    fn assert_valid_junit(xml: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.xml");
        std::fs::write(&file, xml).unwrap();
        for xsd in ["windyroad.JUnit.xsd", "jenkins-xunit.junit-10.xsd"] {
            let schema = format!("{}/tests/fixtures/{xsd}", env!("CARGO_MANIFEST_DIR"));
            let lint = Command::new("xmllint")
                .args(["--noout", "--schema", &schema])
                .arg(&file)
                .output()
                .expect("xmllint runs (scripts/test.sh installs it)");
            assert!(
                lint.status.success(),
                "against {xsd}: {}\n{xml}",
                String::from_utf8_lossy(&lint.stderr)
            );
        }
    }

    /// The text between `from` and the next `until` after it.
    fn between<'a>(xml: &'a str, from: &str, until: &str) -> &'a str {
        let start = xml.find(from).unwrap_or_else(|| panic!("{from} in {xml}"));
        let end = xml[start..]
            .find(until)
            .unwrap_or_else(|| panic!("{until} in {xml}"));
        &xml[start..start + end]
    }

    #[test]
    fn one_case_per_gate_fails_skips_or_passes_as_the_gate_decided() {
        let xml = render(&gated_report());
        assert_valid_junit(&xml);
        let suite = between(&xml, "<testsuite name=\"gates\"", "</testsuite>");
        assert!(
            suite.contains("tests=\"5\" failures=\"1\" errors=\"0\" skipped=\"1\""),
            "{suite}"
        );
        assert!(
            suite.contains("<testcase name=\"audit-log\" classname=\"gate\" time=\"0\"/>"),
            "{suite}"
        );
        let failing = between(suite, "<testcase name=\"prod-changes\"", "</testcase>");
        assert!(
            failing.contains("<failure message=\"prod-changes: fail — 1 of 2 approvals: carol@example.com (unverified trailers); 2 not counted; 3 scan results over the limits\" type=\"failure\">"),
            "{failing}"
        );
        // The details are the text report's lines for the gate.
        assert!(
            failing.contains("test@example.com (Approved-by trailer, unverified): does not count: wrote or committed part of the change (separation of duties)"),
            "{failing}"
        );
        assert!(
            suite.contains("<testcase name=\"staging-changes\" classname=\"gate\" time=\"0\">\n      <skipped message=\"the change touches nothing it applies to\"/>"),
            "{suite}"
        );
        assert!(
            suite.contains("<testcase name=\"prod-window\" classname=\"gate\" time=\"0\"/>"),
            "{suite}"
        );
        let out = between(suite, "<system-out>", "</system-out>");
        assert!(
            out.contains("prod-window: pending; the change is applied when the window opens, Mon 2026-12-07 09:00 CET\n"),
            "{out}"
        );
        assert!(
            out.contains("emergency: overridden — overridden by security-lead@example.com: &lt;!-- x --&gt; @platform-team | `rm -rf` [click](https://evil.example) *bold* \\u{1b}[31m\\u{202e}\n"),
            "{out}"
        );
    }

    #[test]
    fn a_plan_without_gates_has_no_gates_suite() {
        let mut report = pending_report();
        assert_valid_junit(&render(&report));
        report.gates.clear();
        let xml = render(&report);
        assert_valid_junit(&xml);
        assert!(!xml.contains("name=\"gates\""), "{xml}");
    }
}
