//! From the bytes of one file to its documents, resources and problems.
//!
//! Parsing depends on the bytes and the file's role only, never on the path or on other
//! files, so its result is cached per blob id: the same blob in the base and head of a plan,
//! or in consecutive commits the daemon reconciles, is parsed once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, OnceLock, RwLock};

use serde::Deserialize;
use serde_json::Value;

use super::schema::{self, API_VERSION};
use super::semantic;
use super::types::{
    CertificateSpec, GateSpec, IssuerSpec, Kind, Metadata, PolicySpec, Resource, SinkSpec, Spec,
};
use super::yaml::{Limits, Node, NodeValue, parse_documents};
use crate::diag::{Pos, Problem, did_you_mean};

/// Largest file gitward reads. Resource files are a few hundred bytes; anything near this is
/// a mistake or an attack.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// What a file is to gitward, decided by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `*.yaml` / `*.yml`: resource documents.
    Resources,
    /// `*.rego`: a policy module (or its tests, `*_test.rego`).
    Module,
    /// JSON or YAML under `policies/data/`: data documents for policies.
    Data,
}

/// Where policy data documents live; their path below it becomes their key under `data`.
pub const DATA_DIR: &str = "policies/data/";

impl Role {
    pub fn of(path: &str) -> Option<Role> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        match extension.as_deref() {
            Some("yaml" | "yml" | "json") if path.starts_with(DATA_DIR) => Some(Role::Data),
            Some("yaml" | "yml") => Some(Role::Resources),
            Some("rego") => Some(Role::Module),
            _ => None,
        }
    }
}

/// One parsed document of a resource file. Positions are not kept: they are read again from
/// the file's text when something is to be reported at a field (see [`ParsedFile::tree`]).
#[derive(Debug)]
pub struct ParsedDoc {
    pub pos: Pos,
    pub kind: Option<Kind>,
    /// `metadata.name` when it is a string, even if the resource is invalid: references to
    /// an invalid resource are not reported a second time as dangling.
    pub name: Option<String>,
    /// The typed resource, when the document is valid.
    pub resource: Option<Arc<Resource>>,
    pub problems: Vec<Problem>,
    /// The valid document as a policy engine value, shared by every evaluation of this blob;
    /// made as [`EngineValues`] says, from `json` (then `Null`, as for an invalid document).
    json: Value,
    rego: OnceLock<regorus::Value>,
}

/// When the policy engine value of a document is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EngineValues {
    /// With the document, which keeps no JSON: for a process that evaluates policies on
    /// every document and keeps them (the daemon's memory has a budget).
    #[default]
    WithTheDocument,
    /// When a policy first reads it, from the document's JSON kept till then: for a run
    /// that evaluates policies on few documents, or on none (faster, and larger).
    OnFirstUse,
}

impl ParsedDoc {
    /// The valid document as a policy engine value (`Undefined` for an invalid one).
    pub fn rego_value(&self) -> &regorus::Value {
        self.rego.get_or_init(|| match &self.json {
            Value::Null => regorus::Value::Undefined,
            json => document_value(json),
        })
    }
}

/// A JSON value as a policy engine value, read straight from the JSON (no copy first).
pub fn rego_value(json: &Value) -> regorus::Value {
    // Every JSON value has an engine value; `Undefined` would only stand for a bug.
    regorus::Value::deserialize(json).unwrap_or(regorus::Value::Undefined)
}

/// Most strings shared between documents' engine values. The first strings seen fill the
/// table, and the ones that recur (keys, kinds, algorithms, label values) are among them;
/// past it, strings are simply not shared.
const MAX_SHARED_STRINGS: usize = 4096;

/// A document as a policy engine value whose object keys and short strings are shared with
/// other documents': the same few dozen recur in the thousands of documents a daemon keeps.
fn document_value(json: &Value) -> regorus::Value {
    static SHARED: LazyLock<RwLock<HashMap<String, regorus::Value>>> =
        LazyLock::new(Default::default);
    let shared = |text: &str| {
        if let Some(value) = SHARED.read().ok().and_then(|s| s.get(text).cloned()) {
            return value;
        }
        let value = regorus::Value::from(text);
        if let Ok(mut table) = SHARED.write()
            && table.len() < MAX_SHARED_STRINGS
        {
            table.insert(text.to_owned(), value.clone());
        }
        value
    };
    match json {
        Value::Object(map) => regorus::Value::from(
            map.iter()
                .map(|(k, v)| (shared(k), document_value(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
        Value::Array(items) => {
            regorus::Value::from(items.iter().map(document_value).collect::<Vec<_>>())
        }
        Value::String(text) if text.len() <= 64 => shared(text),
        scalar => rego_value(scalar),
    }
}

#[derive(Debug, Default)]
pub enum Content {
    /// Nothing usable: the file could not be read as text or parsed.
    #[default]
    Unreadable,
    Resources(Documents),
    Module(Arc<str>),
    Data(Value),
}

/// The documents of a resource file, and its text to read positions from again.
#[derive(Debug)]
pub struct Documents {
    pub docs: Vec<ParsedDoc>,
    text: Box<str>,
    /// The documents' trees, read again from `text` on first use: a blob's trees take ten
    /// times its text, and only a file with something to report at a field needs them.
    trees: OnceLock<Vec<Node>>,
}

#[derive(Debug, Default)]
pub struct ParsedFile {
    pub content: Content,
    /// Problems of the file as a whole (encoding, size, YAML syntax).
    pub problems: Vec<Problem>,
}

impl ParsedFile {
    fn failed(problem: Problem) -> ParsedFile {
        ParsedFile {
            content: Content::Unreadable,
            problems: vec![problem],
        }
    }

    pub fn docs(&self) -> &[ParsedDoc] {
        match &self.content {
            Content::Resources(documents) => &documents.docs,
            _ => &[],
        }
    }

    /// The tree of document `doc`, with the position of every key and value.
    pub fn tree(&self, doc: usize) -> Option<&Node> {
        let Content::Resources(documents) = &self.content else {
            return None;
        };
        documents
            .trees
            .get_or_init(|| {
                // The text parsed once already; should it fail now, positions fall back to
                // the documents' own.
                resource_trees(&documents.text).unwrap_or_default()
            })
            .get(doc)
    }

    /// Every problem of the file, its documents' included.
    pub fn all_problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .chain(self.docs().iter().flat_map(|d| d.problems.iter()))
    }
}

pub fn too_large(size: u64) -> Problem {
    Problem::error(
        Pos::START,
        format!("file is {size} bytes; gitward reads files of at most {MAX_FILE_BYTES} bytes"),
    )
}

/// Checks that a file is text: not too large, no NUL bytes, valid UTF-8. Returns the text
/// without a byte-order mark.
pub fn text_of(bytes: &[u8]) -> Result<&str, Problem> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        return Err(Problem::error(
            Pos::of_offset(bytes, nul),
            "binary file (contains a NUL byte); gitward reads only text",
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let bad = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
        Problem::error(
            Pos::of_offset(bytes, e.valid_up_to()),
            format!("file is not valid UTF-8 (byte 0x{bad:02x})"),
        )
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

pub fn parse_file(role: Role, bytes: &[u8], values: EngineValues) -> ParsedFile {
    let text = match text_of(bytes) {
        Ok(text) => text,
        Err(problem) => return ParsedFile::failed(problem),
    };
    match role {
        Role::Module => ParsedFile {
            content: Content::Module(Arc::from(text)),
            problems: Vec::new(),
        },
        Role::Data => parse_data(text),
        Role::Resources => match resource_trees(text) {
            Ok(trees) => ParsedFile {
                content: Content::Resources(Documents {
                    docs: trees
                        .into_iter()
                        .map(|tree| parse_resource(tree, values))
                        .collect(),
                    text: Box::from(text),
                    trees: OnceLock::new(),
                }),
                problems: Vec::new(),
            },
            Err(problem) => ParsedFile::failed(problem),
        },
    }
}

/// The trees of a resource file's documents, empty ones left out.
fn resource_trees(text: &str) -> Result<Vec<Node>, Problem> {
    Ok(parse_documents(text, Limits::default())?
        .into_iter()
        .map(|d| d.root)
        .filter(|root| root.value != NodeValue::Null)
        .collect())
}

fn parse_data(text: &str) -> ParsedFile {
    match parse_documents(text, Limits::default()) {
        Ok(documents) if documents.len() <= 1 => ParsedFile {
            content: Content::Data(documents.first().map_or(Value::Null, |d| d.root.to_json())),
            problems: Vec::new(),
        },
        Ok(documents) => ParsedFile::failed(Problem::error(
            documents[1].root.pos,
            "a data file holds one document",
        )),
        Err(problem) => ParsedFile::failed(problem),
    }
}

fn parse_resource(root: Node, values: EngineValues) -> ParsedDoc {
    let json = root.to_json();
    let name = json
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut doc = ParsedDoc {
        pos: root.pos,
        kind: None,
        name,
        resource: None,
        problems: Vec::new(),
        json: Value::Null,
        rego: OnceLock::new(),
    };
    if !matches!(root.value, NodeValue::Map(_)) {
        doc.problems.push(Problem::error(
            root.pos,
            "a document must be a mapping with apiVersion, kind, metadata and spec",
        ));
        return doc;
    }
    let kind = match root.get("kind") {
        None => {
            let hint = if root.get("apiVersion").is_none() {
                format!(
                    "not a gitward resource (no `apiVersion: {API_VERSION}` and no `kind`); list the file in .gitwardignore if gitward should skip it"
                )
            } else {
                "missing field `kind`".to_owned()
            };
            doc.problems.push(Problem::error(root.pos, hint));
            return doc;
        }
        Some(entry) => match entry.value.as_str().and_then(Kind::parse) {
            Some(kind) if entry.value.as_str() == Some(kind.as_str()) => kind,
            _ => {
                let found = entry.value.as_str().unwrap_or_default();
                let names = Kind::ALL.iter().map(|k| k.as_str());
                doc.problems.push(Problem::error(
                    entry.value.pos,
                    format!(
                        "unknown kind `{found}`; expected Issuer, Certificate, Policy, Gate or Sink{}",
                        did_you_mean(found, names)
                    ),
                ));
                return doc;
            }
        },
    };
    doc.kind = Some(kind);
    doc.problems = schema::check(kind, &root, &json);
    if !doc.problems.is_empty() {
        return doc;
    }
    match typed(kind, &json) {
        Ok(resource) => {
            doc.problems = semantic::check(&resource, &root);
            if doc.problems.is_empty() {
                doc.resource = Some(Arc::new(resource));
                match values {
                    EngineValues::WithTheDocument => {
                        doc.rego = OnceLock::from(document_value(&json));
                    }
                    EngineValues::OnFirstUse => doc.json = json,
                }
            }
        }
        Err(error) => doc
            .problems
            .push(Problem::error(root.pos, format!("invalid {kind}: {error}"))),
    }
    doc
}

fn typed(kind: Kind, json: &Value) -> Result<Resource, serde_json::Error> {
    let metadata = Metadata::deserialize(&json["metadata"])?;
    let spec_json = &json["spec"];
    let spec = match kind {
        Kind::Issuer => Spec::Issuer(Box::new(IssuerSpec::deserialize(spec_json)?)),
        Kind::Certificate => Spec::Certificate(CertificateSpec::deserialize(spec_json)?),
        Kind::Policy => Spec::Policy(PolicySpec::deserialize(spec_json)?),
        Kind::Gate => Spec::Gate(GateSpec::deserialize(spec_json)?),
        Kind::Sink => Spec::Sink(SinkSpec::deserialize(spec_json)?),
    };
    Ok(Resource { metadata, spec })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(file: &ParsedFile) -> Vec<String> {
        file.all_problems()
            .map(|p| format!("{}:{}: {}", p.pos.line, p.pos.col, p.message))
            .collect()
    }

    #[test]
    fn roles_come_from_the_path() {
        assert_eq!(Role::of("certs/a.yaml"), Some(Role::Resources));
        assert_eq!(Role::of("A.YML"), Some(Role::Resources));
        assert_eq!(Role::of("policies/keys.rego"), Some(Role::Module));
        assert_eq!(Role::of("policies/data/domains.yaml"), Some(Role::Data));
        assert_eq!(Role::of("policies/data/x/y.json"), Some(Role::Data));
        assert_eq!(Role::of("docs/readme.md"), None);
        assert_eq!(Role::of("config.json"), None);
    }

    #[test]
    fn a_document_value_with_shared_strings_is_the_engine_value_of_its_json() {
        let json = serde_json::json!({
            "metadata": {"name": "a", "labels": {"env": "prod"}},
            "spec": {"dnsNames": ["a.example.com"], "n": 3, "f": 1.5, "t": true, "z": null},
            "list": [{"metadata": {"name": "b"}}, []],
        });
        let shared = document_value(&json);
        assert_eq!(shared, rego_value(&json));
        assert_eq!(document_value(&json), shared);
    }

    #[test]
    fn a_multi_document_file_yields_each_resource() {
        let text = "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: root}\nspec:\n  selfSigned: {commonName: Root}\n---\n---\napiVersion: gitward/v1\nkind: Sink\nmetadata: {name: hook}\nspec: {type: webhook, endpoint: hook}\n";
        let file = parse_file(Role::Resources, text.as_bytes(), EngineValues::default());
        assert_eq!(messages(&file), Vec::<String>::new());
        let kinds: Vec<_> = file.docs().iter().map(|d| d.kind).collect();
        assert_eq!(kinds, [Some(Kind::Issuer), Some(Kind::Sink)]);
        assert_eq!(file.docs()[1].pos.line, 8);
        // Positions read again from the text skip the empty document as parsing did.
        let endpoint = file.tree(1).map(|tree| tree.locate(["spec", "endpoint"]));
        assert_eq!(endpoint, Some(crate::diag::Pos { line: 11, col: 23 }));
        assert!(file.tree(2).is_none());
    }

    #[test]
    fn text_problems_are_located() {
        let file = parse_file(Role::Resources, b"a: 1\nb: \xff\n", EngineValues::default());
        assert_eq!(
            messages(&file),
            ["2:4: file is not valid UTF-8 (byte 0xff)"]
        );
        let file = parse_file(Role::Resources, b"a: 1\n\0", EngineValues::default());
        assert_eq!(
            messages(&file),
            ["2:1: binary file (contains a NUL byte); gitward reads only text"]
        );
    }

    #[test]
    fn foreign_yaml_is_named_as_such() {
        let file = parse_file(
            Role::Resources,
            b"services:\n  web: {image: nginx}\n",
            EngineValues::default(),
        );
        assert!(messages(&file)[0].contains("not a gitward resource"));
        let file = parse_file(
            Role::Resources,
            b"apiVersion: gitward/v1\nkind: Certificat\n",
            EngineValues::default(),
        );
        assert_eq!(
            messages(&file),
            [
                "2:7: unknown kind `Certificat`; expected Issuer, Certificate, Policy, Gate or Sink; did you mean `Certificate`?"
            ]
        );
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use crate::scaffold;

    /// A deterministic xorshift generator: the same mutations on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn no_mutation_of_the_example_files_makes_the_parser_panic() {
        let samples: Vec<&[u8]> = scaffold::files(&scaffold::EXAMPLE_REPO)
            .into_iter()
            .filter(|(path, _)| path.ends_with(".yaml"))
            .map(|(_, bytes)| bytes)
            .collect();
        let alphabet = b"-:[]{}&*!|>'\"#%@`,? \n\t\0\xff0aZ.";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..4000 {
            let mut bytes = samples[round % samples.len()].to_vec();
            for _ in 0..=(rng.next() % 8) {
                let at = (rng.next() as usize) % (bytes.len() + 1);
                let byte = alphabet[(rng.next() as usize) % alphabet.len()];
                match rng.next() % 3 {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, byte),
                }
            }
            let parsed = parse_file(Role::Resources, &bytes, EngineValues::default());
            // Whatever the bytes, the outcome is either resources or located problems.
            for problem in parsed.all_problems() {
                assert!(problem.pos.line >= 1 && problem.pos.col >= 1);
            }
        }
    }
}
