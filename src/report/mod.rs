//! The outputs of `plan`: one [`PlanReport`] rendered as text for a terminal, Markdown for a
//! pull-request comment, JSON for programs (its schema is `schemas/plan.schema.json`), SARIF
//! for code scanning, JUnit XML for CI test views, GitHub Actions workflow commands for
//! annotations and GitLab Code Quality JSON for the merge request widget.

mod codequality;
mod github;
mod junit;
mod markdown;
pub use markdown::COMMENT_MARKER;
mod sarif;
pub(crate) mod text;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::diag::{Diagnostic, escaped};
use crate::gate::GateReport;
use crate::git::CommitInfo;
use crate::model::{Enforcement, FindingSeverity, Kind};
use crate::plan::{ResourcePlan, Summary};
use crate::policy::{ExceptionReport, ExceptionState, Finding, FindingStatus};
use crate::reconcile::decide::Verdict;

/// Version of the JSON report format; it changes only when a field changes meaning or goes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a terminal.
    Text,
    /// A pull-request comment or `$GITHUB_STEP_SUMMARY`.
    Markdown,
    /// For programs; `gitward schema plan` describes it.
    Json,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
    /// JUnit XML, for CI test views.
    Junit,
    /// GitHub Actions workflow commands: annotations at file:line, then a summary line.
    Github,
    /// GitLab Code Quality JSON, for the merge request widget.
    Codequality,
}

/// Everything `plan` found, in the shape of its JSON output.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    /// Version of this format.
    pub format_version: u32,
    /// The commit the change starts from.
    pub base: CommitInfo,
    /// The commit with the change.
    pub head: CommitInfo,
    /// What the base is compared with: `head` itself when it already contains the base
    /// (merging fast-forwards to it), or `merge`, the merge of `head` into `base` — what
    /// merging the change would apply.
    pub compared: Compared,
    /// Directory of the configuration in the repository, `/`-separated (empty at the root);
    /// every `file` in this report is relative to it.
    pub root: String,
    /// Whether the head is a valid configuration; when false nothing would be applied.
    pub valid: bool,
    /// Whether the change is blocked: a new `deny` finding that no exception excuses, or a
    /// gate it fails.
    pub blocked: bool,
    /// What becomes of the change if merged now: `apply`, `blocked`, `pending` (with
    /// `opensAt`, when the last window it waits for opens) or `failed`.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Why it would not be applied now: errors, blocking findings, gates failed or waited for.
    pub reasons: Vec<String>,
    /// Each gate of the base (the commit in force) and its decision on the change, in name
    /// order; gates that the change does not concern are `notApplicable`.
    pub gates: Vec<GateReport>,
    pub summary: Summary,
    /// Resources with a change or an action, sorted by kind and name.
    pub resources: Vec<ResourcePlan>,
    /// Policy findings of the head (new or existing) and of the base that the change
    /// resolves, in file order.
    pub findings: Vec<Finding>,
    /// Policy exceptions of the head and how close each is to its end.
    pub exceptions: Vec<ExceptionReport>,
    /// The head's policies.
    pub policies: Vec<PolicyInfo>,
    /// Every (policy, kind, name) the head was evaluated on; JUnit reports each.
    #[serde(skip)]
    #[schemars(skip)]
    pub evaluated: Vec<(String, Kind, String)>,
    /// Problems in the head, sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// How the policies were evaluated: in full, or only where the change can alter a
    /// result, the rest taken from the base's note.
    pub evaluation: EvaluationInfo,
}

/// How a plan evaluated the policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct EvaluationInfo {
    /// Where the base's results came from.
    pub base: BaseEvaluation,
    /// (policy, resource) pairs of the head evaluated for this report.
    pub pairs: usize,
    /// (policy, resource) pairs of the head where a policy applies.
    pub total: usize,
    /// Why the base's note was not used, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a plan's base results came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BaseEvaluation {
    /// Evaluated for this plan: the head in full, the base where a result can differ.
    Full,
    /// The base's note (written by the daemon, made with the same policies on the same day):
    /// the head is evaluated only where a result can differ from the base's.
    Note,
    /// Kept by the daemon from its review of the base, as from a note.
    Review,
}

impl EvaluationInfo {
    /// One line for people: how much was evaluated, and why.
    pub fn line(&self) -> String {
        let (pairs, total) = (thousands(self.pairs), thousands(self.total));
        match (self.base, &self.reason) {
            (BaseEvaluation::Note, _) => format!(
                "evaluated {pairs} of {total} pairs; the rest from the base's note (same policies)"
            ),
            (BaseEvaluation::Review, _) => {
                format!("evaluated {pairs} of {total} pairs; the rest from the base's review")
            }
            (BaseEvaluation::Full, Some(reason)) => {
                format!("full evaluation of {total} pairs: {reason}")
            }
            (BaseEvaluation::Full, None) => format!("full evaluation of {total} pairs"),
        }
    }
}

/// `20000` as `20,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What a plan compares with its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compared {
    /// The head commit's own tree.
    Head,
    /// The tree of the merge of the head into the base.
    Merge,
}

/// A policy as reports describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct PolicyInfo {
    pub name: String,
    pub description: Option<String>,
    pub url: Option<String>,
    pub enforcement: Enforcement,
    pub severity: FindingSeverity,
    pub compliance: Vec<String>,
    pub file: String,
    pub line: u32,
}

/// Counts of findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FindingCounts {
    pub new: usize,
    pub existing: usize,
    pub resolved: usize,
    /// Findings an exception excuses.
    pub excepted: usize,
    /// New `deny` findings without an exception.
    pub blocking: usize,
}

impl PlanReport {
    /// The exit code of `plan`: 0 would apply, 1 blocked, 2 invalid head.
    /// A pending change would apply when its window opens: 0, like one that applies now.
    pub fn exit_code(&self) -> u8 {
        match (self.valid, self.blocked) {
            (false, _) => 2,
            (true, true) => 1,
            (true, false) => 0,
        }
    }

    /// Exceptions that have expired or expire soon: what reports call out.
    pub fn ending_exceptions(&self) -> Vec<&ExceptionReport> {
        self.exceptions
            .iter()
            .filter(|e| e.state != ExceptionState::Active)
            .collect()
    }

    pub fn finding_counts(&self) -> FindingCounts {
        let mut c = FindingCounts::default();
        for f in &self.findings {
            match f.status {
                FindingStatus::New => c.new += 1,
                FindingStatus::Existing => c.existing += 1,
                FindingStatus::Resolved => c.resolved += 1,
            }
            c.excepted += usize::from(f.exception.is_some());
            c.blocking += usize::from(f.blocks());
        }
        c
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => disarmed_lines(&text::render(self)),
            Format::Markdown => markdown::render(self),
            Format::Json => pretty(&serde_json::to_value(self).unwrap_or_default()),
            Format::Sarif => pretty(&sarif::render(self)),
            Format::Junit => junit::render(self),
            Format::Github => github::render(self),
            Format::Codequality => pretty(&codequality::render(self)),
        }
    }

    /// The head's errors as `file:line:col: message`, one a line, for standard error. CI
    /// runners read workflow commands in everything a step prints, so each line is made
    /// [`inert`].
    pub fn error_lines(&self) -> String {
        self.errors()
            .map(|d| format!("{}\n", inert(&d.to_string())))
            .collect()
    }
}

/// A path in the report (relative to the configuration's directory) relative to the
/// repository root, where code scanning and CI annotations look for files.
pub(crate) fn repo_path(root: &str, file: &str) -> String {
    if root.is_empty() {
        file.to_owned()
    } else {
        format!("{root}/{file}")
    }
}

/// One line of text that a GitHub Actions runner cannot read as a workflow command, whatever
/// `text` holds: control and bidirectional characters escaped (no line break, no terminal
/// escape), then [`disarmed`].
pub fn inert(text: &str) -> String {
    disarmed(&escaped(text))
}

/// A line already free of control characters, with what a GitHub Actions runner would read as
/// a workflow command broken by a space: a `::` that opens the line, and every `##[` (the older
/// command syntax, matched anywhere in a line). Plan output lands in CI logs, and repository
/// text must not command the runner.
pub fn disarmed(line: &str) -> String {
    let line = line.replace("##[", "## [");
    // The runner trims leading white space before it looks for `::`.
    let start = line.len() - line.trim_start().len();
    if line[start..].starts_with("::") {
        format!("{}: :{}", &line[..start], &line[start + 2..])
    } else {
        line
    }
}

/// Every line of `text` [`disarmed`].
pub fn disarmed_lines(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let body = line.strip_suffix('\n');
            match body {
                Some(body) => format!("{}\n", disarmed(body)),
                None => disarmed(line),
            }
        })
        .collect()
}

/// The JSON Schema of the JSON report.
pub fn plan_report_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(PlanReport)).unwrap_or_default();
    if let Value::Object(map) = &mut schema {
        map.insert(
            "$id".into(),
            "https://gitward.dev/schemas/plan.schema.json".into(),
        );
    }
    schema
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// Findings as people read them: new first, then existing, then resolved; within each, by
/// severity and place.
pub(crate) fn findings_in_order(report: &PlanReport) -> Vec<&Finding> {
    let mut findings: Vec<&Finding> = report.findings.iter().collect();
    findings.sort_by(|a, b| {
        (a.status, a.severity, &a.file, a.line, &a.policy)
            .cmp(&(b.status, b.severity, &b.file, b.line, &b.policy))
    });
    findings
}

/// A JSON value as a person reads it: strings bare, everything else as compact JSON.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::String(s) => escaped(s).into_owned(),
        other => other.to_string(),
    }
}

/// A field change in one line: `90d → 60d`, `+ b.example.com, - a.example.com`, `(unset) → 30d`.
pub(crate) fn describe_change(before: Option<&Value>, after: Option<&Value>) -> String {
    match (before, after) {
        (Some(Value::Array(b)), Some(Value::Array(a)))
            if a.iter().chain(b).all(|v| !v.is_object() && !v.is_array()) =>
        {
            let added = a
                .iter()
                .filter(|v| !b.contains(v))
                .map(|v| format!("+ {}", show(v)));
            let removed = b
                .iter()
                .filter(|v| !a.contains(v))
                .map(|v| format!("- {}", show(v)));
            let parts: Vec<String> = added.chain(removed).collect();
            if parts.is_empty() {
                format!("reordered: {}", show(&Value::Array(a.clone())))
            } else {
                parts.join(", ")
            }
        }
        (b, a) => format!(
            "{} → {}",
            b.map_or_else(|| "(unset)".to_owned(), show),
            a.map_or_else(|| "(unset)".to_owned(), show)
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn changes_read_naturally() {
        assert_eq!(
            describe_change(Some(&json!("90d")), Some(&json!("60d"))),
            "90d → 60d"
        );
        assert_eq!(describe_change(None, Some(&json!(30))), "(unset) → 30");
        assert_eq!(
            describe_change(Some(&json!(["a", "b"])), Some(&json!(["b", "c"]))),
            "+ c, - a"
        );
        assert_eq!(
            describe_change(Some(&json!(["a", "b"])), Some(&json!(["b", "a"]))),
            "reordered: [\"b\",\"a\"]"
        );
    }
}
