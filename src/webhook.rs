//! Webhook deliveries, judged without I/O: is it authentic, and does it ask for a reconcile of
//! the tracked branch? The HTTP server hands in the headers and the raw body; what comes back
//! says what to answer and whether to trigger.
//!
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, event in
//!   `X-GitHub-Event`, delivery id (the same on a redelivery) in `X-GitHub-Delivery`.
//! - GitLab: the secret token in clear in `X-Gitlab-Token`, event in `X-Gitlab-Event`,
//!   `Idempotency-Key` stable across retries.
//! - Generic: `X-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>` over a body
//!   `{"ref": "refs/heads/<branch>", "after": "<sha>"}`, optional `X-Delivery-Id`.
//!
//! Secrets are compared in constant time.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::trust::approvals::APPROVALS_REF;

/// Where a delivery comes from, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Generic,
}

/// What to do with an authentic delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A push to the tracked branch: reconcile (`after` is the new head, when the sender says).
    Reconcile {
        delivery: Option<String>,
        after: Option<String>,
    },
    /// A pull (merge) request into the tracked branch was opened or got a new head, or its
    /// reviews changed: plan it.
    PullRequest {
        delivery: Option<String>,
        request: PullRequestEvent,
    },
    /// GitHub's `ping` when a hook is created.
    Ping,
    /// Authentic, but not a reason to reconcile (another branch, a tag, another event).
    Ignored {
        delivery: Option<String>,
        why: String,
    },
}

impl Outcome {
    /// The sender's id of this delivery, to ignore a replay.
    pub fn delivery(&self) -> Option<&str> {
        match self {
            Outcome::Reconcile { delivery, .. }
            | Outcome::Ignored { delivery, .. }
            | Outcome::PullRequest { delivery, .. } => delivery.as_deref(),
            Outcome::Ping => None,
        }
    }
}

/// Why a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Signature or token missing or wrong (HTTP 401).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Authentic but unreadable (HTTP 400).
    #[error("{0}")]
    Malformed(String),
}

/// A pull request to plan, as a delivery names it. Only the number is trusted to mean
/// anything: the head planned is what the tracked remote's pull request ref holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestEvent {
    pub number: u64,
    /// The head the delivery says, to tell a stale delivery from the ref fetched.
    pub head: String,
}

#[derive(Deserialize)]
struct GitHubPull {
    action: Option<String>,
    pull_request: Option<GitHubPullRequest>,
}

#[derive(Deserialize)]
struct GitHubPullRequest {
    number: u64,
    head: GitHubRef,
    base: GitHubBase,
}

#[derive(Deserialize)]
struct GitHubRef {
    sha: String,
}

#[derive(Deserialize)]
struct GitHubBase {
    #[serde(rename = "ref")]
    reference: String,
}

#[derive(Deserialize)]
struct GitLabMergeRequest {
    object_attributes: Option<GitLabAttributes>,
}

#[derive(Deserialize)]
struct GitLabAttributes {
    iid: u64,
    target_branch: String,
    action: Option<String>,
    last_commit: Option<GitLabCommit>,
}

#[derive(Deserialize)]
struct GitLabCommit {
    id: String,
}

/// Which pull request a delivery asks to plan, if any: `(action, number, head, base)` read
/// from a GitHub `pull_request` / `pull_request_review` or a GitLab `Merge Request Hook`.
fn pull_request_of(
    provider: Provider,
    body: &[u8],
) -> Result<(String, u64, String, String), Rejection> {
    let malformed =
        |e: serde_json::Error| Rejection::Malformed(format!("pull request payload: {e}"));
    match provider {
        Provider::GitHub => {
            let event: GitHubPull = serde_json::from_slice(body).map_err(malformed)?;
            let pull = event.pull_request.ok_or_else(|| {
                Rejection::Malformed("pull request payload without `pull_request`".to_owned())
            })?;
            Ok((
                event.action.unwrap_or_default(),
                pull.number,
                pull.head.sha,
                pull.base.reference,
            ))
        }
        _ => {
            let event: GitLabMergeRequest = serde_json::from_slice(body).map_err(malformed)?;
            let attributes = event.object_attributes.ok_or_else(|| {
                Rejection::Malformed("merge request payload without `object_attributes`".to_owned())
            })?;
            Ok((
                attributes.action.unwrap_or_default(),
                attributes.iid,
                attributes.last_commit.map(|c| c.id).unwrap_or_default(),
                attributes.target_branch,
            ))
        }
    }
}

/// Actions after which a pull request's plan may have changed: a new head, a new base, or
/// (for gates counting them) its reviews.
const PLANNED_ACTIONS: [&str; 14] = [
    "opened",
    "synchronize",
    "reopened",
    "edited",
    "ready_for_review",
    "submitted",
    "dismissed",
    "open",
    "update",
    "reopen",
    "approved",
    "unapproved",
    "approval",
    "unapproval",
];

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    reference: Option<String>,
    after: Option<String>,
}

/// Judges a delivery. `header` looks a header up by name (case-insensitively, as HTTP does);
/// `secret` is the shared secret (GitHub, generic) or token (GitLab) from the host config.
pub fn judge(
    provider: Provider,
    secret: &[u8],
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
    tracked_branch: &str,
) -> Result<Outcome, Rejection> {
    let (event, delivery) = match provider {
        Provider::GitHub => {
            verify_signature(secret, header("X-Hub-Signature-256"), body)?;
            (header("X-GitHub-Event"), header("X-GitHub-Delivery"))
        }
        Provider::GitLab => {
            let token = header("X-Gitlab-Token")
                .ok_or(Rejection::Unauthenticated("no X-Gitlab-Token header"))?;
            if !bool::from(token.as_bytes().ct_eq(secret)) {
                return Err(Rejection::Unauthenticated("X-Gitlab-Token does not match"));
            }
            (header("X-Gitlab-Event"), header("Idempotency-Key"))
        }
        Provider::Generic => {
            verify_signature(secret, header("X-Signature-256"), body)?;
            (Some("push".to_owned()), header("X-Delivery-Id"))
        }
    };
    let event = event.unwrap_or_default();
    match (provider, event.as_str()) {
        (Provider::GitHub, "ping") => return Ok(Outcome::Ping),
        (Provider::GitHub, "pull_request" | "pull_request_review")
        | (Provider::GitLab, "Merge Request Hook") => {
            let (action, number, head, base) = pull_request_of(provider, body)?;
            return Ok(if base != tracked_branch {
                Outcome::Ignored {
                    delivery,
                    why: format!("a pull request into `{base}`, not `{tracked_branch}`"),
                }
            } else if !PLANNED_ACTIONS.contains(&action.as_str()) {
                Outcome::Ignored {
                    delivery,
                    why: format!("pull request action `{action}` changes no plan"),
                }
            } else {
                Outcome::PullRequest {
                    delivery,
                    request: PullRequestEvent { number, head },
                }
            });
        }
        (Provider::GitHub | Provider::Generic, "push") | (Provider::GitLab, "Push Hook") => {}
        _ => {
            return Ok(Outcome::Ignored {
                delivery,
                why: format!("event `{event}` does not change the branch"),
            });
        }
    }
    let push: Push = serde_json::from_slice(body)
        .map_err(|e| Rejection::Malformed(format!("push payload: {e}")))?;
    let wanted = format!("refs/heads/{tracked_branch}");
    match push.reference {
        // New approvals can let a blocked head through: they are a reason to look again.
        Some(reference) if reference == wanted || reference == APPROVALS_REF => {
            Ok(Outcome::Reconcile {
                delivery,
                after: push.after,
            })
        }
        Some(reference) => Ok(Outcome::Ignored {
            delivery,
            why: format!("push to `{reference}`, not `{wanted}` or `{APPROVALS_REF}`"),
        }),
        None => Err(Rejection::Malformed(
            "push payload without `ref`".to_owned(),
        )),
    }
}

/// Checks `sha256=<hex>` against the HMAC-SHA256 of `body`, in constant time.
fn verify_signature(secret: &[u8], header: Option<String>, body: &[u8]) -> Result<(), Rejection> {
    let header = header.ok_or(Rejection::Unauthenticated("no signature header"))?;
    let hex = header
        .strip_prefix("sha256=")
        .ok_or(Rejection::Unauthenticated(
            "the signature is not `sha256=<hex>`",
        ))?;
    let expected =
        hex::decode(hex).map_err(|_| Rejection::Unauthenticated("the signature is not hex"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| Rejection::Unauthenticated("no usable secret"))?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| Rejection::Unauthenticated("the signature does not match"))
}

/// Deliveries each source may send in a burst, and how many more it earns per second: far
/// above what a forge sends for real pushes, low enough that a flood does not queue work.
const BURST: f64 = 60.0;
const PER_SECOND: f64 = 2.0;
/// Sources remembered at most; the fullest buckets are forgotten first (they are owed nothing).
const SOURCES: usize = 4096;

/// A token bucket per source address.
#[derive(Default)]
pub struct RateLimit {
    buckets: std::collections::HashMap<std::net::IpAddr, (f64, std::time::Instant)>,
}

impl RateLimit {
    /// Takes a token for `source` at `now`; when there is none, how long until there is.
    pub fn take(
        &mut self,
        source: std::net::IpAddr,
        now: std::time::Instant,
    ) -> Result<(), std::time::Duration> {
        if self.buckets.len() >= SOURCES && !self.buckets.contains_key(&source) {
            self.buckets.retain(|_, (tokens, last)| {
                *tokens + now.saturating_duration_since(*last).as_secs_f64() * PER_SECOND < BURST
            });
        }
        let (tokens, last) = self.buckets.entry(source).or_insert((BURST, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*last).as_secs_f64() * PER_SECOND).min(BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(std::time::Duration::from_secs_f64(
                (1.0 - *tokens) / PER_SECOND,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn githubs_published_test_vector_verifies() {
        let secret = b"It's a Secret to Everybody";
        assert_eq!(
            sign(secret, b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let header = Some(
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".to_owned(),
        );
        assert_eq!(verify_signature(secret, header, b"Hello, World!"), Ok(()));
        let tampered = Some(
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18".to_owned(),
        );
        assert!(verify_signature(secret, tampered, b"Hello, World!").is_err());
        assert!(verify_signature(secret, Some("sha256=zz".into()), b"x").is_err());
        assert!(verify_signature(secret, None, b"x").is_err());
    }

    #[test]
    fn a_source_gets_its_burst_then_tokens_at_the_refill_rate() {
        use std::net::{IpAddr, Ipv4Addr};
        use std::time::{Duration, Instant};
        let mut limit = RateLimit::default();
        let (one, two) = (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        );
        let start = Instant::now();
        for _ in 0..60 {
            assert_eq!(limit.take(one, start), Ok(()));
        }
        let wait = limit.take(one, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another source is not held back by the first.
        assert_eq!(limit.take(two, start), Ok(()));
        // Half a second later the first has earned one delivery, and only one.
        let later = start + Duration::from_millis(500);
        assert_eq!(limit.take(one, later), Ok(()));
        assert!(limit.take(one, later).is_err());
    }
}
