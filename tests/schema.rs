//! The JSON Schemas: checked in, printed by `gitward schema`, and in agreement with the loader.

use crate::common;

use common::{TestRepo, gitward_in, project_dir};
use serde_json::Value;

#[test]
fn checked_in_schemas_match_the_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    gitward_in(dir.path(), &["schema", "--out", "generated"]).expect(0);
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("generated"))
        .expect("generated")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "certificate.schema.json",
            "gate.schema.json",
            "host-config.schema.json",
            "issuer.schema.json",
            "note.schema.json",
            "plan.schema.json",
            "policy.schema.json",
            "sink.schema.json"
        ]
    );
    for name in names {
        let generated =
            std::fs::read_to_string(dir.path().join("generated").join(&name)).expect("generated");
        let checked_in =
            std::fs::read_to_string(project_dir().join("schemas").join(&name)).unwrap_or_default();
        assert!(
            generated == checked_in,
            "schemas/{name} is out of date: run `cargo run -- schema --out schemas`"
        );
    }
}

#[test]
fn schema_prints_one_kind_or_all() {
    let dir = project_dir();
    let one = gitward_in(&dir, &["schema", "certificate"]).expect(0);
    assert_eq!(
        one.stdout,
        std::fs::read_to_string(dir.join("schemas/certificate.schema.json")).expect("schema")
    );
    let all: Value =
        serde_json::from_str(&gitward_in(&dir, &["schema"]).expect(0).stdout).expect("json");
    let kinds: Vec<&String> = all.as_object().expect("object").keys().collect();
    assert_eq!(
        kinds,
        [
            "Issuer",
            "Certificate",
            "Policy",
            "Gate",
            "Sink",
            "plan",
            "note",
            "host-config"
        ]
    );
    let run = gitward_in(&dir, &["schema", "Secret"]).expect(2);
    assert!(
        run.stderr.contains("unknown schema `Secret`"),
        "{}",
        run.stderr
    );
}

fn validator(kind: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        project_dir().join(format!("schemas/{}.schema.json", kind.to_lowercase())),
    )
    .expect("schema");
    jsonschema::validator_for(&serde_json::from_str::<Value>(&text).expect("json"))
        .expect("compiles")
}

/// Every document of the example repository, read with another YAML parser, is accepted by
/// its kind's schema.
#[test]
fn the_example_documents_satisfy_the_schemas() {
    let mut checked = 0;
    let root = project_dir().join("example-repo");
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let relative = path
                .strip_prefix(&root)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                if ![".github", "drafts", "policies/data"].contains(&relative.as_str()) {
                    stack.push(path);
                }
                continue;
            }
            if !relative.ends_with(".yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for document in serde_yaml::Deserializer::from_str(&text) {
                let doc: Value = serde::Deserialize::deserialize(document).expect("YAML");
                let kind = doc["kind"].as_str().expect("kind");
                let errors: Vec<String> = validator(kind)
                    .iter_errors(&doc)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{relative}: {errors:?}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 35);
}

/// Documents the loader rejects for their shape are rejected by the schema, and the other
/// way round.
#[test]
fn schemas_and_loader_agree_on_shapes() {
    let cases = [
        (
            "Certificate",
            r#"{"apiVersion":"gitward/v1","kind":"Certificate","metadata":{"name":"a"},"spec":{"issuerRef":"ca","target":"web","dnsNames":["a.example.com"],"duration":"90d"}}"#,
            true,
        ),
        (
            "Certificate",
            r#"{"apiVersion":"gitward/v1","kind":"Certificate","metadata":{"name":"a"},"spec":{"issuerRef":"ca","target":"web","dnsName":["a.example.com"]}}"#,
            false,
        ),
        (
            "Certificate",
            r#"{"apiVersion":"gitward/v1","kind":"Certificate","metadata":{"name":"A"},"spec":{"issuerRef":"ca","target":"web","commonName":"a"}}"#,
            false,
        ),
        (
            "Certificate",
            r#"{"apiVersion":"gitward/v1","kind":"Certificate","metadata":{"name":"a"},"spec":{"issuerRef":"ca","target":"web","commonName":null}}"#,
            false,
        ),
        (
            "Certificate",
            r#"{"apiVersion":"gitward/v1","kind":"Certificate","metadata":{"name":"a"},"spec":{"issuerRef":"ca","target":"web","commonName":"a","duration":"0d"}}"#,
            false,
        ),
        (
            "Issuer",
            r#"{"apiVersion":"gitward/v1","kind":"Issuer","metadata":{"name":"a"},"spec":{"selfSigned":{"commonName":"A"},"acme":{"account":"x"}}}"#,
            false,
        ),
        (
            "Issuer",
            r#"{"apiVersion":"gitward/v1","kind":"Issuer","metadata":{"name":"a","labels":{"env":"prod"}},"spec":{"selfSigned":{"commonName":"A","keyAlgorithm":"RSA-4096"}}}"#,
            true,
        ),
        (
            "Sink",
            r#"{"apiVersion":"gitward/v1","kind":"Sink","metadata":{"name":"a"},"spec":{"type":"webhook","endpoint":"x","jira":{"project":"SEC"}}}"#,
            false,
        ),
        (
            "Sink",
            r#"{"apiVersion":"gitward/v1","kind":"Sink","metadata":{"name":"a"},"spec":{"type":"jira","endpoint":"x","jira":{"project":"SEC"}}}"#,
            true,
        ),
        (
            "Gate",
            r#"{"apiVersion":"gitward/v1","kind":"Gate","metadata":{"name":"a"},"spec":{"appliesTo":{"kinds":["Certificate"]},"require":{}}}"#,
            false,
        ),
        (
            "Policy",
            r#"{"apiVersion":"gitward/v1","kind":"Policy","metadata":{"name":"a"},"spec":{"module":"p.rego","rule":"data.p.deny","appliesTo":{"kinds":["Certificate"],"selector":{"env":["prod","staging"]}}}}"#,
            true,
        ),
    ];
    for (kind, text, accepted) in cases {
        let doc: Value = serde_json::from_str(text).expect("json");
        assert_eq!(validator(kind).is_valid(&doc), accepted, "schema on {text}");
        let repo = TestRepo::new();
        repo.write("doc.yaml", text);
        if kind == "Policy" {
            repo.write("p.rego", "package p\n\ndeny contains \"never\" if false\n");
        }
        let run = repo.gitward(&["validate"]);
        // References to resources that these one-document repositories lack (the issuer
        // `ca`) are not about shape.
        let shape_errors = run
            .stdout
            .lines()
            .filter(|l| l.starts_with("doc.yaml:") && !l.contains("unknown Issuer"))
            .count();
        assert_eq!(
            shape_errors == 0,
            accepted,
            "loader on {text}:\n{}",
            run.stdout
        );
    }
}
