//! The plan: what changing the configuration from one catalog to another would do. A pure
//! function of the two catalogs; the pull-request check and the daemon share it.
//!
//! Each resource gets a *change* (how its document changed) and an *action* (what the
//! daemon does about it). Actions come from the typed specs, not the text: adding a default
//! explicitly or reordering `dnsNames` changes the document but reissues nothing. Reissuing
//! an issuer reissues everything it signs, down the chain.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::model::catalog::{Sides, side_by_side};
use crate::model::{Catalog, Kind, Loaded, Significant, Spec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Create,
    Update,
    Delete,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Issue a certificate that does not exist yet.
    Issue,
    /// Issue again: the spec or the issuer changed.
    Reissue,
    /// Stop managing it.
    Remove,
    /// Write its files to another target; the old target's are removed where it prunes.
    Move,
    /// Nothing to do.
    None,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Update => "update",
            Change::Delete => "delete",
            Change::None => "none",
        }
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Issue => "issue",
            Action::Reissue => "reissue",
            Action::Remove => "remove",
            Action::Move => "move",
            Action::None => "none",
        }
    }
}

/// A field that differs between the base and the head document.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FieldChange {
    /// Dotted path, like `spec.dnsNames` or `spec.require.window.allow[0].to`.
    pub path: String,
    /// Value in the base; absent when the field was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Value in the head; absent when the field was removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// What the plan does to one resource.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ResourcePlan {
    pub kind: Kind,
    pub name: String,
    /// File defining the resource (in the head; in the base for deleted resources).
    pub file: String,
    /// Line of the resource's document in that file.
    pub line: u32,
    pub change: Change,
    pub action: Action,
    /// Why the action is taken.
    pub reasons: Vec<String>,
    /// Field-level differences, for updates.
    pub diff: Vec<FieldChange>,
}

impl ResourcePlan {
    /// Whether there is anything to show: a change or an action.
    pub fn is_notable(&self) -> bool {
        self.change != Change::None || self.action != Action::None
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// Counts of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
    pub issue: usize,
    pub reissue: usize,
    pub remove: usize,
    #[serde(rename = "move")]
    pub moved: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct Plan {
    /// Every resource of the base and the head, sorted by kind and name.
    pub resources: Vec<ResourcePlan>,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for r in &self.resources {
            match r.change {
                Change::Create => s.create += 1,
                Change::Update => s.update += 1,
                Change::Delete => s.delete += 1,
                Change::None => s.unchanged += 1,
            }
            match r.action {
                Action::Issue => s.issue += 1,
                Action::Reissue => s.reissue += 1,
                Action::Remove => s.remove += 1,
                Action::Move => s.moved += 1,
                Action::None => {}
            }
        }
        s
    }

    pub fn notable(&self) -> impl Iterator<Item = &ResourcePlan> {
        self.resources.iter().filter(|r| r.is_notable())
    }
}

/// Plans the change from `base` to `head`.
pub fn plan(base: &Catalog, head: &Catalog) -> Plan {
    // In the order of kind and name, as the report lists them.
    let mut resources = Vec::with_capacity(head.resources().len().max(base.resources().len()));
    resources.extend(side_by_side(base, head).map(|sides| match sides {
        Sides::Head(after) => created(after),
        Sides::Both(before, after) => compared(before, after),
        Sides::Base(before) => deleted(before),
    }));
    cascade(head, &mut resources);
    Plan { resources }
}

fn entry(loaded: &Loaded, change: Change, action: Action, reasons: Vec<String>) -> ResourcePlan {
    ResourcePlan {
        kind: loaded.kind(),
        name: loaded.name().to_owned(),
        file: loaded.file.to_string(),
        line: loaded.pos().line,
        change,
        action,
        reasons,
        diff: Vec::new(),
    }
}

fn created(after: &Loaded) -> ResourcePlan {
    let (action, reason) = match &after.resource.spec {
        Spec::Certificate(_) => (Action::Issue, "new certificate"),
        Spec::Issuer(spec) if spec.is_ca() => (
            Action::Issue,
            "new CA: its key and certificate are generated",
        ),
        _ => (Action::None, ""),
    };
    let reasons = if reason.is_empty() {
        Vec::new()
    } else {
        vec![reason.to_owned()]
    };
    entry(after, Change::Create, action, reasons)
}

fn deleted(before: &Loaded) -> ResourcePlan {
    let (action, reasons) = match before.kind() {
        Kind::Certificate => (
            Action::Remove,
            vec!["removed from the repository: gitward stops managing it; its files stay unless the target prunes".to_owned()],
        ),
        Kind::Issuer => (
            Action::Remove,
            vec!["removed from the repository: its key stays in the secret store".to_owned()],
        ),
        _ => (Action::None, Vec::new()),
    };
    entry(before, Change::Delete, action, reasons)
}

fn compared(before: &Loaded, after: &Loaded) -> ResourcePlan {
    // The same document of the same blob, or the same values written another way: nothing
    // to compare (and no need to read the positions of either).
    if (Arc::ptr_eq(&before.parsed, &after.parsed) && before.doc == after.doc)
        || before.rego_value() == after.rego_value()
    {
        return entry(after, Change::None, Action::None, Vec::new());
    }
    let mut diff = Vec::new();
    diff_values(
        &mut String::new(),
        Some(&before.json()),
        Some(&after.json()),
        &mut diff,
    );
    if diff.is_empty() {
        return entry(after, Change::None, Action::None, Vec::new());
    }
    let reasons = match (&before.resource.spec, &after.resource.spec) {
        (Spec::Certificate(b), Spec::Certificate(a)) => {
            significant_changes(&b.significant_fields(), &a.significant_fields())
        }
        // An ACME issuer has no certificate of its own (its account may change freely), but
        // switching to or from one changes what signs everything below it.
        (Spec::Issuer(b), Spec::Issuer(a)) if a.is_ca() || b.is_ca() => {
            significant_changes(&b.significant_fields(), &a.significant_fields())
        }
        _ => Vec::new(),
    };
    let mut reasons = reasons;
    let moved = match (&before.resource.spec, &after.resource.spec) {
        (Spec::Certificate(b), Spec::Certificate(a)) if a.target != b.target => {
            reasons.push(format!(
                "target changed: {} → {} (the files in {} are removed where it prunes)",
                b.target, a.target, b.target
            ));
            true
        }
        _ => false,
    };
    let action = match (reasons.len(), moved) {
        (0, _) => Action::None,
        (1, true) => Action::Move,
        _ => Action::Reissue,
    };
    let mut plan = entry(after, Change::Update, action, reasons);
    plan.diff = diff;
    plan
}

/// The fields that matter whose values differ, as reasons: "dnsNames changed".
fn significant_changes(before: &Significant, after: &Significant) -> Vec<String> {
    let differ = |name: &str| before.get(name) != after.get(name);
    if differ("type") {
        return vec!["issuer type changed".to_owned()];
    }
    let names: std::collections::BTreeSet<&str> =
        before.keys().chain(after.keys()).copied().collect();
    names
        .into_iter()
        .filter(|n| differ(n))
        .map(|n| format!("{n} changed"))
        .collect()
}

/// Everything signed by an issued or reissued CA is reissued too, down the chain.
/// Marks what the issuers in `resources` (sorted by kind and name) that are new or reissued
/// sign, down the chain.
fn cascade(head: &Catalog, resources: &mut [ResourcePlan]) {
    let mut changed: Vec<(String, &'static str)> = resources
        .iter()
        .filter_map(|r| match (r.kind, r.action) {
            (Kind::Issuer, Action::Issue) => Some((r.name.clone(), "is new")),
            (Kind::Issuer, Action::Reissue) => Some((r.name.clone(), "is reissued")),
            _ => None,
        })
        .collect();
    while let Some((issuer, what)) = changed.pop() {
        for loaded in head.resources() {
            let parent = match &loaded.resource.spec {
                Spec::Certificate(spec) => Some(&spec.issuer_ref),
                Spec::Issuer(spec) => spec.parent(),
                _ => None,
            };
            if parent.is_none_or(|p| p.as_str() != issuer) {
                continue;
            }
            let Ok(i) = resources.binary_search_by(|r| {
                (r.kind, r.name.as_str()).cmp(&(loaded.kind(), loaded.name()))
            }) else {
                continue;
            };
            let dependent = &mut resources[i];
            // A certificate that moves and whose issuer is reissued is reissued (into its new
            // target): the old one no longer chains to its CA.
            if matches!(dependent.action, Action::None | Action::Move) {
                dependent.action = Action::Reissue;
                if dependent.kind == Kind::Issuer {
                    changed.push((dependent.name.clone(), "is reissued"));
                }
            }
            if dependent.action == Action::Reissue {
                dependent
                    .reasons
                    .push(format!("its issuer `{issuer}` {what}"));
            }
        }
    }
}

fn push_segment(path: &mut String, key: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
    len
}

/// Field-level differences between two JSON documents. Lists of plain values are compared
/// whole (shown as added and removed entries); lists of mappings of equal length entry by
/// entry.
fn diff_values(
    path: &mut String,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for key in keys {
                let len = push_segment(path, key);
                diff_values(path, b.get(key), a.get(key), out);
                path.truncate(len);
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a)))
            if b.len() == a.len() && a.iter().chain(b).all(Value::is_object) =>
        {
            for (i, (x, y)) in b.iter().zip(a).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                diff_values(path, Some(x), Some(y), out);
                path.truncate(len);
            }
        }
        (b, a) if b != a => out.push(FieldChange {
            path: path.clone(),
            before: b.cloned(),
            after: a.cloned(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(files: &[(&str, &str)]) -> Catalog {
        let catalog = Catalog::from_texts(files);
        assert_eq!(catalog.diagnostics, vec![]);
        catalog
    }

    const ISSUERS: &str = "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: root}\nspec:\n  selfSigned: {commonName: Root}\n---\napiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: issuing}\nspec:\n  ca: {issuerRef: root, commonName: Issuing}\n";

    fn cert(name: &str, extra: &str) -> String {
        format!(
            "apiVersion: gitward/v1\nkind: Certificate\nmetadata: {{name: {name}}}\nspec:\n  issuerRef: issuing\n  dnsNames: [a.example.com, b.example.com]\n  target: web\n{extra}"
        )
    }

    fn summary_of(plan: &Plan) -> Vec<(String, &'static str, &'static str)> {
        plan.notable()
            .map(|r| (r.id(), r.change.as_str(), r.action.as_str()))
            .collect()
    }

    #[test]
    fn creates_updates_and_deletes_are_told_apart() {
        let base = catalog(&[
            ("issuers.yaml", ISSUERS),
            ("a.yaml", &cert("a", "")),
            ("b.yaml", &cert("b", "")),
            ("c.yaml", &cert("c", "")),
        ]);
        let head = catalog(&[
            ("issuers.yaml", ISSUERS),
            ("a.yaml", &cert("a", "  duration: 30d\n")),
            ("b.yaml", &cert("b", "")),
            ("d.yaml", &cert("d", "")),
        ]);
        let plan = plan(&base, &head);
        assert_eq!(
            summary_of(&plan),
            [
                ("Certificate/a".to_owned(), "update", "reissue"),
                ("Certificate/c".to_owned(), "delete", "remove"),
                ("Certificate/d".to_owned(), "create", "issue"),
            ]
        );
        let a = &plan.resources[2];
        assert_eq!(a.reasons, ["duration changed"]);
        assert_eq!(
            a.diff,
            [FieldChange {
                path: "spec.duration".into(),
                before: None,
                after: Some("30d".into())
            }]
        );
        assert_eq!(plan.summary().unchanged, 3);
    }

    #[test]
    fn cosmetic_changes_reissue_nothing() {
        let base = catalog(&[
            ("issuers.yaml", ISSUERS),
            ("a.yaml", &cert("a", "  commonName: a.example.com\n")),
        ]);
        let reordered = cert(
            "a",
            "  commonName: a.example.com\n  keyAlgorithm: ECDSA-P256\n  renewBefore: 10d\n",
        )
        .replace(
            "[a.example.com, b.example.com]",
            "[b.example.com, a.example.com]",
        );
        let head = catalog(&[("issuers.yaml", ISSUERS), ("a.yaml", &reordered)]);
        let plan = plan(&base, &head);
        assert_eq!(
            summary_of(&plan),
            [("Certificate/a".to_owned(), "update", "none")]
        );
        let paths: Vec<&str> = plan.resources[2]
            .diff
            .iter()
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(
            paths,
            ["spec.dnsNames", "spec.keyAlgorithm", "spec.renewBefore"]
        );
    }

    #[test]
    fn switching_an_issuer_to_acme_reissues_what_it_signs() {
        let base = catalog(&[("issuers.yaml", ISSUERS), ("a.yaml", &cert("a", ""))]);
        let acme = ISSUERS.replace(
            "ca: {issuerRef: root, commonName: Issuing}",
            "acme: {account: le}",
        );
        let head = catalog(&[("issuers.yaml", &acme), ("a.yaml", &cert("a", ""))]);
        let plan = plan(&base, &head);
        assert_eq!(
            summary_of(&plan),
            [
                ("Issuer/issuing".to_owned(), "update", "reissue"),
                ("Certificate/a".to_owned(), "none", "reissue"),
            ]
        );
        assert_eq!(plan.resources[0].reasons, ["issuer type changed"]);
    }

    #[test]
    fn reissuing_a_ca_reissues_everything_below_it() {
        let base = catalog(&[("issuers.yaml", ISSUERS), ("a.yaml", &cert("a", ""))]);
        let head = catalog(&[
            (
                "issuers.yaml",
                &ISSUERS.replace("commonName: Root", "commonName: Root G2"),
            ),
            ("a.yaml", &cert("a", "")),
        ]);
        let plan = plan(&base, &head);
        assert_eq!(
            summary_of(&plan),
            [
                ("Issuer/issuing".to_owned(), "none", "reissue"),
                ("Issuer/root".to_owned(), "update", "reissue"),
                ("Certificate/a".to_owned(), "none", "reissue"),
            ]
        );
        assert_eq!(plan.resources[0].reasons, ["its issuer `root` is reissued"]);
        assert_eq!(
            plan.resources[2].reasons,
            ["its issuer `issuing` is reissued"]
        );
    }
}
