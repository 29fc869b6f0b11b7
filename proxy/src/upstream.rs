//! The client side: keep-alive HTTP/1 connections to the app, pooled per address.
//!
//! A small pool on hyper's connection-level client rather than hyper-util's general-purpose one:
//! the sidecar talks to one or two loopback addresses, a request at a time per scrape, so the
//! pool is a list per address. A connection goes back in the list as soon as its response head
//! has arrived; it is handed out again once hyper reports it ready, i.e. after that response's
//! body has been read to the end. This saves the general pool's per-request task spawn and
//! wake-up, which showed as a context switch per scrape.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connections idle longer than this are closed: shorter than apps' own idle limits (nginx 75 s,
/// Jetty 30 s), so the sidecar, not the app, ends an idle connection and no request races a close.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(25);

/// Why a request did not get a response head.
#[derive(Debug)]
pub enum Error {
    Connect(std::io::Error),
    ConnectTimeout,
    /// The HTTP exchange failed (malformed response, connection closed early, ...).
    Http(hyper::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(e) => write!(f, "connect: {e}"),
            Error::ConnectTimeout => f.write_str("connect: timed out"),
            Error::Http(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect(e) => Some(e),
            Error::ConnectTimeout => None,
            Error::Http(e) => Some(e),
        }
    }
}

struct Idle {
    sender: SendRequest<Empty<Bytes>>,
    since: Instant,
}

/// Pooled keep-alive connections to the app.
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    max_per_addr: usize,
    idle_timeout: Duration,
    read_buf: usize,
}

impl Pool {
    /// At most `max_per_addr` connections kept per address; each read from the app takes up to
    /// `read_buf` bytes.
    pub fn new(max_per_addr: usize, idle_timeout: Duration, read_buf: usize) -> Self {
        Pool { idle: Mutex::default(), max_per_addr: max_per_addr.max(1), idle_timeout, read_buf }
    }

    /// Sends `req` to `addr` on a pooled connection or a new one. When a pooled connection turns
    /// out to be closed before the request was written (apps close idle connections when they
    /// like), the request goes out once more on a new connection. A new connection must be
    /// established within `connect_timeout`.
    pub async fn request(
        &self,
        addr: SocketAddr,
        req: Request<Empty<Bytes>>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, Error> {
        let Some(mut sender) = self.checkout(addr) else {
            return self.fresh(addr, req, connect_timeout).await;
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                self.checkin(addr, sender);
                Ok(resp)
            }
            // Not written: the connection closed under us. Safe to send again on a new one.
            Err(mut e) => match e.take_message() {
                Some(req) => self.fresh(addr, req, connect_timeout).await,
                None => Err(Error::Http(e.into_error())),
            },
        }
    }

    async fn fresh(
        &self,
        addr: SocketAddr,
        req: Request<Empty<Bytes>>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, Error> {
        let mut sender = self.connect(addr, connect_timeout).await?;
        let resp = sender.send_request(req).await.map_err(Error::Http)?;
        self.checkin(addr, sender);
        Ok(resp)
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<SendRequest<Empty<Bytes>>, Error> {
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Error::Connect(e)),
            Err(_) => return Err(Error::ConnectTimeout),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .read_buf_exact_size(Some(self.read_buf))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Error::Http)?;
        tokio::spawn(async move {
            // Ends when the app closes the connection or the last sender is dropped.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// A ready connection to `addr` (a closed one is never ready). Pruning closed and long-idle
    /// ones is `reap`'s job, once a second, not every request's.
    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<Empty<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = idle.get_mut(&addr)?;
        let ready = list.iter().position(|c| c.sender.is_ready())?;
        Some(list.swap_remove(ready).sender)
    }

    /// Drops every closed or long-idle connection (which closes it), so none lingers between
    /// scrapes.
    pub fn reap(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for list in idle.values_mut() {
            list.retain(|c| !c.sender.is_closed() && c.since.elapsed() < self.idle_timeout);
        }
    }

    /// Back in the list; dropped (and so closed once its response is done) when the list is full.
    fn checkin(&self, addr: SocketAddr, sender: SendRequest<Empty<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = idle.entry(addr).or_default();
        if list.len() < self.max_per_addr {
            list.push(Idle { sender, since: Instant::now() });
        }
    }

    /// Pooled connections (ready or still streaming a body), for tests.
    pub fn pooled(&self, addr: SocketAddr) -> usize {
        self.idle.lock().map(|i| i.get(&addr).map_or(0, Vec::len)).unwrap_or(0)
    }
}
