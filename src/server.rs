//! The daemon's HTTP listener, for clients that do not play along: no client may hold a
//! connection open for long, take more than its share of connections, or use the file
//! descriptors that reconciles need.
//!
//! - Headers must arrive within [`HEADER_TIMEOUT`], the first byte of the next request on a
//!   kept-alive connection too; they may take at most [`MAX_HEADER_BYTES`].
//! - A connection lives at most [`CONNECTION_LIFETIME`], then finishes its request and closes
//!   (a client that reads its answer slowly is cut after [`SHUTDOWN_GRACE`] more).
//! - At most [`Limits::connections`] connections at once, fewer than the file descriptors the
//!   process may open; beyond it the listener stops accepting and clients wait in its backlog.
//! - At most [`PER_SOURCE`] of them from one address: a further one is closed at once, so one
//!   client cannot fill the cap and lock others out.
//!
//! Request bodies are bounded where they are read (the webhook handler).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

/// How long a client has to send a request's headers, or to start the next one.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a request line and headers may take; forges send a few KiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long a connection serves requests before it is closed.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long a closing connection may take to finish, and the server to stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Connections one address may hold at once.
pub const PER_SOURCE: usize = 32;
/// Connections at most, however many file descriptors there are.
const MAX_CONNECTIONS: usize = 1024;
/// File descriptors kept for the daemon's own work: the repository's pack files, the state
/// database, certificate files, reload commands, the ACME challenge listener.
const FD_RESERVE: u64 = 128;
/// Connections at least, even with very few file descriptors.
const MIN_CONNECTIONS: usize = 8;

/// How many connections the listener takes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connections: usize,
}

impl Limits {
    /// The limits for a process that may open `fd_limit` file descriptors.
    pub fn for_fd_limit(fd_limit: u64) -> Limits {
        let spare = usize::try_from(fd_limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
        Limits {
            connections: spare.clamp(MIN_CONNECTIONS, MAX_CONNECTIONS),
        }
    }
}

/// Raises the soft limit on open files to the hard limit, as far as the kernel allows, and
/// returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    // An unlimited hard limit is refused above the kernel's nr_open (1,048,576 by default).
    let wanted = hard.min(1 << 20);
    if wanted > soft && setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).is_ok() {
        wanted
    } else {
        soft
    }
}

/// Connections open per source address.
#[derive(Default)]
struct Sources {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its source until it is dropped.
struct Counted {
    sources: Arc<Sources>,
    ip: IpAddr,
}

impl Sources {
    fn admit(self: &Arc<Sources>, ip: IpAddr) -> Option<Counted> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_default();
        if *count >= PER_SOURCE {
            return None;
        }
        *count += 1;
        Some(Counted {
            sources: self.clone(),
            ip,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self
            .sources
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets the open connections finish
/// (for [`SHUTDOWN_GRACE`] at most). Handlers see the client's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    let sources = Arc::new(Sources::default());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    let mut stopping = stop.clone();
    loop {
        // A free slot first: without one, connections wait in the backlog and cost nothing.
        let accepted = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => break,
            accepted = async {
                let slot = slots.clone().acquire_owned().await;
                (slot, listener.accept().await)
            } => accepted,
        };
        let (Ok(slot), accepted) = accepted else {
            break;
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or memory: give the daemon's work a moment.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(counted) = sources.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        let connection = http.serve_connection(TokioIo::new(stream), service(app.clone(), peer));
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _held = (slot, counted);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                _ = stop.wait_for(|stop| *stop) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        });
    }
    // Every slot back means every connection closed.
    let all = u32::try_from(limits.connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await;
}

/// `app` for one connection from `peer`.
fn service(
    app: Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().call(request)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_file_descriptors_for_the_daemons_work() {
        assert_eq!(Limits::for_fd_limit(1024).connections, 896);
        assert_eq!(Limits::for_fd_limit(1 << 20).connections, MAX_CONNECTIONS);
        assert_eq!(Limits::for_fd_limit(64).connections, MIN_CONNECTIONS);
    }

    #[test]
    fn one_source_gets_its_share_and_gets_it_back() {
        let sources = Arc::new(Sources::default());
        let (one, two) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let held: Vec<Counted> = (0..PER_SOURCE)
            .map(|_| sources.admit(one).expect("within the share"))
            .collect();
        assert!(sources.admit(one).is_none());
        assert!(sources.admit(two).is_some());
        drop(held);
        assert!(sources.admit(one).is_some());
        assert_eq!(
            sources.open.lock().unwrap().len(),
            0,
            "nothing left counted"
        );
    }
}
