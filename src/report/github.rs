//! The plan as GitHub Actions workflow commands: one `::error`, `::warning` or `::notice`
//! line per problem, annotated at its file and line in the pull request, then one plain
//! summary line.
//!
//! Levels:
//! - `error`: an error in the head (nothing would be applied), a new `deny` finding without
//!   an exception (it blocks the merge), an unmet requirement of a gate that fails;
//! - `warning`: a warning in the head, a new `warn` finding without an exception;
//! - `notice`: a finding the base has too, an `audit` finding, an excepted finding, and a
//!   gate's closed window (the change waits for it, then applies).
//!
//! Resolved findings are left out (their lines are in the base), as are planned changes: the
//! summary counts them. GitHub turns only the first ten errors and ten warnings of a step into
//! annotations; every line is printed, most severe first.
//!
//! The runner reads a command from each line it is shown (lines end at CR or LF), so what the
//! repository wrote is escaped twice: as every other format does (control and bidirectional
//! characters written as escapes, no line break left), then as the runner unescapes (`%`, CR,
//! LF in data; also `:` and `,` in properties). A message cannot end its line, and a `::`
//! in it stays data. `##[` (the older syntax, matched anywhere in a line the newer one does
//! not claim) is broken in the messages too, in case a runner does not know `notice`.

use std::fmt::Write;

use super::text::{counted, moved, pending_until};
use super::{PlanReport, inert, repo_path};
use crate::diag::Severity;
use crate::gate::{GateOutcome, Met};
use crate::model::Enforcement;
use crate::policy::{Finding, FindingStatus};
use crate::reconcile::decide::Verdict;

/// Longest message, in UTF-16 code units as the runner counts them: it cuts longer ones at
/// 4,096 (`_maxIssueMessageLength`); cut here, the cut says how much is missing.
const MESSAGE_UNITS: usize = 4000;
/// Annotations GitHub makes per level and step (`_maxCountPerIssueType` in the runner).
const ANNOTATED_PER_LEVEL: usize = 10;
/// Longest path given as an annotation's `file`; a longer one names no file that can exist.
const MAX_PATH_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Error,
    Warning,
    Notice,
}

impl Level {
    fn command(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        }
    }
}

struct Annotation {
    level: Level,
    /// Path from the repository root.
    file: String,
    line: u32,
    column: Option<u32>,
    title: String,
    message: String,
}

/// `text` as the runner reads a command's data back: `%`, CR and LF escaped.
fn escape_data(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as the runner reads a property back: as data, and `:` and `,` too.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `text` cut to [`MESSAGE_UNITS`] UTF-16 code units, saying how many characters are left out.
fn bounded(text: String) -> String {
    if text.encode_utf16().count() <= MESSAGE_UNITS {
        return text;
    }
    // Room for the note on the cut.
    let keep = MESSAGE_UNITS - 40;
    let mut units = 0;
    let cut = text
        .char_indices()
        .find(|(_, c)| {
            units += c.len_utf16();
            units > keep
        })
        .map_or(text.len(), |(at, _)| at);
    let more = text[cut..].chars().count();
    format!("{}… ({more} more characters)", &text[..cut])
}

impl Annotation {
    fn line(&self) -> String {
        let mut properties = Vec::new();
        if self.file.len() <= MAX_PATH_BYTES {
            properties.push(format!("file={}", escape_property(&self.file)));
            properties.push(format!("line={}", self.line.max(1)));
            if let Some(column) = self.column {
                properties.push(format!("col={}", column.max(1)));
            }
        }
        properties.push(format!("title={}", escape_property(&self.title)));
        format!(
            "::{} {}::{}\n",
            self.level.command(),
            properties.join(","),
            escape_data(&bounded(self.message.clone()))
        )
    }
}

fn finding_level(f: &Finding) -> Level {
    match (f.status, f.enforcement, &f.exception) {
        (FindingStatus::New, Enforcement::Deny, None) => Level::Error,
        (FindingStatus::New, Enforcement::Warn, None) => Level::Warning,
        _ => Level::Notice,
    }
}

fn finding_annotation(root: &str, f: &Finding) -> Annotation {
    let status = match f.status {
        FindingStatus::New => "new",
        FindingStatus::Existing => "existing",
        FindingStatus::Resolved => "resolved",
    };
    let mut message = format!("{}: {}", f.resource_id(), inert(&f.message));
    if let Some(e) = &f.exception {
        let _ = write!(
            message,
            "\nexcepted until {} ({}): {}",
            e.expires,
            inert(&e.owner),
            inert(&e.reason)
        );
    }
    if !f.compliance.is_empty() {
        let _ = write!(message, "\ncompliance: {}", inert(&f.compliance.join(", ")));
    }
    Annotation {
        level: finding_level(f),
        file: repo_path(root, &f.file),
        line: f.line,
        column: Some(f.column),
        title: format!(
            "gitward policy {}: {status} {} ({})",
            f.policy,
            f.enforcement.as_str(),
            f.severity.as_str()
        ),
        message,
    }
}

fn annotations(report: &PlanReport) -> Vec<Annotation> {
    let mut all: Vec<Annotation> = report
        .diagnostics
        .iter()
        .map(|d| {
            let (level, title) = match d.severity {
                Severity::Error => (Level::Error, "gitward: invalid configuration"),
                Severity::Warning => (Level::Warning, "gitward: warning"),
            };
            Annotation {
                level,
                file: repo_path(&report.root, &d.file),
                line: d.line,
                column: Some(d.column),
                title: title.to_owned(),
                message: inert(&d.message),
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
                .map(|r| Annotation {
                    // A closed window holds the change until it opens; it does not block it.
                    level: if r.met == Met::Waiting {
                        Level::Notice
                    } else {
                        Level::Error
                    },
                    file: repo_path(&report.root, &gate.file),
                    line: gate.line,
                    column: None,
                    title: format!(
                        "gitward gate {}: {} ({})",
                        gate.name,
                        r.evidence.name(),
                        gate.outcome.as_str()
                    ),
                    message: inert(&r.summary),
                }),
        );
    }
    all.extend(
        report
            .findings
            .iter()
            .filter(|f| f.status != FindingStatus::Resolved)
            .map(|f| finding_annotation(&report.root, f)),
    );
    // Stable: at one place, problems in the head come before gates and findings.
    all.sort_by(|a, b| (a.level, &a.file, a.line).cmp(&(b.level, &b.file, b.line)));
    all
}

/// The last line: the verdict and the counts, in words a log reader needs.
fn summary_line(report: &PlanReport, annotations: &[Annotation]) -> String {
    let count = |level: Level| annotations.iter().filter(|a| a.level == level).count();
    let (errors, warnings, notices) = (
        count(Level::Error),
        count(Level::Warning),
        count(Level::Notice),
    );
    let verdict = match report.verdict {
        Verdict::Apply => "would apply".to_owned(),
        Verdict::Blocked => "blocked".to_owned(),
        Verdict::Failed => "invalid; nothing would be applied".to_owned(),
        Verdict::Pending { .. } => format!(
            "pending; applied when the window opens, {}",
            pending_until(report).unwrap_or_default()
        ),
    };
    let s = &report.summary;
    let c = report.finding_counts();
    let mut line = format!(
        "gitward plan: {verdict}. {}, {}, {}. Plan: {} to issue, {} to reissue, {} to remove{}. \
         Findings: {} new, {} existing, {} resolved ({} excepted).",
        counted(errors, "error"),
        counted(warnings, "warning"),
        counted(notices, "notice"),
        s.issue,
        s.reissue,
        s.remove,
        moved(s.moved),
        c.new,
        c.existing,
        c.resolved,
        c.excepted
    );
    if errors > ANNOTATED_PER_LEVEL || warnings > ANNOTATED_PER_LEVEL {
        let _ = write!(
            line,
            " GitHub annotates the first {ANNOTATED_PER_LEVEL} errors and warnings; the log above has them all."
        );
    }
    inert(&line) + "\n"
}

pub fn render(report: &PlanReport) -> String {
    let annotations = annotations(report);
    let mut out: String = annotations.iter().map(Annotation::line).collect();
    out.push_str(&summary_line(report, &annotations));
    out
}

#[cfg(test)]
mod tests {
    use super::super::text::tests::{HOSTILE, gated_report, pending_report};
    use super::*;
    use crate::diag::{Diagnostic, Pos};

    /// A workflow command as the runner reads it from one line.
    #[derive(Debug, PartialEq)]
    struct Command {
        name: String,
        properties: Vec<(String, String)>,
        data: String,
    }

    fn unescape(text: &str, property: bool) -> String {
        let mut out = text.replace("%0D", "\r").replace("%0A", "\n");
        if property {
            out = out.replace("%3A", ":").replace("%2C", ",");
        }
        out.replace("%25", "%")
    }

    /// The runner's reading of a line (`ActionCommand.TryParseV2`), for any command name.
    fn parse(line: &str) -> Option<Command> {
        let line = line.trim_start();
        let rest = line.strip_prefix("::")?;
        let end = rest.find("::")?;
        let info = &rest[..end];
        let (name, properties) = info.split_once(' ').unwrap_or((info, ""));
        Some(Command {
            name: name.to_owned(),
            properties: properties
                .trim()
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), unescape(v, true)))
                .collect(),
            data: unescape(&rest[end + 2..], false),
        })
    }

    fn commands(out: &str) -> Vec<Command> {
        out.split(['\r', '\n']).filter_map(parse).collect()
    }

    #[test]
    fn escaping_is_the_runner_s() {
        assert_eq!(escape_data("100%\r\n::x"), "100%25%0D%0A::x");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
        // What the runner unescapes, in its order, comes back as it was.
        for text in ["%0A", "%253A", "a,b:c\r\n%", "%%0D%"] {
            assert_eq!(unescape(&escape_data(text), false), text);
            assert_eq!(unescape(&escape_property(text), true), text);
        }
    }

    /// An annotation as the runner reads it; `col` only for findings and problems.
    fn annotation(name: &str, at: (&str, u32, Option<u32>), title: &str, data: &str) -> Command {
        let (file, line, col) = at;
        let mut properties = vec![
            ("file".to_owned(), file.to_owned()),
            ("line".to_owned(), line.to_string()),
        ];
        if let Some(col) = col {
            properties.push(("col".to_owned(), col.to_string()));
        }
        properties.push(("title".to_owned(), title.to_owned()));
        Command {
            name: name.to_owned(),
            properties,
            data: data.to_owned(),
        }
    }

    #[test]
    fn each_unmet_requirement_and_finding_is_an_annotation_most_severe_first() {
        let out = render(&gated_report());
        let gate = "infra/pki/gates/prod-changes.yaml";
        let window = &gated_report().gates[3].requirements[0].summary;
        assert_eq!(
            commands(&out),
            [
                annotation(
                    "error",
                    (gate, 2, None),
                    "gitward gate prod-changes: approvals (fail)",
                    "1 of 2 approvals: carol@example.com (unverified trailers); 2 not counted"
                ),
                annotation(
                    "error",
                    (gate, 2, None),
                    "gitward gate prod-changes: scans (fail)",
                    "3 scan results over the limits"
                ),
                annotation(
                    "warning",
                    ("infra/pki/certificates/api.yaml", 9, Some(3)),
                    "gitward policy short-lived: new warn (low)",
                    "Certificate/api-example-com: api-example-com is valid for 90d; prefer 30d"
                ),
                annotation(
                    "notice",
                    ("infra/pki/gates/prod-window.yaml", 2, None),
                    "gitward gate prod-window: window (pending)",
                    &inert(window)
                ),
            ]
        );
        // The window's hostile reason is shown, escaped.
        assert!(!out.contains(['\u{1b}', '\u{202e}']), "{out}");
        assert!(out.contains("\\u{1b}[31m\\u{202e}"), "{out}");
        assert!(
            out.ends_with(
                "\ngitward plan: blocked. 2 errors, 1 warning, 1 notice. Plan: 0 to issue, 1 to reissue, 0 to remove. Findings: 1 new, 0 existing, 0 resolved (0 excepted).\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_pending_change_has_notices_only_and_says_when_it_applies() {
        let out = render(&pending_report());
        let names: Vec<String> = commands(&out).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["warning", "notice"]);
        assert!(
            out.contains(
                "gitward plan: pending; applied when the window opens, Mon 2026-12-07 09:00 CET."
            ),
            "{out}"
        );
    }

    #[test]
    fn hostile_text_stays_in_its_annotation() {
        let mut report = gated_report();
        let payload = format!(
            "{HOSTILE}\n::add-mask::secret\r::set-output name=x::y\r\n  ::stop-commands::t %0A::error::z ##[add-mask]w"
        );
        report.findings[0].message = payload.clone();
        report.findings[0].compliance = vec![payload.clone()];
        report.diagnostics = vec![Diagnostic::error("a,b:c%.yaml", Pos::START, &payload)];
        report.gates[2].requirements[1].summary = payload.clone();
        let out = render(&report);
        let found = commands(&out);
        let names: Vec<&str> = found.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["error", "error", "error", "warning", "notice"],
            "{out}"
        );
        assert_eq!(
            found[0].properties[0],
            ("file".to_owned(), "infra/pki/a,b:c%.yaml".to_owned())
        );
        let carrying: Vec<&Command> = found
            .iter()
            .filter(|c| c.data.contains("add-mask"))
            .collect();
        assert_eq!(carrying.len(), 3, "{out}");
        for c in carrying {
            // The hostile text is one line of data, its controls visible; the finding's own
            // second line is the only line break.
            let lines: Vec<&str> = c.data.split('\n').collect();
            assert!(
                lines[1..].iter().all(|l| l.starts_with("compliance: ")),
                "{c:?}"
            );
            assert!(!c.data.contains(['\r', '\u{1b}', '\u{202e}']), "{c:?}");
            assert!(
                c.data.contains("\\n::add-mask::secret\\r::set-output name=x::y\\r\\n  ::stop-commands::t %0A::error::z ## [add-mask]w"),
                "{c:?}"
            );
        }
        // Nothing else the runner would read, in any line.
        assert_eq!(out.split(['\r', '\n']).count(), 7, "{out}");
        assert!(!out.contains("##["), "{out}");
    }

    #[test]
    fn a_megabyte_message_is_cut_to_what_the_runner_forwards() {
        let mut report = gated_report();
        let lock = "\u{1F512}";
        report.findings[0].message = lock.repeat(1 << 20);
        let out = render(&report);
        let warning = commands(&out)
            .into_iter()
            .find(|c| c.name == "warning")
            .expect("the finding");
        assert!(warning.data.encode_utf16().count() <= MESSAGE_UNITS);
        let (kept, note) = warning.data.split_once('…').expect("a cut");
        let more: usize = note
            .trim_start_matches(" (")
            .trim_end_matches(" more characters)")
            .parse()
            .expect("a count");
        assert_eq!(kept.matches(lock).count() + more, 1 << 20, "{note}");
    }

    #[test]
    fn plain_lines_cannot_open_a_command() {
        for text in [
            "::set-output name=a::b",
            " \u{3000}::x::y",
            "a ##[add-mask]b",
            "x\n::y::z",
        ] {
            let line = inert(text);
            assert!(parse(&line).is_none(), "{line}");
            assert!(!line.contains("##[") && !line.contains('\n'), "{line}");
        }
    }
}
