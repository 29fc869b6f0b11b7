//! The listener: accepts connections up to a limit, serves each with hyper's HTTP/1 server, and
//! drains on shutdown within a grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use meshscrape_common::ProxyConfig;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::access::{ClientAddr, Denied};
use crate::app::App;
use crate::metrics::Shed;
use crate::rejections::{ClientIo, Guarded, Responding};
use crate::stall::{self, Deadline, WriteDeadline};

/// How the drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drain {
    /// Every connection finished within the grace period.
    Complete,
    /// The grace period ran out with this many connections still open; they were cut.
    Cut(usize),
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// responses finish for up to the configured grace period, and returns.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    config: &ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Drain {
    let head_limit = usize::try_from(config.limits.max_request_head_bytes).unwrap_or(usize::MAX);
    let head_timeout = config.timeouts.request_head;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        // Also bounds how long an idle keep-alive connection may wait for its next request.
        .header_read_timeout(config.timeouts.request_head)
        .max_header_size(head_limit)
        // The write queue per connection: hyper polls the body for another chunk only while
        // less than this is queued. Each queued chunk pins the upstream read buffer it came from
        // (see `App::new`), so this, times the clients that read slowly, is most of what the
        // sidecar holds: at 16 KiB at most one 64 KiB chunk waits per client. Measured (static
        // build, 32 clients each reading a 20 MB scrape at 2 MB/s): 64 KiB here cost 207 KiB
        // per scrape, 16 KiB 178 KiB; with 256 KiB reads, 16 KiB here ran 0.99-1.02x 64 KiB.
        // It also caps the read buffer for request heads, hence never below the head limit.
        .max_buf_size(head_limit.max(16 * 1024))
        .keep_alive(true);

    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let housekeeping = tokio::spawn(housekeeping(app.clone()));

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // At the connection limit the client takes the slot of the connection that has waited
        // longest for a request head (see `connections`); only while every slot is answering a
        // request does it wait, and the clients after it wait in the kernel's backlog.
        let (slot, evicted) = tokio::select! {
            () = &mut shutdown => break,
            admitted = app.connections.admit() => admitted,
        };
        if evicted {
            app.metrics().shed(Shed::Crowded);
        }
        let _ = stream.set_nodelay(true);
        let service_app = app.clone();
        let responding = Responding::default();
        let deadline = Deadline::default();
        let activity = slot.activity();
        let max_head = config.limits.max_request_head_bytes;
        let http = http.clone();
        let watcher = graceful.watcher();
        // Read per connection, so a reload that rotates the certificate takes effect for the
        // next client.
        let tls = app.tls();
        let app = app.clone();
        tokio::spawn(async move {
            // The TLS handshake, if any, in the connection's own task (a slow client cannot hold
            // up the accept loop), under the request-head deadline, and evictable like a client
            // that has not sent its head yet.
            let stream = match tls {
                None => ClientStream::Plain(stream),
                Some(tls) => {
                    let handshake = tokio::time::timeout(
                        head_timeout,
                        tokio_rustls::TlsAcceptor::from(tls).accept(stream),
                    );
                    tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(s)) => ClientStream::Tls(Box::new(s)),
                            Ok(Err(e)) => {
                                app.metrics().denied(Denied::TlsHandshake);
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                app.metrics().shed(Shed::HeadTimeout);
                                tracing::debug!(%peer, "closed: no TLS handshake in time");
                                return;
                            }
                        },
                        () = slot.evicted() => return,
                    }
                }
            };
            // Two layers under hyper, outermost first: `rejections::ClientIo` gives hyper's own
            // bare 400/414/431 answers their one-line reason (it never touches a response of the
            // service: `Responding` guards each from hand-off until its body is gone and
            // flushed), and `stall::WriteDeadline` cuts a client that stops reading past the
            // response's deadline.
            let io = WriteDeadline::new(TokioIo::new(stream), deadline.clone(), peer);
            let io = ClientIo::new(io, responding.clone(), max_head);
            let conn = http.serve_connection(
                io,
                service_fn(move |mut req| {
                    // Busy from the moment the head is in until the response's body is gone: a
                    // connection answering a request never gives up its slot.
                    let busy = activity.busy();
                    let app = service_app.clone();
                    let responding = responding.clone();
                    let deadline = deadline.clone();
                    req.extensions_mut().insert(ClientAddr(peer));
                    async move {
                        let resp = app.serve(req).await?;
                        // A forwarded response must be out by its scrape deadline; the sidecar's
                        // own short answers get as long as a client has to send a head.
                        deadline.set(
                            resp.body().deadline().unwrap_or_else(|| Instant::now() + head_timeout),
                        );
                        let guard = responding.start();
                        Ok::<_, std::convert::Infallible>(
                            resp.map(|body| Guarded::new(body, (guard, busy))),
                        )
                    }
                }),
            );
            let conn = watcher.watch(conn);
            let ended = tokio::select! {
                ended = conn => ended,
                () = slot.evicted() => {
                    tracing::debug!(%peer, "closed: a newer client took its slot at the \
                        connection limit");
                    return;
                }
            };
            match ended {
                // hyper has answered 400 or 431 (with our one-line body, see `rejections`); its
                // precise reason goes to the log.
                Err(e) if e.is_parse() || e.is_parse_too_large() => {
                    tracing::info!(%peer, error = %e, "rejected an unparseable or oversized \
                        request head");
                }
                Err(e) if e.is_timeout() => {
                    app.metrics().shed(Shed::HeadTimeout);
                    tracing::debug!(%peer, "closed: no whole request head in time");
                }
                Err(e) if stall::is_stall(&e) => app.metrics().shed(Shed::StalledReader),
                Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                Ok(()) => {}
            }
            drop(slot);
        });
    }

    drop(listener);
    housekeeping.abort();
    app.start_draining();
    let grace = app.shutdown_grace();
    tracing::info!(?grace, open = graceful.count(), "stopped accepting; draining");
    tokio::select! {
        () = graceful.shutdown() => Drain::Complete,
        () = tokio::time::sleep(grace) => Drain::Cut(app.connections.in_use()),
    }
}

/// Once a second: close upstream connections that have idled too long or that the app closed.
///
/// The tick also keeps the timer wheel's next wake-up less than a second away, which matters for
/// speed: arming a deadline earlier than the driver's next wake-up (hyper arms the request-head
/// deadline for every request) makes tokio wake its I/O driver through an eventfd, one write and
/// one extra epoll_wait per request. Deadlines here are seconds away, so with the tick they never do.
async fn housekeeping(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.housekeeping();
    }
}

/// A client connection, plain or TLS.
enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
