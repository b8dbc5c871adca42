//! The plan as JUnit XML for CI test views. Valid against both the strict Ant schema and the
//! lenient Jenkins one: every suite carries `package`, `id`, `timestamp`, `hostname` and empty
//! `system-out` / `system-err`; every test case `classname` and `time`.
//!
//! Suites: `gitward.validate` (a case per file with errors), `gitward.plan` (a case per
//! planned change) and one per policy, with a case per resource it was evaluated on.

use std::collections::BTreeMap;
use std::io::Cursor;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use super::PlanReport;
use crate::diag::{Diagnostic, Escaped, escaped};
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
            }
        })
        .collect()
}

pub fn render(report: &PlanReport) -> String {
    let mut suites = vec![validation_suite(report), plan_suite(report)];
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
            w.create_element("system-out").write_empty()?;
            w.create_element("system-err").write_empty()?;
            Ok(())
        })?;
    Ok(())
}
