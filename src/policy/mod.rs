//! Policy as code: Rego modules compiled with regorus, Policy resources bound to their rules,
//! findings on resources, the comparison of a head's findings with a base's, exceptions, and
//! `gitward test`.

pub mod analyze;
pub mod compile;
pub mod evaluate;
pub mod isolate;
pub mod reads;
pub mod testing;

use std::collections::HashMap;

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::Serialize;

pub use compile::{Binding, PolicySet, compile};
pub use evaluate::{AppliedException, Context, Evaluation, Finding, FindingStatus, commit_input};

use crate::model::semantic::date;
use crate::model::{Catalog, Kind, Spec};

/// Marks each head finding new or existing against the base, and adds the base's findings
/// that are gone as resolved. The base must have been evaluated on every pair (policy,
/// resource) the head has findings for, where it has both: a finding on a pair the base did
/// not evaluate is new — unless `base_complete` says the base's findings are all there are.
pub fn compare(head: Vec<Finding>, base: &Evaluation, base_complete: bool) -> Vec<Finding> {
    let mut unmatched: HashMap<_, Vec<&Finding>> = HashMap::new();
    for f in &base.findings {
        unmatched.entry(f.identity()).or_default().push(f);
    }
    let mut out: Vec<Finding> = head
        .into_iter()
        .map(|mut f| {
            let evaluated = base_complete
                || base
                    .evaluated
                    .contains(&(f.policy.clone(), f.kind, f.name.clone()));
            let matched = evaluated
                && unmatched
                    .get_mut(&f.identity())
                    .and_then(Vec::pop)
                    .is_some();
            f.status = if matched {
                FindingStatus::Existing
            } else {
                FindingStatus::New
            };
            f
        })
        .collect();
    let mut resolved: Vec<Finding> = unmatched
        .into_values()
        .flatten()
        .map(|f| Finding {
            status: FindingStatus::Resolved,
            exception: None,
            ..f.clone()
        })
        .collect();
    // A total order: the base's findings come out of a map, and reports are compared by bytes.
    resolved.sort_by(|a, b| {
        (
            &a.file, a.line, a.column, &a.policy, &a.message, &a.field, &a.id,
        )
            .cmp(&(
                &b.file, b.line, b.column, &b.policy, &b.message, &b.field, &b.id,
            ))
    });
    out.extend(resolved);
    out
}

/// How close an exception is to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExceptionState {
    Active,
    /// Ends within [`EXPIRING_WITHIN_DAYS`] days.
    Expiring,
    /// Ended: its findings count again.
    Expired,
}

/// An exception ending this soon is reported as expiring.
pub const EXPIRING_WITHIN_DAYS: i64 = 14;

/// An exception of a policy, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ExceptionReport {
    pub policy: String,
    pub resources: Vec<String>,
    pub reason: String,
    pub owner: String,
    pub expires: String,
    pub state: ExceptionState,
    /// Days from today to the last day (negative once expired).
    #[serde(rename = "daysLeft")]
    pub days_left: i64,
    pub file: String,
    pub line: u32,
}

/// Every exception of every policy, with its state on `today`.
pub fn exceptions(catalog: &Catalog, today: NaiveDate) -> Vec<ExceptionReport> {
    let mut out = Vec::new();
    for loaded in catalog.of_kind(Kind::Policy) {
        let Spec::Policy(spec) = &loaded.resource.spec else {
            continue;
        };
        for (i, exception) in spec.exceptions.iter().enumerate() {
            let Some(last) = date(&exception.expires) else {
                continue;
            };
            let days_left = (last - today).num_days();
            let state = match days_left {
                d if d < 0 => ExceptionState::Expired,
                d if d < EXPIRING_WITHIN_DAYS => ExceptionState::Expiring,
                _ => ExceptionState::Active,
            };
            out.push(ExceptionReport {
                policy: loaded.name().to_owned(),
                resources: exception.resources.clone(),
                reason: exception.reason.clone(),
                owner: exception.owner.clone(),
                expires: exception.expires.clone(),
                state,
                days_left,
                file: loaded.file.to_string(),
                line: loaded.locate(["spec", "exceptions", &i.to_string()]).line,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(files: &[(&str, &str)]) -> Catalog {
        Catalog::from_texts(files)
    }

    const ISSUER: &str = "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: ca, labels: {env: prod}}\nspec:\n  selfSigned: {commonName: CA}\n";

    fn cert(name: &str, dns: &str) -> String {
        format!(
            "apiVersion: gitward/v1\nkind: Certificate\nmetadata: {{name: {name}, labels: {{env: prod}}}}\nspec:\n  issuerRef: ca\n  dnsNames: [{dns}]\n  target: web\n"
        )
    }

    const POLICY: &str = "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: no-test-hosts}\nspec:\n  module: p.rego\n  rule: data.p.deny\n  appliesTo: {kinds: [Certificate], selector: {env: prod}}\n  exceptions:\n    - {resources: [Certificate/b], reason: migrating, owner: web, expires: 2027-01-31}\n";

    const MODULE: &str = "package p\n\nimport rego.v1\n\ndeny contains {\"msg\": sprintf(\"%s is a test host\", [name]), \"field\": sprintf(\"spec.dnsNames[%d]\", [i])} if {\n\tsome i, name in input.resource.spec.dnsNames\n\tstartswith(name, \"test.\")\n}\n";

    fn context(day: &str) -> Context {
        Context {
            commit: serde_json::json!({}),
            changes: HashMap::new(),
            today: date(day).expect("a date"),
        }
    }

    #[test]
    fn findings_carry_policy_metadata_and_the_field_line() {
        let catalog = catalog(&[
            ("ca.yaml", ISSUER),
            ("a.yaml", &cert("a", "ok.example.com, test.example.com")),
            ("p.yaml", POLICY),
            ("p.rego", MODULE),
        ]);
        let (set, problems) = compile(&catalog);
        assert_eq!(problems, vec![]);
        assert_eq!(set.bindings.len(), 1);
        assert_eq!(set.bindings[0].reads, reads::Reads::default());
        let evaluation = set.evaluate(&catalog, &context("2026-12-01"), &|_, _| true);
        assert_eq!(evaluation.errors, vec![]);
        let f = &evaluation.findings[0];
        assert_eq!(
            (f.policy.as_str(), f.name.as_str(), f.line, f.column),
            ("no-test-hosts", "a", 6, 30)
        );
        assert_eq!(f.message, "test.example.com is a test host");
        assert_eq!(f.enforcement, crate::model::Enforcement::Deny);
        assert_eq!(evaluation.evaluated.len(), 1);
    }

    #[test]
    fn exceptions_excuse_until_their_last_day() {
        let catalog = catalog(&[
            ("ca.yaml", ISSUER),
            ("b.yaml", &cert("b", "test.example.com")),
            ("p.yaml", POLICY),
            ("p.rego", MODULE),
        ]);
        let (set, _) = compile(&catalog);
        let on = |day: &str| {
            set.evaluate(&catalog, &context(day), &|_, _| true).findings[0]
                .exception
                .clone()
        };
        assert_eq!(on("2027-01-31").map(|e| e.owner), Some("web".to_owned()));
        assert_eq!(on("2027-02-01"), None);
        let states: Vec<ExceptionState> = ["2026-12-01", "2027-01-20", "2027-02-01"]
            .iter()
            .map(|d| exceptions(&catalog, date(d).expect("date"))[0].state)
            .collect();
        assert_eq!(
            states,
            [
                ExceptionState::Active,
                ExceptionState::Expiring,
                ExceptionState::Expired
            ]
        );
    }

    #[test]
    fn the_engine_holds_what_the_policies_read_and_inputs_their_own_index() {
        // One policy reads the certificates' inventory and the names index, another only its
        // input's index: both see every claimant, whatever else is left out of the data.
        let inventory = "package p\n\nimport rego.v1\n\ndeny contains sprintf(\"%d certificates, %v\", [count(data.gitward.inventory.Certificate), data.gitward.index.dnsNames[\"shared.example.com\"]]) if input.name == \"a\"\n";
        let own = "package q\n\nimport rego.v1\n\ndeny contains sprintf(\"claimed by %v\", [input.index.dnsNames[\"shared.example.com\"]]) if input.name == \"b\"\n";
        let second = POLICY
            .replace("no-test-hosts", "own-index")
            .replace("p.rego", "q.rego")
            .replace("data.p.deny", "data.q.deny");
        let files = [
            ("ca.yaml", ISSUER),
            ("a.yaml", &cert("a", "shared.example.com")),
            ("b.yaml", &cert("b", "shared.example.com, b.example.com")),
            ("p.yaml", POLICY),
            ("p.rego", inventory),
            ("q.yaml", &second),
            ("q.rego", own),
        ];
        let messages = |files: &[(&str, &str)]| {
            let catalog = catalog(files);
            let (set, problems) = compile(&catalog);
            assert_eq!(problems, vec![]);
            let evaluation = set.evaluate(&catalog, &context("2026-12-01"), &|_, _| true);
            assert_eq!(evaluation.errors, vec![]);
            evaluation
                .findings
                .iter()
                .map(|f| f.message.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            messages(&files),
            [
                "2 certificates, [\"a\", \"b\"]",
                "claimed by [\"a\", \"b\"]"
            ]
        );
        // Without the reader of the inventory, the other still sees its claimants.
        assert_eq!(
            messages(&[files[0], files[1], files[2], files[5], files[6]]),
            ["claimed by [\"a\", \"b\"]"]
        );
    }

    #[test]
    fn what_a_policy_reads_is_found_through_imports() {
        let reader = "package q\n\nimport rego.v1\n\n# data.gitward in a comment does not count\nowned(n) if data.gitward.inventory.Certificate[n]\n";
        let user = "package p\n\nimport rego.v1\n\nimport data.q\n\ndeny contains \"x\" if q.owned(input.name)\n";
        let catalog = catalog(&[("p.yaml", POLICY), ("p.rego", user), ("q.rego", reader)]);
        let (set, problems) = compile(&catalog);
        assert_eq!(problems, vec![]);
        assert_eq!(
            set.bindings[0].reads.kinds,
            [Kind::Certificate].into_iter().collect()
        );
        let commented = catalog_with_module(
            "package p\n\nimport rego.v1\n\n# input.commit is not read here\ndeny contains \"x\" if false\n",
        );
        assert_eq!(
            compile(&commented).0.bindings[0].reads,
            reads::Reads::default()
        );
    }

    fn catalog_with_module(module: &str) -> Catalog {
        catalog(&[("p.yaml", POLICY), ("p.rego", module)])
    }

    fn finding(policy: &str, name: &str, field: &str, message: &str) -> Finding {
        Finding {
            policy: policy.to_owned(),
            enforcement: crate::model::Enforcement::Deny,
            severity: crate::model::FindingSeverity::High,
            kind: Kind::Certificate,
            name: name.to_owned(),
            file: format!("{name}.yaml"),
            line: 1,
            column: 1,
            field: Some(field.to_owned()),
            id: None,
            message: message.to_owned(),
            compliance: Vec::new(),
            status: FindingStatus::New,
            exception: None,
        }
    }

    #[test]
    fn comparison_tells_new_existing_and_resolved_apart() {
        let base = Evaluation {
            findings: vec![
                finding("p", "a", "spec.dnsNames[2]", "*.example.com is a wildcard"),
                finding("p", "a", "metadata.labels", "a has no owner label"),
                finding("p", "b", "spec.y", "b is wrong"),
            ],
            errors: Vec::new(),
            evaluated: [("p", "a"), ("p", "b"), ("q", "c")]
                .iter()
                .map(|(p, n)| (p.to_string(), Kind::Certificate, n.to_string()))
                .collect(),
        };
        let head = vec![
            // A name inserted before it moved the wildcard: the same finding.
            finding("p", "a", "spec.dnsNames[3]", "*.example.com is a wildcard"),
            // The same field, another problem: a new finding.
            finding("p", "a", "metadata.labels", "a has no env label"),
            // A rule's own id outlives rewording.
            Finding {
                id: Some("key".into()),
                ..finding("q", "c", "spec.k", "reworded")
            },
            // The base did not evaluate the pair (it lacks the resource): new.
            finding("q", "d", "spec.x", "d is wrong"),
        ];
        let mut base = base;
        base.findings.push(Finding {
            id: Some("key".into()),
            ..finding("q", "c", "spec.k", "original")
        });
        let statuses: Vec<(String, String, FindingStatus)> = compare(head, &base, false)
            .into_iter()
            .map(|f| (f.name, f.message, f.status))
            .collect();
        let row = |n: &str, m: &str, s| (n.to_owned(), m.to_owned(), s);
        assert_eq!(
            statuses,
            [
                row("a", "*.example.com is a wildcard", FindingStatus::Existing),
                row("a", "a has no env label", FindingStatus::New),
                row("c", "reworded", FindingStatus::Existing),
                row("d", "d is wrong", FindingStatus::New),
                row("a", "a has no owner label", FindingStatus::Resolved),
                row("b", "b is wrong", FindingStatus::Resolved),
            ]
        );
    }
}
