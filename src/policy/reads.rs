//! What a policy reads beyond its input resource, found by scanning its module (and the
//! packages it refers to) for `data.gitward...` and `input.commit`. A base evaluation reuses
//! the head's result for an unchanged resource unless what the policy reads has changed; the
//! scan errs towards "reads everything" whenever a reference is not plainly one of these.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Kind;

/// The inventory index each `data.gitward.index.<name>` is derived from.
const INDEXES: &[(&str, Kind)] = &[("dnsNames", Kind::Certificate)];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// `data` by a computed key, or `data.gitward` in a way the scan does not recognise.
    pub everything: bool,
    /// `input.commit`: differs between any two commits.
    pub commit: bool,
    /// `input.change`: differs for a resource whose change differs between two reviews.
    pub change: bool,
    /// `input.index`: differs for a resource whose names' claimants differ.
    pub index: bool,
    /// Inventory kinds read through `data.gitward.inventory.<Kind>` or an index of them.
    pub kinds: BTreeSet<Kind>,
    /// The clock (`time.now_ns`): a result may differ from one day to the next.
    pub clock: bool,
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

impl Reads {
    /// The reads of one module's code (comments removed).
    pub fn of_code(code: &str) -> Reads {
        let mut reads = Reads {
            everything: reads_data_whole(code),
            // Anywhere in the text, strings too: a false alarm costs a full evaluation.
            clock: code.contains("now_ns"),
            ..Reads::default()
        };
        for field in input_fields(code) {
            // `input["commit"]`, `input` as a whole (`walk(input, ...)`) and the like may
            // reach any of them.
            reads.commit |= field.is_none_or(|f| f == "commit");
            reads.change |= field.is_none_or(|f| f == "change");
            reads.index |= field.is_none_or(|f| f == "index");
        }
        for (at, _) in code.match_indices("data.gitward") {
            let rest = &code[at + "data.gitward".len()..];
            let read = if let Some(kind) = rest.strip_prefix(".inventory.") {
                Kind::ALL
                    .iter()
                    .copied()
                    .find(|k| k.as_str() == identifier(kind))
            } else if let Some(index) = rest.strip_prefix(".index.") {
                INDEXES
                    .iter()
                    .find(|(name, _)| *name == identifier(index))
                    .map(|(_, kind)| *kind)
            } else {
                None
            };
            match read {
                Some(kind) => {
                    reads.kinds.insert(kind);
                }
                None => reads.everything = true,
            }
        }
        reads
    }

    /// What any of `all` reads.
    pub fn union<'r>(all: impl IntoIterator<Item = &'r Reads>) -> Reads {
        let mut union = Reads::default();
        for reads in all {
            union.absorb(reads);
        }
        union
    }

    fn absorb(&mut self, other: &Reads) -> bool {
        let before = self.clone();
        self.everything |= other.everything;
        self.commit |= other.commit;
        self.change |= other.change;
        self.index |= other.index;
        self.clock |= other.clock;
        self.kinds.extend(other.kinds.iter().copied());
        *self != before
    }

    /// Whether a result could differ between two commits in which resources of
    /// `changed_kinds` changed.
    pub fn affected_by(&self, changed_kinds: &BTreeSet<Kind>) -> bool {
        self.everything || self.commit || !self.kinds.is_disjoint(changed_kinds)
    }
}

/// Whether the code uses `data` other than as `data.<name>`: `data[k]`, `object.get(data,
/// ...)`, `walk(data)`, `import data as d` may reach anything.
fn reads_data_whole(code: &str) -> bool {
    let outside = outside_strings(code);
    code.match_indices("data").any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + "data".len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        outside.get(at).copied().unwrap_or(true)
            && !word(before)
            && before != Some('.')
            && !word(after)
            && after != Some('.')
    })
}

/// For each byte of `code`, whether it is outside string literals (`"policies/data/x"` is no
/// use of `data`).
fn outside_strings(code: &str) -> Vec<bool> {
    let mut outside = vec![true; code.len()];
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (at, c) in code.char_indices() {
        let inside = quote.is_some();
        match (quote, c) {
            (Some('"'), '\\') if !escaped => escaped = true,
            (Some(q), c) if c == q && !escaped => quote = None,
            (Some(_), _) => escaped = false,
            (None, '"' | '`') => quote = Some(c),
            (None, _) => {}
        }
        if inside || quote.is_some() {
            for flag in outside.iter_mut().skip(at).take(c.len_utf8()) {
                *flag = false;
            }
        }
    }
    outside
}

/// The field of each reference to `input` in a module's code: `Some("commit")` for
/// `input.commit`, `None` where it is not a plain field (`input[k]`, `input` itself).
fn input_fields(code: &str) -> impl Iterator<Item = Option<&str>> {
    code.match_indices("input")
        .filter(|(at, _)| {
            !code[..*at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
        .filter_map(|(at, _)| {
            let rest = &code[at + "input".len()..];
            if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            Some(rest.strip_prefix('.').map(identifier))
        })
}

/// The `data.a.b.c` paths a module's code mentions.
fn data_paths(code: &str) -> Vec<&str> {
    code.match_indices("data.")
        .filter(|(at, _)| {
            *at == 0
                || !code[..*at]
                    .ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
        .map(|(at, _)| {
            let rest = &code[at + "data.".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches('.')
        })
        .collect()
}

/// Whether a path `data.<path>` may lead into `package` or its rules: one is a prefix of the
/// other (`import data.lib` reaches `lib.issuers`; `data.lib.issuers.x` reaches `lib.issuers`).
fn reaches(path: &str, package: &str) -> bool {
    let under = |long: &str, short: &str| {
        long == short || long.strip_prefix(short).is_some_and(|r| r.starts_with('.'))
    };
    under(path, package) || under(package, path)
}

/// The reads of each package, including those of the packages it refers to.
pub fn package_reads(modules: &[(String, String)]) -> BTreeMap<String, Reads> {
    let packages: Vec<&String> = modules.iter().map(|(p, _)| p).collect();
    let mut reads: BTreeMap<String, Reads> = BTreeMap::new();
    let mut refers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (package, code) in modules {
        reads
            .entry(package.clone())
            .or_default()
            .absorb(&Reads::of_code(code));
        let paths = data_paths(code);
        let targets = packages
            .iter()
            .filter(|p| **p != package && paths.iter().any(|path| reaches(path, p)))
            .map(|p| (*p).clone());
        refers.entry(package.clone()).or_default().extend(targets);
    }
    loop {
        let mut grew = false;
        for (package, targets) in &refers {
            let gathered: Vec<Reads> = targets
                .iter()
                .filter_map(|t| reads.get(t).cloned())
                .collect();
            let own = reads.entry(package.clone()).or_default();
            for other in &gathered {
                grew |= own.absorb(other);
            }
        }
        if !grew {
            return reads;
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn reading_the_clock_is_seen() {
        assert!(Reads::of_code("x if time.now_ns() > 0").clock);
        assert!(!Reads::of_code("x if input.resource.spec.duration").clock);
    }

    use super::*;

    fn kinds(list: &[Kind]) -> BTreeSet<Kind> {
        list.iter().copied().collect()
    }

    #[test]
    fn references_are_read_precisely_or_not_at_all() {
        let issuer =
            Reads::of_code("x := data.gitward.inventory.Issuer[input.resource.spec.issuerRef]");
        assert_eq!(issuer.kinds, kinds(&[Kind::Issuer]));
        assert!(!issuer.everything && !issuer.commit);
        assert_eq!(
            Reads::of_code("data.gitward.index.dnsNames[n]").kinds,
            kinds(&[Kind::Certificate])
        );
        for vague in [
            "data.gitward.inventory[k]",
            "import data.gitward.inventory",
            "data.gitward.index.other",
            "data[x]",
            "x := data.gitward",
            "x := object.get(data, [\"gitward\", \"inventory\"], {})",
            "x := walk(data)",
            "import data as d\nx := d.gitward.inventory.Issuer",
        ] {
            assert!(Reads::of_code(vague).everything, "{vague}");
        }
        assert!(Reads::of_code("input.commit.trailers").commit);
        assert!(Reads::of_code("x := input[\"commit\"]").commit);
        assert!(Reads::of_code("input.index.dnsNames[n]").index);
        let whole = Reads::of_code("x := json.marshal(input)");
        assert!(whole.commit && whole.change && whole.index);
        assert_eq!(
            Reads::of_code("my_input.commit := input.name\nimport input.resource as r"),
            Reads::default()
        );
        assert_eq!(Reads::of_code("input.resource.spec"), Reads::default());
        assert_eq!(
            Reads::of_code(
                "metadata := 1\nmy_data := input.name\nm := \"see policies/data/x.yaml\"\n"
            ),
            Reads::default(),
            "names that merely contain `data`"
        );
    }

    #[test]
    fn reads_flow_through_referenced_packages() {
        let modules = vec![
            (
                "lib.issuers".to_owned(),
                "i := data.gitward.inventory.Issuer".to_owned(),
            ),
            ("lib".to_owned(), "import data.lib.issuers".to_owned()),
            (
                "p".to_owned(),
                "import data.lib\nx := lib.issuers.y".to_owned(),
            ),
            ("q".to_owned(), "x := input.name".to_owned()),
        ];
        let reads = package_reads(&modules);
        assert_eq!(reads["p"].kinds, kinds(&[Kind::Issuer]));
        assert_eq!(reads["q"], Reads::default());
        assert!(reads["p"].affected_by(&kinds(&[Kind::Issuer])));
        assert!(!reads["p"].affected_by(&kinds(&[Kind::Certificate])));
    }
}
