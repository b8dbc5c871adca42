//! What the HTTP sinks share: the client and how an answer is classified.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Answer, SinkProblem};
use crate::config::Endpoint;

/// Most bytes of a receiver's answer that are kept: it is attacker-sized text.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Longest wait a receiver's `Retry-After` is honoured for; a longer one is capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A client for `endpoint`: rustls, the endpoint's CA file (or the system's roots), its
/// timeout, no redirects (a credential must not follow one to another host).
pub fn client(endpoint: &Endpoint) -> Result<reqwest::Client, SinkProblem> {
    let timeout = super::timeout(endpoint);
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gitward/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &endpoint.ca_file {
        let pem = super::read_host_file(ca, "caFile")?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
            SinkProblem(format!(
                "caFile ({}) holds no PEM certificate: {error}",
                ca.display()
            ))
        })?;
        builder = builder.tls_certs_only(roots);
    }
    builder
        .build()
        .map_err(|error| SinkProblem(format!("HTTP client: {error}")))
}

/// Reads at most [`MAX_ANSWER_BYTES`] of a response's body.
pub async fn body(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ANSWER_BYTES.saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `Retry-After` in seconds (the form receivers here use), capped.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// How an HTTP answer classifies: 2xx delivered; 408, 429 and 5xx retried (after
/// `Retry-After` when given), and 401 and 403 too — a credential the host fixes, not a
/// problem of the events, which must not all turn into dead letters meanwhile; any other
/// status refused for good.
pub fn classify(status: reqwest::StatusCode, after: Option<Duration>, body: &str) -> Answer {
    let said = || format!("HTTP {}: {}", status.as_u16(), one_line(body));
    if status.is_success() {
        Answer::Delivered { duplicates: 0 }
    } else if status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::UNAUTHORIZED
        || status == reqwest::StatusCode::FORBIDDEN
        || status.is_server_error()
    {
        Answer::Retry {
            error: said(),
            after,
        }
    } else {
        Answer::Rejected { answer: said() }
    }
}

/// A network error as a retry: the receiver may come back.
pub fn unreachable(error: reqwest::Error) -> Answer {
    // Without the URL: it may carry a credential in its query.
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    Answer::Retry {
        error: text,
        after: None,
    }
}

/// A receiver's text on one line, bounded, control characters shown escaped.
pub fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::diag::bounded(flat.trim().to_owned(), 500)
}

/// A pace of requests: `rate` a second sustained, `burst` at once after a quiet time.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes a token at `now` and says how long to wait before using it: tokens taken ahead
    /// of time are owed, so that callers waiting together go one after the other.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        self.at = self.at.max(now);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// One bucket per receiver and credential in the process (the caller's digest of them):
/// two sinks sending to the same account share its limit, and a sink built again keeps its
/// pace.
static BUCKETS: LazyLock<Mutex<HashMap<[u8; 32], Bucket>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Waits for a turn to send to the receiver that `bucket` names, at `rate` a second with
/// bursts of `burst`.
pub async fn pace(bucket: [u8; 32], rate: f64, burst: f64) {
    let wait = {
        let now = Instant::now();
        let mut buckets = BUCKETS.lock().unwrap_or_else(PoisonError::into_inner);
        buckets
            .entry(bucket)
            .or_insert_with(|| Bucket::new(rate, burst, now))
            .reserve(now)
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// The digest naming a receiver and its credential for [`pace`], from their parts.
pub fn bucket_of(parts: &[&str]) -> [u8; 32] {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest.finalize().into()
}

/// The `Authorization` header value for an endpoint with a `tokenFile`: Basic
/// `user:token` when it names a `user` (Jira Cloud's e-mail and API token, a ServiceNow
/// account), a Bearer token otherwise (Jira Data Center personal access tokens, OAuth).
pub fn authorization(endpoint: &Endpoint) -> Result<String, SinkProblem> {
    use base64::Engine;
    let file = endpoint
        .token_file
        .as_deref()
        .ok_or_else(|| SinkProblem("the endpoint needs `tokenFile`".to_owned()))?;
    let token = super::read_secret(file, "tokenFile")?;
    Ok(match &endpoint.user {
        Some(user) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
        ),
        None => format!("Bearer {token}"),
    })
}

/// Sends `request` and classifies the answer.
pub async fn exchange(request: reqwest::RequestBuilder) -> Answer {
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let after = retry_after(response.headers());
            let text = body(response).await;
            classify(status, after, &text)
        }
        Err(error) => unreachable(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_a_retry_can_change_are_retried() {
        let retried = |code: u16| {
            matches!(
                classify(reqwest::StatusCode::from_u16(code).unwrap(), None, ""),
                Answer::Retry { .. }
            )
        };
        for code in [401, 403, 408, 429, 500, 502, 503, 504] {
            assert!(retried(code), "{code}");
        }
        for code in [400, 404, 405, 413, 422] {
            assert!(!retried(code), "{code}");
        }
        assert_eq!(
            classify(reqwest::StatusCode::NO_CONTENT, None, ""),
            Answer::Delivered { duplicates: 0 }
        );
    }

    #[test]
    fn the_bucket_lets_a_burst_through_then_paces() {
        let start = Instant::now();
        let mut bucket = Bucket::new(2.0, 4.0, start);
        for _ in 0..4 {
            assert_eq!(bucket.reserve(start), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(start), Duration::from_millis(500));
        assert_eq!(bucket.reserve(start), Duration::from_millis(1000));
        // Once the owed tokens are paid, a quiet time refills the burst and no more.
        let later = start + Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(bucket.reserve(later), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(later), Duration::from_millis(500));
    }

    #[test]
    fn a_receivers_answer_is_one_bounded_line() {
        let answer = classify(
            reqwest::StatusCode::BAD_REQUEST,
            None,
            &format!("bad\nevent\u{1b}[31m{}", "x".repeat(10_000)),
        );
        let Answer::Rejected { answer } = answer else {
            panic!("{answer:?}");
        };
        assert!(
            answer.starts_with("HTTP 400: bad event [31mxxx"),
            "{answer}"
        );
        assert!(answer.len() < 700);
    }
}
