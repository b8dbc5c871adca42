//! `syslog`: events as syslog messages — RFC 5424 with the CloudEvent as the message,
//! ArcSight CEF or QRadar LEEF 2.0 — over UDP, TCP or TLS ([`format`] writes them,
//! [`transport`] sends them).

pub mod format;
pub mod transport;

use super::{Answer, Sending, Sink, SinkProblem};
use crate::config::Endpoint;
use crate::events::outbox::Stored;
use crate::model::SinkSpec;

use format::{Encoder, MIN_MESSAGE_BYTES};
use transport::{Scheme, Transport};

/// Events per batch over TCP and TLS: one write of many frames, for SIEM rates.
const STREAM_BATCH: usize = 1000;
/// Events per batch over UDP: each is a datagram of its own anyway.
const UDP_BATCH: usize = 100;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM_BYTES: usize = 65_507;

pub struct Syslog {
    encoder: Encoder,
    transport: Transport,
    /// Longest message: a datagram's, over UDP.
    limit: Option<usize>,
}

impl Syslog {
    pub fn new(spec: &SinkSpec, endpoint: &Endpoint) -> Result<Syslog, SinkProblem> {
        let settings = spec.syslog.clone().unwrap_or_default();
        let encoder = Encoder::new(&settings, &this_host(), std::process::id())?;
        let transport = Transport::new(endpoint)?;
        let limit = match transport.scheme() {
            Scheme::Udp => {
                let max = settings.max_message_bytes as usize;
                if !(MIN_MESSAGE_BYTES..=MAX_DATAGRAM_BYTES).contains(&max) {
                    return Err(SinkProblem(format!(
                        "syslog.maxMessageBytes {max} is not from {MIN_MESSAGE_BYTES} (what \
                         every receiver takes) to {MAX_DATAGRAM_BYTES} (a UDP datagram)"
                    )));
                }
                Some(max)
            }
            Scheme::Tcp | Scheme::Tls => None,
        };
        Ok(Syslog {
            encoder,
            transport,
            limit,
        })
    }
}

/// This host's name as the kernel has it (what gethostname(2) returns); empty when unknown.
fn this_host() -> String {
    super::host_name().unwrap_or_default()
}

impl Sink for Syslog {
    fn batch_size(&self) -> usize {
        match self.transport.scheme() {
            Scheme::Udp => UDP_BATCH,
            Scheme::Tcp | Scheme::Tls => STREAM_BATCH,
        }
    }

    fn send<'a>(&'a mut self, events: &'a [Stored]) -> Sending<'a> {
        Box::pin(async move {
            let messages: Vec<String> = events
                .iter()
                .map(|stored| self.encoder.encode(stored, self.limit))
                .collect();
            // Syslog has no acknowledgement and no refusal: written is delivered, and any
            // failure may pass (the receiver restarts, the network comes back).
            match self.transport.send(&messages).await {
                Ok(()) => Answer::Delivered { duplicates: 0 },
                Err(error) => Answer::Retry { error, after: None },
            }
        })
    }
}
