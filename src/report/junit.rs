//! The plan as JUnit XML for CI test views. Valid against both the strict Ant schema and the
//! lenient Jenkins one: every suite carries `package`, `id`, `timestamp`, `hostname` and empty
//! `system-out` / `system-err`; every test case `classname` and `time`.

use std::collections::BTreeMap;
use std::io::Cursor;

use quick_xml::Writer;
use quick_xml::events::BytesText;

use super::PlanReport;
use crate::diag::Diagnostic;

struct Case {
    name: String,
    classname: String,
    failure: Option<(String, String)>,
}

struct Suite {
    name: &'static str,
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
            name: file.to_owned(),
            classname: "gitward.validate".to_owned(),
            failure: Some((
                format!("{} error(s)", errors.len()),
                errors.iter().map(|d| format!("{d}\n")).collect(),
            )),
        })
        .collect();
    if cases.is_empty() {
        cases.push(Case {
            name: "configuration is valid".to_owned(),
            classname: "gitward.validate".to_owned(),
            failure: None,
        });
    }
    Suite {
        name: "gitward.validate",
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
            failure: None,
        })
        .collect();
    Suite {
        name: "gitward.plan",
        cases,
    }
}

pub fn render(report: &PlanReport) -> String {
    let suites = [validation_suite(report), plan_suite(report)];
    let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    let mut writer = Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2);
    let written = writer
        .write_event(quick_xml::events::Event::Decl(
            quick_xml::events::BytesDecl::new("1.0", Some("UTF-8"), None),
        ))
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
    let failures = suite
        .cases
        .iter()
        .filter(|c| c.failure.is_some())
        .count()
        .to_string();
    let tests = suite.cases.len().to_string();
    let id = id.to_string();
    w.create_element("testsuite")
        .with_attributes([
            ("name", suite.name),
            ("package", suite.name),
            ("id", id.as_str()),
            ("timestamp", timestamp),
            ("hostname", "localhost"),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", "0"),
            ("skipped", "0"),
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
                match &case.failure {
                    None => {
                        element.write_empty()?;
                    }
                    Some((message, details)) => {
                        element.write_inner_content(|w| {
                            w.create_element("failure")
                                .with_attributes([
                                    ("message", message.as_str()),
                                    ("type", "invalid"),
                                ])
                                .write_text_content(BytesText::new(details))?;
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
