//! Webhook deliveries as GitHub and GitLab send them: real captured bodies and signatures, and
//! the forges' documented example payloads.

use std::path::Path;

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use gitward::webhook::{Outcome, Provider, Rejection, judge};
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/webhooks")
            .join(path),
    )
    .expect("fixture")
}

fn lookup(pairs: Vec<(String, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A captured delivery: its headers and its exact body.
fn captured(path: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let delivery: serde_json::Value =
        serde_json::from_slice(&fixture(path)).expect("delivery JSON");
    let headers = delivery["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let body = BASE64_STANDARD
        .decode(delivery["body_raw_base64"].as_str().expect("body"))
        .expect("base64");
    (headers, body)
}

const CAPTURED_SECRET: &[u8] = b"402786017574bd28f9d8f7a18648939751c47fe09077d56e10f0444f14fbb73b";

#[test]
fn a_real_github_delivery_is_authentic_and_not_a_push() {
    let (headers, body) = captured("github/pull_request.closed.delivery.json");
    let outcome = judge(
        Provider::GitHub,
        CAPTURED_SECRET,
        lookup(headers.clone()),
        &body,
        "main",
    );
    assert_eq!(
        outcome.as_ref().map(|o| o.delivery().map(str::to_owned)),
        Ok(Some("c16510a0-a996-11f0-86fe-90260285066c".to_owned()))
    );
    assert!(
        matches!(outcome, Ok(Outcome::Ignored { .. })),
        "{outcome:?}"
    );
    // One byte changed, or another secret: refused.
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert!(matches!(
        judge(
            Provider::GitHub,
            CAPTURED_SECRET,
            lookup(headers.clone()),
            &tampered,
            "main"
        ),
        Err(Rejection::Unauthenticated(_))
    ));
    assert!(matches!(
        judge(
            Provider::GitHub,
            b"another secret",
            lookup(headers),
            &body,
            "main"
        ),
        Err(Rejection::Unauthenticated(_))
    ));
}

#[test]
fn github_push_and_ping_payloads() {
    let secret = b"hook secret";
    let ping = fixture("github/ping.payload.json");
    let headers = vec![
        ("X-GitHub-Event".to_owned(), "ping".to_owned()),
        ("X-Hub-Signature-256".to_owned(), sign(secret, &ping)),
    ];
    assert_eq!(
        judge(Provider::GitHub, secret, lookup(headers), &ping, "main"),
        Ok(Outcome::Ping)
    );

    // octokit's push example deletes a tag: authentic, nothing to reconcile.
    let push = fixture("github/push.payload.json");
    let headers = |body: &[u8]| {
        vec![
            ("X-GitHub-Event".to_owned(), "push".to_owned()),
            ("X-GitHub-Delivery".to_owned(), "d-7".to_owned()),
            ("X-Hub-Signature-256".to_owned(), sign(secret, body)),
        ]
    };
    assert!(matches!(
        judge(
            Provider::GitHub,
            secret,
            lookup(headers(&push)),
            &push,
            "main"
        ),
        Ok(Outcome::Ignored { .. })
    ));
    // The same payload pushed to the tracked branch triggers.
    let text = String::from_utf8(push).expect("UTF-8");
    let to_main = text
        .replace("refs/tags/simple-tag", "refs/heads/main")
        .into_bytes();
    assert_eq!(
        judge(
            Provider::GitHub,
            secret,
            lookup(headers(&to_main)),
            &to_main,
            "main"
        ),
        Ok(Outcome::Reconcile {
            delivery: Some("d-7".to_owned()),
            after: Some("0000000000000000000000000000000000000000".to_owned())
        })
    );
    // No signature at all.
    assert!(matches!(
        judge(Provider::GitHub, secret, lookup(vec![]), &to_main, "main"),
        Err(Rejection::Unauthenticated(_))
    ));
}

#[test]
fn gitlab_push_hook_with_its_token() {
    let body = fixture("gitlab/docs.push_hook.json");
    let headers = |token: &str| {
        vec![
            ("X-Gitlab-Event".to_owned(), "Push Hook".to_owned()),
            ("X-Gitlab-Token".to_owned(), token.to_owned()),
            ("Idempotency-Key".to_owned(), "k-1".to_owned()),
        ]
    };
    let outcome = judge(
        Provider::GitLab,
        b"tok",
        lookup(headers("tok")),
        &body,
        "master",
    );
    assert!(
        matches!(&outcome, Ok(Outcome::Reconcile { delivery: Some(d), after: Some(_) }) if d == "k-1"),
        "{outcome:?}"
    );
    assert!(matches!(
        judge(
            Provider::GitLab,
            b"tok",
            lookup(headers("tok")),
            &body,
            "main"
        ),
        Ok(Outcome::Ignored { .. })
    ));
    assert!(matches!(
        judge(
            Provider::GitLab,
            b"tok",
            lookup(headers("wrong")),
            &body,
            "master"
        ),
        Err(Rejection::Unauthenticated(_))
    ));
}

#[test]
fn a_real_pull_request_delivery_into_the_tracked_branch_asks_for_a_plan() {
    use gitward::webhook::PullRequestEvent;
    let (headers, body) = captured("github/pull_request.opened.delivery.json");
    let outcome = judge(
        Provider::GitHub,
        CAPTURED_SECRET,
        lookup(headers.clone()),
        &body,
        "main",
    );
    assert_eq!(
        outcome,
        Ok(Outcome::PullRequest {
            delivery: Some("f73f08d0-a995-11f0-8d11-0b9d0ae424e4".to_owned()),
            request: PullRequestEvent {
                number: 315,
                head: "eeb67d6e0f131d27102080b6bb50be2ddae28cc3".to_owned(),
            },
        })
    );
    // Into another branch: nothing to plan.
    let other = judge(
        Provider::GitHub,
        CAPTURED_SECRET,
        lookup(headers),
        &body,
        "release",
    );
    assert!(
        matches!(&other, Ok(Outcome::Ignored { why, .. }) if why == "a pull request into `main`, not `release`"),
        "{other:?}"
    );
}

#[test]
fn a_real_merge_request_hook_asks_for_a_plan_with_the_token_only() {
    use gitward::webhook::PullRequestEvent;
    let (mut headers, body) = captured("gitlab/merge_request.opened.delivery.json");
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("x-gitlab-token"));
    headers.push(("X-Gitlab-Token".to_owned(), "the-token".to_owned()));
    let outcome = judge(
        Provider::GitLab,
        b"the-token",
        lookup(headers.clone()),
        &body,
        "main",
    );
    assert!(
        matches!(
            &outcome,
            Ok(Outcome::PullRequest { request: PullRequestEvent { number: 1, head }, .. })
                if head == "fb7d5cea20fd333821e718d24283bc7282483492"
        ),
        "{outcome:?}"
    );
    assert!(
        judge(
            Provider::GitLab,
            b"another-token",
            lookup(headers),
            &body,
            "main"
        )
        .is_err()
    );
}

#[test]
fn a_pull_request_delivery_without_its_fields_is_malformed() {
    let body = br#"{"action": "opened", "pull_request": {"number": "seven"}}"#;
    let signature = sign(b"s", body);
    let headers = vec![
        ("X-GitHub-Event".to_owned(), "pull_request".to_owned()),
        ("X-Hub-Signature-256".to_owned(), signature),
    ];
    assert!(matches!(
        judge(Provider::GitHub, b"s", lookup(headers), body, "main"),
        Err(Rejection::Malformed(_))
    ));
}
