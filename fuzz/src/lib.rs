//! The fuzz targets: each takes raw bytes as an attacker would send them, puts them through
//! the same code gitward runs on them, and panics when a promise is broken. The AFL binaries
//! in `src/bin/` call these; `tests/fuzz_corpus.rs` in the main package replays the committed
//! corpus through the same functions without AFL.

use std::path::Path;
use std::sync::Arc;

use gitward::config::HostConfig;
use gitward::diag::Diagnostic;
use gitward::model::Catalog;
use gitward::model::catalog::LoadedFile;
use gitward::model::parse::{EngineValues, Role, parse_file};
use gitward::webhook::{Provider, Rejection, judge};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A fuzz target: bytes in, a panic when a promise is broken.
pub type Target = fn(&[u8]);

/// The targets by name, as `scripts/fuzz.sh` and the corpus directories name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("yaml", yaml),
    ("host_config", host_config),
    ("webhook", webhook),
    ("rego", rego),
];

/// A diagnostic is printed as one `file:line:col: message` line, whatever the input held.
fn check_diagnostic(diagnostic: &Diagnostic) {
    let shown = diagnostic.to_string();
    assert!(!shown.contains('\n'), "a diagnostic spans lines: {shown:?}");
    assert!(
        diagnostic.line >= 1 && diagnostic.column >= 1,
        "a diagnostic outside the file: {shown:?}"
    );
}

fn catalog_of(files: Vec<(&str, Role, &[u8])>) -> Catalog {
    let files = files
        .into_iter()
        .map(|(path, role, bytes)| LoadedFile {
            path: Arc::from(path),
            role,
            parsed: Arc::new(parse_file(role, bytes, EngineValues::default())),
        })
        .collect();
    Catalog::assemble(files, Vec::new())
}

/// One file of the configuration repository, as resources and as policy data, then checked
/// against the others as `validate` does.
pub fn yaml(data: &[u8]) {
    let catalog = catalog_of(vec![
        ("fuzz.yaml", Role::Resources, data),
        ("policies/data/fuzz.yaml", Role::Data, data),
    ]);
    catalog.diagnostics.iter().for_each(check_diagnostic);
    // Positions are read again from the text when a field is reported.
    for loaded in catalog.resources() {
        let _ = loaded.locate(["spec", "dnsNames", "0"]);
    }
}

/// The host config file.
pub fn host_config(data: &[u8]) {
    match HostConfig::parse("gitward.yaml", data, Path::new("/etc/gitward")) {
        Ok(config) => {
            for target in config.targets.values() {
                assert!(target.dir.is_absolute(), "a target dir stays relative");
            }
            assert!(
                config.state_dir.is_absolute(),
                "the state dir stays relative"
            );
        }
        Err(error) => error.diagnostics.iter().for_each(check_diagnostic),
    }
}

const SECRET: &[u8] = b"fuzz-secret";

/// A webhook delivery: the first byte chooses the provider, then `Name: value` header lines
/// up to an empty line, then the body. It is judged as sent, then again with the headers that
/// make it authentic, so the fuzzer reaches the payload without forging an HMAC.
pub fn webhook(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let provider = [Provider::GitHub, Provider::GitLab, Provider::Generic][usize::from(first % 3)];
    let split = rest.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (rest, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut headers: Vec<(String, String)> = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let lookup = |headers: &[(String, String)]| {
        let headers = headers.to_vec();
        move |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }
    };
    let sent = judge(provider, SECRET, lookup(&headers), body, "main");
    let forged = headers.iter().any(|(n, _)| {
        ["x-hub-signature-256", "x-signature-256", "x-gitlab-token"]
            .iter()
            .any(|h| n.eq_ignore_ascii_case(h))
    });
    assert!(
        forged || matches!(sent, Err(Rejection::Unauthenticated(_))),
        "a delivery without signature or token was not refused: {sent:?}"
    );

    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("HMAC takes any key length");
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let authentic = match provider {
        Provider::GitHub => ("X-Hub-Signature-256", signature),
        Provider::Generic => ("X-Signature-256", signature),
        Provider::GitLab => (
            "X-Gitlab-Token",
            String::from_utf8_lossy(SECRET).into_owned(),
        ),
    };
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(authentic.0));
    headers.insert(0, (authentic.0.to_owned(), authentic.1));
    let judged = judge(provider, SECRET, lookup(&headers), body, "main");
    assert!(
        !matches!(judged, Err(Rejection::Unauthenticated(_))),
        "an authentic delivery was refused: {judged:?}"
    );
}

const POLICY: &str = "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: fuzz}\nspec:\n  module: policies/fuzz.rego\n  rule: data.fuzz.deny\n  appliesTo: {kinds: [Certificate]}\n  enforcement: deny\n  severity: high\n";

/// A policy module, compiled as `validate` compiles a repository's policies.
pub fn rego(data: &[u8]) {
    let catalog = catalog_of(vec![
        ("policies/fuzz.rego", Role::Module, data),
        ("policies/fuzz.yaml", Role::Resources, POLICY.as_bytes()),
    ]);
    catalog.diagnostics.iter().for_each(check_diagnostic);
    let (_, diagnostics) = gitward::policy::compile(&catalog);
    diagnostics.iter().for_each(check_diagnostic);
}
