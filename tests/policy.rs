//! Policies in `plan` and `gitward test`, against real repositories built from the example.

use crate::common;

use common::{TestRepo, project_dir, tool};
use serde_json::Value;

fn plan_json(repo: &TestRepo, date: &str, code: i32) -> Value {
    let args = [
        "plan", "--base", "main", "--head", "change", "--format", "json", "--date", date,
    ];
    let run = repo.gitward(&args).expect(code);
    serde_json::from_str(&run.stdout).expect("json report")
}

/// (status, policy, resource, line, message) of each finding, in report order.
fn findings(report: &Value) -> Vec<(String, String, String, u64)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["status"].as_str().unwrap_or_default().to_owned(),
                f["policy"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{}/{}:{}",
                    f["kind"].as_str().unwrap_or_default(),
                    f["name"].as_str().unwrap_or_default(),
                    f["file"].as_str().unwrap_or_default()
                ),
                f["line"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

fn on_branch(repo: &TestRepo, edit: impl FnOnce(&TestRepo)) {
    repo.git(&["checkout", "-q", "-B", "change", "main"]);
    edit(repo);
    repo.commit("change");
}

/// The example, with `condition` added to the `required-labels` rule on a branch `change`.
fn with_labels_condition(condition: &str) -> TestRepo {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit(
            "policies/labels.rego",
            "\tsome label in required\n",
            &format!("\t{condition}\n\tsome label in required\n"),
        );
    });
    repo
}

/// `plan` of [`with_labels_condition`], which must exit 2 with `required-labels` failing.
fn labels_policy_fails(condition: &str) -> common::Run {
    let run = with_labels_condition(condition)
        .gitward(&["plan", "--base", "main", "--head", "change"])
        .expect(2);
    assert!(
        run.stdout.contains("policy `required-labels` failed on "),
        "{}",
        run.stdout
    );
    run
}

fn tuple(status: &str, policy: &str, resource: &str, line: u64) -> (String, String, String, u64) {
    (
        status.to_owned(),
        policy.to_owned(),
        resource.to_owned(),
        line,
    )
}

#[test]
fn a_new_deny_finding_blocks_and_existing_debt_does_not() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit(
            "certificates/prod/shop.yaml",
            "keyAlgorithm: RSA-3072",
            "keyAlgorithm: RSA-2048",
        );
    });
    let report = plan_json(&repo, "2026-12-01", 1);
    assert_eq!(report["blocked"], true);
    assert_eq!(
        findings(&report),
        [
            tuple(
                "existing",
                "max-validity",
                "Certificate/legacy-erp:certificates/prod/erp.yaml",
                16
            ),
            tuple(
                "new",
                "strong-keys",
                "Certificate/shop-example-com:certificates/prod/shop.yaml",
                17
            ),
        ]
    );
    let shop = &report["findings"][1];
    assert_eq!(shop["enforcement"], "deny");
    assert_eq!(shop["severity"], "high");
    assert_eq!(shop["field"], "spec.keyAlgorithm");
    assert_eq!(shop["column"], 3);
    assert_eq!(
        shop["message"],
        "Certificate shop-example-com has a 2048-bit RSA key; prod needs 3072 bits or an elliptic curve"
    );
    assert_eq!(shop["compliance"][1], "ISO27001:A.8.24");

    // Merged, the same finding is existing debt in the next change and blocks nothing.
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--ff-only", "change"]);
    on_branch(&repo, |r| {
        r.edit(
            "certificates/prod/api.yaml",
            "duration: 90d",
            "duration: 60d",
        );
    });
    let report = plan_json(&repo, "2026-12-01", 0);
    assert_eq!(report["blocked"], false);
    assert!(findings(&report).iter().all(|f| f.0 == "existing"));
}

#[test]
fn fixing_a_finding_resolves_it_and_warnings_never_block() {
    let repo = TestRepo::with_example_open_gates();
    repo.edit(
        "certificates/staging/api.yaml",
        "duration: 30d",
        "duration: 30d\n  renewBefore: 1d",
    );
    repo.commit("Tight renewal in staging");
    on_branch(&repo, |r| {
        r.edit(
            "certificates/staging/api.yaml",
            "renewBefore: 1d",
            "renewBefore: 10d",
        );
        r.edit(
            "certificates/staging/shop.yaml",
            "duration: 30d",
            "duration: 30d\n  renewBefore: 2d",
        );
    });
    let report = plan_json(&repo, "2026-12-01", 0);
    let got = findings(&report);
    assert!(
        got.contains(&tuple(
            "new",
            "renewal-margin",
            "Certificate/shop-staging:certificates/staging/shop.yaml",
            16
        )),
        "{got:?}"
    );
    assert!(
        got.contains(&tuple(
            "resolved",
            "renewal-margin",
            "Certificate/api-staging:certificates/staging/api.yaml",
            15
        )),
        "{got:?}"
    );
    assert_eq!(report["blocked"], false);
}

#[test]
fn policies_that_read_the_inventory_are_re_evaluated_for_unchanged_resources() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.write(
            "certificates/prod/api-v2.yaml",
            "apiVersion: gitward/v1\nkind: Certificate\nmetadata:\n  name: api-v2\n  labels: {env: prod, owner: payments}\nspec:\n  issuerRef: example-issuing\n  dnsNames: [api.example.com]\n  target: web-tls\n",
        );
    });
    let report = plan_json(&repo, "2026-12-01", 1);
    let got = findings(&report);
    // api-example-com did not change, but its name is now claimed twice: new there too.
    assert!(
        got.contains(&tuple(
            "new",
            "unique-dns-names",
            "Certificate/api-example-com:certificates/prod/api.yaml",
            13
        )),
        "{got:?}"
    );
    assert!(
        got.contains(&tuple(
            "new",
            "unique-dns-names",
            "Certificate/api-v2:certificates/prod/api-v2.yaml",
            8
        )),
        "{got:?}"
    );
}

#[test]
fn findings_point_at_the_line_of_the_field_in_sarif() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit(
            "certificates/prod/www.yaml",
            "    - example.com\n",
            "    - example.com\n    - www.example.org\n",
        );
    });
    let run = repo
        .gitward(&[
            "plan",
            "--base",
            "main",
            "--head",
            "change",
            "--format",
            "sarif",
            "--date",
            "2026-12-01",
        ])
        .expect(1);
    let sarif: Value = serde_json::from_str(&run.stdout).expect("json");
    common::assert_matches_schema("tests/fixtures/sarif-schema-2.1.0.json", &sarif);

    let run0 = &sarif["runs"][0];
    let rules = run0["tool"]["driver"]["rules"].as_array().expect("rules");
    let results = run0["results"].as_array().expect("results");
    let domain = results
        .iter()
        .find(|r| r["ruleId"] == "gitward/policy/allowed-domains")
        .expect("a finding");
    assert_eq!(domain["level"], "error");
    assert_eq!(domain["baselineState"], "new");
    let region = &domain["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        (region["startLine"].as_u64(), region["startColumn"].as_u64()),
        (Some(15), Some(7))
    );
    assert_eq!(
        repo.read("certificates/prod/www.yaml").lines().nth(14),
        Some("    - www.example.org")
    );
    let rule = &rules[domain["ruleIndex"].as_u64().expect("index") as usize];
    assert_eq!(rule["id"], "gitward/policy/allowed-domains");
    assert_eq!(rule["properties"]["security-severity"], "8.0");
    assert!(
        rule["properties"]["tags"]
            .as_array()
            .expect("tags")
            .contains(&Value::from("PCI-DSS:4.2.1.1"))
    );
    let strong_keys = rules
        .iter()
        .find(|r| r["id"] == "gitward/policy/strong-keys")
        .expect("rule");
    assert_eq!(
        strong_keys["helpUri"],
        "https://wiki.example.com/pki/policies/strong-keys"
    );
    let excepted = results
        .iter()
        .find(|r| r["ruleId"] == "gitward/policy/max-validity")
        .expect("excepted finding");
    assert_eq!(excepted["suppressions"][0]["status"], "accepted");
    assert_eq!(excepted["baselineState"], "unchanged");
}

#[test]
fn exceptions_hold_through_their_last_day_and_then_lapse() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit(
            "certificates/prod/erp.yaml",
            "exposure: internal",
            "exposure: restricted",
        );
    });
    let on = |date: &str| plan_json(&repo, date, 0);
    let last_day = on("2027-03-31");
    let erp = &last_day["findings"][0];
    assert_eq!(erp["policy"], "max-validity");
    assert_eq!(erp["exception"]["owner"], "finance-it");
    assert_eq!(last_day["exceptions"][0]["state"], "expiring");
    assert_eq!(last_day["exceptions"][0]["daysLeft"], 0);
    assert_eq!(on("2026-12-01")["exceptions"][0]["state"], "active");
    let after = on("2027-04-01");
    assert_eq!(after["findings"][0]["exception"], Value::Null);
    assert_eq!(after["exceptions"][0]["state"], "expired");
    // Still existing debt, not new: an expired exception does not block unrelated changes.
    assert_eq!(after["findings"][0]["status"], "existing");
    let text = repo
        .gitward(&[
            "plan",
            "--base",
            "main",
            "--head",
            "change",
            "--date",
            "2027-04-02",
        ])
        .expect(0);
    assert!(text.stdout.contains("Exceptions ending:\n  max-validity  Certificate/legacy-erp  expired 2027-03-31 (2 days ago)  owner finance-it  policies/policies.yaml:37\n"), "{}", text.stdout);
}

#[test]
fn a_policy_that_fails_at_runtime_fails_the_commit_naming_policy_and_resource() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit(
            "policies/labels.rego",
            "required := [\"owner\", \"env\"]",
            "required := [\"owner\", \"env\"]\n\nbroken contains x if {\n\tx := 1 + input.name\n}",
        );
        r.edit(
            "policies/policies.yaml",
            "rule: data.gitward.labels.deny",
            "rule: data.gitward.labels.broken",
        );
    });
    let run = repo
        .gitward(&["plan", "--base", "main", "--head", "change"])
        .expect(2);
    assert!(
        run.stdout.contains("certificates/prod/api.yaml:1:1: policy `required-labels` failed on Certificate/api-example-com: policies/labels.rego:10:19: `add` expects numeric argument."),
        "{}",
        run.stdout
    );
    on_branch(&repo, |r| {
        r.edit(
            "policies/renewal.rego",
            "import rego.v1",
            "import rego.v1\n\nresult := 1 if input.kind\n\nresult := 2 if input.kind",
        );
        r.edit(
            "policies/policies.yaml",
            "rule: data.gitward.renewal.deny",
            "rule: data.gitward.renewal.result",
        );
    });
    let run = repo
        .gitward(&[
            "plan", "--base", "main", "--head", "change", "--format", "json",
        ])
        .expect(2);
    assert!(
        run.stderr
            .contains("policy `renewal-margin` failed on Certificate/"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("rule conflicts with rule"),
        "{}",
        run.stderr
    );
    on_branch(&repo, |r| {
        r.edit(
            "policies/wildcards.rego",
            "startswith(name, \"*.\")",
            "no_such_function(name)",
        );
    });
    let run = repo
        .gitward(&["plan", "--base", "main", "--head", "change"])
        .expect(2);
    assert!(
        run.stdout
            .contains("policies/wildcards.rego:10:21: could not find function no_such_function"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_endless_policy_is_stopped_by_the_evaluation_limit() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit(
            "policies/wildcards.rego",
            "deny contains finding if {",
            "deny contains finding if {\n\tsome a in numbers.range(1, 100000)\n\tsome b in numbers.range(1, 100000)\n\ta * b < 0",
        );
    });
    let run = repo
        .gitward(&["plan", "--base", "main", "--head", "change"])
        .expect(2);
    assert!(
        run.stdout
            .contains("policy `no-prod-wildcards` failed on Certificate/"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("evaluation stopped at its limit: it ran for more than 2s"),
        "{}",
        run.stdout
    );
}

#[test]
fn commit_trailers_reach_policies() {
    let repo = TestRepo::with_example_open_gates();
    repo.write("policies/approvals.rego", "package gitward.approvals\n\nimport rego.v1\n\ndeny contains \"a prod change needs an Approved-by trailer\" if {\n\tinput.change.action != \"none\"\n\tnot input.commit.trailers[\"Approved-by\"]\n}\n");
    repo.write("policies/approvals.yaml", "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: approved}\nspec:\n  module: policies/approvals.rego\n  rule: data.gitward.approvals.deny\n  appliesTo: {kinds: [Certificate]}\n");
    repo.commit("Approval policy");
    repo.git(&["checkout", "-q", "-b", "change"]);
    repo.edit(
        "certificates/prod/api.yaml",
        "duration: 90d",
        "duration: 60d",
    );
    repo.git(&["commit", "-qam", "Shorter"]);
    let report = plan_json(&repo, "2026-12-01", 1);
    assert_eq!(report["findings"][0]["policy"], "approved");
    repo.git(&[
        "commit",
        "-q",
        "--amend",
        "-m",
        "Shorter\n\nApproved-by: Alice <alice@example.com>",
    ]);
    plan_json(&repo, "2026-12-01", 0);
}

#[test]
fn junit_has_a_case_per_resource_and_policy_and_validates() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit(
            "certificates/prod/shop.yaml",
            "keyAlgorithm: RSA-3072",
            "keyAlgorithm: RSA-2048",
        );
    });
    repo.gitward(&[
        "plan",
        "--base",
        "main",
        "--head",
        "change",
        "--format",
        "junit",
        "-o",
        "plan.xml",
        "--date",
        "2026-12-01",
    ])
    .expect(1);
    let xml = repo.read("plan.xml");
    assert!(
        xml.contains("tests=\"15\" failures=\"1\" errors=\"0\" skipped=\"0\""),
        "{xml}"
    );
    assert!(xml.contains("<testsuite name=\"gitward.policy.strong-keys\" package=\"gitward.policy.strong-keys\" id="), "{xml}");
    assert!(xml.contains("<testcase name=\"Certificate/shop-example-com\" classname=\"gitward.policy.strong-keys\" time=\"0\">\n      <failure message=\"1 deny finding(s)\" type=\"failure\">certificates/prod/shop.yaml:17:3: Certificate shop-example-com has a 2048-bit RSA key"), "{xml}");
    assert!(xml.contains("<testcase name=\"Certificate/legacy-erp\" classname=\"gitward.policy.max-validity\" time=\"0\">\n      <skipped message=\"excepted until 2027-03-31 (finance-it):"), "{xml}");
    // 11 policies over 11 certificates, 4 issuers and 2 gates, where each applies.
    assert_eq!(xml.matches("classname=\"gitward.policy.").count(), 112);
    for xsd in ["windyroad.JUnit.xsd", "jenkins-xunit.junit-10.xsd"] {
        let schema = project_dir().join("tests/fixtures").join(xsd);
        let run = tool(
            "xmllint",
            &["--noout", "--schema", &schema.to_string_lossy(), "plan.xml"],
            repo.path(),
        );
        assert_eq!(run.code, 0, "{xsd}: {}", run.stderr);
    }
}

#[test]
fn markdown_groups_findings_by_severity() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit(
            "certificates/prod/shop.yaml",
            "keyAlgorithm: RSA-3072",
            "keyAlgorithm: RSA-2048",
        );
    });
    let run = repo
        .gitward(&[
            "plan",
            "--base",
            "main",
            "--head",
            "change",
            "--format",
            "markdown",
            "--date",
            "2026-12-01",
        ])
        .expect(1);
    let md = run.stdout;
    assert!(md.contains("### gitward plan: ⛔ blocked"), "{md}");
    let high = md.find("**HIGH** (1)").expect("high group");
    let medium = md.find("**MEDIUM** (1)").expect("medium group");
    assert!(high < medium, "{md}");
    assert!(
        md.contains(
            "| 🆕 **new, blocking** | `strong-keys` (deny) | `Certificate/shop-example-com` |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| 💤 excepted | `max-validity` (deny) | `Certificate/legacy-erp` |"),
        "{md}"
    );
}

#[test]
fn gitward_test_runs_the_policy_tests() {
    let repo = TestRepo::with_example_open_gates();
    let run = repo.gitward(&["test"]).expect(0);
    assert!(
        run.stdout.ends_with("36 passed, 0 failed\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("PASS  policies/keys_test.rego  data.gitward.keys_test.test_rsa_2048_is_denied_in_prod ("), "{}", run.stdout);
    let filtered = repo.gitward(&["test", "--filter", "keys_test"]).expect(0);
    assert!(
        filtered.stdout.ends_with("4 passed, 0 failed\n"),
        "{}",
        filtered.stdout
    );
    repo.edit(
        "policies/validity_test.rego",
        "count(validity.deny) == 0 with input as certificate(\"prod\", 398, {})",
        "count(validity.deny) == 1 with input as certificate(\"prod\", 398, {})",
    );
    repo.write("policies/extra_test.rego", "package gitward.extra_test\n\nimport rego.v1\n\ntest_prints_on_failure if {\n\tprint(\"looked at\", 42)\n\tfalse\n}\n");
    let run = repo.gitward(&["test"]).expect(1);
    assert!(run.stdout.contains("FAIL  policies/validity_test.rego  data.gitward.validity_test.test_398_days_is_the_limit ("), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "FAIL  policies/extra_test.rego  data.gitward.extra_test.test_prints_on_failure ("
        ) && run
            .stdout
            .contains("        policies/extra_test.rego:6: looked at 42\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("35 passed, 2 failed\n"),
        "{}",
        run.stdout
    );
    repo.gitward(&["test", "--filter", "("]).expect(2);
}

#[test]
fn a_different_problem_on_the_same_field_is_new_and_a_moved_one_is_not() {
    let repo = TestRepo::with_example_open_gates();
    repo.edit("certificates/prod/shop.yaml", "    owner: storefront\n", "");
    repo.edit(
        "certificates/prod/api.yaml",
        "    - api.internal.example.com\n",
        "    - api.internal.example.com\n    - \"*.api.example.com\"\n",
    );
    repo.commit("Debt: a missing owner, a prod wildcard");
    on_branch(&repo, |r| {
        // The owner comes back but env goes: another finding on metadata.labels.
        r.edit(
            "certificates/prod/shop.yaml",
            "    env: prod\n",
            "    owner: storefront\n",
        );
        // A name inserted first moves the wildcard finding from dnsNames[2] to [3].
        r.edit(
            "certificates/prod/api.yaml",
            "    - api.example.com\n",
            "    - api.example.com\n    - api2.example.com\n",
        );
    });
    let report = plan_json(&repo, "2026-12-01", 1);
    let by_message: Vec<(String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["status"].as_str().unwrap_or_default().to_owned(),
                f["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        by_message.contains(&(
            "new".into(),
            "Certificate shop-example-com has no `env` label".into()
        )),
        "{by_message:?}"
    );
    assert!(
        by_message.contains(&(
            "resolved".into(),
            "Certificate shop-example-com has no `owner` label".into()
        )),
        "{by_message:?}"
    );
    assert!(
        by_message.contains(&(
            "existing".into(),
            "*.api.example.com is a wildcard; prod certificates name each host".into()
        )),
        "{by_message:?}"
    );
}

#[test]
fn whether_a_finding_is_new_does_not_rest_on_guessing_what_a_policy_reads() {
    let repo = TestRepo::with_example_open_gates();
    // input["commit"] is not spelled input.commit: the base must still be evaluated.
    repo.write("policies/approvals.rego", "package gitward.approvals\n\nimport rego.v1\n\ndeny contains \"needs an Approved-by trailer\" if {\n\tnot input[\"commit\"].trailers[\"Approved-by\"]\n\tinput.resource.metadata.labels.owner == \"payments\"\n}\n");
    repo.write("policies/approvals.yaml", "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: approved}\nspec:\n  module: policies/approvals.rego\n  rule: data.gitward.approvals.deny\n  appliesTo: {kinds: [Certificate]}\n");
    repo.commit("Approved-by: Bob <bob@example.com>\n\nApproval policy");
    repo.git(&[
        "commit",
        "-q",
        "--amend",
        "-m",
        "Approval policy\n\nApproved-by: Bob <bob@example.com>",
    ]);
    on_branch(&repo, |r| {
        r.edit(
            "certificates/staging/api.yaml",
            "duration: 30d",
            "duration: 14d",
        );
    });
    let report = plan_json(&repo, "2026-12-01", 1);
    let approved: Vec<&Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["policy"] == "approved")
        .collect();
    assert!(
        !approved.is_empty() && approved.iter().all(|f| f["status"] == "new"),
        "{approved:?}"
    );
}

#[test]
fn a_policy_that_would_exhaust_memory_fails_the_commit() {
    let run = labels_policy_fails("count(numbers.range(1, 3000000000)) > 0");
    // regorus's own check stops it, or the child it runs in reaches its memory limit first.
    assert!(
        run.stdout
            .contains("evaluation stopped at its limit: it would need more than 1 GiB")
            || run
                .stdout
                .contains("its evaluation crashed: memory ran out"),
        "{}",
        run.stdout
    );
}

#[test]
fn hostile_text_cannot_forge_output_lines_or_break_xml() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit("policies/labels.rego", "\"msg\": sprintf(\"%s %s has no `%s` label\", [input.kind, input.name, label]),", "\"msg\": sprintf(\"%s has no `%s` label\\n  NEW  forged\\u0001\\u001b[31m\", [input.name, label]),");
        r.edit("certificates/prod/api.yaml", "    owner: payments\n", "");
    });
    let run = repo
        .gitward(&[
            "plan",
            "--base",
            "main",
            "--head",
            "change",
            "--date",
            "2026-12-01",
        ])
        .expect(1);
    assert!(
        run.stdout
            .contains("api-example-com has no `owner` label\\n  NEW  forged\\u{1}\\u{1b}[31m"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\u{1b}'));
    repo.gitward(&[
        "plan", "--base", "main", "--head", "change", "--format", "junit", "-o", "plan.xml",
    ])
    .expect(1);
    let schema = project_dir().join("tests/fixtures/jenkins-xunit.junit-10.xsd");
    let lint = tool(
        "xmllint",
        &["--noout", "--schema", &schema.to_string_lossy(), "plan.xml"],
        repo.path(),
    );
    assert_eq!(lint.code, 0, "{}", lint.stderr);
}

#[test]
fn gitward_test_finds_indented_test_rules_but_not_local_variables() {
    let repo = TestRepo::with_example_open_gates();
    repo.write("policies/style_test.rego", "package gitward.style_test\n\nimport rego.v1\n\n  test_indented if {\n\ttest_local := 1\n\ttest_local == 1\n}\n");
    let run = repo.gitward(&["test", "--filter", "style_test"]).expect(0);
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("PASS  policies/style_test.rego  data.gitward.style_test.test_indented ("),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("1 passed, 0 failed\n"),
        "{}",
        run.stdout
    );
}

/// A policy that escapes every check on its text still cannot take gitward down: its
/// evaluation runs in a child process, which dies alone, and the commit fails naming it.
#[test]
fn a_policy_that_exhausts_memory_in_one_call_fails_the_commit_not_the_process() {
    let run = labels_policy_fails("count(sprintf(\"%0999999999d\", [1])) > 0");
    assert!(
        run.stdout.contains("memory ran out") || run.stdout.contains("stopped at its limit"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.len() < 64 * 1024, "{} bytes", run.stdout.len());
}

#[test]
fn long_messages_are_cut_and_too_many_findings_fail_the_policy() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit(
            "policies/labels.rego",
            "\"msg\": sprintf(\"%s %s has no `%s` label\", [input.kind, input.name, label]),",
            "\"msg\": sprintf(\"%s has no `%s` label %02000000d\", [input.name, label, 7]),",
        );
        r.edit("certificates/prod/api.yaml", "    owner: payments\n", "");
        r.write(
            "policies/many.rego",
            "package gitward.many\n\nimport rego.v1\n\ndeny contains sprintf(\"finding %d\", [i]) if {\n\tinput.name == \"api-example-com\"\n\tsome i in numbers.range(1, 101)\n}\n",
        );
        r.write(
            "policies/many.yaml",
            "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: many}\nspec:\n  module: policies/many.rego\n  rule: data.gitward.many.deny\n  appliesTo: {kinds: [Certificate]}\n  enforcement: warn\n",
        );
    });
    let run = repo
        .gitward(&[
            "plan", "--base", "main", "--head", "change", "--format", "json",
        ])
        .expect(2);
    let report: Value = serde_json::from_str(&run.stdout).expect("json report");
    let labels: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["policy"] == "required-labels")
        .filter_map(|f| f["message"].as_str())
        // The version in force judges the changed policy too, with its own message.
        .filter(|m| !m.starts_with("Certificate "))
        .collect();
    assert_eq!(labels.len(), 1, "{labels:?}");
    assert!(labels[0].starts_with("api-example-com has no `owner` label 0000"));
    assert!(
        labels[0].ends_with("… (1999037 more characters)"),
        "{}",
        &labels[0][900..]
    );
    assert!(
        run.stdout
            .contains("policy `many` failed on Certificate/api-example-com: it returned 101 findings for one resource; at most 100 are accepted"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.len() < 64 * 1024, "{} bytes", run.stdout.len());
}

#[test]
fn the_policies_of_a_commit_share_one_time_budget() {
    // Each resource takes its policy's own 2 s limit; together they exceed the host's budget
    // of 1 s long before every resource is reached.
    let repo = with_labels_condition(
        "count([1 | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); i * j < 0]) == 0",
    );
    let run = common::gitward_in_env(
        repo.path(),
        &["plan", "--base", "main", "--head", "change"],
        &[("GITWARD_POLICY_BUDGET_SECONDS", std::path::Path::new("1"))],
    )
    .expect(2);
    assert!(
        run.stdout
            .contains("the policies of this commit did not finish within 1s: evaluation stopped at policy `required-labels` on "),
        "{}",
        run.stdout
    );
}

#[test]
fn a_change_cannot_switch_off_the_policy_that_blocks_it() {
    let repo = TestRepo::with_example_open_gates();
    on_branch(&repo, |r| {
        r.edit("certificates/prod/api.yaml", "    owner: payments\n", "");
        r.edit(
            ".gitwardignore",
            "drafts/\n",
            "drafts/\npolicies/policies.yaml\n",
        );
    });
    let run = repo
        .gitward(&["plan", "--base", "main", "--head", "change"])
        .expect(1);
    assert!(
        run.stdout.contains(
            "policy `required-labels` (deny) is changed, removed or ignored by this change"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Certificate api-example-com has no `owner` label"),
        "{}",
        run.stdout
    );
    // Lowering the enforcement is the same as removing it.
    on_branch(&repo, |r| {
        r.edit("certificates/prod/api.yaml", "    owner: payments\n", "");
        let policies = r.read("policies/policies.yaml");
        let at = policies.find("name: required-labels").expect("the policy");
        let rest = &policies[at..];
        let enforcement = rest.find("enforcement: deny").expect("denies");
        let mut changed = policies.clone();
        changed.replace_range(
            at + enforcement..at + enforcement + "enforcement: deny".len(),
            "enforcement: audit",
        );
        r.write("policies/policies.yaml", changed);
    });
    let run = repo
        .gitward(&["plan", "--base", "main", "--head", "change"])
        .expect(1);
    assert!(
        run.stdout.contains("is changed, removed or ignored"),
        "{}",
        run.stdout
    );
    // So is emptying its rule, or excepting the very finding the change brings.
    for weaken in [
        (
            "policies/labels.rego",
            "\tsome label in required\n",
            "\tfalse\n\tsome label in required\n",
        ),
        (
            "policies/policies.yaml",
            "\"NIST-800-53:CM-8\"]\n",
            "\"NIST-800-53:CM-8\"]\n  exceptions:\n    - {resources: [Certificate/api-example-com], reason: later, owner: payments, expires: 2099-12-31}\n",
        ),
    ] {
        on_branch(&repo, |r| {
            r.edit("certificates/prod/api.yaml", "    owner: payments\n", "");
            r.edit(weaken.0, weaken.1, weaken.2);
        });
        let run = repo
            .gitward(&["plan", "--base", "main", "--head", "change"])
            .expect(1);
        assert!(
            run.stdout
                .contains("Certificate api-example-com has no `owner` label"),
            "{}",
            run.stdout
        );
    }
}
