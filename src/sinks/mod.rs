//! Receivers of events, one module per kind behind [`Sink`]: each encodes a batch, sends it
//! and says how the receiver answered. What they share — the outbox, batching, backoff,
//! dead letters, metrics — is the [`worker`]'s.

pub mod file;
pub mod http;
pub mod pagerduty;
pub mod sentinel;
pub mod splunk_hec;
pub mod syslog;
pub mod webhook;
pub mod worker;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use crate::config::Endpoint;
use crate::events::outbox::Stored;
use crate::model::{SinkSpec, SinkType};

/// How a receiver answered a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It has every event of the batch; `duplicates` of them it may have twice (sent again
    /// after an acknowledgement did not come).
    Delivered { duplicates: u64 },
    /// It could not take them now (network error, 408, 429, 5xx, no acknowledgement in
    /// time): the batch is sent again after a backoff, or after `after` when the receiver
    /// said how long to wait.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// It refused them, and sending them again cannot help (another 4xx): they become dead
    /// letters with its answer.
    Rejected { answer: String },
}

/// A batch being sent.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// A receiver of events.
pub trait Sink: Send {
    /// Most events one call of [`Sink::send`] takes.
    fn batch_size(&self) -> usize;

    /// Sends `events`, in order, and says how the receiver answered.
    fn send<'a>(&'a mut self, events: &'a [Stored]) -> Sending<'a>;
}

/// Why a sink cannot deliver: told in its status, it blocks nothing else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SinkProblem(pub String);

/// URL schemes each type of sink sends to.
pub fn schemes(type_: SinkType) -> &'static [&'static str] {
    match type_ {
        SinkType::Syslog => &["udp", "tcp", "tls"],
        SinkType::File => &["file"],
        _ => &["https", "http"],
    }
}

/// Whether the host's endpoints let sink `spec` deliver: its endpoint is defined, with a URL
/// of a scheme its type sends to and the credentials its type needs. Pure: files are read
/// when the sink is built.
pub fn check(spec: &SinkSpec, endpoint: Option<&Endpoint>) -> Result<(), SinkProblem> {
    let Some(endpoint) = endpoint else {
        return Err(SinkProblem(format!(
            "endpoint `{}` is not defined in the host config (`endpoints:`); the host pairs \
             each endpoint name with a URL and its credentials",
            spec.endpoint
        )));
    };
    let allowed = schemes(spec.type_);
    if !allowed.contains(&endpoint.scheme()) {
        return Err(SinkProblem(format!(
            "endpoint `{}` is a `{}://` URL; a {} sink sends to {}",
            spec.endpoint,
            endpoint.scheme(),
            spec.type_,
            allowed
                .iter()
                .map(|s| format!("`{s}://`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let needs = |what: Option<&std::path::PathBuf>, field: &str| match what {
        Some(_) => Ok(()),
        None => Err(SinkProblem(format!(
            "endpoint `{}` needs `{field}` for a {} sink",
            spec.endpoint, spec.type_
        ))),
    };
    match spec.type_ {
        SinkType::SplunkHec => needs(endpoint.token_file.as_ref(), "tokenFile"),
        SinkType::PagerDuty => needs(endpoint.routing_key_file.as_ref(), "routingKeyFile"),
        SinkType::Webhook => needs(endpoint.secret_file.as_ref(), "secretFile"),
        SinkType::Sentinel => {
            needs(endpoint.client_secret_file.as_ref(), "clientSecretFile")?;
            match (&endpoint.tenant_id, &endpoint.client_id) {
                (Some(_), Some(_)) => Ok(()),
                _ => Err(SinkProblem(format!(
                    "endpoint `{}` needs `tenantId` and `clientId` for a sentinel sink",
                    spec.endpoint
                ))),
            }
        }
        SinkType::Syslog if endpoint.scheme() == "tls" => {
            needs(endpoint.ca_file.as_ref(), "caFile")
        }
        SinkType::Jira | SinkType::ServiceNow => needs(endpoint.token_file.as_ref(), "tokenFile"),
        _ => Ok(()),
    }
}

/// Builds the sink `name` of type `spec` sending to `endpoint`, reading its credentials.
pub fn build(
    name: &str,
    spec: &SinkSpec,
    endpoint: Option<&Endpoint>,
    outbox: &worker::Outbox,
) -> Result<Box<dyn Sink>, SinkProblem> {
    check(spec, endpoint)?;
    let Some(endpoint) = endpoint else {
        return Err(SinkProblem("no endpoint".to_owned()));
    };
    Ok(match spec.type_ {
        SinkType::File => Box::new(file::FileSink::new(endpoint)?),
        SinkType::Webhook => Box::new(webhook::WebhookSink::new(endpoint)?),
        SinkType::SplunkHec => Box::new(splunk_hec::SplunkHec::new(name, spec, endpoint)?),
        SinkType::Sentinel => Box::new(sentinel::Sentinel::new(spec, endpoint)?),
        SinkType::Syslog => Box::new(syslog::Syslog::new(spec, endpoint)?),
        SinkType::PagerDuty => Box::new(pagerduty::PagerDuty::new(endpoint)?),
        SinkType::Jira | SinkType::ServiceNow => Box::new(crate::tickets::sink::TicketSink::new(
            name,
            spec,
            crate::tickets::system(spec, endpoint)?,
            outbox.clone(),
        )),
    })
}

/// Most bytes of a file the host names for a sink (a credential, certificates).
const MAX_HOST_FILE_BYTES: u64 = 1024 * 1024;

/// A file the host names for a sink (`what` is its field), read whole: a regular file of at
/// most 1 MiB, so that a FIFO or `/dev/zero` named by mistake neither hangs a worker nor fills
/// its memory.
pub fn read_host_file(path: &Path, what: &str) -> Result<Vec<u8>, SinkProblem> {
    read_regular_file(path, what, MAX_HOST_FILE_BYTES)
}

/// A regular file of at most `limit` bytes, read whole: a FIFO, a device or a directory is
/// refused without blocking on it (it is opened non-blocking and looked at before a read).
pub fn read_regular_file(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, SinkProblem> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let problem = |why: String| SinkProblem(format!("{what} ({}) {why}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| problem(format!("cannot be read: {e}")))?;
    let metadata = file
        .metadata()
        .map_err(|e| problem(format!("cannot be read: {e}")))?;
    if !metadata.is_file() {
        return Err(problem("is not a regular file".to_owned()));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| problem(format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(problem(format!("is larger than {} KiB", limit / 1024)));
    }
    Ok(bytes)
}

/// This host's name as the kernel has it (what gethostname(2) returns), if it has one.
pub fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty() && name.len() <= 255)
}

/// The first line of a credential file: a secret never comes from the repository, and a
/// missing or empty file is the host's problem, told without the secret.
pub fn read_secret(path: &Path, what: &str) -> Result<String, SinkProblem> {
    let text = String::from_utf8(read_host_file(path, what)?)
        .map_err(|_| SinkProblem(format!("{what} ({}) is not UTF-8 text", path.display())))?;
    let secret = text.lines().next().unwrap_or_default().trim().to_owned();
    if secret.is_empty() {
        return Err(SinkProblem(format!("{what} ({}) is empty", path.display())));
    }
    Ok(secret)
}

/// How long one request may take when the endpoint does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn timeout(endpoint: &Endpoint) -> Duration {
    endpoint
        .timeout
        .map_or(DEFAULT_TIMEOUT, |t| Duration::from_secs(t.as_secs().max(1)))
}
