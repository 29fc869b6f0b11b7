//! Request handling: the exact route table, the sidecar's own endpoints, and forwarding to the app.
//!
//! `App::handle` takes a request and returns a response without touching a socket of its own,
//! so tests drive it directly; `server` puts it behind a listener.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use meshscrape_common::ProxyConfig;
use meshscrape_common::error::chain;
use meshscrape_common::proxy::SCRAPE_HEADERS;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::body::{ProxyBody, Stream};
use crate::connections::Connections;
use crate::headers::{connection_named, strip_hop_by_hop};
use crate::metrics::{Metrics, UNMATCHED, UpstreamError};
use crate::upstream::{self, Pool};

/// Prometheus sends its scrape timeout in this header (seconds, may be fractional).
const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";
/// Our deadline ends this much before Prometheus's, so Prometheus sees our 504 and its reason
/// instead of its own "context deadline exceeded".
const SCRAPE_TIMEOUT_MARGIN: Duration = Duration::from_millis(250);

const HEALTHY: &str = "/-/healthy";
const READY: &str = "/-/ready";
const METRICS: &str = "/-/metrics";
const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD");

/// One public path's resolved target.
struct Entry {
    label: usize,
    addr: SocketAddr,
    /// The same address, for messages.
    authority: Authority,
    /// And as the Host header's value, made once.
    host: HeaderValue,
    path: String,
}

/// The sidecar's request handler, shared by every connection.
pub struct App {
    routes: HashMap<String, Entry>,
    /// Label indices of the reserved paths, after the routes.
    reserved: [usize; 3],
    pool: Pool,
    in_flight: Limit,
    /// One slot per open client connection, taken by the listener.
    pub(crate) connections: Arc<Connections>,
    upstream_timeout: Duration,
    /// The scrape-timeout header's value when the budget is the whole upstream timeout.
    upstream_timeout_value: HeaderValue,
    /// Request headers that reach the app (besides Host and the scrape-timeout header, which
    /// the sidecar sets): the scrape's own and those the config adds.
    forwarded: Vec<HeaderName>,
    draining: AtomicBool,
    metrics: Arc<Metrics>,
}

impl App {
    pub fn new(config: &ProxyConfig) -> Self {
        let mut labels = vec!["unmatched".to_string()];
        let mut routes = HashMap::new();
        for route in &config.routes {
            labels.push(route.public.clone());
            // Validated as IP:port in meshscrape-common, so this always parses.
            let authority = Authority::try_from(route.target.addr.to_string())
                .unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
            routes.insert(
                route.public.clone(),
                Entry {
                    label: labels.len() - 1,
                    addr: route.target.addr,
                    host: HeaderValue::from_str(authority.as_str())
                        .unwrap_or(HeaderValue::from_static("127.0.0.1")),
                    authority,
                    path: route.target.path.clone(),
                },
            );
        }
        let reserved = [labels.len(), labels.len() + 1, labels.len() + 2];
        labels.extend([HEALTHY, READY, METRICS].map(String::from));

        // Each upstream read takes up to 64 KiB: a 39 KB exposition (the bench's typical one)
        // still arrives in one read and goes out in one write, and a scrape in flight holds about
        // three such buffers (one being read, one in the body channel, one queued for a slow
        // client), which `sizing::PER_IN_FLIGHT` in meshscrape-common budgets for. bench/sidecar.py,
        // static builds side by side, 8 concurrent 20 MB scrapes: 256 KiB reads peaked at 6.9 MB
        // RSS, 128 KiB at 4.9 MB, 64 KiB at 4.2 MB; 32 clients reading 20 MB at 2 MB/s: 16.7,
        // 12.1 and 8.4 MB. The price is requests/s on large bodies: 64 and 128 KiB both ran
        // 0.76-0.83x the 256 KiB build at 1 MB and 20 MB (the same at 39 KB), from the
        // per-chunk cost of a read, a hand-over and a write.
        let max_pooled = usize::try_from(config.limits.max_in_flight).unwrap_or(usize::MAX);
        let pool =
            Pool::new(max_pooled, config.timeouts.connect, upstream::IDLE_TIMEOUT, 64 * 1024);

        App {
            routes,
            reserved,
            pool,
            in_flight: Limit::new(config.limits.max_in_flight),
            connections: Connections::new(config.limits.max_connections),
            upstream_timeout: config.timeouts.upstream,
            upstream_timeout_value: HeaderValue::from_str(&format!(
                "{}",
                config.timeouts.upstream.as_secs_f64()
            ))
            .unwrap_or(HeaderValue::from_static("10")),
            // Validated as header names in meshscrape-common, so none is skipped here.
            forwarded: SCRAPE_HEADERS
                .iter()
                .copied()
                .filter(|h| *h != SCRAPE_TIMEOUT_HEADER)
                .chain(config.forward_headers.iter().map(String::as_str))
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            draining: AtomicBool::new(false),
            metrics: Arc::new(Metrics::new(labels)),
        }
    }

    /// From now on `/-/ready` answers 503, so the kubelet stops sending new work during a drain.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Periodic upkeep: drops pooled upstream connections that are closed or idle too long.
    pub fn housekeeping(&self) {
        self.pool.reap();
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What `/-/metrics` serves.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(self.in_flight.in_use(), self.connections.in_use())
    }

    /// Answers one request. Never fails: every problem becomes a status and a one-line reason.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ProxyBody> {
        let label = self.label_of(req.uri().path());
        let resp = self.route(req).await;
        self.metrics.request(label, resp.status().as_u16());
        resp
    }

    /// Adapter for hyper's `service_fn`.
    pub async fn serve<B>(
        self: Arc<Self>,
        req: Request<B>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        Ok(self.handle(req).await)
    }

    fn label_of(&self, path: &str) -> usize {
        match path {
            HEALTHY => self.reserved[0],
            READY => self.reserved[1],
            METRICS => self.reserved[2],
            _ => self.routes.get(path).map_or(UNMATCHED, |e| e.label),
        }
    }

    async fn route<B>(&self, req: Request<B>) -> Response<ProxyBody> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!(
                    "method {} is not allowed; the sidecar answers GET and HEAD only",
                    req.method()
                ),
            );
            resp.headers_mut().insert(header::ALLOW, ALLOW);
            return resp;
        }
        // Absolute-form (`GET http://host/path`) is how clients talk to forward proxies; this is
        // not one, and honouring the authority would invite confusion about where a request goes.
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            return text(
                StatusCode::BAD_REQUEST,
                "absolute-form request targets are not accepted; send an origin-form request such \
                    as GET /metrics",
            );
        }
        match req.uri().path() {
            HEALTHY => text(StatusCode::OK, "ok"),
            READY if self.draining.load(Ordering::Relaxed) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining: the sidecar is shutting down")
            }
            READY => text(StatusCode::OK, "ready"),
            METRICS => {
                let mut resp = Response::new(ProxyBody::text(self.render_metrics()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            path => match self.routes.get(path) {
                Some(entry) => self.forward(entry, req).await,
                None => text(
                    StatusCode::NOT_FOUND,
                    "no route for this path; only the configured exact paths are forwarded",
                ),
            },
        }
    }

    /// The deadline for one forwarded request: the configured upstream timeout, shortened to end
    /// just before Prometheus gives up on the scrape.
    fn deadline(&self, headers: &HeaderMap) -> Duration {
        let scrape = headers
            .get(SCRAPE_TIMEOUT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
        match scrape {
            Some(s) => {
                let ours =
                    if s > SCRAPE_TIMEOUT_MARGIN * 2 { s - SCRAPE_TIMEOUT_MARGIN } else { s / 2 };
                ours.min(self.upstream_timeout)
            }
            None => self.upstream_timeout,
        }
    }

    async fn forward<B>(&self, entry: &Entry, req: Request<B>) -> Response<ProxyBody> {
        let Some(permit) = self.in_flight.try_take() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("too many requests in flight (limit {}); retry later", self.in_flight.max),
            );
        };
        let budget = self.deadline(req.headers());
        let started = Instant::now();
        let deadline = started + budget;

        let (parts, _body) = req.into_parts();
        let path_and_query = match parts.uri.query() {
            Some(q) => PathAndQuery::try_from(format!("{}?{q}", entry.path)),
            None => PathAndQuery::try_from(entry.path.as_str()),
        };
        // Origin-form: hyper's connection-level client writes the target as given.
        let uri = path_and_query.ok().map(Uri::from);
        let Some(uri) = uri else {
            return text(
                StatusCode::BAD_REQUEST,
                "the query string is not valid in a request target",
            );
        };
        // An allowlist, not a blocklist: the app sits beside Envoy or ztunnel on loopback and
        // may trust any header that arrives there as set by the mesh (X-Forwarded-Client-Cert,
        // X-Forwarded-For, X-Envoy-*), so only what a scrape needs, and what the config adds,
        // goes through. No body is forwarded, so nothing that frames one either.
        // In place: the request's own map loses every field not allowed, and those that
        // Connection names (hop-by-hop for this request, even an allowed one).
        let mut headers = parts.headers;
        let hop = connection_named(&headers);
        let dropped: Vec<HeaderName> = headers
            .keys()
            .filter(|k| !self.forwarded.contains(k) || hop.contains(k))
            .cloned()
            .collect();
        for name in dropped {
            headers.remove(name);
        }
        // The app is told the budget it really has, not the one Prometheus gave the sidecar.
        let told = if budget == self.upstream_timeout {
            Ok(self.upstream_timeout_value.clone())
        } else {
            HeaderValue::from_str(&format!("{}", budget.as_secs_f64()))
        };
        if let Ok(told) = told {
            headers.insert(SCRAPE_TIMEOUT_HEADER, told);
        }
        headers.insert(header::HOST, entry.host.clone());
        let mut upstream_req = Request::new(Empty::new());
        *upstream_req.method_mut() = parts.method;
        *upstream_req.uri_mut() = uri;
        *upstream_req.version_mut() = Version::HTTP_11;
        *upstream_req.headers_mut() = headers;

        let stream =
            Stream { metrics: self.metrics.clone(), route: entry.label, bytes: 0, _permit: permit };
        let result =
            tokio::time::timeout_at(deadline, self.pool.request(entry.addr, upstream_req)).await;
        let resp = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(err)) => {
                let (kind, reason) = classify(&err);
                self.metrics.upstream_error(kind);
                tracing::warn!(route = %entry.path, upstream = %entry.authority, error = %chain(&err), "{reason}");
                return text(StatusCode::BAD_GATEWAY, &format!("{reason} ({})", entry.authority));
            }
            Err(_) => {
                self.metrics.upstream_error(UpstreamError::Timeout);
                tracing::warn!(route = %entry.path, upstream = %entry.authority, ?budget, "the app did not answer in time");
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "the app did not answer within {}ms ({})",
                        budget.as_millis(),
                        entry.authority
                    ),
                );
            }
        };
        self.metrics.upstream_latency(entry.label, started.elapsed());
        // A plain GET asks for no interim answer and no protocol switch; passing a 101 on would
        // hand the client the app's connection. Every such answer is a 502, whatever follows it.
        if resp.status().is_informational() {
            self.metrics.upstream_error(UpstreamError::Protocol);
            tracing::warn!(route = %entry.path, upstream = %entry.authority, status = %resp.status(), "the app answered a plain GET with an informational status");
            return text(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "the app answered {} to a plain GET; only a final answer is forwarded ({})",
                    resp.status(),
                    entry.authority
                ),
            );
        }
        let (mut parts, mut body) = resp.into_parts();
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and an intermediary must drop
        // the Content-Length before forwarding; hyper re-frames the body for the client.
        if parts.headers.contains_key(header::TRANSFER_ENCODING) {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        // Wait for the body's first frame before the head goes out: hyper sends the two in one
        // write anyway, and an app whose body breaks or stalls before its first byte then gets
        // the client a 502 or 504 with a reason instead of a connection closed mid-response.
        let first = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(None) => None,
            Ok(Some(Err(err))) => {
                self.metrics.upstream_error(UpstreamError::Body);
                tracing::warn!(route = %entry.path, upstream = %entry.authority, error = %err, "the app's body broke off before its first byte");
                return text(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "the app sent a response head, then a broken or truncated body ({})",
                        entry.authority
                    ),
                );
            }
            Err(_) => {
                self.metrics.upstream_error(UpstreamError::Timeout);
                tracing::warn!(route = %entry.path, upstream = %entry.authority, ?budget, "the app's body did not start in time");
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "the app sent a response head but no body within {}ms ({})",
                        budget.as_millis(),
                        entry.authority
                    ),
                );
            }
        };
        strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        let body = ProxyBody::Upstream {
            first,
            inner: body,
            deadline: tokio::time::sleep_until(deadline),
            stream,
        };
        Response::from_parts(parts, body)
    }
}

/// A bound on requests in flight that also says how much of it is taken, so the gauge needs no
/// counter of its own. (Connections have their own, see `connections`.)
pub(crate) struct Limit {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Limit {
    fn new(max: u64) -> Self {
        let max =
            usize::try_from(max).unwrap_or(Semaphore::MAX_PERMITS).min(Semaphore::MAX_PERMITS);
        Limit { permits: Arc::new(Semaphore::new(max)), max }
    }

    /// A slot now, or `None` at the limit.
    pub(crate) fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    pub(crate) fn in_use(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

/// Sorts a client error into a metric kind and a reason a person can act on.
fn classify(err: &upstream::Error) -> (UpstreamError, &'static str) {
    let hyper_err = match err {
        upstream::Error::ConnectTimeout => {
            return (UpstreamError::Connect, "connecting to the app timed out");
        }
        upstream::Error::Connect(io) => {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => (
                    UpstreamError::Connect,
                    "the app refused the connection; is it listening on this address?",
                ),
                std::io::ErrorKind::TimedOut => {
                    (UpstreamError::Connect, "connecting to the app timed out")
                }
                _ => (UpstreamError::Connect, "cannot connect to the app"),
            };
        }
        upstream::Error::Http(e) => e,
    };
    if hyper_err.is_parse() || hyper_err.is_parse_status() {
        (
            UpstreamError::Protocol,
            "the app answered with something that is not a valid HTTP/1 response",
        )
    } else if hyper_err.is_incomplete_message() {
        (
            UpstreamError::Protocol,
            "the app closed the connection before sending a complete response head",
        )
    } else {
        (UpstreamError::Protocol, "the exchange with the app failed")
    }
}

/// A one-line plain-text answer naming the cause.
fn text(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(format!("{reason}\n")));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests;
