//! Request handling: the exact route table, the sidecar's own endpoints, and forwarding to the app.
//!
//! `App::handle` takes a request and returns a response without touching a socket of its own,
//! so tests drive it directly; `server` puts it behind a listener.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
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

use crate::access::{Access, ClientAddr, Denied};
use crate::body::{ProxyBody, Stream};
use crate::connections::Connections;
use crate::headers::{connection_named, strip_hop_by_hop};
use crate::metrics::{Metrics, RouteStats, UNMATCHED, UpstreamError};
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

/// One loopback target of a route, resolved once per configuration.
pub(crate) struct Part {
    pub(crate) addr: SocketAddr,
    /// The same address, for messages.
    pub(crate) authority: Authority,
    /// And as the Host header's value, made once.
    pub(crate) host: HeaderValue,
    pub(crate) path: String,
    /// `http://ADDR/path`, as logs and metric labels name it.
    pub(crate) url: String,
}

/// One public path: a target forwarded as is, or several merged.
pub(crate) struct Entry {
    pub(crate) stats: Arc<RouteStats>,
    pub(crate) parts: Vec<Part>,
}

/// What one configuration decides about requests. A reload builds a new one and swaps it in;
/// a request keeps the one it started with until its response is done.
pub(crate) struct Table {
    pub(crate) config: ProxyConfig,
    routes: HashMap<String, Entry>,
    pub(crate) upstream_timeout: Duration,
    /// The scrape-timeout header's value when the budget is the whole upstream timeout.
    upstream_timeout_value: HeaderValue,
    /// Request headers that reach the app (besides Host and the scrape-timeout header, which
    /// the sidecar sets): the scrape's own and those the config adds.
    pub(crate) forwarded: Vec<HeaderName>,
    /// Who may use the routes and `/-/metrics`, and the TLS listener's settings.
    pub(crate) access: Access,
}

impl Table {
    /// Resolves `config` and reads the files it names (token, certificates); the error says which
    /// file is wrong and how.
    fn new(config: ProxyConfig, metrics: &Metrics) -> Result<Self, String> {
        let access = Access::load(&config)?;
        let mut routes = HashMap::new();
        for route in &config.routes {
            let parts = route
                .targets
                .iter()
                .map(|t| {
                    // Validated as IP:port in meshscrape-common, so this always parses.
                    let authority = Authority::try_from(t.addr.to_string())
                        .unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
                    Part {
                        addr: t.addr,
                        host: HeaderValue::from_str(authority.as_str())
                            .unwrap_or(HeaderValue::from_static("127.0.0.1")),
                        authority,
                        path: t.path.clone(),
                        url: t.url(),
                    }
                })
                .collect();
            routes.insert(
                route.public.clone(),
                Entry { stats: metrics.route(&route.public, true), parts },
            );
        }
        Ok(Table {
            access,
            routes,
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
            config,
        })
    }
    /// The deadline for one forwarded request: the configured upstream timeout, shortened to end
    /// just before Prometheus gives up on the scrape.
    pub(crate) fn deadline(&self, headers: &HeaderMap) -> Duration {
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

    /// The request headers for the app: only those allowed, none that `Connection` names, and
    /// the scrape budget the app really has.
    pub(crate) fn upstream_headers(&self, mut headers: HeaderMap, budget: Duration) -> HeaderMap {
        // An allowlist, not a blocklist: the app sits beside Envoy or ztunnel on loopback and
        // may trust any header that arrives there as set by the mesh (X-Forwarded-Client-Cert,
        // X-Forwarded-For, X-Envoy-*), so only what a scrape needs, and what the config adds,
        // goes through. No body is forwarded, so nothing that frames one either.
        // In place: the request's own map loses every field not allowed, and those that
        // Connection names (hop-by-hop for this request, even an allowed one).
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
        headers
    }
}

/// The sidecar's request handler, shared by every connection.
pub struct App {
    table: RwLock<Arc<Table>>,
    /// The configuration the listener was set up with: settings that only a restart changes are
    /// compared against it on reload.
    started: ProxyConfig,
    unmatched: Arc<RouteStats>,
    /// Counters of the reserved paths: /-/healthy, /-/ready, /-/metrics.
    reserved: [Arc<RouteStats>; 3],
    pub(crate) pool: Pool,
    pub(crate) in_flight: Limit,
    /// One slot per open client connection, taken by the listener.
    pub(crate) connections: Arc<Connections>,
    draining: AtomicBool,
    pub(crate) metrics: Arc<Metrics>,
}

impl App {
    /// The handler for `config`; fails when a file it names (token, certificate, key, CA) cannot
    /// be used, saying which and why.
    pub fn new(config: &ProxyConfig) -> Result<Self, String> {
        let metrics = Arc::new(Metrics::default());
        let reserved = [HEALTHY, READY, METRICS].map(|p| metrics.route(p, false));
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
        let pool = Pool::new(max_pooled, upstream::IDLE_TIMEOUT, 64 * 1024);
        let table = Table::new(config.clone(), &metrics)?;
        metrics.config_loaded(config_hash(config), Vec::new(), false);
        Ok(App {
            table: RwLock::new(Arc::new(table)),
            started: config.clone(),
            unmatched: metrics.route(UNMATCHED, false),
            reserved,
            pool,
            in_flight: Limit::new(config.limits.max_in_flight),
            connections: Connections::new(config.limits.max_connections),
            draining: AtomicBool::new(false),
            metrics,
        })
    }

    /// The configuration in force now.
    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> ProxyConfig {
        self.table().config.clone()
    }

    /// Puts `config` (already validated) in force for every request from now on; requests in
    /// flight finish under the one they started with. Returns the keys whose new values wait for
    /// a restart (the listener, the limits that size it, the log format): they are reported, in
    /// the log and in `/-/metrics`, not silently ignored.
    ///
    /// The files it names are read first; if one cannot be used, nothing changes and the error
    /// says which file and why.
    pub fn reload(&self, config: ProxyConfig) -> Result<Vec<&'static str>, String> {
        let restart = restart_required(&self.started, &config);
        let hash = config_hash(&config);
        let table = Arc::new(Table::new(config, &self.metrics)?);
        *self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner) = table;
        self.metrics.config_loaded(hash, restart.clone(), true);
        Ok(restart)
    }

    /// The TLS settings new connections are accepted with, if the listener speaks TLS.
    pub(crate) fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.table().access.tls.clone()
    }

    /// How long in-flight responses may run after SIGTERM, as the configuration in force says.
    pub fn shutdown_grace(&self) -> Duration {
        self.table().config.timeouts.shutdown_grace
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
        let cert_not_after = self.table().access.cert_not_after;
        self.metrics.render(self.in_flight.in_use(), self.connections.in_use(), cert_not_after)
    }

    /// Answers one request. Never fails: every problem becomes a status and a one-line reason.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ProxyBody> {
        let table = self.table();
        let stats = match req.uri().path() {
            HEALTHY => &self.reserved[0],
            READY => &self.reserved[1],
            METRICS => &self.reserved[2],
            path => table.routes.get(path).map_or(&self.unmatched, |e| &e.stats),
        };
        let resp = self.route(&table, req).await;
        stats.request(resp.status().as_u16());
        resp
    }

    /// Adapter for hyper's `service_fn`.
    pub async fn serve<B>(
        self: Arc<Self>,
        req: Request<B>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        Ok(self.handle(req).await)
    }

    async fn route<B>(&self, table: &Table, req: Request<B>) -> Response<ProxyBody> {
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
        // Everything but the kubelet's probes is behind the access rules, when there are any:
        // an unknown path is not told apart from a route to a client that may not ask.
        let path = req.uri().path();
        if path != HEALTHY && path != READY {
            let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
            if let Err(denied) = table.access.check(client, req.headers()) {
                return self.deny(table, denied, client);
            }
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
            path => match table.routes.get(path) {
                Some(entry) if entry.parts.len() > 1 => {
                    self.forward_merged(table, entry, req).await
                }
                Some(entry) => self.forward(table, entry, req).await,
                None => text(
                    StatusCode::NOT_FOUND,
                    "no route for this path; only the configured exact paths are forwarded",
                ),
            },
        }
    }

    async fn forward<B>(
        &self,
        table: &Table,
        entry: &Entry,
        req: Request<B>,
    ) -> Response<ProxyBody> {
        let part = &entry.parts[0];
        let Some(permit) = self.in_flight.try_take() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("too many requests in flight (limit {}); retry later", self.in_flight.max),
            );
        };
        let budget = table.deadline(req.headers());
        let started = Instant::now();
        let deadline = started + budget;

        let (parts, _body) = req.into_parts();
        let Some(uri) = upstream_uri(&part.path, parts.uri.query()) else {
            return text(
                StatusCode::BAD_REQUEST,
                "the query string is not valid in a request target",
            );
        };
        let mut headers = table.upstream_headers(parts.headers, budget);
        headers.insert(header::HOST, part.host.clone());
        let mut upstream_req = Request::new(Empty::new());
        *upstream_req.method_mut() = parts.method;
        *upstream_req.uri_mut() = uri;
        *upstream_req.version_mut() = Version::HTTP_11;
        *upstream_req.headers_mut() = headers;

        let stream = Stream {
            metrics: self.metrics.clone(),
            route: entry.stats.clone(),
            bytes: 0,
            _permit: permit,
        };
        let connect = table.config.timeouts.connect;
        let result =
            tokio::time::timeout_at(deadline, self.pool.request(part.addr, upstream_req, connect))
                .await;
        let resp = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(err)) => {
                let (kind, reason) = classify(&err);
                self.metrics.upstream_error(kind);
                tracing::warn!(route = %part.path, upstream = %part.authority, error = %chain(&err), "{reason}");
                return text(StatusCode::BAD_GATEWAY, &format!("{reason} ({})", part.authority));
            }
            Err(_) => {
                self.metrics.upstream_error(UpstreamError::Timeout);
                tracing::warn!(route = %part.path, upstream = %part.authority, ?budget, "the app did not answer in time");
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "the app did not answer within {}ms ({})",
                        budget.as_millis(),
                        part.authority
                    ),
                );
            }
        };
        entry.stats.upstream_latency(started.elapsed());
        // A plain GET asks for no interim answer and no protocol switch; passing a 101 on would
        // hand the client the app's connection. Every such answer is a 502, whatever follows it.
        if resp.status().is_informational() {
            self.metrics.upstream_error(UpstreamError::Protocol);
            tracing::warn!(route = %part.path, upstream = %part.authority, status = %resp.status(), "the app answered a plain GET with an informational status");
            return text(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "the app answered {} to a plain GET; only a final answer is forwarded ({})",
                    resp.status(),
                    part.authority
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
                tracing::warn!(route = %part.path, upstream = %part.authority, error = %err, "the app's body broke off before its first byte");
                return text(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "the app sent a response head, then a broken or truncated body ({})",
                        part.authority
                    ),
                );
            }
            Err(_) => {
                self.metrics.upstream_error(UpstreamError::Timeout);
                tracing::warn!(route = %part.path, upstream = %part.authority, ?budget, "the app's body did not start in time");
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "the app sent a response head but no body within {}ms ({})",
                        budget.as_millis(),
                        part.authority
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

impl App {
    fn deny(
        &self,
        table: &Table,
        denied: Denied,
        client: Option<SocketAddr>,
    ) -> Response<ProxyBody> {
        self.metrics.denied(denied);
        tracing::debug!(client = ?client, reason = denied.as_str(), "denied a request");
        let (status, reason) = match denied {
            Denied::ClientAddress => (
                StatusCode::FORBIDDEN,
                format!(
                    "client address {} is not allowed here (auth.allowedClients)",
                    client.map_or("unknown".into(), |c| c.ip().to_string())
                ),
            ),
            Denied::NoToken => (
                StatusCode::UNAUTHORIZED,
                "a bearer token is required: send Authorization: Bearer <token>".into(),
            ),
            Denied::BadToken | Denied::TlsHandshake => {
                (StatusCode::UNAUTHORIZED, "the bearer token is not valid".into())
            }
        };
        let mut resp = text(status, &reason);
        if status == StatusCode::UNAUTHORIZED && table.access.wants_token() {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"meshscrape\""),
            );
        }
        resp
    }
}

/// `path?query` in origin form: hyper's connection-level client writes the target as given.
pub(crate) fn upstream_uri(path: &str, query: Option<&str>) -> Option<Uri> {
    let path_and_query = match query {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
        None => PathAndQuery::try_from(path),
    };
    path_and_query.ok().map(Uri::from)
}

/// The settings a running sidecar cannot take from a reload: the listener and what was sized
/// for it when it started, and the logger. Named by their keys in the file.
fn restart_required(started: &ProxyConfig, new: &ProxyConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let (a, b) = (started, new);
    for (key, same) in [
        ("listen", a.listen == b.listen),
        ("timeouts.requestHead", a.timeouts.request_head == b.timeouts.request_head),
        ("limits.maxInFlight", a.limits.max_in_flight == b.limits.max_in_flight),
        ("limits.maxConnections", a.limits.max_connections == b.limits.max_connections),
        (
            "limits.maxRequestHeadBytes",
            a.limits.max_request_head_bytes == b.limits.max_request_head_bytes,
        ),
        ("logFormat", a.log_format == b.log_format),
    ] {
        if !same {
            keys.push(key);
        }
    }
    keys
}

/// A short, stable name for a configuration: FNV-1a (64 bits) of the YAML it reads back from,
/// so the same settings have the same hash whether they came from flags or a file.
pub fn config_hash(config: &ProxyConfig) -> String {
    format!("{:016x}", fnv1a(config.to_yaml().as_bytes()))
}

/// FNV-1a, 64 bits: a stable digest for the configuration's name and for noticing a file change.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A bound on requests in flight that also says how much of it is taken, so the gauge needs no
/// counter of its own. (Connections have their own, see `connections`.)
pub(crate) struct Limit {
    permits: Arc<Semaphore>,
    pub(crate) max: usize,
}

impl Limit {
    pub(crate) fn new(max: u64) -> Self {
        let max =
            usize::try_from(max).unwrap_or(Semaphore::MAX_PERMITS).min(Semaphore::MAX_PERMITS);
        Limit { permits: Arc::new(Semaphore::new(max)), max }
    }

    /// A slot now, or `None` at the limit.
    pub(crate) fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// `n` slots now (one per target of a merged scrape), or `None` when fewer are free.
    pub(crate) fn try_take_many(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(n).ok()?;
        self.permits.clone().try_acquire_many_owned(n).ok()
    }

    pub(crate) fn in_use(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

/// Sorts a client error into a metric kind and a reason a person can act on.
pub(crate) fn classify(err: &upstream::Error) -> (UpstreamError, &'static str) {
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
pub(crate) fn text(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(format!("{reason}\n")));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests;
