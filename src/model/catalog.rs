//! A catalog: every resource, module and data document of one commit (or working tree), and
//! every problem in it. Assembling a catalog runs the checks across resources: unique names,
//! references that resolve, issuer chains without cycles that respect `pathLen` and name
//! constraints. It is pure: parsed files in, catalog out.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::parse::{Content, ParsedDoc, ParsedFile, Role};
use super::types::{CertificateSpec, IssuerSpec, Kind, PolicyException, Resource, Spec};
use super::values::DnsDomain;
use crate::diag::{Diagnostic, Pos, did_you_mean};

/// A parsed file at its path in the repository.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub path: Arc<str>,
    pub role: Role,
    pub parsed: Arc<ParsedFile>,
}

/// A valid resource and where it was defined.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: Arc<str>,
    pub parsed: Arc<ParsedFile>,
    pub doc: usize,
    pub resource: Arc<Resource>,
}

impl Loaded {
    pub fn kind(&self) -> Kind {
        self.resource.kind()
    }

    pub fn name(&self) -> &str {
        self.resource.name().as_str()
    }

    pub fn parsed_doc(&self) -> &ParsedDoc {
        &self.parsed.docs()[self.doc]
    }

    /// The document as written, as JSON in the order of the file.
    pub fn json(&self) -> serde_json::Value {
        self.parsed
            .tree(self.doc)
            .map_or(serde_json::Value::Null, |tree| tree.to_json())
    }

    /// The document as a policy engine value.
    pub fn rego_value(&self) -> &regorus::Value {
        self.parsed_doc().rego_value()
    }

    /// Line and column of the document.
    pub fn pos(&self) -> Pos {
        self.parsed_doc().pos
    }

    /// Line and column of a field, like `["spec", "dnsNames", "1"]`.
    pub fn locate<'a>(&self, path: impl IntoIterator<Item = &'a str>) -> Pos {
        self.parsed
            .tree(self.doc)
            .map_or(self.pos(), |tree| tree.locate(path))
    }

    pub fn error(&self, path: &[&str], message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(&self.file, self.locate(path.iter().copied()), message)
    }
}

/// A resource of two catalogs, as defined in either or both.
#[derive(Debug, Clone, Copy)]
pub enum Sides<'a> {
    Base(&'a Loaded),
    Head(&'a Loaded),
    Both(&'a Loaded, &'a Loaded),
}

/// The resources of `base` and `head` side by side, in catalog order: each kind and name
/// once. One pass over both (they are sorted alike), not a search per resource.
pub fn side_by_side<'a>(base: &'a Catalog, head: &'a Catalog) -> impl Iterator<Item = Sides<'a>> {
    let mut base = base.resources.iter().peekable();
    let mut head = head.resources.iter().peekable();
    std::iter::from_fn(move || {
        let order = match (base.peek(), head.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(b), Some(h)) => (b.kind(), b.name()).cmp(&(h.kind(), h.name())),
        };
        match order {
            Ordering::Less => base.next().map(Sides::Base),
            Ordering::Greater => head.next().map(Sides::Head),
            Ordering::Equal => Some(Sides::Both(base.next()?, head.next()?)),
        }
    })
}

#[derive(Debug, Default)]
pub struct Catalog {
    /// Valid resources, sorted by kind and name (looked up by binary search).
    resources: Vec<Loaded>,
    /// Policy modules by path.
    pub modules: BTreeMap<Arc<str>, Arc<str>>,
    /// Policy data documents by path.
    pub data: BTreeMap<Arc<str>, Arc<ParsedFile>>,
    /// Every problem, sorted.
    pub diagnostics: Vec<Diagnostic>,
    /// Number of files read.
    pub files: usize,
}

impl Catalog {
    /// Builds the catalog of a set of files; `diagnostics` are problems already found while
    /// listing them (links, oversized files, ignore patterns).
    pub fn assemble(files: Vec<LoadedFile>, mut diagnostics: Vec<Diagnostic>) -> Catalog {
        let mut catalog = Catalog {
            files: files.len(),
            ..Catalog::default()
        };
        let mut invalid: HashSet<(Kind, String)> = HashSet::new();
        let mut candidates: Vec<Loaded> = Vec::new();
        for file in files {
            diagnostics.extend(file.parsed.all_problems().map(|p| p.in_file(&file.path)));
            match &file.parsed.content {
                Content::Resources(documents) => {
                    for (index, doc) in documents.docs.iter().enumerate() {
                        match (&doc.resource, doc.kind, &doc.name) {
                            (Some(resource), _, _) => candidates.push(Loaded {
                                file: file.path.clone(),
                                parsed: file.parsed.clone(),
                                doc: index,
                                resource: resource.clone(),
                            }),
                            (None, Some(kind), Some(name)) => {
                                invalid.insert((kind, name.clone()));
                            }
                            _ => {}
                        }
                    }
                }
                Content::Module(text) => {
                    catalog.modules.insert(file.path.clone(), text.clone());
                }
                Content::Data(_) => {
                    catalog.data.insert(file.path.clone(), file.parsed.clone());
                }
                Content::Unreadable => {}
            }
        }
        // Sorted by kind and name, then file order: the first definition of a name wins and
        // later ones are errors. The keys side by side, not behind each resource's pointers.
        let order = {
            let keys: Vec<_> = candidates
                .iter()
                .map(|l| (l.kind(), l.name(), &*l.file, l.pos()))
                .collect();
            let mut order: Vec<usize> = (0..candidates.len()).collect();
            order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
            order
        };
        let mut candidates: Vec<Option<Loaded>> = candidates.into_iter().map(Some).collect();
        for loaded in order.into_iter().filter_map(|i| candidates[i].take()) {
            match catalog.resources.last() {
                Some(first) if (first.kind(), first.name()) == (loaded.kind(), loaded.name()) => {
                    let message = format!(
                        "duplicate {} `{}`: already defined at {}:{}",
                        loaded.kind(),
                        loaded.name(),
                        first.file,
                        first.pos().line
                    );
                    diagnostics.push(loaded.error(&["metadata", "name"], message));
                }
                _ => catalog.resources.push(loaded),
            }
        }
        diagnostics.extend(cross_check(&catalog, &invalid));
        diagnostics.sort();
        diagnostics.dedup();
        catalog.diagnostics = diagnostics;
        catalog
    }

    /// A catalog of files given as (path, text), for tests of the pure core.
    #[cfg(test)]
    pub(crate) fn from_texts(files: &[(&str, &str)]) -> Catalog {
        let loaded = files
            .iter()
            .map(|(path, text)| {
                let role = Role::of(path).unwrap_or(Role::Resources);
                LoadedFile {
                    path: Arc::from(*path),
                    role,
                    parsed: Arc::new(super::parse::parse_file(
                        role,
                        text.as_bytes(),
                        Default::default(),
                    )),
                }
            })
            .collect();
        Catalog::assemble(loaded, Vec::new())
    }

    pub fn resources(&self) -> &[Loaded] {
        &self.resources
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Loaded> {
        self.resources.iter().filter(move |r| r.kind() == kind)
    }

    pub fn get(&self, kind: Kind, name: &str) -> Option<&Loaded> {
        self.resources
            .binary_search_by(|r| (r.kind(), r.name()).cmp(&(kind, name)))
            .ok()
            .map(|i| &self.resources[i])
    }

    pub fn issuer(&self, name: &str) -> Option<&IssuerSpec> {
        match &self.get(Kind::Issuer, name)?.resource.spec {
            Spec::Issuer(spec) => Some(spec),
            _ => None,
        }
    }

    /// The issuers above `name`, nearest first, stopping at a root, a missing issuer or a
    /// cycle.
    pub fn ancestors(&self, name: &str) -> Vec<(&str, &IssuerSpec)> {
        let mut chain: Vec<(&str, &IssuerSpec)> = Vec::new();
        let mut next = self.get(Kind::Issuer, name).map(|l| l.name());
        while let Some(current) = next {
            if chain.iter().any(|(n, _)| *n == current) {
                break;
            }
            let Some(spec) = self.issuer(current) else {
                break;
            };
            chain.push((current, spec));
            next = spec
                .parent()
                .and_then(|p| self.get(Kind::Issuer, p.as_str()))
                .map(|l| l.name());
        }
        chain
    }

    /// Whether `name` lies on a cycle of intermediate CAs.
    fn in_cycle(&self, name: &str) -> Option<Vec<String>> {
        let mut path = vec![name.to_owned()];
        let mut current = self.issuer(name)?;
        while let Some(parent) = current.parent() {
            if parent.as_str() == name {
                path.push(name.to_owned());
                return Some(path);
            }
            if path.iter().any(|p| p == parent.as_str()) {
                return None;
            }
            path.push(parent.to_string());
            current = self.issuer(parent.as_str())?;
        }
        None
    }
}

/// Most sinks a repository may declare: each is a worker, a connection and a copy of every
/// event it takes, and its state is counted at every reconcile and scrape.
pub const MAX_SINKS: usize = 100;

fn cross_check(catalog: &Catalog, invalid: &HashSet<(Kind, String)>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Some(extra) = catalog.of_kind(Kind::Sink).nth(MAX_SINKS) {
        out.push(extra.error(
            &["metadata", "name"],
            format!(
                "more than {MAX_SINKS} sinks: each sink is a worker and a copy of every event it takes; send to fewer receivers, or let one receiver fan out"
            ),
        ));
    }
    let names = |kind: Kind| -> Vec<&str> { catalog.of_kind(kind).map(Loaded::name).collect() };
    let issuer_names = names(Kind::Issuer);
    let sink_names = names(Kind::Sink);
    let unresolved = |kind: Kind, name: &str| {
        catalog.get(kind, name).is_none() && !invalid.contains(&(kind, name.to_owned()))
    };
    // The name constraints above each issuer, found once for all the certificates it signs.
    let mut constraints: HashMap<&str, Vec<(&str, &[DnsDomain])>> = HashMap::new();
    for loaded in catalog.resources() {
        match &loaded.resource.spec {
            Spec::Certificate(spec) => {
                if unresolved(Kind::Issuer, spec.issuer_ref.as_str()) {
                    out.push(loaded.error(
                        &["spec", "issuerRef"],
                        format!(
                            "unknown Issuer `{}`{}",
                            spec.issuer_ref,
                            did_you_mean(spec.issuer_ref.as_str(), issuer_names.iter().copied())
                        ),
                    ));
                }
                let above = constraints
                    .entry(spec.issuer_ref.as_str())
                    .or_insert_with(|| {
                        catalog
                            .ancestors(spec.issuer_ref.as_str())
                            .into_iter()
                            .map(|(name, issuer)| (name, issuer.permitted_dns_domains()))
                            .filter(|(_, permitted)| !permitted.is_empty())
                            .collect()
                    });
                check_name_constraints(loaded, spec, above, &mut out);
            }
            Spec::Issuer(spec) => {
                check_issuer(catalog, loaded, spec, &issuer_names, &unresolved, &mut out)
            }
            Spec::Policy(spec) => {
                for (i, exception) in spec.exceptions.iter().enumerate() {
                    for (j, reference) in exception.resources.iter().enumerate() {
                        let (kind, name) = PolicyException::parse_reference(reference);
                        let exists = spec
                            .applies_to
                            .kinds
                            .iter()
                            .filter(|&&k| kind.is_none_or(|wanted| wanted == k))
                            .any(|&k| catalog.get(k, name).is_some());
                        if !exists {
                            out.push(Diagnostic::warning(
                                &loaded.file,
                                loaded.locate(["spec", "exceptions", &i.to_string(), "resources", &j.to_string()]),
                                format!("exception names `{reference}`, which is not a resource this policy applies to"),
                            ));
                        }
                    }
                }
                let module = spec.module.as_str();
                if !catalog.modules.contains_key(module) {
                    let known = catalog.modules.keys().map(|k| &**k);
                    let reason = if module.ends_with(".rego") {
                        "no such file in the repository (or it is ignored)"
                    } else {
                        "a policy module is a .rego file"
                    };
                    out.push(loaded.error(
                        &["spec", "module"],
                        format!("module `{module}`: {reason}{}", did_you_mean(module, known)),
                    ));
                }
            }
            Spec::Gate(spec) => {
                let notify = spec
                    .override_
                    .iter()
                    .flat_map(|o| o.notify.iter().enumerate());
                for (i, sink) in notify {
                    if unresolved(Kind::Sink, sink.as_str()) {
                        out.push(loaded.error(
                            &["spec", "override", "notify", &i.to_string()],
                            format!(
                                "unknown Sink `{sink}`{}",
                                did_you_mean(sink.as_str(), sink_names.iter().copied())
                            ),
                        ));
                    }
                }
            }
            Spec::Sink(_) => {}
        }
    }
    out
}

fn check_issuer(
    catalog: &Catalog,
    loaded: &Loaded,
    spec: &IssuerSpec,
    issuer_names: &[&str],
    unresolved: &impl Fn(Kind, &str) -> bool,
    out: &mut Vec<Diagnostic>,
) {
    let Some(parent) = spec.parent() else { return };
    let at = ["spec", "ca", "issuerRef"];
    if unresolved(Kind::Issuer, parent.as_str()) {
        out.push(loaded.error(
            &at,
            format!(
                "unknown Issuer `{parent}`{}",
                did_you_mean(parent.as_str(), issuer_names.iter().copied())
            ),
        ));
        return;
    }
    if let Some(cycle) = catalog.in_cycle(loaded.name()) {
        out.push(loaded.error(&at, format!("issuer cycle: {}", cycle.join(" → "))));
        return;
    }
    if catalog.issuer(parent.as_str()).is_some_and(|p| !p.is_ca()) {
        out.push(loaded.error(
            &at,
            format!("Issuer `{parent}` is an ACME issuer and cannot sign a CA"),
        ));
        return;
    }
    // A CA with pathLen n may have at most n intermediate CAs below it.
    for (depth, (name, ancestor)) in catalog.ancestors(loaded.name()).iter().enumerate().skip(1) {
        if let Some(limit) = ancestor.path_len()
            && depth > usize::from(limit)
        {
            let allowed = match limit {
                0 => "signs end-entity certificates only, not CAs".to_owned(),
                n => format!(
                    "allows {n} level(s) of CAs below it, and this one would be level {depth}"
                ),
            };
            out.push(loaded.error(
                &at,
                format!("Issuer `{name}` has pathLen {limit}: it {allowed}"),
            ));
        }
    }
}

/// Whether `dns_name` (possibly a wildcard) lies inside `domain` or is `domain` itself.
fn within(dns_name: &str, domain: &str) -> bool {
    let name = dns_name.strip_prefix("*.").unwrap_or(dns_name);
    name == domain
        || name
            .strip_suffix(domain)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

/// Checks a certificate's names against the constraints of the issuers above it (those
/// with constraints, nearest first).
fn check_name_constraints(
    loaded: &Loaded,
    spec: &CertificateSpec,
    constraints: &[(&str, &[DnsDomain])],
    out: &mut Vec<Diagnostic>,
) {
    for &(issuer, permitted) in constraints {
        for (i, dns_name) in spec.dns_names.iter().enumerate() {
            if !permitted
                .iter()
                .any(|d| within(dns_name.as_str(), d.as_str()))
            {
                let list: Vec<&str> = permitted.iter().map(|d| d.as_str()).collect();
                out.push(loaded.error(
                    &["spec", "dnsNames", &i.to_string()],
                    format!(
                        "`{dns_name}` is outside the name constraints of Issuer `{issuer}` (permitted: {})",
                        list.join(", ")
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(files: &[(&str, &str)]) -> Catalog {
        Catalog::from_texts(files)
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        catalog(files)
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const ISSUERS: &str = "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: root}\nspec:\n  selfSigned: {commonName: Root}\n---\napiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: issuing}\nspec:\n  ca: {issuerRef: root, commonName: Issuing, pathLen: 0, permittedDnsDomains: [example.com]}\n";

    fn cert(name: &str, issuer: &str, dns: &str) -> String {
        format!(
            "apiVersion: gitward/v1\nkind: Certificate\nmetadata: {{name: {name}}}\nspec:\n  issuerRef: {issuer}\n  dnsNames: [{dns}]\n  target: web\n"
        )
    }

    #[test]
    fn two_catalogs_side_by_side_name_each_resource_once_in_order() {
        let (a, b, c) = (
            cert("a", "issuing", "a.example.com"),
            cert("b", "issuing", "b.example.com"),
            cert("c", "issuing", "c.example.com"),
        );
        let base = catalog(&[("issuers.yaml", ISSUERS), ("a.yaml", &a), ("b.yaml", &b)]);
        let head = catalog(&[("b.yaml", &b), ("c.yaml", &c), ("issuers.yaml", ISSUERS)]);
        let sides: Vec<String> = side_by_side(&base, &head)
            .map(|sides| match sides {
                Sides::Base(l) => format!("-{}", l.name()),
                Sides::Head(l) => format!("+{}", l.name()),
                Sides::Both(before, after) => {
                    assert_eq!((before.kind(), before.name()), (after.kind(), after.name()));
                    format!("={}", after.name())
                }
            })
            .collect();
        assert_eq!(sides, ["=issuing", "=root", "-a", "=b", "+c"]);
        assert_eq!(side_by_side(&base, &Catalog::default()).count(), 4);
        assert_eq!(side_by_side(&Catalog::default(), &head).count(), 4);
    }

    #[test]
    fn within_respects_label_boundaries() {
        assert!(within("example.com", "example.com"));
        assert!(within("api.example.com", "example.com"));
        assert!(within("*.example.com", "example.com"));
        assert!(!within("badexample.com", "example.com"));
    }

    #[test]
    fn a_consistent_repository_has_no_errors() {
        let c = cert("api", "issuing", "api.example.com");
        let cat = catalog(&[("issuers.yaml", ISSUERS), ("certs/api.yaml", &c)]);
        assert_eq!(cat.diagnostics, vec![]);
        assert_eq!(cat.resources().len(), 3);
        assert_eq!(cat.ancestors("issuing").len(), 2);
    }

    #[test]
    fn references_and_constraints_are_checked_across_files() {
        let a = cert("api", "isuing", "api.example.com");
        let b = cert("web", "issuing", "web.example.org");
        let dup = cert("web", "issuing", "www.example.com");
        assert_eq!(
            errors(&[
                ("issuers.yaml", ISSUERS),
                ("a.yaml", &a),
                ("b.yaml", &b),
                ("c.yaml", &dup)
            ]),
            [
                "a.yaml:5:3: unknown Issuer `isuing`; did you mean `issuing`?",
                "b.yaml:6:14: `web.example.org` is outside the name constraints of Issuer `issuing` (permitted: example.com)",
                "c.yaml:3:12: duplicate Certificate `web`: already defined at b.yaml:1",
            ]
        );
    }

    #[test]
    fn issuer_chains_must_be_acyclic_and_respect_path_length() {
        let text = "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: a}\nspec:\n  ca: {issuerRef: b, commonName: A}\n---\napiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: b}\nspec:\n  ca: {issuerRef: a, commonName: B}\n---\napiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: sub}\nspec:\n  ca: {issuerRef: issuing, commonName: Sub}\n";
        assert_eq!(
            errors(&[("issuers.yaml", ISSUERS), ("more.yaml", text)]),
            [
                "more.yaml:5:8: issuer cycle: a → b → a",
                "more.yaml:11:8: issuer cycle: b → a → b",
                "more.yaml:17:8: Issuer `issuing` has pathLen 0: it signs end-entity certificates only, not CAs",
            ]
        );
    }

    #[test]
    fn references_to_invalid_resources_are_not_reported_twice() {
        let broken = "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: issuing}\nspec:\n  ca: {commonName: X}\n";
        let c = cert("api", "issuing", "api.example.com");
        assert_eq!(
            errors(&[("issuers.yaml", broken), ("api.yaml", &c)]),
            ["issuers.yaml:5:3: missing field `issuerRef` in spec.ca"]
        );
    }
}
