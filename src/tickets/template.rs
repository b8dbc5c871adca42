//! Templated ticket fields: strings in a sink's `fields` may name parts of the event in
//! `{{...}}` (`{{resource.name}}`, `{{severity}}`, `{{details.policy}}`). Only these names
//! exist; the repository cannot reach anything else of the host through them.

use serde_json::Value;

use crate::events::Event;

/// The names a template may use, besides `details.<key>`.
pub const NAMES: &[&str] = &[
    "id",
    "source",
    "type",
    "subject",
    "severity",
    "message",
    "fingerprint",
    "compliance",
    "resource.kind",
    "resource.name",
    "resource.file",
    "resource.line",
    "commit.sha",
    "commit.author",
];

/// Most characters one rendered string keeps.
const RENDERED_CHARS: usize = 4096;

/// The names `text` uses that do not exist, in order.
pub fn unknown_names(text: &str) -> Vec<String> {
    placeholders(text)
        .filter(|name| !known(name))
        .map(str::to_owned)
        .collect()
}

fn known(name: &str) -> bool {
    NAMES.contains(&name)
        || name
            .strip_prefix("details.")
            .is_some_and(|key| !key.is_empty())
}

/// The `{{name}}` placeholders of `text`, trimmed.
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}").map(|(name, _)| name.trim()))
}

/// The value of `name` for `event`: empty when the event has none.
fn value_of(event: &Event, name: &str) -> String {
    let data = &event.data;
    let resource = data.resource.as_ref();
    let commit = data.commit.as_ref();
    match name {
        "id" => event.id.clone(),
        // A local repository's source is a host path, which stays on the host: its name only.
        "source" => match event.source.strip_prefix("file://") {
            Some(path) => path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            None => event.source.clone(),
        },
        "type" => event.type_.clone(),
        "subject" => event.subject.clone(),
        "severity" => data.severity.to_string(),
        "message" => data.message.clone(),
        "fingerprint" => data.fingerprint.clone(),
        "compliance" => data.compliance.join(", "),
        "resource.kind" => resource.map(|r| r.kind.clone()).unwrap_or_default(),
        "resource.name" => resource.map(|r| r.name.clone()).unwrap_or_default(),
        "resource.file" => resource.and_then(|r| r.file.clone()).unwrap_or_default(),
        "resource.line" => resource
            .and_then(|r| r.line)
            .map(|l| l.to_string())
            .unwrap_or_default(),
        "commit.sha" => commit.map(|c| c.sha.clone()).unwrap_or_default(),
        "commit.author" => commit.map(|c| c.author.clone()).unwrap_or_default(),
        _ => match name
            .strip_prefix("details.")
            .and_then(|k| data.details.get(k))
        {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        },
    }
}

/// Most bytes all the strings of one rendered value hold together: a ticket's fields stay a
/// request of reasonable size whatever the templates.
const RENDERED_BYTES: usize = 64 * 1024;

/// `text` with each placeholder replaced by the event's value (unknown names by nothing),
/// at most [`RENDERED_CHARS`] characters.
pub fn render_text(text: &str, event: &Event) -> String {
    render_within(text, event, &mut RENDERED_BYTES.clone())
}

/// [`render_text`], taking at most `budget` bytes and what it took off the budget.
fn render_within(text: &str, event: &Event, budget: &mut usize) -> String {
    let rendered = expand(text, event);
    let mut out = String::new();
    for c in rendered.chars().take(RENDERED_CHARS) {
        if c.len_utf8() > *budget {
            break;
        }
        *budget -= c.len_utf8();
        out.push(c);
    }
    out
}

/// `text` with its placeholders replaced, each value cut to [`RENDERED_CHARS`].
fn expand(text: &str, event: &Event) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = rest[start + 2..start + 2 + len].trim();
        if known(name) {
            out.extend(value_of(event, name).chars().take(RENDERED_CHARS));
        }
        if out.len() > RENDERED_CHARS * 4 {
            return out;
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

/// `value` with every string in it rendered for `event`, [`RENDERED_BYTES`] at most in all;
/// other values as they are.
pub fn render(value: &Value, event: &Event) -> Value {
    render_value(value, event, &mut RENDERED_BYTES.clone())
}

fn render_value(value: &Value, event: &Event, budget: &mut usize) -> Value {
    match value {
        Value::String(text) => Value::String(render_within(text, event, budget)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(v, event, budget))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render_value(v, event, budget)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The unknown names used anywhere in `value`'s strings.
pub fn unknown_in(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => unknown_names(text),
        Value::Array(items) => items.iter().flat_map(unknown_in).collect(),
        Value::Object(map) => map.values().flat_map(unknown_in).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::events::{CommitRef, Draft, EventData, ResourceRef};
    use crate::model::{EventType, FindingSeverity};

    fn event() -> Event {
        Draft {
            kind: EventType::PolicyViolation,
            anchor: "c0ffee".into(),
            subject: "Certificate/web".into(),
            data: EventData {
                severity: FindingSeverity::High,
                resource: Some(ResourceRef {
                    kind: "Certificate".into(),
                    name: "web".into(),
                    file: Some("certificates/web.yaml".into()),
                    line: Some(4),
                }),
                commit: Some(CommitRef {
                    sha: "c0ffee".into(),
                    author: "Ann <ann@example.com>".into(),
                }),
                message: "key too short".into(),
                details: serde_json::Map::from_iter([("policy".into(), json!("key-size"))]),
                compliance: vec!["PCI-DSS 4.2.1".into(), "NIST SC-12".into()],
                fingerprint: "f1".into(),
                condition: None,
            },
        }
        .seal(
            "https://git.example.com/ops/pki.git",
            chrono::DateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn strings_name_parts_of_the_event() {
        let fields = json!({
            "customfield_1": "{{ resource.name }} ({{severity}}) at {{resource.file}}:{{resource.line}}",
            "customfield_2": ["{{details.policy}}", 3, {"value": "{{compliance}}"}],
            "customfield_3": "{{details.missing}}|{{nope}}|{{unclosed",
        });
        assert_eq!(
            render(&fields, &event()),
            json!({
                "customfield_1": "web (high) at certificates/web.yaml:4",
                "customfield_2": ["key-size", 3, {"value": "PCI-DSS 4.2.1, NIST SC-12"}],
                "customfield_3": "||{{unclosed",
            })
        );
        assert_eq!(unknown_in(&fields), vec!["nope".to_owned()]);
    }

    #[test]
    fn all_the_strings_of_a_value_are_bounded_together() {
        let mut long = event();
        long.data.message = "x".repeat(3000);
        let many = Value::Array(vec![json!("{{message}}"); 100]);
        let rendered = render(&many, &long).to_string();
        assert!(rendered.len() < RENDERED_BYTES + 1000, "{}", rendered.len());
    }

    #[test]
    fn a_local_repository_is_named_not_located() {
        let mut local = event();
        local.source = "file:///srv/repos/pki".into();
        assert_eq!(render_text("{{source}}", &local), "pki");
    }

    #[test]
    fn a_rendered_string_is_bounded() {
        let mut long = event();
        long.data.message = "x".repeat(100_000);
        let text = render_text("{{message}}{{message}}", &long);
        assert_eq!(text.chars().count(), RENDERED_CHARS);
    }
}
