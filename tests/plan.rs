//! `gitward plan` against real repositories: what each kind of change plans, and every
//! output format checked against its published schema.

use crate::common;

use common::{TestRepo, project_dir, tool};
use serde_json::Value;

/// The example on `main`, and a branch `change` with a typical pull request on it.
fn repo_with_change() -> TestRepo {
    let repo = TestRepo::with_example_open_gates();
    repo.git(&["checkout", "-q", "-b", "change"]);
    repo.edit(
        "certificates/prod/api.yaml",
        "    - api.internal.example.com\n",
        "    - api.internal.example.com\n    - api-v2.example.com\n",
    );
    repo.edit(
        "certificates/prod/shop.yaml",
        "owner: storefront",
        "owner: checkout",
    );
    repo.remove("certificates/staging/shop.yaml");
    repo.write(
        "certificates/prod/status.yaml",
        "apiVersion: gitward/v1\nkind: Certificate\nmetadata:\n  name: status-example-com\n  labels: {env: prod, owner: sre}\nspec:\n  issuerRef: example-issuing\n  dnsNames: [status.example.com]\n  target: web-tls\n",
    );
    repo.edit(
        "sinks/tickets.yaml",
        "minSeverity: critical",
        "minSeverity: high",
    );
    repo.commit("A change");
    repo
}

#[test]
fn a_change_lists_each_resource_with_its_change_action_and_fields() {
    let repo = repo_with_change();
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
        .expect(0);
    let body: Vec<&str> = run.stdout.lines().skip(2).collect();
    assert_eq!(
        body,
        [
            "  ~ Certificate/api-example-com     reissue  certificates/prod/api.yaml:1",
            "        spec.dnsNames: + api-v2.example.com",
            "        why: dnsNames changed",
            "  ~ Certificate/shop-example-com    none     certificates/prod/shop.yaml:2",
            "        metadata.labels.owner: storefront → checkout",
            "  - Certificate/shop-staging        remove   certificates/staging/shop.yaml:1",
            "        why: removed from the repository: gitward stops managing it; its files stay unless the target prunes",
            "  + Certificate/status-example-com  issue    certificates/prod/status.yaml:1",
            "        why: new certificate",
            "  ~ Sink/pagerduty-oncall           none     sinks/tickets.yaml:38",
            "        spec.minSeverity: critical → high",
            "",
            "Plan: 1 to issue, 1 to reissue, 1 to remove. Resources: 1 created, 3 updated, 1 deleted, 31 unchanged.",
            "Policies: full evaluation of 115 pairs: the base has no note with its evaluation.",
            "",
            "Gates:",
            "  prod-changes: pass  gates/prod-changes.yaml:4",
            "    applies to 3 resources: Certificate/api-example-com, Certificate/shop-example-com, Certificate/status-example-com",
            "    ✓ window: window open",
            "  staging-changes: pass  gates/staging-changes.yaml:1",
            "    applies to 1 resource: Certificate/shop-staging",
            "    ✓ window: window open",
            "",
            "Policy findings: 0 new, 1 existing, 0 resolved (1 excepted)",
            "",
            "  EXISTING  deny   medium    max-validity  certificates/prod/erp.yaml:16",
            "        legacy-erp is valid for 730d; prod serverAuth certificates may be valid for at most 398 days",
            "        excepted until 2027-03-31 (finance-it): The ERP appliance imports certificates by hand until its Q1 upgrade brings ACME (FIN-2291).",
            "",
            "If merged now: applied.",
        ]
    );
}

/// `main` moved after `change` branched off: the README's walk, step 2 (www from the private
/// CA) merged while the change waited.
fn repo_with_moved_base() -> TestRepo {
    let repo = repo_with_change();
    repo.git(&["checkout", "-q", "main"]);
    repo.edit(
        "certificates/prod/www.yaml",
        "issuerRef: public-acme",
        "issuerRef: example-issuing",
    );
    repo.commit("Issue www from the private CA");
    repo
}

/// The plan as programs read it, without what names the commits compared.
fn planned(report: &Value) -> Value {
    let mut report = report.clone();
    for key in ["base", "head", "compared"] {
        report.as_object_mut().expect("an object").remove(key);
    }
    report
}

#[test]
fn a_change_is_planned_as_its_merge_into_a_base_that_moved() {
    let repo = repo_with_moved_base();
    let (base, head) = (
        repo.git(&["rev-parse", "main"]),
        repo.git(&["rev-parse", "change"]),
    );
    let plan = |format: &str| {
        repo.gitward(&[
            "plan",
            "--base",
            "main",
            "--head",
            "change",
            "--date",
            "2026-12-01",
            "--format",
            format,
        ])
        .expect(0)
        .stdout
    };
    let objects = repo.git(&["count-objects", "-v"]);

    let text = plan("text");
    assert!(
        text.starts_with(&format!(
            "gitward plan: {} (Issue www from the private CA) → merge of {} (A change) into it\n",
            &base[..8],
            &head[..8]
        )),
        "{text}"
    );
    // What the branch changes, and nothing of what main did since: www is not sent back.
    assert!(!text.contains("www-example-com"), "{text}");
    assert!(
        text.contains("Plan: 1 to issue, 1 to reissue, 1 to remove."),
        "{text}"
    );

    let json: Value = serde_json::from_str(&plan("json")).expect("json");
    common::assert_matches_schema("schemas/plan.schema.json", &json);
    assert_eq!(json["base"]["sha"], base.as_str());
    assert_eq!(json["head"]["sha"], head.as_str());
    assert_eq!(json["compared"], "merge");

    let markdown = plan("markdown");
    assert!(
        markdown.contains(&format!(
            "`{}` Issue www from the private CA → merge of `{}` A change into it\n",
            &base[..8],
            &head[..8]
        )),
        "{markdown}"
    );
    let sarif: Value = serde_json::from_str(&plan("sarif")).expect("json");
    assert_eq!(
        sarif["runs"][0]["properties"],
        serde_json::json!({"base": base, "head": head, "compared": "merge"})
    );
    // Planning wrote nothing into the repository.
    assert_eq!(repo.git(&["count-objects", "-v"]), objects);

    // The plan is what the merge does: the same as planning the merge commit itself.
    repo.git(&["merge", "-q", "--no-edit", "change"]);
    let merge = repo
        .gitward(&[
            "plan",
            "--base",
            "main~1",
            "--head",
            "main",
            "--date",
            "2026-12-01",
            "--format",
            "json",
        ])
        .expect(0);
    let merge: Value = serde_json::from_str(&merge.stdout).expect("json");
    assert_eq!(merge["compared"], "head");
    assert_eq!(planned(&merge), planned(&json));
}

#[test]
fn a_change_that_conflicts_with_its_base_is_invalid_input() {
    let repo = repo_with_moved_base();
    repo.edit(
        "certificates/prod/api.yaml",
        "    - api.internal.example.com\n",
        "    - api.internal.example.com\n    - api-v3.example.com\n",
    );
    repo.edit(
        "certificates/prod/shop.yaml",
        "owner: storefront",
        "owner: shop",
    );
    repo.commit("Also on main");
    let (base, head) = (
        repo.git(&["rev-parse", "main"]),
        repo.git(&["rev-parse", "change"]),
    );
    for format in ["text", "json"] {
        let run = repo
            .gitward(&[
                "plan", "--base", "main", "--head", "change", "--format", format,
            ])
            .expect(2);
        assert_eq!(run.stdout, "", "{format}");
        assert_eq!(
            run.stderr,
            format!(
                "error: merging {} into {} conflicts in certificates/prod/api.yaml, certificates/prod/shop.yaml; a conflict cannot be planned: merge the base into the branch and resolve it first\n",
                &head[..8],
                &base[..8]
            ),
            "{format}"
        );
    }
}

#[test]
fn reissuing_a_ca_reissues_the_chain_below_it() {
    let repo = TestRepo::with_example_open_gates();
    repo.edit(
        "issuers/issuing-ca.yaml",
        "duration: 730d",
        "duration: 365d",
    );
    repo.commit("Shorter staging CA");
    let run = repo
        .gitward(&[
            "plan", "--base", "HEAD~1", "--head", "HEAD", "--format", "json",
        ])
        .expect(0);
    let report: Value = serde_json::from_str(&run.stdout).expect("json");
    let actions: Vec<(String, String, String)> = report["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or("")
                ),
                r["change"].as_str().unwrap_or("").to_owned(),
                r["action"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected = [
        ("Issuer/example-staging", "update", "reissue"),
        ("Certificate/api-staging", "none", "reissue"),
        ("Certificate/ingest-staging", "none", "reissue"),
        ("Certificate/preview-wildcard", "none", "reissue"),
        ("Certificate/shop-staging", "none", "reissue"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(actions, expected);
    assert_eq!(
        report["resources"][1]["reasons"][0],
        "its issuer `example-staging` is reissued"
    );
    assert_eq!(report["summary"]["reissue"], 5);
}

#[test]
fn moving_a_resource_to_another_file_changes_nothing() {
    let repo = TestRepo::with_example_open_gates();
    repo.git(&[
        "mv",
        "certificates/staging/api.yaml",
        "certificates/staging/api-gateway.yaml",
    ]);
    repo.commit("Rename");
    let run = repo
        .gitward(&["plan", "--base", "HEAD~1", "--head", "HEAD"])
        .expect(0);
    assert!(run.stdout.contains("  No changes.\n"), "{}", run.stdout);
}

#[test]
fn an_invalid_head_exits_2_and_reports_its_errors_in_every_format() {
    let repo = TestRepo::with_example_open_gates();
    repo.edit(
        "certificates/prod/api.yaml",
        "issuerRef: example-issuing",
        "issuerRef: example-isuing",
    );
    repo.commit("Typo");
    let error = "certificates/prod/api.yaml:10:3: unknown Issuer `example-isuing`; did you mean `example-issuing`?";
    let text = repo
        .gitward(&["plan", "--base", "HEAD~1", "--head", "HEAD"])
        .expect(2);
    assert!(text.stdout.contains(error), "{}", text.stdout);
    for format in ["markdown", "json", "sarif", "junit"] {
        let run = repo
            .gitward(&[
                "plan", "--base", "HEAD~1", "--head", "HEAD", "--format", format,
            ])
            .expect(2);
        assert_eq!(run.stderr, format!("{error}\n"), "{format}");
        assert!(
            run.stdout.contains("example-isuing"),
            "{format}: {}",
            run.stdout
        );
    }
}

#[test]
fn revisions_that_do_not_exist_are_usage_errors() {
    let repo = TestRepo::with_example_open_gates();
    let run = repo
        .gitward(&["plan", "--base", "main", "--head", "no-such-branch"])
        .expect(2);
    assert!(
        run.stderr
            .starts_with("error: revision `no-such-branch` not found"),
        "{}",
        run.stderr
    );
    let outside = tempfile::tempdir().expect("tempdir");
    let run = common::gitward_in(outside.path(), &["plan", "--base", "a", "--head", "b"]).expect(2);
    assert!(
        run.stderr.contains("not a Git repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_json_report_follows_its_published_schema() {
    let repo = repo_with_change();
    let run = repo
        .gitward(&[
            "plan", "--base", "main", "--head", "change", "--format", "json",
        ])
        .expect(0);
    let report: Value = serde_json::from_str(&run.stdout).expect("json");
    common::assert_matches_schema("schemas/plan.schema.json", &report);
    assert_eq!(report["formatVersion"], 1);
    assert_eq!(report["valid"], true);
    assert_eq!(report["head"]["summary"], "A change");
    // `change` contains `main`: merging it fast-forwards, and the head is compared as it is.
    assert_eq!(report["compared"], "head");
    assert_eq!(
        report["resources"][0]["diff"],
        serde_json::json!([{"path": "spec.dnsNames", "before": ["api.example.com", "api.internal.example.com"], "after": ["api.example.com", "api.internal.example.com", "api-v2.example.com"]}])
    );
}

#[test]
fn sarif_output_is_valid_and_points_at_the_yaml_lines() {
    let repo = repo_with_change();
    repo.edit(
        "certificates/prod/www.yaml",
        "duration: 90d",
        "duration: 90d\n  dnsName: oops",
    );
    repo.commit("Mistake");
    let run = repo
        .gitward(&[
            "plan",
            "--base",
            "main",
            "--head",
            "change",
            "--format",
            "sarif",
            "-o",
            "plan.sarif",
        ])
        .expect(2);
    assert_eq!(run.stdout, "");
    let sarif: Value = serde_json::from_str(&repo.read("plan.sarif")).expect("json");
    common::assert_matches_schema("tests/fixtures/sarif-schema-2.1.0.json", &sarif);

    let run0 = &sarif["runs"][0];
    let rules: Vec<&str> = run0["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    let results = run0["results"].as_array().expect("results");
    let located: Vec<(String, String, u64)> = results
        .iter()
        .filter(|r| r.get("locations").is_some())
        .map(|r| {
            let loc = &r["locations"][0]["physicalLocation"];
            assert!(rules.contains(&r["ruleId"].as_str().unwrap_or("")));
            (
                r["level"].as_str().unwrap_or("").to_owned(),
                loc["artifactLocation"]["uri"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                loc["region"]["startLine"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        located.contains(&(
            "error".to_owned(),
            "certificates/prod/www.yaml".to_owned(),
            17
        )),
        "{located:?}"
    );
    assert!(
        located.contains(&(
            "note".to_owned(),
            "certificates/prod/api.yaml".to_owned(),
            1
        )),
        "{located:?}"
    );
    assert!(
        located.contains(&(
            "note".to_owned(),
            "certificates/prod/status.yaml".to_owned(),
            1
        )),
        "{located:?}"
    );
}

#[test]
fn junit_output_validates_against_the_strict_and_the_lenient_schema() {
    let repo = repo_with_change();
    repo.gitward(&[
        "plan", "--base", "main", "--head", "change", "--format", "junit", "-o", "ok.xml",
    ])
    .expect(0);
    repo.edit(
        "certificates/prod/www.yaml",
        "duration: 90d",
        "duration: 90",
    );
    repo.commit("Mistake");
    repo.gitward(&[
        "plan", "--base", "main", "--head", "change", "--format", "junit", "-o", "bad.xml",
    ])
    .expect(2);
    assert!(repo.read("bad.xml").contains("<failure message=\"1 error(s)\" type=\"failure\">certificates/prod/www.yaml:16:13: spec.duration must be a string, not an integer"));
    for xsd in ["windyroad.JUnit.xsd", "jenkins-xunit.junit-10.xsd"] {
        let schema = project_dir().join("tests/fixtures").join(xsd);
        for file in ["ok.xml", "bad.xml"] {
            let run = tool(
                "xmllint",
                &["--noout", "--schema", &schema.to_string_lossy(), file],
                repo.path(),
            );
            assert_eq!(run.code, 0, "{file} against {xsd}: {}", run.stderr);
        }
    }
}

#[test]
fn markdown_output_is_a_pull_request_comment() {
    let repo = repo_with_change();
    let run = repo
        .gitward(&[
            "plan", "--base", "main", "--head", "change", "--format", "markdown",
        ])
        .expect(0);
    let md = run.stdout;
    assert!(md.starts_with("<!-- gitward:plan -->\n### gitward plan: ✅ would apply · 1 to issue · 1 to reissue · 1 to remove\n"), "{md}");
    assert!(md.contains("| ✏️ | `Certificate/api-example-com` | update | **reissue** | dnsNames changed | `certificates/prod/api.yaml`:1 |"), "{md}");
    assert!(
        md.contains("| `spec.dnsNames` | + api-v2.example.com |"),
        "{md}"
    );
}

#[test]
fn a_configuration_in_a_subdirectory_plans_on_its_own() {
    let repo = TestRepo::new();
    repo.write("app/main.go", "package main\n");
    common::copy_dir(&project_dir().join("example-repo"), &{
        let dir = repo.path().join("infra/pki");
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    });
    common::open_gates(&repo.path().join("infra/pki"));
    repo.commit("Monorepo");
    repo.edit(
        "infra/pki/certificates/staging/api.yaml",
        "duration: 30d",
        "duration: 14d",
    );
    repo.commit("Shorter");
    let sub = repo.path().join("infra/pki");
    let run = common::gitward_in(&sub, &["plan", "--base", "HEAD~1", "--head", "HEAD"]).expect(0);
    assert!(
        run.stdout
            .contains("  ~ Certificate/api-staging  reissue  certificates/staging/api.yaml:1"),
        "{}",
        run.stdout
    );
    common::gitward_in(&sub, &["validate", "--rev", "HEAD"]).expect(0);
    // Before the configuration existed, everything is a creation.
    let first = repo.git(&["rev-list", "--max-parents=0", "HEAD"]);
    repo.write("README.md", "monorepo\n");
    let root = repo.git(&["commit-tree", "-m", "empty", &repo.git(&["mktree"])]);
    let run = common::gitward_in(&sub, &["plan", "--base", &root, "--head", &first]).expect(0);
    assert!(
        run.stdout.contains("Resources: 35 created"),
        "{}",
        run.stdout
    );
}

#[test]
fn sarif_locations_are_relative_to_the_repository_root_and_encoded() {
    let repo = TestRepo::new();
    let pki = repo.path().join("infra/pki");
    std::fs::create_dir_all(&pki).expect("mkdir");
    common::copy_dir(&project_dir().join("example-repo"), &pki);
    common::open_gates(&pki);
    repo.commit("Monorepo");
    repo.write("infra/pki/certificates/new cert #1.yaml", "apiVersion: gitward/v1\nkind: Certificate\nmetadata:\n  name: new-cert\n  labels: {env: staging, owner: web}\nspec:\n  issuerRef: example-staging\n  dnsNames: [new.staging.example.com]\n  target: web-tls\n");
    repo.commit("A new certificate");
    let run = common::gitward_in(
        &pki,
        &[
            "plan", "--base", "HEAD~1", "--head", "HEAD", "--format", "sarif",
        ],
    )
    .expect(0);
    let sarif: Value = serde_json::from_str(&run.stdout).expect("json");
    let uris: Vec<&str> = sarif["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["ruleId"] == "gitward/plan/issue")
        .filter_map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str())
        .collect();
    assert_eq!(uris, ["infra/pki/certificates/new%20cert%20%231.yaml"]);
}

#[test]
fn the_git_directory_stands_for_the_whole_repository() {
    let repo = TestRepo::with_example_open_gates();
    let run =
        common::gitward_in(&repo.path().join(".git"), &["validate", "--rev", "HEAD"]).expect(0);
    assert!(
        run.stdout.starts_with("valid: 4 issuers, 11 certificates"),
        "{}",
        run.stdout
    );
}

/// What a hostile writer puts in a commit summary or a policy message: a comment that would
/// hide the rest of a pull-request comment, a mention, a script, a right-to-left override.
const HOSTILE: &str = "<!-- hide @platform-team <script>alert(1)</script> \u{202e}txt.exe";

#[test]
fn hostile_summaries_and_policy_messages_render_inert_in_every_format() {
    let repo = TestRepo::with_example_open_gates();
    repo.git(&["checkout", "-q", "-b", "change"]);
    let policy = "apiVersion: gitward/v1\nkind: Policy\nmetadata:\n  name: hostile\n  labels: {owner: platform-security}\nspec:\n  module: policies/hostile.rego\n  rule: data.gitward.hostile.deny\n  appliesTo:\n    kinds: [Certificate]\n  enforcement: warn\n  severity: low\n";
    repo.write("policies/hostile.yaml", policy);
    // Rego escapes: the message also holds control characters XML 1.0 forbids.
    let rego = format!(
        "package gitward.hostile\n\nimport rego.v1\n\ndeny contains msg if {{\n\tinput.name == \"api-example-com\"\n\tmsg := \"{} \\u0001\\u000b\\ufffe ``` end\"\n}}\n",
        HOSTILE.replace('"', "\\\"")
    );
    repo.write("policies/hostile.rego", rego);
    let head = repo.commit(HOSTILE);
    let plan = |format: &str| {
        repo.gitward(&[
            "plan", "--base", "main", "--head", "change", "--format", format,
        ])
        .expect(0)
        .stdout
    };

    let md = plan("markdown");
    // The only comment is the marker: every other `<` is escaped.
    assert_eq!(
        md.matches("<!--").count() - md.matches("\\<!--").count(),
        1,
        "{md}"
    );
    for raw in ["<script>", "@platform-team", "\u{202e}", "\u{1}"] {
        assert!(!md.contains(raw), "{raw:?} in {md}");
    }
    let inert =
        "\\<!-- hide @&#8203;platform-team \\<script\\>alert(1)\\</script\\> \\\\u{202e}txt.exe";
    assert!(
        md.contains(&format!("→ `{}` {inert}\n", &head[..8])),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "| {inert} \\\\u{{1}}\\\\u{{b}}\\\\u{{fffe}} \\`\\`\\` end |"
        )),
        "{md}"
    );
    let text = plan("text");
    assert!(!text.contains('\u{202e}'), "{text}");
    assert!(
        text.contains("\\u{202e}txt.exe \\u{1}\\u{b}\\u{fffe}"),
        "{text}"
    );

    let sarif: Value = serde_json::from_str(&plan("sarif")).expect("json");
    common::assert_matches_schema("tests/fixtures/sarif-schema-2.1.0.json", &sarif);
    assert!(
        sarif.to_string().contains("txt.exe \\u0001\\u000b\u{fffe}"),
        "JSON carries the text as it is"
    );
    repo.write("plan.xml", plan("junit"));
    for xsd in ["windyroad.JUnit.xsd", "jenkins-xunit.junit-10.xsd"] {
        let schema = project_dir().join("tests/fixtures").join(xsd);
        let run = tool(
            "xmllint",
            &["--noout", "--schema", &schema.to_string_lossy(), "plan.xml"],
            repo.path(),
        );
        assert_eq!(run.code, 0, "against {xsd}: {}", run.stderr);
    }
}
