//! JSON Schemas of the resource kinds, generated from the Rust types, and the check of a
//! document against them with errors phrased for people and located at the offending line.
//!
//! The loader validates every document against its kind's schema before building the typed
//! resource, so `schemas/*.schema.json` and the loader accept the same documents by
//! construction; a test keeps the checked-in files equal to what the types generate.

use std::collections::HashSet;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::types::{CertificateSpec, GateSpec, IssuerSpec, Kind, Metadata, PolicySpec, SinkSpec};
use super::values::pattern_hint;
use super::yaml::{Node, NodeValue};
use crate::diag::{Pos, Problem, closest, did_you_mean};

pub const API_VERSION: &str = "gitward/v1";
const SCHEMA_BASE: &str = "https://gitward.dev/schemas/";

/// The JSON Schema (draft 2020-12) of a whole document of `kind`.
pub fn kind_schema(kind: Kind) -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let metadata = generator.subschema_for::<Metadata>();
    let spec = match kind {
        Kind::Issuer => generator.subschema_for::<IssuerSpec>(),
        Kind::Certificate => generator.subschema_for::<CertificateSpec>(),
        Kind::Policy => generator.subschema_for::<PolicySpec>(),
        Kind::Gate => generator.subschema_for::<GateSpec>(),
        Kind::Sink => generator.subschema_for::<SinkSpec>(),
    };
    let definitions = generator.take_definitions(true);
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("{SCHEMA_BASE}{}.schema.json", kind.schema_stem()),
        "title": kind.as_str(),
        "description": format!("A gitward {} resource.", kind.as_str()),
        "type": "object",
        "additionalProperties": false,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION, "description": "Version of the resource format."},
            "kind": {"const": kind.as_str(), "description": "Kind of the resource."},
            "metadata": metadata,
            "spec": spec,
        },
        "$defs": definitions,
    });
    forbid_null(&mut schema);
    schema
}

/// schemars lets an `Option` field be `null`; in gitward an optional field is left out
/// instead, and an empty `commonName:` is a mistake worth reporting.
fn forbid_null(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if let [single] = types.as_slice() {
                    let single = single.clone();
                    map.insert("type".to_owned(), single);
                }
            }
            if let Some(Value::Array(options)) = map.get("anyOf") {
                let kept: Vec<Value> = options
                    .iter()
                    .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                    .cloned()
                    .collect();
                if kept.len() < options.len() {
                    map.remove("anyOf");
                    if let [Value::Object(only)] = kept.as_slice() {
                        for (k, v) in only {
                            map.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    } else {
                        map.insert("anyOf".to_owned(), Value::Array(kept));
                    }
                }
            }
            map.values_mut().for_each(forbid_null);
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_null),
        _ => {}
    }
}

/// A schema and its validator.
pub struct CompiledSchema {
    schema: Value,
    validator: Validator,
}

impl CompiledSchema {
    /// Compiles a schema gitward generated from its own types: one that does not compile is
    /// a bug in gitward, caught by the schema tests, never a property of the input.
    pub fn new(schema: Value) -> CompiledSchema {
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("a generated schema does not compile: {e}"));
        CompiledSchema { schema, validator }
    }

    /// Checks a document against the schema. Every violation becomes a problem at the line
    /// of the field it concerns.
    pub fn check(&self, doc: &Node, json: &Value) -> Vec<Problem> {
        let errors: Vec<ValidationError<'_>> = self.validator.iter_errors(json).collect();
        // A misspelt field also shows as the missing field it was meant to be: report the
        // misspelling only.
        let misspelt: HashSet<(String, String)> = errors
            .iter()
            .flat_map(|e| misspellings(e, &self.schema))
            .collect();
        // A value of the wrong type also fails its enum or pattern: report the type only.
        let mistyped: HashSet<&str> = errors
            .iter()
            .filter(|e| matches!(e.kind(), ValidationErrorKind::Type { .. }))
            .map(|e| e.instance_path().as_str())
            .collect();
        let mut problems: Vec<Problem> = errors
            .iter()
            .filter(|e| match e.kind() {
                ValidationErrorKind::Required { property } => {
                    !misspelt.contains(&(e.instance_path().as_str().to_owned(), short(property)))
                }
                ValidationErrorKind::Type { .. } => true,
                _ => !mistyped.contains(e.instance_path().as_str()),
            })
            .flat_map(|error| describe(error, &self.schema, doc))
            .collect();
        problems.sort_by(|a, b| (a.pos, &a.message).cmp(&(b.pos, &b.message)));
        problems.dedup();
        problems
    }
}

fn compiled(kind: Kind) -> &'static CompiledSchema {
    static COMPILED: OnceLock<Vec<CompiledSchema>> = OnceLock::new();
    let all = COMPILED.get_or_init(|| {
        Kind::ALL
            .iter()
            .map(|&k| CompiledSchema::new(kind_schema(k)))
            .collect()
    });
    &all[Kind::ALL.iter().position(|&k| k == kind).unwrap_or(0)]
}

/// Checks a document against the schema of `kind`.
pub fn check(kind: Kind, doc: &Node, json: &Value) -> Vec<Problem> {
    compiled(kind).check(doc, json)
}

/// The schema of a whole document of type `T` (the host config), with gitward's conventions:
/// an `$id` under the project's schema base, no `null` for optional fields.
pub fn document_schema<T: schemars::JsonSchema>(stem: &str) -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema =
        serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default();
    if let Value::Object(map) = &mut schema {
        map.insert(
            "$id".into(),
            format!("{SCHEMA_BASE}{stem}.schema.json").into(),
        );
    }
    forbid_null(&mut schema);
    schema
}

fn pointer_segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// `spec.dnsNames[1]`: a field path as the user wrote it.
fn field_name(doc: &Node, segments: &[String]) -> String {
    let mut out = String::new();
    let mut node = Some(doc);
    for segment in segments {
        match node.map(|n| &n.value) {
            Some(NodeValue::Seq(items)) => {
                out.push_str(&format!("[{segment}]"));
                node = segment.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            _ => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(segment);
                node = node.and_then(|n| n.get(segment)).map(|e| &e.value);
            }
        }
    }
    if out.is_empty() {
        "document".to_owned()
    } else {
        out
    }
}

fn json_type_phrase(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "true/false",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn type_name_phrase(name: &str) -> &'static str {
    match name {
        "null" => "empty",
        "boolean" => "true or false",
        "number" => "a number",
        "integer" => "an integer",
        "string" => "a string",
        "array" => "a list",
        "object" => "a mapping",
        _ => "a value",
    }
}

fn short(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The schema node at a JSON pointer into the root schema.
fn schema_at<'a>(schema: &'a Value, segments: &[String]) -> Option<&'a Value> {
    segments
        .iter()
        .try_fold(schema, |node, segment| match node {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
            _ => None,
        })
}

/// The properties an object's schema declares, for "did you mean" hints.
fn known_properties(owner: Option<&Value>) -> Vec<&str> {
    owner
        .and_then(|o| o.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn owner_of<'a>(error: &ValidationError<'_>, schema: &'a Value) -> Option<&'a Value> {
    let keyword_path = pointer_segments(error.schema_path().as_str());
    keyword_path
        .split_last()
        .and_then(|(_, parent)| schema_at(schema, parent))
}

/// (object path, field meant) for each unknown field close to a known one.
fn misspellings(error: &ValidationError<'_>, schema: &Value) -> Vec<(String, String)> {
    let ValidationErrorKind::AdditionalProperties { unexpected } = error.kind() else {
        return Vec::new();
    };
    let known = known_properties(owner_of(error, schema));
    unexpected
        .iter()
        .filter_map(|key| closest(key, known.iter().copied()))
        .map(|meant| (error.instance_path().as_str().to_owned(), meant.to_owned()))
        .collect()
}

fn describe(error: &ValidationError<'_>, schema: &Value, doc: &Node) -> Vec<Problem> {
    let instance = pointer_segments(error.instance_path().as_str());
    let owner = owner_of(error, schema);
    let field = field_name(doc, &instance);
    let pos = doc.locate(instance.iter().map(String::as_str));
    // Errors about a value point at the value; errors about a mapping's fields at its key.
    let value_pos = doc
        .at(instance.iter().map(String::as_str))
        .map_or(pos, |n| n.pos);
    let at = |pos: Pos, message: String| vec![Problem::error(pos, message)];

    if let Some(message) = owner
        .and_then(|o| o.get("errorMessage"))
        .and_then(Value::as_str)
    {
        // `errorField` names the sibling field the message is about, when that is where a
        // reader should look.
        let pos = match owner
            .and_then(|o| o.get("errorField"))
            .and_then(Value::as_str)
        {
            Some(sibling) => {
                let parent = &instance[..instance.len().saturating_sub(1)];
                doc.locate(parent.iter().map(String::as_str).chain([sibling]))
            }
            None => pos,
        };
        return at(pos, message.to_owned());
    }
    let value = error.instance();
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known = known_properties(owner);
            unexpected
                .iter()
                .map(|key| {
                    let mut path: Vec<&str> = instance.iter().map(String::as_str).collect();
                    path.push(key);
                    let place = if instance.is_empty() {
                        String::new()
                    } else {
                        format!(" in {field}")
                    };
                    Problem::error(
                        doc.locate(path),
                        format!(
                            "unknown field `{key}`{place}{}",
                            did_you_mean(key, known.iter().copied())
                        ),
                    )
                })
                .collect()
        }
        ValidationErrorKind::Required { property } => {
            let place = if instance.is_empty() {
                String::new()
            } else {
                format!(" in {field}")
            };
            at(pos, format!("missing field `{}`{place}", short(property)))
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => type_name_phrase(&t.to_string()).to_owned(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| type_name_phrase(&t.to_string()))
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            at(
                value_pos,
                format!(
                    "{field} must be {expected}, not {}",
                    json_type_phrase(value)
                ),
            )
        }
        ValidationErrorKind::Enum { options } => {
            let choices: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(short).collect())
                .unwrap_or_default();
            at(
                value_pos,
                format!(
                    "{field}: `{}` is not one of {}{}",
                    short(value),
                    choices.join(", "),
                    did_you_mean(&short(value), choices.iter().map(String::as_str))
                ),
            )
        }
        ValidationErrorKind::Constant { expected_value } => at(
            pos,
            format!(
                "{field} must be `{}`, not `{}`",
                short(expected_value),
                short(value)
            ),
        ),
        ValidationErrorKind::Pattern { pattern } => {
            let hint = pattern_hint(pattern)
                .map_or_else(|| format!("it must match {pattern}"), str::to_owned);
            at(
                value_pos,
                format!("{field}: `{}` is not valid: {hint}", short(value)),
            )
        }
        ValidationErrorKind::MinLength { limit: 1 } => {
            at(value_pos, format!("{field} must not be empty"))
        }
        ValidationErrorKind::MinLength { limit } => at(
            pos,
            format!("{field} must be at least {limit} characters long"),
        ),
        ValidationErrorKind::MaxLength { limit } => at(
            pos,
            format!("{field} must be at most {limit} characters long"),
        ),
        ValidationErrorKind::MinItems { limit: 1 } => {
            at(value_pos, format!("{field} must not be empty"))
        }
        ValidationErrorKind::MinItems { limit } => {
            at(value_pos, format!("{field} needs at least {limit} entries"))
        }
        ValidationErrorKind::MaxItems { limit } => {
            at(value_pos, format!("{field} takes at most {limit} entries"))
        }
        ValidationErrorKind::Minimum { limit } => {
            at(value_pos, format!("{field} must be at least {limit}"))
        }
        ValidationErrorKind::Maximum { limit } => {
            at(value_pos, format!("{field} must be at most {limit}"))
        }
        ValidationErrorKind::UniqueItems => {
            let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
            let repeat = (1..items.len()).find(|&i| items[..i].contains(&items[i]));
            match repeat {
                Some(i) => {
                    let mut path: Vec<&str> = instance.iter().map(String::as_str).collect();
                    let index = i.to_string();
                    path.push(&index);
                    at(
                        doc.locate(path),
                        format!("{field} lists `{}` more than once", short(&items[i])),
                    )
                }
                None => at(pos, format!("{field} has duplicate entries")),
            }
        }
        ValidationErrorKind::PropertyNames { error } => {
            let key = short(error.instance());
            let mut path: Vec<&str> = instance.iter().map(String::as_str).collect();
            path.push(&key);
            let hint = match error.kind() {
                ValidationErrorKind::Pattern { pattern } => {
                    pattern_hint(pattern).unwrap_or("it has invalid characters")
                }
                ValidationErrorKind::MaxLength { .. } => "it is too long",
                _ => "it is not allowed",
            };
            at(
                doc.locate(path),
                format!("{field}: key `{key}` is not valid: {hint}"),
            )
        }
        ValidationErrorKind::FalseSchema => at(pos, format!("{field} is not allowed here")),
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => at(
            pos,
            format!("{field} does not match any of the forms it may take"),
        ),
        _ => at(pos, format!("{field}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::yaml::{Limits, parse_documents};

    fn problems(kind: Kind, text: &str) -> Vec<String> {
        let docs = parse_documents(text, Limits::default()).unwrap();
        let root = &docs[0].root;
        check(kind, root, &root.to_json())
            .into_iter()
            .map(|p| format!("{}:{}: {}", p.pos.line, p.pos.col, p.message))
            .collect()
    }

    const CERT: &str = "apiVersion: gitward/v1\nkind: Certificate\nmetadata:\n  name: api\nspec:\n  issuerRef: ca\n  dnsNames: [api.example.com]\n  target: web\n";

    #[test]
    fn a_valid_document_has_no_problems() {
        assert_eq!(problems(Kind::Certificate, CERT), Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_point_at_the_key_and_suggest_the_right_one() {
        let text = CERT.replace("  target: web\n", "  target: web\n  dnsName: x\n");
        assert_eq!(
            problems(Kind::Certificate, &text),
            ["9:3: unknown field `dnsName` in spec; did you mean `dnsNames`?"]
        );
    }

    #[test]
    fn values_are_explained() {
        let text = CERT.replace("name: api", "name: Api_1").replace(
            "target: web",
            "target: web\n  keyAlgorithm: ECDSA-P521\n  duration: 3w",
        );
        assert_eq!(
            problems(Kind::Certificate, &text),
            [
                "4:9: metadata.name: `Api_1` is not valid: a name is lowercase letters, digits and '-', starting and ending with a letter or digit",
                "9:17: spec.keyAlgorithm: `ECDSA-P521` is not one of ECDSA-P256, ECDSA-P384, Ed25519, RSA-2048, RSA-3072, RSA-4096; did you mean `ECDSA-P256`?",
                "10:13: spec.duration: `3w` is not valid: a duration is like 90d, 12h, 30m, 45s or 1d12h, and not zero",
            ]
        );
    }

    #[test]
    fn a_mistyped_value_is_one_problem() {
        let text = "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: s}\nspec:\n  type: webhook\n  endpoint: hook\n  minSeverity: ~\n";
        assert_eq!(
            problems(Kind::Sink, text),
            ["7:16: spec.minSeverity must be a string, not empty"]
        );
    }

    #[test]
    fn issuer_types_are_exclusive() {
        let text = "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: a}\nspec:\n  selfSigned: {commonName: A}\n  acme: {account: default}\n";
        assert_eq!(
            problems(Kind::Issuer, text),
            ["4:1: an Issuer spec sets exactly one of `selfSigned`, `ca` or `acme`"]
        );
    }

    #[test]
    fn duplicates_in_lists_point_at_the_repeat() {
        let text = CERT.replace(
            "[api.example.com]",
            "\n    - a.example.com\n    - b.example.com\n    - a.example.com",
        );
        assert_eq!(
            problems(Kind::Certificate, &text),
            ["10:7: spec.dnsNames lists `a.example.com` more than once"]
        );
    }

    #[test]
    fn sink_blocks_must_match_the_type() {
        let text = "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: s}\nspec:\n  type: webhook\n  endpoint: hook\n  jira: {project: SEC}\n";
        assert_eq!(
            problems(Kind::Sink, text),
            ["7:3: the `jira` block belongs to sinks of type jira"]
        );
    }
}
