//! YAML documents as trees that remember where every key and value is.
//!
//! `serde_yaml` reports a position only for its own errors; gitward must point at the line of
//! any field (a dangling `issuerRef`, a policy finding on `spec.duration`), so documents are
//! built from the span-carrying events of `saphyr-parser` into a [`Node`] tree (kept only while
//! a blob is checked, and read again where something is reported at a field).
//! The builder enforces the limits that keep hostile input cheap: nesting depth, and a node
//! budget that also counts alias expansions (a "billion laughs" document stops at the budget).
//! Scalars resolve by the YAML 1.2 core schema, so `no`, `on` and `09:00` stay strings.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

use crate::diag::{Pos, Problem};

/// Bounds on what one file may cost to parse.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Nodes per file, counting every node an alias expands to.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 64,
            max_nodes: 200_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: NodeValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// One document of a multi-document file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub root: Node,
}

impl Node {
    /// The entry for `key`, when this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The node at a path of keys and indexes (`["spec", "dnsNames", "1"]`).
    pub fn at<'a>(&self, path: impl IntoIterator<Item = &'a str>) -> Option<&Node> {
        let mut node = self;
        for segment in path {
            node = node.child(segment)?;
        }
        Some(node)
    }

    fn child(&self, segment: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|e| e.key == segment).map(|e| &e.value),
            NodeValue::Seq(items) => items.get(segment.parse::<usize>().ok()?),
            _ => None,
        }
    }

    /// Where a path points: the key of a mapping entry when the path ends at one (that is the
    /// line a reader looks at for "field X"), else the deepest node that exists on the path.
    pub fn locate<'a>(&self, path: impl IntoIterator<Item = &'a str>) -> Pos {
        let mut node = self;
        let mut pos = self.pos;
        for segment in path {
            match &node.value {
                NodeValue::Map(entries) => match entries.iter().find(|e| e.key == segment) {
                    Some(entry) => {
                        pos = entry.key_pos;
                        node = &entry.value;
                    }
                    None => return pos,
                },
                NodeValue::Seq(items) => {
                    match segment.parse::<usize>().ok().and_then(|i| items.get(i)) {
                        Some(item) => {
                            pos = item.pos;
                            node = item;
                        }
                        None => return pos,
                    }
                }
                _ => return pos,
            }
        }
        pos
    }

    /// The JSON value of this node. Non-finite floats (`.inf`, `.nan`) become `null`; the
    /// builder has already rejected them wherever a resource could hold them.
    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::Number((*i).into()),
            NodeValue::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

/// Parses every document of a file. A syntax error or an exceeded limit fails the whole file:
/// half a file is never loaded.
pub fn parse_documents(text: &str, limits: Limits) -> Result<Vec<Document>, Problem> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        limits,
        nodes: 0,
        anchors: HashMap::new(),
    };
    builder.stream()
}

struct Builder<'input> {
    parser: Parser<'input, saphyr_parser::StrInput<'input>>,
    limits: Limits,
    nodes: usize,
    anchors: HashMap<usize, Node>,
}

/// Mappings up to this many keys are checked for duplicates by scanning.
const SCANNED_KEYS: usize = 16;

fn pos_of(span: Span) -> Pos {
    Pos::new(span.start.line(), span.start.col() + 1)
}

/// What a node costs against the budget: one per node, and one per [`BYTES_PER_NODE`] bytes
/// of text, so that an alias repeating a long string costs what it expands to.
fn node_count(node: &Node) -> usize {
    match &node.value {
        NodeValue::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        NodeValue::Map(entries) => {
            1 + entries
                .iter()
                .map(|e| text_cost(&e.key) + node_count(&e.value))
                .sum::<usize>()
        }
        NodeValue::Str(text) => 1 + text_cost(text),
        _ => 1,
    }
}

/// Bytes of text that cost as much as a node.
const BYTES_PER_NODE: usize = 64;

fn text_cost(text: &str) -> usize {
    text.len() / BYTES_PER_NODE
}

fn tag_name(tag: &Tag) -> String {
    if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else if tag.handle == "!" {
        format!("!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

impl<'input> Builder<'input> {
    fn next(&mut self) -> Result<(Event<'input>, Span), Problem> {
        match self.parser.next_event() {
            Some(Ok(event)) => Ok(event),
            Some(Err(err)) => {
                let m = err.marker();
                Err(Problem::error(
                    Pos::new(m.line(), m.col() + 1),
                    format!("YAML syntax error: {}", err.info()),
                ))
            }
            None => Err(Problem::error(
                Pos::START,
                "YAML syntax error: unexpected end of input",
            )),
        }
    }

    fn stream(&mut self) -> Result<Vec<Document>, Problem> {
        let mut documents = Vec::new();
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(documents),
                Event::DocumentStart(_) => {
                    // Anchors are scoped to their document.
                    self.anchors.clear();
                    let (event, span) = self.next()?;
                    let root = self.node(event, span, 0)?;
                    documents.push(Document { root });
                }
                other => {
                    return Err(Problem::error(
                        pos_of(span),
                        format!("YAML syntax error: unexpected {other:?}"),
                    ));
                }
            }
        }
    }

    fn count(&mut self, pos: Pos, n: usize) -> Result<(), Problem> {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            return Err(Problem::error(
                pos,
                format!(
                    "file expands to more than {} YAML nodes (counting alias expansions, and \
                     every {BYTES_PER_NODE} bytes of text as one); refusing to load it",
                    self.limits.max_nodes
                ),
            ));
        }
        Ok(())
    }

    fn node(&mut self, event: Event<'input>, span: Span, depth: usize) -> Result<Node, Problem> {
        let pos = pos_of(span);
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.count(pos, 1 + text_cost(&text))?;
                (
                    Node {
                        pos,
                        value: scalar(&text, style, tag.as_deref(), pos)?,
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(Problem::error(
                        pos,
                        "YAML alias refers to an unknown anchor",
                    ));
                };
                let target = target.clone();
                self.count(pos, node_count(&target))?;
                return Ok(Node {
                    pos,
                    value: target.value,
                });
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "seq", pos)?;
                self.enter(pos, depth)?;
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if let Event::SequenceEnd = event {
                        break;
                    }
                    items.push(self.node(event, span, depth + 1)?);
                }
                (
                    Node {
                        pos,
                        value: NodeValue::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "map", pos)?;
                self.enter(pos, depth)?;
                let entries = self.mapping(depth)?;
                (
                    Node {
                        pos,
                        value: NodeValue::Map(entries),
                    },
                    anchor,
                )
            }
            other => {
                return Err(Problem::error(
                    pos,
                    format!("YAML syntax error: unexpected {other:?}"),
                ));
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn enter(&mut self, pos: Pos, depth: usize) -> Result<(), Problem> {
        self.count(pos, 1)?;
        if depth >= self.limits.max_depth {
            return Err(Problem::error(
                pos,
                format!(
                    "YAML nesting is deeper than {} levels",
                    self.limits.max_depth
                ),
            ));
        }
        Ok(())
    }

    fn mapping(&mut self, depth: usize) -> Result<Vec<Entry>, Problem> {
        let mut entries: Vec<Entry> = Vec::new();
        // Duplicate keys are looked up by scanning small mappings and through an index in
        // large ones, so a mapping with 100,000 keys costs no more than 100,000 lookups.
        let mut index: HashMap<String, u32> = HashMap::new();
        loop {
            let (event, span) = self.next()?;
            let key_pos = pos_of(span);
            let key = match event {
                Event::MappingEnd => return Ok(entries),
                Event::Scalar(text, _, _, None) => text.into_owned(),
                Event::Scalar(text, _, _, Some(tag))
                    if tag.is_yaml_core_schema() && tag.suffix == "str" =>
                {
                    text.into_owned()
                }
                _ => {
                    return Err(Problem::error(
                        key_pos,
                        "mapping keys must be plain strings (no aliases, tags or collections)",
                    ));
                }
            };
            if key == "<<" {
                return Err(Problem::error(
                    key_pos,
                    "YAML merge keys (`<<`) are not supported: write the fields out",
                ));
            }
            if entries.len() == SCANNED_KEYS {
                index.extend(entries.iter().map(|e| (e.key.clone(), e.key_pos.line)));
            }
            let first = if entries.len() < SCANNED_KEYS {
                entries
                    .iter()
                    .find(|e| e.key == key)
                    .map(|e| e.key_pos.line)
            } else {
                index.insert(key.clone(), key_pos.line)
            };
            if let Some(line) = first {
                return Err(Problem::error(
                    key_pos,
                    format!("duplicate key `{key}` (first at line {line})"),
                ));
            }
            self.count(key_pos, 1)?;
            let (event, span) = self.next()?;
            let value = self.node(event, span, depth + 1)?;
            entries.push(Entry {
                key,
                key_pos,
                value,
            });
        }
    }

    fn check_collection_tag(
        &self,
        tag: Option<&Tag>,
        expected: &str,
        pos: Pos,
    ) -> Result<(), Problem> {
        match tag {
            None => Ok(()),
            Some(t) if t.is_yaml_core_schema() && t.suffix == expected => Ok(()),
            Some(t) => Err(unsupported_tag(t, pos)),
        }
    }
}

fn unsupported_tag(tag: &Tag, pos: Pos) -> Problem {
    Problem::error(
        pos,
        format!("YAML tag `{}` is not supported", tag_name(tag)),
    )
}

/// Resolves a scalar by the YAML 1.2 core schema: only plain scalars are typed, and only
/// `!!str`, `!!int`, `!!float`, `!!bool` and `!!null` tags are understood.
fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    pos: Pos,
) -> Result<NodeValue, Problem> {
    let resolved = match tag {
        None if style == ScalarStyle::Plain => resolve_plain(text),
        None => NodeValue::Str(text.to_owned()),
        Some(t) if t.handle == "!" && t.suffix.is_empty() => NodeValue::Str(text.to_owned()),
        Some(t) if t.is_yaml_core_schema() => {
            let value = resolve_plain(text);
            let fits = match (t.suffix.as_str(), &value) {
                ("str", _) => return Ok(NodeValue::Str(text.to_owned())),
                ("int", NodeValue::Int(_))
                | ("float", NodeValue::Float(_) | NodeValue::Int(_))
                | ("bool", NodeValue::Bool(_))
                | ("null", NodeValue::Null) => true,
                ("int" | "float" | "bool" | "null", _) => {
                    return Err(Problem::error(
                        pos,
                        format!("`{text}` is not a valid {}", tag_name(t)),
                    ));
                }
                _ => false,
            };
            if !fits {
                return Err(unsupported_tag(t, pos));
            }
            match (t.suffix.as_str(), value) {
                ("float", NodeValue::Int(i)) => NodeValue::Float(i as f64),
                (_, v) => v,
            }
        }
        Some(t) => return Err(unsupported_tag(t, pos)),
    };
    if let NodeValue::Float(f) = resolved
        && !f.is_finite()
    {
        return Err(Problem::error(
            pos,
            format!("`{text}` is not a finite number; quote it if it is meant as text"),
        ));
    }
    Ok(resolved)
}

fn resolve_plain(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return NodeValue::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    if let Some(int) = resolve_int(text) {
        return NodeValue::Int(int);
    }
    if is_core_float(text)
        && let Ok(f) = text.parse::<f64>()
    {
        return NodeValue::Float(f);
    }
    NodeValue::Str(text.to_owned())
}

fn resolve_int(text: &str) -> Option<i64> {
    if let Some(octal) = text.strip_prefix("0o") {
        return i64::from_str_radix(octal, 8).ok();
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    None
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac_part {
        None => !int_part.is_empty() && all_digits(int_part),
        Some(frac) => {
            all_digits(int_part) && all_digits(frac) && !(int_part.is_empty() && frac.is_empty())
        }
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Document>, Problem> {
        parse_documents(text, Limits::default())
    }

    #[test]
    fn keys_and_values_keep_their_positions() {
        let docs = parse("a: 1\nb:\n  - x\n  - y: true\n").unwrap();
        let root = &docs[0].root;
        assert_eq!(root.locate(["b"]), Pos { line: 2, col: 1 });
        assert_eq!(root.locate(["b", "1", "y"]), Pos { line: 4, col: 5 });
        assert_eq!(root.locate(["b", "7"]), Pos { line: 2, col: 1 });
        assert_eq!(root.at(["b", "0"]).and_then(Node::as_str), Some("x"));
    }

    #[test]
    fn scalars_follow_the_yaml_1_2_core_schema() {
        let docs = parse("[no, on, '1', 1, 1.5, ~, 09:00, 0x1F, 90d, true]").unwrap();
        assert_eq!(
            docs[0].root.to_json(),
            serde_json::json!(["no", "on", "1", 1, 1.5, null, "09:00", 31, "90d", true])
        );
    }

    #[test]
    fn every_document_of_a_stream_is_returned() {
        let docs = parse("a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].root.pos.line, 3);
        assert_eq!(docs[2].root.value, NodeValue::Null);
    }

    #[test]
    fn aliases_expand_and_count_against_the_budget() {
        let docs = parse("a: &x [1, 2]\nb: *x\n").unwrap();
        assert_eq!(
            docs[0].root.to_json(),
            serde_json::json!({"a": [1, 2], "b": [1, 2]})
        );

        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, name) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
            let prev = ["a", "b", "c", "d", "e", "f", "g", "h"][i];
            bomb.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let err = parse(&bomb).unwrap_err();
        assert!(err.message.contains("alias expansions"), "{}", err.message);
    }

    #[test]
    fn hostile_shapes_are_errors_with_positions() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("deeper than 64"));
        let dup = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(
            (dup.pos, dup.message.as_str()),
            (
                Pos { line: 3, col: 1 },
                "duplicate key `a` (first at line 1)"
            )
        );
        assert!(
            parse("a: !custom x\n")
                .unwrap_err()
                .message
                .contains("`!custom`")
        );
        assert!(
            parse("a: .nan\n")
                .unwrap_err()
                .message
                .contains("not a finite number")
        );
        assert!(
            parse("base: &b {x: 1}\nc:\n  <<: *b\n")
                .unwrap_err()
                .message
                .contains("merge keys")
        );
        let syntax = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(
            syntax.message.starts_with("YAML syntax error"),
            "{}",
            syntax.message
        );
    }

    #[test]
    fn duplicates_are_found_in_large_mappings_too() {
        let mut text: String = (0..40).map(|i| format!("k{i}: {i}\n")).collect();
        text.push_str("k3: again\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(
            (err.pos.line, err.message.as_str()),
            (41, "duplicate key `k3` (first at line 4)")
        );
    }

    #[test]
    fn core_tags_are_checked() {
        let docs = parse("a: !!str 12\nb: !!float 3\n").unwrap();
        assert_eq!(
            docs[0].root.to_json(),
            serde_json::json!({"a": "12", "b": 3.0})
        );
        assert!(
            parse("a: !!int abc\n")
                .unwrap_err()
                .message
                .contains("not a valid !!int")
        );
    }
}
