//! A forge API that misbehaves on purpose, on loopback: raw HTTP/1.1 written by hand, so an
//! answer can be anything a broken or hostile server sends — a body that never ends, one that
//! trickles, a redirect, a `Link` header anywhere, a status with no body, no answer at all.
//! Each test gives a route (request → reply); every request is logged with its headers, so a
//! test can tell whether a token reached a place it must not.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Most bytes of a request head read: the clients under test send small ones.
const MOST_HEAD_BYTES: usize = 64 * 1024;

/// One request as it came.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| v.to_owned())
        })
    }

    /// The whole request as text (head and body), to search for a secret.
    pub fn text(&self) -> String {
        let mut text = format!("{} {}\n", self.method, self.target);
        for (n, v) in &self.headers {
            text.push_str(&format!("{n}: {v}\n"));
        }
        text.push_str(&String::from_utf8_lossy(&self.body));
        text
    }
}

/// How an answer's body comes.
#[derive(Debug, Clone)]
pub enum Body {
    /// These bytes, with their `Content-Length`.
    Fixed(Vec<u8>),
    /// This chunk again and again, chunked, until the client hangs up.
    Endless(Vec<u8>),
    /// This chunk once per interval, chunked, for ever.
    Trickle(Vec<u8>, Duration),
    /// Headers only, then silence with the connection open.
    Stall,
    /// A `Content-Length` of this many bytes, then a few bytes and the end of the connection.
    Claims(u64),
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    pub fn json(status: u16, text: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: Body::Fixed(text.into().into_bytes()),
        }
    }

    pub fn bytes(status: u16, bytes: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: Body::Fixed(bytes),
        }
    }

    pub fn body(status: u16, body: Body) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// What the forge answers: the request and the server's own base URL (`http://127.0.0.1:N`).
pub type Route = Arc<dyn Fn(&Request, &str) -> Reply + Send + Sync>;

pub struct Hostile {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    pub async fn start(route: impl Fn(&Request, &str) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let route: Route = Arc::new(route);
        let logged = requests.clone();
        let base = format!("http://{addr}");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (route, logged, base) = (route.clone(), logged.clone(), base.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, route, logged, base).await;
                });
            }
        });
        Hostile {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> MutexGuard<'_, Vec<Request>> {
        self.requests.lock().expect("the request log")
    }

    /// How many requests had a path that ends with `suffix`.
    pub fn count(&self, suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path().ends_with(suffix))
            .count()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MOST_HEAD_BYTES {
            return Ok(None);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[end + 4..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
    }))
}

async fn serve(
    mut stream: TcpStream,
    route: Route,
    logged: Arc<Mutex<Vec<Request>>>,
    base: String,
) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let reply = route(&request, &base);
    logged.lock().expect("the request log").push(request);
    let mut head = format!(
        "HTTP/1.1 {} Whatever\r\nConnection: close\r\n",
        reply.status
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match reply.body {
        Body::Fixed(bytes) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&bytes).await?;
        }
        Body::Endless(chunk) => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            loop {
                stream.write_all(&framed).await?;
            }
        }
        Body::Trickle(chunk, every) => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            loop {
                stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                stream.write_all(&chunk).await?;
                stream.write_all(b"\r\n").await?;
                stream.flush().await?;
                tokio::time::sleep(every).await;
            }
        }
        Body::Claims(length) => {
            head.push_str(&format!("Content-Length: {length}\r\n\r\n[]"));
            stream.write_all(head.as_bytes()).await?;
        }
        Body::Stall => {
            head.push_str("Content-Length: 10\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    stream.flush().await?;
    Ok(())
}

/// A GitHub-shaped answer for the calls `plan --post` makes, for routes that misbehave in one
/// place only: 201 for a status or a new comment, `[]` for listings, 403 for `GET /user`.
pub fn github_ok(request: &Request) -> Reply {
    match (request.method.as_str(), request.path()) {
        ("GET", path) if path.ends_with("/user") => Reply::json(
            403,
            r#"{"message":"Resource not accessible by integration"}"#,
        ),
        ("POST", _) => Reply::json(201, r#"{"id": 1}"#),
        ("PATCH", _) => Reply::json(200, r#"{"id": 1}"#),
        _ => Reply::json(200, "[]"),
    }
}
