//! `gitward plan` judges a change by the gates of its base, as the daemon would, and every
//! output format shows each gate, its requirements and evidence, and what merging now does.
//! Approvals here come from `Approved-by:` trailers (the host trusts them with
//! `--trust-trailers`); the window is judged at `--now`.

use crate::common;

use common::{TestRepo, project_dir, tool};
use serde_json::Value;

/// Changes to prod certificates and CAs need one approval and go out Monday to Thursday,
/// 09:00 to 16:00 in Berlin.
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
    window:
      timezone: Europe/Berlin
      allow:
        - days: [Mon, Tue, Wed, Thu]
          from: \"09:00\"
          to: \"16:00\"
";

/// A gate the change below does not concern.
const STAGING_GATE: &str = "apiVersion: gitward/v1
kind: Gate
metadata:
  name: staging-freeze
  labels: {owner: platform-security}
spec:
  appliesTo:
    kinds: [Certificate]
    selector: {env: staging}
  require:
    window:
      timezone: UTC
      deny:
        - {from: 2026-12-01, to: 2026-12-31, reason: staging rebuild}
";

/// Tuesday 11:00 in Berlin: the window is open.
const TUESDAY: &str = "2026-12-01T10:00:00Z";
/// Saturday 11:00 in Berlin: the window opens on Monday at 09:00.
const SATURDAY: &str = "2026-12-05T10:00:00Z";

/// The example with these two gates on `main`, and a branch `change` that adds a name to a
/// prod certificate in a commit by test@example.com with `message`.
fn change_with_message(message: &str) -> TestRepo {
    let repo = TestRepo::with_example();
    repo.remove("gates/prod-changes.yaml")
        .remove("gates/staging-changes.yaml")
        .write("gates/prod-approval.yaml", PROD_GATE)
        .write("gates/staging-freeze.yaml", STAGING_GATE);
    repo.commit("Gates of our own");
    repo.git(&["checkout", "-q", "-b", "change"]);
    repo.edit(
        "certificates/prod/api.yaml",
        "    - api.internal.example.com\n",
        "    - api.internal.example.com\n    - api-v2.example.com\n",
    );
    repo.commit(message);
    repo
}

fn plan(repo: &TestRepo, now: &str, format: &str, trust_trailers: bool, code: i32) -> String {
    let mut args = vec![
        "plan", "--base", "main", "--head", "change", "--now", now, "--format", format,
    ];
    if trust_trailers {
        args.push("--trust-trailers");
    }
    repo.gitward(&args).expect(code).stdout
}

/// The lines of `text` from the one that starts with `from`.
fn lines_from<'a>(text: &'a str, from: &str) -> Vec<&'a str> {
    text.lines().skip_while(|l| !l.starts_with(from)).collect()
}

/// The lines of `text` from the one that starts with `from` to the next empty one.
fn section<'a>(text: &'a str, from: &str) -> Vec<&'a str> {
    lines_from(text, from)
        .into_iter()
        .take_while(|l| !l.is_empty())
        .collect()
}

fn assert_valid_junit(repo: &TestRepo, xml: &str) {
    repo.write("plan.xml", xml);
    for xsd in ["windyroad.JUnit.xsd", "jenkins-xunit.junit-10.xsd"] {
        let schema = project_dir().join("tests/fixtures").join(xsd);
        let run = tool(
            "xmllint",
            &["--noout", "--schema", &schema.to_string_lossy(), "plan.xml"],
            repo.path(),
        );
        assert_eq!(run.code, 0, "against {xsd}: {}\n{xml}", run.stderr);
    }
}

/// The gate results of a SARIF report: (rule, level, file, line, message).
fn sarif_gate_results(sarif: &str) -> Vec<(String, String, String, u64, String)> {
    let sarif: Value = serde_json::from_str(sarif).expect("json");
    common::assert_matches_schema("tests/fixtures/sarif-schema-2.1.0.json", &sarif);
    sarif["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["properties"]["gate"] == "prod-approval")
        .map(|r| {
            let location = &r["locations"][0]["physicalLocation"];
            (
                r["ruleId"].as_str().unwrap_or("").to_owned(),
                r["level"].as_str().unwrap_or("").to_owned(),
                location["artifactLocation"]["uri"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                location["region"]["startLine"].as_u64().unwrap_or(0),
                r["message"]["text"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_change_without_an_approval_is_blocked_by_the_gate_of_its_base_in_every_format() {
    let repo = change_with_message("More names");
    let text = plan(&repo, TUESDAY, "text", true, 1);
    assert_eq!(
        section(&text, "Gates:"),
        [
            "Gates:",
            "  prod-approval: fail  gates/prod-approval.yaml:1",
            "    applies to 1 resource: Certificate/api-example-com",
            "    ✗ approvals: 0 of 1 approval",
            "    ✓ window: window open",
            "  staging-freeze: notApplicable — the change touches nothing it applies to",
        ],
        "{text}"
    );
    assert_eq!(
        lines_from(&text, "If merged now:"),
        [
            "If merged now: blocked; the commit in force stays:",
            "  - gate prod-approval: fail — 0 of 1 approval",
        ],
        "{text}"
    );

    let md = plan(&repo, TUESDAY, "markdown", true, 1);
    assert!(
        md.starts_with("<!-- gitward:plan -->\n### gitward plan: ⛔ blocked · "),
        "{md}"
    );
    assert!(
        md.contains("\n| `prod-approval` | ⛔ **fail** | ❌ approvals: 0 of 1 approval<br>✅ window: window open |\n"),
        "{md}"
    );
    assert!(md.contains("\nNo approval found.\n"), "{md}");
    assert!(
        md.find("#### Gates") < md.find("#### Policy findings"),
        "{md}"
    );

    let json: Value = serde_json::from_str(&plan(&repo, TUESDAY, "json", true, 1)).expect("json");
    assert_eq!(json["verdict"], "blocked");
    assert_eq!(json["gates"][0]["name"], "prod-approval");
    assert_eq!(json["gates"][0]["outcome"], "fail");
    assert_eq!(json["gates"][1]["outcome"], "notApplicable");

    assert_eq!(
        sarif_gate_results(&plan(&repo, TUESDAY, "sarif", true, 1)),
        [(
            "gate/approvals".to_owned(),
            "error".to_owned(),
            "gates/prod-approval.yaml".to_owned(),
            1,
            "0 of 1 approval".to_owned()
        )]
    );

    let xml = plan(&repo, TUESDAY, "junit", true, 1);
    assert_valid_junit(&repo, &xml);
    assert!(
        xml.contains("<testcase name=\"prod-approval\" classname=\"gate\" time=\"0\">\n      <failure message=\"prod-approval: fail — 0 of 1 approval\" type=\"failure\">"),
        "{xml}"
    );
    assert!(
        xml.contains(
            "<testcase name=\"staging-freeze\" classname=\"gate\" time=\"0\">\n      <skipped "
        ),
        "{xml}"
    );
}

#[test]
fn an_approval_trailer_from_someone_else_counts_only_where_the_host_trusts_trailers() {
    let repo = change_with_message("More names\n\nApproved-by: Alice <alice@example.com>");
    let text = plan(&repo, TUESDAY, "text", true, 0);
    assert!(
        text.contains(
            "    ✓ approvals: 1 of 1 approval: alice@example.com (unverified trailers)\n        alice@example.com (Approved-by trailer, unverified): counts\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("\nIf merged now: applied.\n"), "{text}");
    let md = plan(&repo, TUESDAY, "markdown", true, 0);
    assert!(md.contains("### gitward plan: ✅ would apply · "), "{md}");
    assert!(
        md.contains(
            "\n| alice@&#8203;example.com | `Approved-by` trailer, *unverified* | ✅ counts |\n"
        ),
        "{md}"
    );
    assert_eq!(
        sarif_gate_results(&plan(&repo, TUESDAY, "sarif", true, 0)),
        []
    );

    // The same trailer on a host that does not trust trailers: text anyone can write.
    let text = plan(&repo, TUESDAY, "text", false, 1);
    assert!(
        text.contains("        alice@example.com (Approved-by trailer, unverified): does not count: this host does not trust trailers (gates.trustTrailers is off)\n"),
        "{text}"
    );
}

#[test]
fn the_author_s_own_approval_does_not_count() {
    let repo = change_with_message("More names\n\nApproved-by: Test User <test@example.com>");
    let text = plan(&repo, TUESDAY, "text", true, 1);
    assert!(
        text.contains("        test@example.com (Approved-by trailer, unverified): does not count: wrote or committed part of the change (separation of duties)\n"),
        "{text}"
    );
    assert!(
        text.contains("\nIf merged now: blocked; the commit in force stays:\n"),
        "{text}"
    );
}

#[test]
fn an_approved_change_outside_the_window_is_pending_until_it_opens_and_exits_0() {
    let repo = change_with_message("More names\n\nApproved-by: Alice <alice@example.com>");
    let opens = "Mon 2026-12-07 09:00 CET";
    let text = plan(&repo, SATURDAY, "text", true, 0);
    assert_eq!(
        section(&text, "Gates:"),
        [
            "Gates:",
            "  prod-approval: pending  gates/prod-approval.yaml:1",
            "    applies to 1 resource: Certificate/api-example-com",
            "    ✓ approvals: 1 of 1 approval: alice@example.com (unverified trailers)",
            "        alice@example.com (Approved-by trailer, unverified): counts",
            &format!(
                "    … window: window closed (outside the allowed times (Mon, Tue, Wed, Thu 09:00–16:00 Europe/Berlin)); opens {opens}"
            ),
            "  staging-freeze: notApplicable — the change touches nothing it applies to",
        ],
        "{text}"
    );
    assert_eq!(
        lines_from(&text, "If merged now:")[0],
        format!(
            "If merged now: pending; applied without a new commit when the window opens, {opens}:"
        ),
        "{text}"
    );

    let md = plan(&repo, SATURDAY, "markdown", true, 0);
    assert!(
        md.contains(&format!("### gitward plan: ⏳ pending until {opens} · ")),
        "{md}"
    );
    assert!(
        md.contains(&format!("\nTime zone `Europe/Berlin`; opens **{opens}**\n")),
        "{md}"
    );

    let json: Value = serde_json::from_str(&plan(&repo, SATURDAY, "json", true, 0)).expect("json");
    assert_eq!(json["verdict"], "pending");
    assert_eq!(json["opensAt"], "2026-12-07T08:00:00Z");
    assert_eq!(json["gates"][0]["outcome"], "pending");

    let results = sarif_gate_results(&plan(&repo, SATURDAY, "sarif", true, 0));
    assert_eq!(
        results
            .iter()
            .map(|(rule, level, file, line, _)| (
                rule.as_str(),
                level.as_str(),
                file.as_str(),
                *line
            ))
            .collect::<Vec<_>>(),
        [("gate/window", "note", "gates/prod-approval.yaml", 1)]
    );
    assert!(
        results[0].4.ends_with(&format!("; opens {opens}")),
        "{results:?}"
    );

    let xml = plan(&repo, SATURDAY, "junit", true, 0);
    assert_valid_junit(&repo, &xml);
    assert!(
        xml.contains("<testcase name=\"prod-approval\" classname=\"gate\" time=\"0\"/>"),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            "<system-out>prod-approval: pending; the change is applied when the window opens, {opens}\n</system-out>"
        )),
        "{xml}"
    );
}
