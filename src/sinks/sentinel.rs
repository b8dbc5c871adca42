//! `sentinel`: events to Microsoft Sentinel through the Azure Monitor Logs Ingestion API —
//! `POST <url>/dataCollectionRules/<dcrImmutableId>/streams/<stream>?api-version=2023-01-01`
//! with a JSON array of records, at most [`MAX_REQUEST_BYTES`] a request, one record per
//! event with the columns of [`COLUMNS`] (the data collection rule declares them).
//!
//! The bearer token comes from Entra ID's client-credentials flow and is kept until
//! [`TOKEN_MARGIN`] before it expires; a 401 drops it and the request is made once more with
//! a new one. Answers: 204 delivered; 401, 403, 408, 429 (after its `Retry-After`) and 5xx
//! retried; 413 and other 4xx refused. A record larger than a request can carry is refused
//! before anything is sent. The workspace does not deduplicate: events sent again after a
//! lost answer are reported as possible duplicates (`EventId` tells them apart in queries).

use std::time::Duration;

use chrono::SecondsFormat;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::splunk_hec::Ledger;
use super::{Answer, Sending, Sink, SinkProblem, http};
use crate::config::Endpoint;
use crate::events::outbox::Stored;
use crate::model::SinkSpec;

/// Most events one batch takes.
pub const BATCH_SIZE: usize = 1000;
/// Most bytes of one request: the API takes 1 MB a call.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// A token is renewed this long before it expires (and one that lives shorter is used for
/// one batch only).
pub const TOKEN_MARGIN: Duration = Duration::from_secs(300);
const LONGEST_TOKEN_LIFE: Duration = Duration::from_secs(24 * 3600);
pub const API_VERSION: &str = "2023-01-01";
/// The columns of a record and their types in the data collection rule's stream.
pub const COLUMNS: &[(&str, &str)] = &[
    ("TimeGenerated", "datetime"),
    ("EventId", "string"),
    ("EventType", "string"),
    ("Subject", "string"),
    ("Severity", "string"),
    ("Source", "string"),
    ("Message", "string"),
    ("Fingerprint", "string"),
    ("Resource", "string"),
    ("CommitSha", "string"),
    ("Data", "dynamic"),
];

/// A bearer token and when to get a new one.
struct Token {
    header: HeaderValue,
    renew_at: Instant,
}

pub struct Sentinel {
    client: reqwest::Client,
    ingest_url: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: &'static str,
    token: Option<Token>,
    ledger: Ledger,
}

/// The token scope of the cloud the ingestion URL is in.
fn scope(url: &str) -> &'static str {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if host.ends_with(".azure.us") {
        "https://monitor.azure.us/.default"
    } else if host.ends_with(".azure.cn") {
        "https://monitor.azure.cn/.default"
    } else {
        "https://monitor.azure.com/.default"
    }
}

fn is_name(text: &str, extra: &[char]) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

impl Sentinel {
    pub fn new(spec: &SinkSpec, endpoint: &Endpoint) -> Result<Sentinel, SinkProblem> {
        let settings = spec.sentinel.as_ref().ok_or_else(|| {
            SinkProblem(
                "a sentinel sink needs a `sentinel` block with `dcrImmutableId` and `stream`"
                    .to_owned(),
            )
        })?;
        // They go into the URL's path.
        if !is_name(&settings.dcr_immutable_id, &['-']) || !is_name(&settings.stream, &['-', '_']) {
            return Err(SinkProblem(
                "`sentinel.dcrImmutableId` and `sentinel.stream` are names like \
                 `dcr-000a00a000a00000a000000aa000a0aa` and `Custom-GitwardEvents`"
                    .to_owned(),
            ));
        }
        let (Some(tenant), Some(client_id), Some(secret_file)) = (
            endpoint.tenant_id.as_deref(),
            endpoint.client_id.as_deref(),
            endpoint.client_secret_file.as_deref(),
        ) else {
            return Err(SinkProblem(
                "a sentinel endpoint needs `tenantId`, `clientId` and `clientSecretFile`"
                    .to_owned(),
            ));
        };
        let token_url = match &endpoint.token_url {
            Some(url) => url.clone(),
            None if is_name(tenant, &['-', '.']) => {
                format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
            }
            None => {
                return Err(SinkProblem(format!(
                    "`tenantId` `{tenant}` is not a tenant id or domain"
                )));
            }
        };
        let base = endpoint.url.trim_end_matches('/');
        Ok(Sentinel {
            client: http::client(endpoint)?,
            ingest_url: format!(
                "{base}/dataCollectionRules/{}/streams/{}?api-version={API_VERSION}",
                settings.dcr_immutable_id, settings.stream
            ),
            token_url,
            client_id: client_id.to_owned(),
            client_secret: super::read_secret(secret_file, "clientSecretFile")?,
            scope: scope(base),
            token: None,
            ledger: Ledger::default(),
        })
    }

    /// The token endpoint's text, without the secret should it echo it.
    fn scrub(&self, text: &str) -> String {
        text.replace(&self.client_secret, "[client secret]")
    }

    /// The `Authorization` header: the token kept, or a new one.
    async fn bearer(&mut self) -> Result<HeaderValue, String> {
        if let Some(token) = &self.token
            && Instant::now() < token.renew_at
        {
            return Ok(token.header.clone());
        }
        self.token = None;
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("grant_type", "client_credentials"),
            ("scope", self.scope),
        ];
        let asked = Instant::now();
        let response = match self.client.post(&self.token_url).form(&form).send().await {
            Ok(response) => response,
            Err(error) => {
                let said = match http::unreachable(error) {
                    Answer::Retry { error, .. } => error,
                    other => format!("{other:?}"),
                };
                return Err(format!("token endpoint: {}", self.scrub(&said)));
            }
        };
        let status = response.status();
        let text = http::body(response).await;
        let granted = serde_json::from_str::<Granted>(&text).ok();
        let (token, expires_in) = match granted {
            Some(Granted {
                access_token: Some(token),
                expires_in,
                ..
            }) if status.is_success() => (token, expires_in),
            granted => {
                let said = match granted {
                    Some(Granted {
                        error: Some(error),
                        error_description,
                        ..
                    }) => format!("{error}: {}", error_description.unwrap_or_default()),
                    _ if status.is_success() => format!("no access_token in {text}"),
                    _ => text,
                };
                return Err(format!(
                    "token endpoint: HTTP {}: {}",
                    status.as_u16(),
                    http::one_line(&self.scrub(&said))
                ));
            }
        };
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            "token endpoint: the access token has characters a header cannot carry".to_owned()
        })?;
        header.set_sensitive(true);
        // Entra tokens live about an hour; a day bounds what an endpoint may claim.
        let lifetime =
            Duration::from_secs(expires_in.map_or(0, Lifetime::seconds)).min(LONGEST_TOKEN_LIFE);
        self.token = Some(Token {
            header: header.clone(),
            renew_at: asked + lifetime.saturating_sub(TOKEN_MARGIN),
        });
        Ok(header)
    }

    /// Sends one request of records: `Ok` when the receiver has them all.
    async fn ingest(&self, bearer: &HeaderValue, body: String) -> Result<(), Refused> {
        let request = self
            .client
            .post(&self.ingest_url)
            .header(AUTHORIZATION, bearer.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string())
            .body(body);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Err(Refused {
                    unsure: !error.is_connect(),
                    unauthorized: false,
                    answer: http::unreachable(error),
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let after = http::retry_after(response.headers());
        let mut text = self.scrub(&http::body(response).await);
        if let Some(token) = bearer.to_str().ok().and_then(|b| b.strip_prefix("Bearer ")) {
            text = text.replace(token, "[token]");
        }
        let mut answer = http::classify(status, after, &text);
        let hint = match status {
            StatusCode::FORBIDDEN => {
                "; the application needs the Monitoring Metrics Publisher role on the data \
                 collection rule"
            }
            StatusCode::NOT_FOUND => {
                "; check the endpoint URL, `sentinel.dcrImmutableId` and `sentinel.stream`"
            }
            _ => "",
        };
        match &mut answer {
            Answer::Retry { error: said, .. } | Answer::Rejected { answer: said } => {
                said.push_str(hint);
            }
            Answer::Delivered { .. } => {}
        }
        Err(Refused {
            answer,
            unsure: false,
            unauthorized: status == StatusCode::UNAUTHORIZED,
        })
    }

    /// Sends one request, with a new token once should the one kept be refused.
    async fn ingest_with_token(&mut self, body: String) -> Result<(), Refused> {
        let retry = |error| Refused {
            answer: Answer::Retry { error, after: None },
            unsure: false,
            unauthorized: false,
        };
        let bearer = self.bearer().await.map_err(retry)?;
        match self.ingest(&bearer, body.clone()).await {
            Err(Refused {
                unauthorized: true, ..
            }) => {
                self.token = None;
                let bearer = self.bearer().await.map_err(retry)?;
                self.ingest(&bearer, body).await
            }
            other => other,
        }
    }
}

/// A request the receiver did not take.
struct Refused {
    answer: Answer,
    /// It may have all the same (the answer was lost).
    unsure: bool,
    unauthorized: bool,
}

/// The token endpoint's answer.
#[derive(Deserialize)]
struct Granted {
    access_token: Option<String>,
    expires_in: Option<Lifetime>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `expires_in`: seconds, as a number (or a string, as older endpoints gave it).
#[derive(Deserialize)]
#[serde(untagged)]
enum Lifetime {
    Number(u64),
    Text(String),
}

impl Lifetime {
    fn seconds(self) -> u64 {
        match self {
            Lifetime::Number(seconds) => seconds,
            Lifetime::Text(text) => text.trim().parse().unwrap_or(0),
        }
    }
}

/// The record of one event, as JSON.
pub fn record(stored: &Stored) -> String {
    let event = &stored.event;
    let data = &event.data;
    let mut record = Map::new();
    let mut put = |column: &str, value: Value| {
        record.insert(column.to_owned(), value);
    };
    put(
        "TimeGenerated",
        event
            .time
            .to_rfc3339_opts(SecondsFormat::Millis, true)
            .into(),
    );
    put("EventId", event.id.as_str().into());
    put(
        "EventType",
        event
            .type_
            .strip_prefix(crate::events::TYPE_PREFIX)
            .unwrap_or(&event.type_)
            .into(),
    );
    put("Subject", event.subject.as_str().into());
    put("Severity", data.severity.as_str().into());
    put("Source", event.source.as_str().into());
    put("Message", data.message.as_str().into());
    put("Fingerprint", data.fingerprint.as_str().into());
    if let Some(resource) = &data.resource {
        put(
            "Resource",
            format!("{}/{}", resource.kind, resource.name).into(),
        );
    }
    if let Some(commit) = &data.commit {
        put("CommitSha", commit.sha.as_str().into());
    }
    put("Data", serde_json::to_value(data).unwrap_or(Value::Null));
    Value::Object(record).to_string()
}

/// Records as JSON arrays of at most [`MAX_REQUEST_BYTES`], in order, with their events.
fn bodies(records: Vec<(String, &Stored)>) -> Vec<(String, Vec<&Stored>)> {
    let mut bodies = Vec::new();
    let mut body = String::from("[");
    let mut events = Vec::new();
    for (record, stored) in records {
        if !events.is_empty() && body.len() + record.len() + 2 > MAX_REQUEST_BYTES {
            body.push(']');
            bodies.push((std::mem::replace(&mut body, "[".to_owned()), events));
            events = Vec::new();
        }
        if !events.is_empty() {
            body.push(',');
        }
        body.push_str(&record);
        events.push(stored);
    }
    if !events.is_empty() {
        body.push(']');
        bodies.push((body, events));
    }
    bodies
}

fn ids<'e>(events: &[&'e Stored]) -> impl Iterator<Item = &'e str> {
    events.iter().map(|stored| stored.event.id.as_str())
}

impl Sink for Sentinel {
    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    fn send<'a>(&'a mut self, events: &'a [Stored]) -> Sending<'a> {
        Box::pin(async move {
            let records: Vec<(String, &Stored)> = events
                .iter()
                .filter(|stored| !self.ledger.has(&stored.event.id))
                .map(|stored| (record(stored), stored))
                .collect();
            if let Some((record, stored)) = records
                .iter()
                .find(|(record, _)| record.len() + 2 > MAX_REQUEST_BYTES)
            {
                // Before anything is sent: the worker sends the others on their own.
                let answer = format!(
                    "event {} is {} bytes as a record, more than the {MAX_REQUEST_BYTES} bytes \
                     one Logs Ingestion call takes",
                    stored.event.id,
                    record.len()
                );
                if events.len() == 1 {
                    self.ledger.settle(events);
                }
                return Answer::Rejected { answer };
            }
            for (body, sent) in bodies(records) {
                match self.ingest_with_token(body).await {
                    Ok(()) => {
                        self.ledger.sent(ids(&sent));
                        self.ledger.confirmed(ids(&sent));
                    }
                    Err(refused) => {
                        if refused.unsure {
                            self.ledger.sent(ids(&sent));
                        }
                        if matches!(refused.answer, Answer::Rejected { .. }) && events.len() == 1 {
                            self.ledger.settle(events);
                        }
                        return refused.answer;
                    }
                }
            }
            Answer::Delivered {
                duplicates: self.ledger.settle(events),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_is_the_cloud_of_the_ingestion_endpoint() {
        assert_eq!(
            scope("https://dce-x.westeurope-1.ingest.monitor.azure.com"),
            "https://monitor.azure.com/.default"
        );
        assert_eq!(
            scope("https://dce.usgovvirginia-1.ingest.monitor.azure.us:443/"),
            "https://monitor.azure.us/.default"
        );
        assert_eq!(
            scope("https://dce.chinaeast2-1.ingest.monitor.azure.cn"),
            "https://monitor.azure.cn/.default"
        );
    }

    #[test]
    fn columns_avoid_the_names_azure_reserves() {
        let reserved = [
            "_ResourceId",
            "id",
            "_SubscriptionId",
            "TenantId",
            "Type",
            "UniqueId",
            "Title",
        ];
        for (column, _) in COLUMNS {
            assert!(
                !reserved.iter().any(|r| r.eq_ignore_ascii_case(column)),
                "{column}"
            );
            assert!(column.len() <= 45 && column.starts_with(|c: char| c.is_ascii_alphabetic()));
            assert!(
                column
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            );
        }
    }

    #[test]
    fn lifetimes_are_read_as_numbers_or_text() {
        let granted: Granted =
            serde_json::from_str(r#"{"access_token":"a","expires_in":"3599"}"#).unwrap();
        assert_eq!(granted.expires_in.map(Lifetime::seconds), Some(3599));
        let granted: Granted =
            serde_json::from_str(r#"{"access_token":"a","expires_in":3599}"#).unwrap();
        assert_eq!(granted.expires_in.map(Lifetime::seconds), Some(3599));
    }
}
