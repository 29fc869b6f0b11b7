//! A client that stops reading must not hold a response, and its in-flight slot, for ever.
//!
//! Once the socket's buffers and hyper's write queue are full, hyper stops polling the response
//! body, so the body's own deadline (see `body`) is never looked at. This wrapper sees the stall
//! where it happens, in the write that cannot proceed, and fails that write once the response's
//! deadline has passed; hyper then closes the connection and drops the body, which frees the slot.
//! Without it, `limits.maxInFlight` clients that request a large exposition and read nothing
//! would make the sidecar answer every real scrape with 503, and `limits.maxConnections` clients
//! that pipeline thousands of requests and read nothing would keep Prometheus in the backlog.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::{Instant, Sleep};

/// The time by which the response being written on a connection must be out, set by the service
/// for each response it hands hyper; none before the first.
#[derive(Clone, Default)]
pub struct Deadline(Arc<Mutex<Option<Instant>>>);

impl Deadline {
    pub fn set(&self, deadline: Instant) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(deadline);
    }

    fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The error a stalled write fails with.
#[derive(Debug)]
struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client stopped reading before the response deadline")
    }
}

impl std::error::Error for Stalled {}

/// Whether a connection ended because its client stopped reading (this module cut it).
pub(crate) fn is_stall(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        let io = err.downcast_ref::<io::Error>().and_then(io::Error::get_ref);
        if io.is_some_and(|inner| inner.is::<Stalled>()) {
            return true;
        }
        source = err.source();
    }
    false
}

/// A client connection's IO whose writes fail once they have waited past the response deadline.
pub struct WriteDeadline<T> {
    inner: T,
    deadline: Deadline,
    peer: SocketAddr,
    /// Armed on the first write that has to wait; reset when the deadline changes.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    pub fn new(inner: T, deadline: Deadline, peer: SocketAddr) -> Self {
        WriteDeadline { inner, deadline, peer, timer: None }
    }

    /// Called when a write would block: pending until the deadline, an error after it.
    fn stalled<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let Some(deadline) = self.deadline.get() else { return Poll::Pending };
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                tracing::info!(peer = %self.peer, "the client stopped reading the response; cut \
                    at its deadline");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, Stalled)))
            }
        }
    }
}

impl<T: Read + Unpin> Read for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for WriteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.stalled(cx),
            done => done,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.stalled(cx),
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
