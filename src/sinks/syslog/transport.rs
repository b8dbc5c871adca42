//! How syslog messages travel: one per datagram over UDP (RFC 5426), or octet-counted frames
//! (RFC 6587 §3.4.1, `<length> <message>`) over TCP and over TLS, where RFC 5425 mandates
//! that framing. A TCP or TLS connection is kept between batches and opened again after an
//! error.
//!
//! Syslog has no acknowledgement: a batch counts as delivered once it is written and
//! flushed to the connection (or handed to the kernel as datagrams). A receiver that dies
//! with a batch still in its socket buffers loses it; one that closed the connection while
//! it was idle is noticed before the next batch is written, which then goes over a new one.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::config::Endpoint;
use crate::sinks::SinkProblem;

/// How messages go to the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Udp,
    Tcp,
    Tls,
}

/// Where the receiver listens, from a `udp://`, `tcp://` or `tls://host[:port]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::Udp => "udp",
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Address {
    /// Reads `url`; the port defaults to 514 (UDP, TCP) and 6514 (TLS, RFC 5425).
    pub fn parse(url: &str) -> Result<Address, SinkProblem> {
        let wrong = |why: &str| {
            SinkProblem(format!(
                "`{url}` is not a syslog URL like tls://siem.example.com:6514: {why}"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| wrong("no scheme"))?;
        let (scheme, default_port) = match scheme {
            "udp" => (Scheme::Udp, 514),
            "tcp" => (Scheme::Tcp, 514),
            "tls" => (Scheme::Tls, 6514),
            _ => return Err(wrong("the scheme is not udp, tcp or tls")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(wrong("it holds more than a host and a port"));
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| wrong("an IPv6 address without its `]`"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| wrong("no port after `]`"))?,
                    ),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => {
                    return Err(wrong("an IPv6 address belongs in brackets, like [::1]:514"));
                }
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(wrong("no host"));
        }
        let port = match port {
            None => default_port,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| wrong("the port is not a number from 1 to 65535"))?,
        };
        Ok(Address {
            scheme,
            host: host.to_owned(),
            port,
        })
    }
}

/// A TLS client for `endpoint`: trusting only its `caFile`, with its client certificate when
/// it names one.
pub fn tls_config(endpoint: &Endpoint) -> Result<Arc<ClientConfig>, SinkProblem> {
    let ca = endpoint
        .ca_file
        .as_deref()
        .ok_or_else(|| SinkProblem("a tls:// syslog endpoint needs `caFile`".to_owned()))?;
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca, "caFile")? {
        roots.add(cert).map_err(|error| {
            SinkProblem(format!(
                "caFile ({}) holds a certificate that cannot be a root: {error}",
                ca.display()
            ))
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| SinkProblem(format!("TLS: {error}")))?
        .with_root_certificates(roots);
    let config = match (&endpoint.client_cert_file, &endpoint.client_key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "clientCertFile")?;
            let pem = crate::sinks::read_host_file(key, "clientKeyFile")?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
                SinkProblem(format!(
                    "clientKeyFile ({}) holds no PEM private key: {error}",
                    key.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|error| {
                SinkProblem(format!(
                    "clientCertFile ({}) and clientKeyFile do not make a client identity: {error}",
                    cert.display()
                ))
            })?
        }
        _ => {
            return Err(SinkProblem(
                "a client certificate needs both `clientCertFile` and `clientKeyFile`".to_owned(),
            ));
        }
    };
    Ok(Arc::new(config))
}

fn certificates(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, SinkProblem> {
    let problem = |error: &dyn std::fmt::Display| {
        SinkProblem(format!("{field} ({}): {error}", path.display()))
    };
    let pem = crate::sinks::read_host_file(path, field)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(&e))?;
    if certs.is_empty() {
        return Err(problem(&"no PEM certificate in it"));
    }
    Ok(certs)
}

/// `messages` octet-counted (RFC 6587 §3.4.1): `<length in bytes> <message>` each, no
/// trailer — a message may hold any byte.
pub fn frames(messages: &[String]) -> Vec<u8> {
    let mut frames = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum::<usize>());
    for message in messages {
        frames.extend_from_slice(message.len().to_string().as_bytes());
        frames.push(b' ');
        frames.extend_from_slice(message.as_bytes());
    }
    frames
}

/// How long a kept connection is read before a batch, to learn whether the receiver closed
/// it.
const IDLE_CHECK: Duration = Duration::from_millis(1);
/// How long a new connection is watched before the first batch, at least and at most: a
/// receiver that refuses a sender after the handshake (rsyslog checking a client
/// certificate) closes it then, and what was written would be lost unnoticed.
const SETTLE_MIN: Duration = Duration::from_millis(200);
const SETTLE_MAX: Duration = Duration::from_secs(2);

enum Connection {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Sends batches of messages to one receiver.
pub struct Transport {
    address: Address,
    timeout: Duration,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    udp: Option<UdpSocket>,
    connection: Option<Connection>,
}

impl Transport {
    pub fn new(endpoint: &Endpoint) -> Result<Transport, SinkProblem> {
        let address = Address::parse(&endpoint.url)?;
        let tls = match address.scheme {
            Scheme::Tls => {
                let name = ServerName::try_from(address.host.clone()).map_err(|_| {
                    SinkProblem(format!(
                        "`{}` is neither an IP address nor a DNS name a certificate can hold",
                        address.host
                    ))
                })?;
                Some((TlsConnector::from(tls_config(endpoint)?), name))
            }
            _ => None,
        };
        Ok(Transport {
            address,
            timeout: crate::sinks::timeout(endpoint),
            tls,
            udp: None,
            connection: None,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.address.scheme
    }

    /// Sends `messages`, in order; the error says why not all of them went, and the
    /// connection (or socket) it happened on is dropped.
    pub async fn send(&mut self, messages: &[String]) -> Result<(), String> {
        let sent = match self.address.scheme {
            Scheme::Udp => self.datagrams(messages).await,
            Scheme::Tcp | Scheme::Tls => self.frames(messages).await,
        };
        sent.map_err(|error| format!("{}: {error}", self.address))
    }

    async fn datagrams(&mut self, messages: &[String]) -> Result<(), String> {
        // Taken out while in use: a batch abandoned halfway leaves no socket behind.
        let socket = match self.udp.take() {
            Some(socket) => socket,
            None => self.bind().await?,
        };
        for message in messages {
            let sent = tokio::time::timeout(self.timeout, socket.send(message.as_bytes()))
                .await
                .map_err(|_| self.late("sending a datagram"))?
                .map_err(|error| error.to_string())?;
            if sent != message.len() {
                return Err(format!(
                    "a datagram went out with {sent} of {} bytes",
                    message.len()
                ));
            }
        }
        self.udp = Some(socket);
        Ok(())
    }

    async fn bind(&self) -> Result<UdpSocket, String> {
        let peer = *self
            .resolve()
            .await?
            .first()
            .ok_or_else(|| format!("`{}` has no address", self.address.host))?;
        let local: SocketAddr = if peer.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|error| format!("UDP socket: {error}"))?;
        // Connected: an ICMP "port unreachable" comes back as an error of a later send.
        socket
            .connect(peer)
            .await
            .map_err(|error| format!("{peer}: {error}"))?;
        Ok(socket)
    }

    async fn frames(&mut self, messages: &[String]) -> Result<(), String> {
        let kept = match self.connection.take() {
            Some(connection) => connection.open(IDLE_CHECK).await,
            None => None,
        };
        let mut connection = match kept {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        tokio::time::timeout(self.timeout, connection.write(&frames(messages)))
            .await
            .map_err(|_| self.late("writing"))?
            .map_err(|error| describe(&error))?;
        self.connection = Some(connection);
        Ok(())
    }

    async fn connect(&self) -> Result<Connection, String> {
        let mut failures = Vec::new();
        for peer in self.resolve().await? {
            let started = tokio::time::Instant::now();
            match tokio::time::timeout(self.timeout, TcpStream::connect(peer)).await {
                Ok(Ok(stream)) => {
                    // Batches are written whole; a small one need not wait for more.
                    let _ = stream.set_nodelay(true);
                    let connection = self.secure(stream).await?;
                    // Twice the round trips it took to open it, for a refusal to come back.
                    let settle = (started.elapsed() * 2).clamp(SETTLE_MIN, SETTLE_MAX);
                    return self.settled(connection, settle).await;
                }
                Ok(Err(error)) => failures.push(format!("{peer}: {error}")),
                Err(_) => failures.push(format!("{peer}: {}", self.late("connecting"))),
            }
        }
        Err(format!("cannot connect ({})", failures.join("; ")))
    }

    async fn secure(&self, stream: TcpStream) -> Result<Connection, String> {
        let Some((connector, name)) = &self.tls else {
            return Ok(Connection::Tcp(stream));
        };
        match tokio::time::timeout(self.timeout, connector.connect(name.clone(), stream)).await {
            Ok(Ok(tls)) => Ok(Connection::Tls(Box::new(tls))),
            Ok(Err(error)) => Err(format!("TLS handshake: {}", describe(&error))),
            Err(_) => Err(self.late("the TLS handshake")),
        }
    }

    async fn settled(&self, connection: Connection, wait: Duration) -> Result<Connection, String> {
        match connection.open(wait).await {
            Some(connection) => Ok(connection),
            None if self.tls.is_some() => Err(
                "the receiver closed the connection as soon as the TLS handshake was over; \
                 one that wants a client certificate does so without one it trusts \
                 (clientCertFile, clientKeyFile)"
                    .to_owned(),
            ),
            None => Err("the receiver closed the connection as soon as it was open".to_owned()),
        }
    }

    async fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        let host = self.address.host.as_str();
        let found = tokio::time::timeout(
            self.timeout,
            tokio::net::lookup_host((host, self.address.port)),
        )
        .await
        .map_err(|_| self.late("resolving the host"))?
        .map_err(|error| format!("cannot resolve `{host}`: {error}"))?;
        let found: Vec<SocketAddr> = found.collect();
        if found.is_empty() {
            return Err(format!("`{host}` has no address"));
        }
        Ok(found)
    }

    fn late(&self, what: &str) -> String {
        format!("{what} took longer than {} s", self.timeout.as_secs())
    }
}

impl Connection {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Connection::Tcp(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
            Connection::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
        }
    }

    /// The connection, unless the receiver closes it (or it breaks) within `wait`: a write
    /// to it would seem to succeed and be lost.
    async fn open(mut self, wait: Duration) -> Option<Connection> {
        let closed = match &mut self {
            Connection::Tcp(stream) => peer_closed(stream, wait).await,
            Connection::Tls(stream) => peer_closed(stream.as_mut(), wait).await,
        };
        (!closed).then_some(self)
    }
}

/// Reads what comes within `wait`: the end of the stream or an error means the peer is
/// gone. Syslog receivers send nothing; what one does send is read and ignored, a bounded
/// amount. The read waits rather than looking only at what the runtime knows: it learns
/// that a socket was closed only when it next polls for events, which an await lets it do.
async fn peer_closed<S: AsyncRead + Unpin>(stream: &mut S, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    let mut scratch = [0u8; 1024];
    for _ in 0..64 {
        match tokio::time::timeout_at(deadline, stream.read(&mut scratch)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
    false
}

/// An I/O error with what TLS says about it, and a hint when the receiver's certificate is
/// not trusted.
fn describe(error: &std::io::Error) -> String {
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(certificate @ rustls::Error::InvalidCertificate(_)) => format!(
            "the receiver's certificate is not trusted ({certificate}): caFile must hold the \
             CA that signed it, and the certificate must name the URL's host"
        ),
        Some(other) => other.to_string(),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(url: &str) -> Result<(Scheme, String, u16), String> {
        Address::parse(url)
            .map(|a| (a.scheme, a.host, a.port))
            .map_err(|SinkProblem(problem)| problem)
    }

    #[test]
    fn urls_name_a_host_and_a_port_with_the_usual_defaults() {
        let ok = |scheme, host: &str, port| Ok((scheme, host.to_owned(), port));
        assert_eq!(
            address("udp://10.0.0.5:5514"),
            ok(Scheme::Udp, "10.0.0.5", 5514)
        );
        assert_eq!(
            address("udp://logs.example.com"),
            ok(Scheme::Udp, "logs.example.com", 514)
        );
        assert_eq!(
            address("tcp://logs.example.com/"),
            ok(Scheme::Tcp, "logs.example.com", 514)
        );
        assert_eq!(
            address("tls://siem.example.com"),
            ok(Scheme::Tls, "siem.example.com", 6514)
        );
        assert_eq!(address("tls://[::1]:6514"), ok(Scheme::Tls, "::1", 6514));
        assert_eq!(address("tcp://[fe80::1]"), ok(Scheme::Tcp, "fe80::1", 514));
        for (url, why) in [
            ("https://siem.example.com", "not udp, tcp or tls"),
            ("siem.example.com:514", "no scheme"),
            ("tcp://:514", "no host"),
            ("tcp://siem:0", "1 to 65535"),
            ("tcp://siem:70000", "1 to 65535"),
            ("tcp://siem:syslog", "1 to 65535"),
            ("tcp://::1:514", "brackets"),
            ("tls://[::1", "`]`"),
            ("tls://[::1]6514", "no port"),
            ("tls://user:secret@siem:6514", "more than a host"),
            ("tcp://siem:514/path", "more than a host"),
            ("tcp://siem:514?x=1", "more than a host"),
        ] {
            let problem = address(url).expect_err(url);
            assert!(problem.contains(why), "{url}: {problem}");
        }
        let shown = Address::parse("tls://[::1]:6514").map(|a| a.to_string());
        assert_eq!(shown, Ok("tls://[::1]:6514".to_owned()));
    }

    #[test]
    fn frames_count_octets_as_rfc_6587_has_it() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/syslog/syslog-examples.json"
        )))
        .unwrap();
        let derived = &fixture["derived"][0];
        let example = fixture["rfc5424_examples"][1]["line_with_real_bom"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            frames(std::slice::from_ref(&example)),
            derived["frame"].as_str().unwrap().as_bytes()
        );
        // Bytes are counted, not characters; a newline is just another byte.
        let messages = ["é\n日本".to_owned(), "🔒".to_owned()];
        assert_eq!(frames(&messages), "9 é\n日本4 🔒".as_bytes());
    }

    #[test]
    fn a_tls_endpoint_needs_a_readable_ca_and_a_whole_client_identity() {
        let dir = tempfile::tempdir().unwrap();
        let mut endpoint: Endpoint =
            serde_json::from_value(serde_json::json!({"url": "tls://127.0.0.1:6514"})).unwrap();
        let problem = |endpoint: &Endpoint| match Transport::new(endpoint) {
            Ok(_) => String::new(),
            Err(SinkProblem(problem)) => problem,
        };
        assert!(problem(&endpoint).contains("needs `caFile`"));
        let ca = dir.path().join("ca.pem");
        endpoint.ca_file = Some(ca.clone());
        assert!(
            problem(&endpoint).contains("caFile ("),
            "{}",
            problem(&endpoint)
        );
        std::fs::write(&ca, "not a certificate\n").unwrap();
        assert!(
            problem(&endpoint).contains("no PEM certificate"),
            "{}",
            problem(&endpoint)
        );
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        assert_eq!(problem(&endpoint), "");
        endpoint.client_cert_file = Some(ca.clone());
        assert!(problem(&endpoint).contains("both `clientCertFile` and `clientKeyFile`"));
        let key = dir.path().join("client.key");
        std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
        endpoint.client_key_file = Some(key);
        assert_eq!(problem(&endpoint), "");
        endpoint.url = "tls://bad_name!:6514".to_owned();
        assert!(problem(&endpoint).contains("neither an IP address nor a DNS name"));
    }
}
