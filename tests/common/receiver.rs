//! A small HTTP receiver for sinks: it answers each request with the status the test sets
//! and records the bodies of the requests it accepts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// An HTTP receiver answering each request with the status the test sets, recording bodies.
pub struct Receiver {
    pub url: String,
    pub status: Arc<AtomicU16>,
    pub bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let status = Arc::new(AtomicU16::new(204));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (answer, kept) = (status.clone(), bodies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let code = answer.load(Ordering::SeqCst);
                if code < 300 {
                    kept.lock()
                        .expect("lock")
                        .push(String::from_utf8_lossy(&body).into_owned());
                }
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} Answer\r\ncontent-length: 22\r\nconnection: close\r\n\r\n{{\"error\":\"not today\"}}"
                );
            }
        });
        Receiver {
            url,
            status,
            bodies,
        }
    }

    pub fn ids(&self) -> Vec<String> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .map(|b| {
                serde_json::from_str::<Value>(b).expect("JSON")["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}
