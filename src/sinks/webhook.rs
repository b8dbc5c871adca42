//! `webhook`: each event POSTed as a CloudEvent (structured JSON) and signed per the
//! Standard Webhooks specification, so receivers verify and deduplicate it with
//! off-the-shelf libraries: `webhook-id` is the event id (the same on every resend),
//! `webhook-timestamp` the time of sending, and `webhook-signature` is
//! `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` under the shared secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};

use super::{Answer, Sending, Sink, SinkProblem, http};
use crate::config::Endpoint;
use crate::events::outbox::Stored;

pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    key: Vec<u8>,
}

/// The key of a `whsec_<base64>` secret (the prefix is optional, as the libraries take it).
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // With or without padding, as the reference libraries take it.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    LENIENT.decode(encoded).ok().filter(|key| !key.is_empty())
}

/// `v1,<signature>` of `body` sent as message `id` at `timestamp`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

impl WebhookSink {
    pub fn new(endpoint: &Endpoint) -> Result<WebhookSink, SinkProblem> {
        let file = endpoint
            .secret_file
            .as_deref()
            .ok_or_else(|| SinkProblem("a webhook endpoint needs `secretFile`".to_owned()))?;
        let secret = super::read_secret(file, "secretFile")?;
        let key = secret_key(&secret).ok_or_else(|| {
            SinkProblem(format!(
                "secretFile ({}) does not hold a Standard Webhooks secret, `whsec_` and base64",
                file.display()
            ))
        })?;
        Ok(WebhookSink {
            client: http::client(endpoint)?,
            url: endpoint.url.clone(),
            key,
        })
    }
}

impl Sink for WebhookSink {
    fn batch_size(&self) -> usize {
        // One message per request, as the specification has it.
        1
    }

    fn send<'a>(&'a mut self, events: &'a [Stored]) -> Sending<'a> {
        Box::pin(async move {
            for stored in events {
                let timestamp = chrono::Utc::now().timestamp();
                let id = &stored.event.id;
                let request = self
                    .client
                    .post(&self.url)
                    .header(
                        "content-type",
                        "application/cloudevents+json; charset=utf-8",
                    )
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header(
                        "webhook-signature",
                        signature(&self.key, id, timestamp, &stored.json),
                    )
                    .body(stored.json.clone());
                match http::exchange(request).await {
                    Answer::Delivered { .. } => {}
                    other => return other,
                }
            }
            Answer::Delivered { duplicates: 0 }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_reads_with_or_without_padding() {
        assert_eq!(secret_key("whsec_dGVzdA"), Some(b"test".to_vec()));
        assert_eq!(secret_key("whsec_dGVzdA=="), Some(b"test".to_vec()));
        assert_eq!(secret_key("whsec_"), None);
        assert_eq!(secret_key("whsec_!!"), None);
    }

    #[test]
    fn signs_as_the_specifications_example() {
        // The example of the Standard Webhooks specification (and its libraries' tests).
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
