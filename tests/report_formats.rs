//! The formats CI systems read natively, from a real change: `--format github` read back as
//! the GitHub Actions runner reads workflow commands, and `--format codequality` checked
//! against GitLab's schema and the documented format, with fingerprints that follow a finding
//! when its lines move. (SARIF and JUnit are checked against their schemas in `plan.rs` and
//! `plan_gates.rs`.)

use crate::common;

use std::collections::BTreeSet;

use common::TestRepo;
use serde_json::Value;

/// Changes to prod certificates and CAs need one approval; trailers do not count here.
const PROD_GATE: &str = "apiVersion: gitward/v1
kind: Gate
metadata:
  name: prod-approval
  labels: {owner: platform-security}
spec:
  appliesTo:
    kinds: [Certificate, Issuer]
    selector: {env: prod}
  require:
    approvals:
      count: 1
      source: trailers
";

/// An audit policy whose exception names a resource that does not exist (a warning).
const AUDIT_POLICY: &str = "apiVersion: gitward/v1
kind: Policy
metadata:
  name: hostile-audit
  labels: {owner: platform-security}
spec:
  module: policies/audit.rego
  rule: data.gitward.audit.deny
  appliesTo:
    kinds: [Certificate]
  enforcement: audit
  severity: info
  exceptions:
    - resources: [Certificate/no-such-cert]
      reason: gone
      owner: nobody
      expires: 2027-01-31
";

/// What a policy's message tries, as Rego writes it: lines that would be workflow commands of
/// their own, the older `##[` syntax, the runner's own escapes, a terminal escape and a
/// right-to-left override.
const HOSTILE_REGO: &str = r"ends \u001b[31m\u202e %0A 100% ##[add-mask]w\n::add-mask::secret\r::set-output name=x::y\r\n  ::stop-commands::t";

/// The same, as the runner reads it back from the annotation: one line, escapes visible.
const HOSTILE_SHOWN: &str = r"ends \u{1b}[31m\u{202e} %0A 100% ## [add-mask]w\n::add-mask::secret\r::set-output name=x::y\r\n  ::stop-commands::t";

/// The audit rule: the hostile message, and one made of 1,200 terminal escapes, each written
/// back six characters long.
fn audit_rego() -> String {
    let escapes: Vec<String> = (0..12)
        .map(|_| format!("\"{}\"", r"\u001b".repeat(100)))
        .collect();
    format!(
        "package gitward.audit\n\nimport rego.v1\n\n\
         deny contains finding if {{\n\tinput.name == \"api-example-com\"\n\
         \tlong := concat(\"\", [\"long \", {}])\n\
         \tfinding := {{\"msg\": long, \"field\": \"spec.keyAlgorithm\"}}\n}}\n\n\
         deny contains finding if {{\n\tinput.name == \"api-example-com\"\n\
         \tfinding := {{\"msg\": \"{HOSTILE_REGO}\", \"field\": \"spec.duration\"}}\n}}\n",
        escapes.join(",\n\t\t")
    )
}

/// The example with the gate above on `main`; on `change`, a prod certificate gets a
/// wildcard name (a new deny finding: blocks) and a short renewal margin (a new warn
/// finding), and the audit policy arrives. The example's excepted finding stays.
fn change_repo() -> TestRepo {
    let repo = TestRepo::with_example();
    repo.remove("gates/prod-changes.yaml")
        .remove("gates/staging-changes.yaml")
        .write("gates/prod-approval.yaml", PROD_GATE);
    repo.commit("One gate");
    repo.git(&["checkout", "-q", "-b", "change"]);
    repo.edit(
        "certificates/prod/api.yaml",
        "    - api.internal.example.com\n",
        "    - api.internal.example.com\n    - \"*.api.example.com\"\n",
    )
    .edit(
        "certificates/prod/api.yaml",
        "renewBefore: 30d",
        "renewBefore: 5d",
    )
    .write("policies/audit.yaml", AUDIT_POLICY)
    .write("policies/audit.rego", audit_rego());
    repo.commit("Wildcard, late renewal, audit");
    repo
}

fn plan(repo: &TestRepo, format: &str, code: i32) -> common::Run {
    repo.gitward(&[
        "plan", "--base", "main", "--head", "change", "--format", format,
    ])
    .expect(code)
}

/// A workflow command as the runner reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Command {
    name: String,
    properties: Vec<(String, String)>,
    data: String,
}

/// Commands a runner acts on (`ActionCommandManager` and its extensions).
const REGISTERED: &[&str] = &[
    "add-mask",
    "add-matcher",
    "add-path",
    "debug",
    "echo",
    "endgroup",
    "error",
    "group",
    "notice",
    "remove-matcher",
    "save-state",
    "set-env",
    "set-output",
    "stop-commands",
    "warning",
];

fn registered(name: &str) -> bool {
    REGISTERED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Undoes `mappings` in the runner's order (each a replace over the whole text).
fn unescape(text: &str, mappings: &[(&str, &str)]) -> String {
    mappings
        .iter()
        .fold(text.to_owned(), |t, (from, to)| t.replace(from, to))
}

const DATA: &[(&str, &str)] = &[("%0D", "\r"), ("%0A", "\n"), ("%25", "%")];
const PROPERTY: &[(&str, &str)] = &[
    ("%0D", "\r"),
    ("%0A", "\n"),
    ("%3A", ":"),
    ("%2C", ","),
    ("%25", "%"),
];
const V1: &[(&str, &str)] = &[
    ("%3B", ";"),
    ("%0D", "\r"),
    ("%0A", "\n"),
    ("%5D", "]"),
    ("%25", "%"),
];

/// `::name k=v,k=v::data` at the start of the line, after white space
/// (`ActionCommand.TryParseV2`).
fn parse_v2(line: &str) -> Option<Command> {
    let rest = line.trim_start().strip_prefix("::")?;
    let end = rest.find("::")?;
    let info = &rest[..end];
    let (name, properties) = info.split_once(' ').unwrap_or((info, ""));
    registered(name).then(|| Command {
        name: name.to_owned(),
        properties: properties
            .trim()
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), unescape(v, PROPERTY)))
            .collect(),
        data: unescape(&rest[end + 2..], DATA),
    })
}

/// `##[name k=v;k=v]data` anywhere in the line (`ActionCommand.TryParse`), tried when the
/// line is no command of the newer syntax.
fn parse_v1(line: &str) -> Option<Command> {
    let start = line.find("##[")? + 3;
    let end = start + line[start..].find(']')?;
    let info = &line[start..end];
    let (name, properties) = info.split_once(' ').unwrap_or((info, ""));
    registered(name).then(|| Command {
        name: name.to_owned(),
        properties: properties
            .split(';')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), unescape(v, V1)))
            .collect(),
        data: unescape(&line[end + 1..], V1),
    })
}

/// Every command a runner reads in what a step prints: lines end at CR, LF or CRLF.
fn workflow_commands(output: &str) -> Vec<Command> {
    output
        .split("\r\n")
        .flat_map(|l| l.split(['\r', '\n']))
        .filter_map(|line| parse_v2(line).or_else(|| parse_v1(line)))
        .collect()
}

fn annotation(name: &str, file: &str, line: u32, col: u32, title: &str, data: &str) -> Command {
    Command {
        name: name.to_owned(),
        properties: vec![
            ("file".to_owned(), file.to_owned()),
            ("line".to_owned(), line.to_string()),
            ("col".to_owned(), col.to_string()),
            ("title".to_owned(), title.to_owned()),
        ],
        data: data.to_owned(),
    }
}

#[test]
fn github_annotations_are_the_change_s_problems_most_severe_first_and_nothing_else() {
    let repo = change_repo();
    let run = plan(&repo, "github", 1);
    let mut found = workflow_commands(&run.stdout);
    assert!(workflow_commands(&run.stderr).is_empty(), "{}", run.stderr);

    // The message of 1,200 escapes is cut where the runner would cut it, and says so.
    let long = found.remove(4);
    assert_eq!(long.name, "notice");
    assert!(
        long.data
            .starts_with(r"Certificate/api-example-com: long \u{1b}\u{1b}"),
        "{}",
        long.data
    );
    assert!(long.data.encode_utf16().count() <= 4096, "{}", long.data);
    assert!(long.data.ends_with(" more characters)"), "{}", long.data);

    let gate = Command {
        name: "error".to_owned(),
        properties: vec![
            ("file".to_owned(), "gates/prod-approval.yaml".to_owned()),
            ("line".to_owned(), "1".to_owned()),
            (
                "title".to_owned(),
                "gitward gate prod-approval: approvals (fail)".to_owned(),
            ),
        ],
        data: "0 of 1 approval".to_owned(),
    };
    assert_eq!(
        found,
        [
            annotation(
                "error",
                "certificates/prod/api.yaml",
                15,
                7,
                "gitward policy no-prod-wildcards: new deny (medium)",
                "Certificate/api-example-com: *.api.example.com is a wildcard; prod certificates name each host\ncompliance: SOC2:CC6.1, ISO27001:A.8.24, NIST-800-53:SC-12",
            ),
            gate,
            annotation(
                "warning",
                "certificates/prod/api.yaml",
                18,
                3,
                "gitward policy renewal-margin: new warn (medium)",
                "Certificate/api-example-com: api-example-com renews 5d before expiry, less than 10 % of its 90d validity\ncompliance: SOC2:A1.2, ISO27001:A.8.24, PCI-DSS:4.2.1.1, NIST-800-53:SC-17",
            ),
            annotation(
                "warning",
                "policies/audit.yaml",
                14,
                19,
                "gitward: warning",
                "exception names `Certificate/no-such-cert`, which is not a resource this policy applies to",
            ),
            annotation(
                "notice",
                "certificates/prod/api.yaml",
                17,
                3,
                "gitward policy hostile-audit: new audit (info)",
                &format!("Certificate/api-example-com: {HOSTILE_SHOWN}"),
            ),
            annotation(
                "notice",
                "certificates/prod/erp.yaml",
                16,
                3,
                "gitward policy max-validity: existing deny (medium)",
                "Certificate/legacy-erp: legacy-erp is valid for 730d; prod serverAuth certificates may be valid for at most 398 days\nexcepted until 2027-03-31 (finance-it): The ERP appliance imports certificates by hand until its Q1 upgrade brings ACME (FIN-2291).\ncompliance: SOC2:CC6.1, ISO27001:A.8.24, PCI-DSS:4.2.1, NIST-800-53:SC-17",
            ),
        ]
    );
    assert_eq!(
        run.stdout.lines().last(),
        Some(
            "gitward plan: blocked. 2 errors, 2 warnings, 3 notices. Plan: 0 to issue, 1 to reissue, 0 to remove. Findings: 4 new, 1 existing, 0 resolved (1 excepted)."
        ),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 8, "{}", run.stdout);
}

#[test]
fn a_hostile_file_name_and_error_open_no_command_on_either_output() {
    let repo = TestRepo::with_example_open_gates();
    // At the root, so the `file:line:col: message` line on standard error starts with `::`.
    repo.write(
        "::set-output name=leak::1.yaml",
        "apiVersion: gitward/v1\nkind: \"Nope ##[add-mask]w\\n::add-mask::secret\"\nmetadata: {name: x}\nspec: {}\n",
    );
    repo.commit("Hostile");
    let run = repo
        .gitward(&[
            "plan", "--base", "HEAD~1", "--head", "HEAD", "--format", "github",
        ])
        .expect(2);
    let shown = r"unknown kind `Nope ## [add-mask]w\n::add-mask::secret`; expected Issuer, Certificate, Policy, Gate or Sink";
    let error = Command {
        name: "error".to_owned(),
        properties: vec![
            (
                "file".to_owned(),
                "::set-output name=leak::1.yaml".to_owned(),
            ),
            ("line".to_owned(), "2".to_owned()),
            ("col".to_owned(), "7".to_owned()),
            (
                "title".to_owned(),
                "gitward: invalid configuration".to_owned(),
            ),
        ],
        data: shown.to_owned(),
    };
    assert_eq!(workflow_commands(&run.stdout), [error], "{}", run.stdout);
    assert!(
        run.stdout.lines().last().is_some_and(|l| l
            .starts_with("gitward plan: invalid; nothing would be applied. 1 error, 0 warnings")),
        "{}",
        run.stdout
    );
    // Standard error has the problem for people, and nothing for the runner.
    assert_eq!(
        run.stderr,
        format!(": :set-output name=leak::1.yaml:2:7: {shown}\n")
    );
    assert!(workflow_commands(&run.stderr).is_empty());
}

fn codequality(repo: &TestRepo) -> Vec<Value> {
    let run = plan(repo, "codequality", 1);
    let report: Value = serde_json::from_str(&run.stdout).expect("json");
    common::assert_matches_schema(
        "tests/fixtures/formats/gitlab-codequality.documented.schema.json",
        &report,
    );
    let issues = report.as_array().expect("an array").clone();
    for issue in &issues {
        // GitLab checks each entry, and stops reading at the first it refuses.
        common::assert_matches_schema("tests/fixtures/formats/gitlab-codeclimate.json", issue);
    }
    let fingerprints: BTreeSet<&str> = issues
        .iter()
        .filter_map(|i| i["fingerprint"].as_str())
        .collect();
    assert_eq!(
        fingerprints.len(),
        issues.len(),
        "GitLab keeps one per fingerprint"
    );
    issues
}

/// (check_name, severity, path, line) of each issue.
fn rows(issues: &[Value]) -> Vec<(String, String, String, u64)> {
    issues
        .iter()
        .map(|i| {
            (
                i["check_name"].as_str().unwrap_or("").to_owned(),
                i["severity"].as_str().unwrap_or("").to_owned(),
                i["location"]["path"].as_str().unwrap_or("").to_owned(),
                i["location"]["lines"]["begin"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn row(check: &str, severity: &str, path: &str, line: u64) -> (String, String, String, u64) {
    (check.to_owned(), severity.to_owned(), path.to_owned(), line)
}

/// Each issue's fingerprint by what it is about: (check_name, description's first 60
/// characters).
fn prints(issues: &[Value]) -> Vec<(String, String, String)> {
    let mut all: Vec<(String, String, String)> = issues
        .iter()
        .map(|i| {
            let description: String = i["description"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(60)
                .collect();
            (
                i["check_name"].as_str().unwrap_or("").to_owned(),
                description,
                i["fingerprint"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn code_quality_issues_follow_gitlab_s_schema_and_keep_their_fingerprints_when_lines_move() {
    let repo = change_repo();
    let before = codequality(&repo);
    assert_eq!(
        rows(&before),
        [
            row(
                "gitward/policy/no-prod-wildcards",
                "blocker",
                "certificates/prod/api.yaml",
                15
            ),
            row(
                "gitward/policy/hostile-audit",
                "info",
                "certificates/prod/api.yaml",
                16
            ),
            row(
                "gitward/policy/hostile-audit",
                "info",
                "certificates/prod/api.yaml",
                17
            ),
            row(
                "gitward/policy/renewal-margin",
                "major",
                "certificates/prod/api.yaml",
                18
            ),
            row(
                "gitward/policy/max-validity",
                "info",
                "certificates/prod/erp.yaml",
                16
            ),
            row("gate/approvals", "blocker", "gates/prod-approval.yaml", 1),
            row("gitward/warning", "minor", "policies/audit.yaml", 14),
        ]
    );
    // Escaped as in every format; a JSON file is no log a runner reads commands from.
    assert_eq!(
        before[2]["description"],
        format!(
            "Certificate/api-example-com: {}",
            HOSTILE_SHOWN.replace("## [", "##[")
        )
    );

    // Two lines more above every finding and the warning: the same issues, further down.
    for file in [
        "certificates/prod/api.yaml",
        "certificates/prod/erp.yaml",
        "policies/audit.yaml",
    ] {
        let text = repo.read(file);
        repo.write(file, format!("# Moved down\n# by two lines.\n{text}"));
    }
    repo.commit("Comments on top");
    let after = codequality(&repo);
    let moved: Vec<u64> = rows(&after).iter().map(|r| r.3).collect();
    assert_eq!(moved, [17, 18, 19, 20, 18, 1, 16]);
    assert_eq!(prints(&before), prints(&after));
}

#[test]
fn text_output_in_a_ci_log_commands_nothing() {
    // The hostile policy message and file name in the plain outputs people run in a
    // workflow step: `plan` (text), and `validate`.
    let repo = change_repo();
    let run = plan(&repo, "text", 1);
    assert!(run.stdout.contains("::add-mask"), "{}", run.stdout);
    assert!(workflow_commands(&run.stdout).is_empty(), "{}", run.stdout);
    repo.write(
        "::set-output name=leak::1.yaml",
        "apiVersion: gitward/v1\nkind: \"Nope ##[add-mask]w\"\nmetadata: {name: x}\nspec: {}\n",
    );
    repo.commit("Hostile");
    for run in [
        plan(&repo, "text", 2),
        repo.gitward(&["validate", "--rev", "HEAD"]).expect(1),
    ] {
        assert!(
            run.stdout.contains("set-output name=leak"),
            "{}",
            run.stdout
        );
        assert!(workflow_commands(&run.stdout).is_empty(), "{}", run.stdout);
        assert!(workflow_commands(&run.stderr).is_empty(), "{}", run.stderr);
    }
}
