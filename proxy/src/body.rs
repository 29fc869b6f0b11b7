//! The response body: a short local text, or the app's body streamed frame by frame.
//!
//! The upstream variant never buffers more than the frame hyper hands it, holds the in-flight
//! permit until the body ends, counts bytes, and cuts the stream when the deadline passes, so a
//! stalled app cannot hang a scrape after the head went out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::metrics::{Metrics, RouteStats, UpstreamError};

/// Errors that cut a streamed body; hyper then closes the client connection mid-body, which
/// Prometheus reports as a failed scrape rather than storing half an exposition.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    /// Either a local one-line answer or the app's streamed body.
    #[project = Proj]
    pub enum ProxyBody {
        Local { data: Option<Bytes> },
        Upstream {
            // The body's first frame, read before the head went out (see `App::forward`).
            first: Option<Frame<Bytes>>,
            #[pin] inner: Incoming,
            #[pin] deadline: Sleep,
            stream: Stream,
        },
        // Several targets of one route, one after the other (see `merge`); boxed, so this module
        // need not know how.
        Merged { body: Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>, deadline: Instant },
    }
}

/// What a forwarded request holds until its body ends: the in-flight slot, and the byte count
/// it adds to the route's metric when dropped.
pub struct Stream {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) route: Arc<RouteStats>,
    pub(crate) bytes: u64,
    pub(crate) _permit: OwnedSemaphorePermit,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.route.bytes(self.bytes);
    }
}

impl ProxyBody {
    pub fn text(text: impl Into<Bytes>) -> Self {
        ProxyBody::Local { data: Some(text.into()) }
    }

    /// When a forwarded body must be out by; `None` for a local answer.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            ProxyBody::Local { .. } => None,
            ProxyBody::Upstream { deadline, .. } => Some(deadline.deadline()),
            ProxyBody::Merged { deadline, .. } => Some(*deadline),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            Proj::Local { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Proj::Merged { body, .. } => body.as_mut().poll_frame(cx),
            Proj::Upstream { first, inner, deadline, stream } => {
                match first
                    .take()
                    .map_or_else(|| inner.poll_frame(cx), |f| Poll::Ready(Some(Ok(f))))
                {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            stream.bytes += data.len() as u64;
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        stream.metrics.upstream_error(UpstreamError::Body);
                        tracing::warn!(route = stream.route.label(), error = %e, "the app's body broke \
                            off; cutting the response");
                        Poll::Ready(Some(Err(e.into())))
                    }
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => {
                        ready!(deadline.poll(cx));
                        stream.metrics.upstream_error(UpstreamError::Timeout);
                        tracing::warn!(
                            route = stream.route.label(),
                            "the app's body did not finish before the deadline; cutting the \
                                response"
                        );
                        Poll::Ready(Some(Err("upstream body passed its deadline".into())))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local { data } => data.is_none(),
            ProxyBody::Upstream { first, inner, .. } => first.is_none() && inner.is_end_stream(),
            ProxyBody::Merged { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Upstream { first, inner, .. } => {
                // hyper frames the response by this hint when the app sent no Content-Length,
                // so the frame already taken must be counted back in.
                let taken = first.as_ref().and_then(Frame::data_ref).map_or(0, |d| d.len() as u64);
                let hint = inner.size_hint();
                match hint.exact() {
                    Some(n) => SizeHint::with_exact(n + taken),
                    None => {
                        let mut wider = SizeHint::new();
                        wider.set_lower(hint.lower() + taken);
                        wider
                    }
                }
            }
            ProxyBody::Merged { .. } => SizeHint::new(),
        }
    }
}
