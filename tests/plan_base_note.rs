//! `gitward plan` on a base the daemon reconciled: its note records the base's evaluation, and
//! plan evaluates only what the change can alter. Over a series of commits written by
//! `gitward reconcile --once`, the report with the note and with `--full` is the same, byte
//! for byte, but for the `evaluation` field that says which ran; notes that cannot stand for
//! the base (missing, forged, from another day) are not used.

use crate::common;

use common::assert_matches_schema;
use common::host::{Host, ISSUERS, certificate};
use serde_json::Value;

const NOW: &str = "2026-12-01T10:00:00Z";
const TODAY: &str = "2026-12-01";

const POLICIES: &str = "apiVersion: gitward/v1
kind: Policy
metadata: {name: max-days}
spec:
  module: policies/days.rego
  rule: data.gitward.days.deny
  appliesTo: {kinds: [Certificate]}
  enforcement: deny
  severity: high
  compliance: [\"PCI-DSS:4.2.1\"]
---
apiVersion: gitward/v1
kind: Policy
metadata: {name: new-things}
spec:
  module: policies/change.rego
  rule: data.gitward.change.warn
  appliesTo: {kinds: [Certificate]}
  enforcement: warn
  severity: low
---
apiVersion: gitward/v1
kind: Policy
metadata: {name: one-claimant}
spec:
  module: policies/unique.rego
  rule: data.gitward.unique.warn
  appliesTo: {kinds: [Certificate]}
  enforcement: warn
  severity: medium
---
apiVersion: gitward/v1
kind: Policy
metadata: {name: same-issuer}
spec:
  module: policies/inventory.rego
  rule: data.gitward.inventory.warn
  appliesTo: {kinds: [Certificate]}
  enforcement: audit
  severity: info
---
apiVersion: gitward/v1
kind: Policy
metadata: {name: team-label}
spec:
  module: policies/team.rego
  rule: data.gitward.team.warn
  appliesTo: {kinds: [Certificate, Issuer]}
  enforcement: warn
  severity: low
";

/// Longest validity, from the policy data.
const DAYS: &str = "package gitward.days\n\nimport rego.v1\n\ndeny contains finding if {\n\tdays := input.computed.durationSeconds / 86400\n\tdays > data.limits.maxDays\n\tfinding := {\"msg\": sprintf(\"%s is valid for %d days\", [input.name, days]), \"field\": \"spec.duration\"}\n}\n";
/// Reads `input.change`: what a review saw created.
const CHANGE: &str = "package gitward.change\n\nimport rego.v1\n\nwarn contains msg if {\n\tinput.change.action == \"create\"\n\tmsg := sprintf(\"%s is new\", [input.name])\n}\n";
/// Reads `input.index`: names claimed twice.
const UNIQUE: &str = "package gitward.unique\n\nimport rego.v1\n\nwarn contains finding if {\n\tsome i, name in input.resource.spec.dnsNames\n\tcount(input.index.dnsNames[name]) > 1\n\tfinding := {\"msg\": sprintf(\"%s is claimed twice\", [name]), \"field\": sprintf(\"spec.dnsNames[%d]\", [i])}\n}\n";
/// Reads the inventory of issuers.
const INVENTORY: &str = "package gitward.inventory\n\nimport rego.v1\n\nwarn contains msg if {\n\tcount(data.gitward.inventory.Issuer) > 1\n\tmsg := sprintf(\"%s is one of %d issuers' certificates\", [input.name, count(data.gitward.inventory.Issuer)])\n}\n";
/// Reads only its resource: a finding on every one, existing from commit to commit.
const TEAM: &str = "package gitward.team\n\nimport rego.v1\n\nwarn contains msg if {\n\tnot input.resource.metadata.labels.team\n\tmsg := sprintf(\"%s has no team label\", [input.name])\n}\n";

fn cert(name: &str, names: &[&str], duration: &str) -> String {
    certificate(
        name,
        &format!(
            "  dnsNames: [{}]\n  duration: {duration}\n",
            names.join(", ")
        ),
    )
}

fn setup() -> Host {
    Host::new(&[
        ("issuers.yaml", ISSUERS),
        (
            "certificates/web.yaml",
            &cert("web", &["web.example.com"], "90d"),
        ),
        (
            "certificates/api.yaml",
            &cert("api", &["api.example.com"], "90d"),
        ),
        (
            "certificates/shop.yaml",
            &cert("shop", &["shop.example.com"], "90d"),
        ),
        ("policies/policies.yaml", POLICIES),
        ("policies/days.rego", DAYS),
        ("policies/change.rego", CHANGE),
        ("policies/unique.rego", UNIQUE),
        ("policies/inventory.rego", INVENTORY),
        ("policies/team.rego", TEAM),
        ("policies/data/limits.yaml", "maxDays: 200\n"),
    ])
}

/// Reconciles the branch head as at [`NOW`]; the result as the daemon records it.
fn reconcile(host: &Host) -> String {
    let run = host.reconcile(&["--now", NOW]);
    assert!(
        run.code == 0 || run.code == 1,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    let result = host.repo.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Gitward-Result,valueonly)",
        "gitward/status",
    ]);
    eprintln!("{result}: {}{}", run.stdout, run.stderr);
    result
}

fn head(host: &Host) -> String {
    host.repo.git(&["rev-parse", "HEAD"])
}

/// The note on `commit`, as YAML turned JSON.
fn note(host: &Host, commit: &str) -> Value {
    let text = host
        .repo
        .git(&["notes", "--ref", "gitward", "show", commit]);
    serde_yaml::from_str(&text).expect("a note is YAML")
}

/// `plan` of `head` on `base` in `format`, on `date`, with `extra` arguments.
fn plan(host: &Host, base: &str, head: &str, format: &str, date: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "plan", "--base", base, "--head", head, "--format", format, "--date", date, "--now", NOW,
    ];
    args.extend_from_slice(extra);
    let run = host.repo.gitward(&args);
    assert!(
        run.code == 0 || run.code == 1,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// Plans `head` on `base` with the note and with `--full`: the same report, and with the note
/// the evaluation `expected` says (`note` or `full`). Returns the report with the note.
fn same_either_way(host: &Host, base: &str, head: &str, date: &str, expected: &str) -> Value {
    let with_note = plan(host, base, head, "json", date, &[]);
    let full = plan(host, base, head, "json", date, &["--full"]);
    let mut noted: Value = serde_json::from_str(&with_note).expect("JSON");
    let mut fully: Value = serde_json::from_str(&full).expect("JSON");
    let evaluation = noted
        .as_object_mut()
        .and_then(|o| o.remove("evaluation"))
        .expect("an evaluation field");
    let forced = fully
        .as_object_mut()
        .and_then(|o| o.remove("evaluation"))
        .expect("an evaluation field");
    assert_eq!(forced["base"], "full");
    assert_eq!(forced["reason"], "--full");
    // Byte for byte, once the field is gone from both.
    let text = |v: &Value| serde_json::to_string_pretty(v).expect("JSON");
    assert!(
        text(&noted) == text(&fully),
        "{base}..{head}:\n{}\n--- --full\n{}",
        text(&noted),
        text(&fully)
    );
    assert_eq!(evaluation["base"], expected, "{base}..{head}: {evaluation}");
    assert_eq!(evaluation["total"], forced["total"]);
    // JUnit lists every pair either way (its timestamps are the clock's).
    let stamp = regex::Regex::new(r#"timestamp="[^"]*""#).expect("regex");
    let junit = |extra: &[&str]| {
        let xml = plan(host, base, head, "junit", date, extra);
        stamp.replace_all(&xml, "timestamp").into_owned()
    };
    let xml = junit(&[]);
    assert!(xml.matches("<testcase ").count() > 10, "{xml}");
    assert_eq!(xml, junit(&["--full"]));
    noted
        .as_object_mut()
        .map(|o| o.insert("evaluation".into(), evaluation));
    noted
}

#[test]
fn plan_on_a_reconciled_base_reports_what_a_full_evaluation_does() {
    let host = setup();
    let repo = &host.repo;
    let mut noted = Vec::new();
    assert_eq!(reconcile(&host), "applied");
    noted.push(head(&host));

    // A certificate change: a name claimed twice (input.index).
    repo.write(
        "certificates/api.yaml",
        cert("api", &["api.example.com", "shop.example.com"], "90d"),
    );
    repo.commit("api also serves shop");
    assert_eq!(reconcile(&host), "applied");
    noted.push(head(&host));
    // A side branch from here, merged later into a base that moved on.
    repo.git(&["branch", "side"]);

    // A policy change: every result can differ.
    repo.edit(
        "policies/team.rego",
        "has no team label",
        "lacks a team label",
    );
    repo.commit("clearer team message");
    assert_eq!(reconcile(&host), "applied");
    noted.push(head(&host));

    // A rename: the same certificate at another path.
    repo.git(&[
        "mv",
        "certificates/shop.yaml",
        "certificates/storefront.yaml",
    ]);
    repo.commit("shop moves");
    assert_eq!(reconcile(&host), "applied");
    noted.push(head(&host));

    // An exception added, for a certificate to come.
    repo.edit(
        "policies/policies.yaml",
        "  compliance: [\"PCI-DSS:4.2.1\"]\n",
        "  compliance: [\"PCI-DSS:4.2.1\"]\n  exceptions:\n    - resources: [Certificate/legacy]\n      reason: imports by hand\n      owner: ops\n      expires: 2027-06-30\n",
    );
    repo.commit("legacy excepted");
    assert_eq!(reconcile(&host), "applied");
    noted.push(head(&host));

    // The certificate valid too long, excepted.
    repo.write(
        "certificates/legacy.yaml",
        cert("legacy", &["legacy.example.com"], "365d"),
    );
    repo.commit("legacy appliance");
    assert_eq!(reconcile(&host), "applied");
    noted.push(head(&host));

    // Another, not excepted: denied, the commit is blocked; its note still has its
    // evaluation. Then it goes, reviewed against the last commit applied.
    repo.write(
        "certificates/legacy-two.yaml",
        cert("legacy-two", &["legacy-two.example.com"], "365d"),
    );
    repo.commit("another legacy appliance");
    assert_eq!(reconcile(&host), "blocked");
    noted.push(head(&host));
    repo.remove("certificates/legacy-two.yaml");
    repo.commit("not that one");
    assert_eq!(reconcile(&host), "applied");
    noted.push(head(&host));

    // A commit the daemon never saw: no note.
    repo.edit("certificates/web.yaml", "90d", "60d");
    let unseen = repo.commit("web renews sooner");
    repo.edit("certificates/web.yaml", "60d", "45d");
    repo.commit("web renews sooner still");
    assert_eq!(reconcile(&host), "applied");
    let last = head(&host);
    repo.write(
        "certificates/status.yaml",
        cert("status", &["status.example.com", "web.example.com"], "30d"),
    );
    let next = repo.commit("status page");

    // The notes as the daemon wrote them: the evaluation, small, in the published schema.
    for commit in noted.iter().chain([&last]) {
        let note = note(&host, commit);
        assert_matches_schema("schemas/note.schema.json", &note);
        let evaluation = &note["evaluation"];
        assert_eq!(evaluation["day"], TODAY, "{note}");
        assert!(
            evaluation["policies"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:"))
        );
        assert!(
            evaluation["pairs"].as_u64().is_some_and(|n| n >= 15),
            "{note}"
        );
    }
    // The change policy reads `input.change`: the note keeps what its review saw created.
    assert_eq!(
        note(&host, &noted[5])["evaluation"]["changed"],
        serde_json::json!(["Certificate/legacy"])
    );
    assert_eq!(
        note(&host, &noted[6])["evaluation"]["changed"],
        serde_json::json!(["Certificate/legacy-two"])
    );
    let listed = repo.git(&["notes", "--ref", "gitward", "list"]);
    assert_eq!(listed.lines().count(), noted.len() + 1, "{listed}");
    assert!(listed.lines().all(|l| !l.ends_with(&unseen)), "{listed}");

    let mut commits = noted.clone();
    commits.push(unseen.clone());
    commits.push(last.clone());
    commits.push(next.clone());
    let mut partial = 0;
    for pair in commits.windows(2) {
        let expected = if pair[0] == unseen { "full" } else { "note" };
        let report = same_either_way(&host, &pair[0], &pair[1], TODAY, expected);
        let evaluation = &report["evaluation"];
        if expected == "full" {
            assert_eq!(
                evaluation["reason"], "the base has no note with its evaluation",
                "{evaluation}"
            );
        } else {
            assert!(evaluation.get("reason").is_none(), "{evaluation}");
            partial += usize::from(evaluation["pairs"].as_u64() < evaluation["total"].as_u64());
        }
    }
    // Most changes evaluate a part: not the policy change, not a new issuer count.
    assert!(partial >= 8, "{partial}");

    // The side branch does not contain the base: the base against the merge.
    let merged = same_either_way(&host, &noted[7], "side", TODAY, "note");
    assert_eq!(merged["compared"], "merge");

    // Text and Markdown say which ran.
    let text = plan(&host, &last, &next, "text", TODAY, &[]);
    let line = text
        .lines()
        .find(|l| l.starts_with("Policies: "))
        .expect("a Policies line");
    assert!(
        line.contains("pairs; the rest from the base's note (same policies)."),
        "{line}"
    );
    let markdown = plan(&host, &unseen, &last, "markdown", TODAY, &[]);
    // Two issuers and four certificates: five policies on each certificate, one on issuers.
    assert!(
        markdown.contains(
            "\n<sub>Policies: full evaluation of 22 pairs: the base has no note with its evaluation</sub>\n"
        ),
        "{markdown}"
    );

    // A note from another day stands while no policy reads the clock: the exceptions are
    // judged on the day planned, after one has expired too.
    same_either_way(&host, &last, &next, "2026-12-02", "note");
    same_either_way(&host, &last, &next, "2027-07-01", "note");

    // A forged note, its digest not the base's: ignored, the tree is evaluated.
    let text = repo.git(&["notes", "--ref", "gitward", "show", &last]);
    let digest = note(&host, &last)["evaluation"]["policies"]
        .as_str()
        .expect("digest")
        .to_owned();
    let forged = text.replace(&digest, &format!("sha256:{}", "0".repeat(64)));
    assert_ne!(forged, text);
    repo.git(&[
        "notes", "--ref", "gitward", "add", "-f", "-m", &forged, &last,
    ]);
    let report = same_either_way(&host, &last, &next, TODAY, "full");
    assert_eq!(
        report["evaluation"]["reason"],
        "the base's note was made with other policies, or another gitward"
    );
}
