//! The sidecar's configuration: where it listens, which loopback app it forwards to, the exact
//! route table, its deadlines and limits. Read from the YAML file the ConfigMap mounts, then
//! overridden by flags, then validated as a whole so every bad value is reported at once.

pub(crate) mod access;
mod url;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};

use crate::duration;
use crate::error::{ConfigError, Origin, Problems, Sourced};

pub use access::{Auth, Cidr, Tls};
pub use url::{MAX_TARGETS, check_path};

use access::{AuthFile, TlsFile};

/// The path prefix of the sidecar's own endpoints; no route may live under it.
pub const RESERVED_PREFIX: &str = "/-/";

/// The seed wiki's nginx `location` blocks, as `PUBLIC=TARGET`.
pub const SEED_ROUTES: [&str; 4] =
    ["/=/prometheus", "/prometheus=/prometheus", "/readiness=/ready", "/liveness=/alive"];

/// Built-in defaults, chosen for a sidecar serving one app to one Prometheus.
pub mod defaults {
    use std::time::Duration;
    pub const LISTEN: &str = "0.0.0.0:9090";
    pub const UPSTREAM: &str = "http://127.0.0.1:8080";
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
    /// Prometheus's own default scrape timeout.
    pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// With [`MAX_CONNECTIONS`], sized to fit the 15Mi memory limit gen writes (see [`sizing`](super::sizing)):
    /// one or two Prometheus replicas scrape a pod's routes a few at a time, so 16 leaves room
    /// for retries and a person's curl.
    pub const MAX_IN_FLIGHT: u64 = 16;
    pub const MAX_CONNECTIONS: u64 = 128;
    pub const MAX_REQUEST_HEAD_BYTES: u64 = 8192;
    /// One part of a merged route: larger parts are left out of the scrape (or, when the app
    /// announced no length, cut it). 64 MiB is several times a large exporter's exposition.
    pub const MAX_PART_BYTES: u64 = 64 << 20;
    /// The memory limit gen writes for the sidecar container.
    pub const MEMORY_LIMIT: &str = "15Mi";
}

/// How much memory the sidecar needs for its limits, from measurements of the static build that
/// ships in the image (bench/sidecar.py and the e2e limits test; docs/performance.md has the
/// figures). Each constant is the measurement rounded up by a quarter or more.
pub mod sizing {
    use super::Limits;

    /// At rest: 3.4 MiB resident, 3.2 MiB of it the binary's own pages (2.7 MiB before rustls and
    /// ring came in for the optional TLS listener), which the container's cgroup is charged for
    /// when it first reads them.
    pub const BASE: u64 = 5 << 20;
    /// Per request in flight: up to three 64 KiB upstream buffers (one being read, one in the
    /// body channel, one queued for a slow client) and their bookkeeping; measured 178 KiB per
    /// scrape with 32 clients each reading 20 MB at 2 MB/s.
    pub const PER_IN_FLIGHT: u64 = 256 << 10;
    /// Per open client connection: hyper's 8 KiB head buffer, the connection's task and
    /// state; measured 17–20 KiB per idle keep-alive connection.
    pub const PER_CONNECTION: u64 = 24 << 10;
    /// The share of the memory limit the estimate may take; the rest is margin for the
    /// allocator's fragmentation and what was not measured.
    pub const SHARE_PERCENT: u64 = 80;

    /// The memory the sidecar may use at these limits, in bytes: every slot in use at once.
    pub fn needed(limits: &Limits) -> u64 {
        BASE.saturating_add(limits.max_in_flight.saturating_mul(PER_IN_FLIGHT))
            .saturating_add(limits.max_connections.saturating_mul(PER_CONNECTION))
    }

    /// The smallest memory limit, in bytes, that these limits fit.
    pub fn limit_for(limits: &Limits) -> u64 {
        needed(limits).saturating_mul(100).div_ceil(SHARE_PERCENT)
    }

    /// The most requests in flight that fit `memory` bytes with `max_connections` connections.
    pub fn max_in_flight_for(memory: u64, max_connections: u64) -> u64 {
        let budget = memory / 100 * SHARE_PERCENT;
        budget.saturating_sub(BASE).saturating_sub(max_connections.saturating_mul(PER_CONNECTION))
            / PER_IN_FLIGHT
    }
}

/// A validated sidecar configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The plaintext address Prometheus scrapes.
    pub listen: SocketAddr,
    /// The app's loopback address that path-only route targets resolve against.
    pub upstream: SocketAddr,
    /// Exact public paths and where they go, in the order given.
    pub routes: Vec<Route>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub log_format: LogFormat,
    /// Request headers forwarded to the app beyond the scrape's own (Accept, Accept-Encoding,
    /// User-Agent and the scrape-timeout header), lower-case; everything else a client sends is
    /// dropped, since the app may trust a header on loopback as if the mesh had set it.
    pub forward_headers: Vec<String>,
    /// Who may use the routes and `/-/metrics`; open by default.
    pub auth: Auth,
    /// TLS on the listener; plaintext by default.
    pub tls: Option<Tls>,
}

/// One exact public path and its loopback targets: one is forwarded as is; several are fetched
/// together and merged into one exposition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub public: String,
    /// At least one, at most [`MAX_TARGETS`], none twice.
    pub targets: Vec<Target>,
}

/// Where a route forwards to: an address on loopback and a path there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
}

/// Deadlines, each bounding one thing a peer could otherwise stretch forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting to the app.
    pub connect: Duration,
    /// A client sending its whole request head (slow-client defence).
    pub request_head: Duration,
    /// The whole upstream response, head and body; shortened by Prometheus's scrape timeout header.
    pub upstream: Duration,
    /// How long in-flight responses may run after SIGTERM.
    pub shutdown_grace: Duration,
}

/// Bounds on what clients can make the sidecar hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Forwarded requests at once; more get 503.
    pub max_in_flight: u64,
    /// Open client connections at once; more wait in the listen backlog.
    pub max_connections: u64,
    /// Bytes in a request head (request line and headers); more get 431.
    pub max_request_head_bytes: u64,
    /// Bytes of one part of a merged route.
    pub max_part_bytes: u64,
}

/// The format of the sidecar's logs on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Values given on the command line; each replaces the file's key of the same meaning.
#[derive(Clone, Debug, Default)]
pub struct ProxyOverrides {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    /// `PUBLIC=TARGET`; when any is given, they replace the file's `routes` entirely.
    pub routes: Vec<String>,
    pub connect_timeout: Option<String>,
    pub request_head_timeout: Option<String>,
    pub upstream_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_in_flight: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_request_head_bytes: Option<u64>,
    pub max_part_bytes: Option<u64>,
    pub log_format: Option<String>,
    /// When any is given, they replace the file's `forwardHeaders` entirely.
    pub forward_headers: Vec<String>,
    pub bearer_token_file: Option<String>,
    /// When any is given, they replace the file's `auth.allowedClients` entirely.
    pub allowed_clients: Vec<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub tls_client_ca_file: Option<String>,
}

/// The YAML file's shape. Unknown keys are errors, so a misspelt key is never silently ignored.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ProxyFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) listen: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upstream: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) routes: Option<Spanned<Vec<Spanned<RouteEntry>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeouts: Option<TimeoutsFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) limits: Option<LimitsFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) log_format: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) forward_headers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) auth: Option<AuthFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<TlsFile>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TimeoutsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) connect: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request_head: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upstream: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shutdown_grace: Option<Spanned<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LimitsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_in_flight: Option<Spanned<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_connections: Option<Spanned<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_request_head_bytes: Option<Spanned<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_part_bytes: Option<Spanned<u64>>,
}

/// One entry of `routes`: `PUBLIC=TARGET[|TARGET]...`, or, for a merged route, the same as a
/// map with a list: `{path: /metrics, targets: [/metrics, http://127.0.0.1:9100/metrics]}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RouteEntry {
    Flag(String),
    Merged { path: String, targets: Vec<String> },
}

impl RouteEntry {
    /// The `PUBLIC=TARGET|TARGET` form both shapes are checked in.
    fn to_flag(&self) -> String {
        match self {
            RouteEntry::Flag(s) => s.clone(),
            RouteEntry::Merged { path, targets } => format!("{path}={}", targets.join("|")),
        }
    }
}

impl<'de> Deserialize<'de> for RouteEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RouteEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("PUBLIC=TARGET, or a map with `path` and a list of `targets`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RouteEntry, E> {
                Ok(RouteEntry::Flag(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RouteEntry, A::Error> {
                use serde::de::Error as _;
                let (mut path, mut targets) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "path" if path.is_none() => path = Some(map.next_value::<String>()?),
                        "targets" if targets.is_none() => {
                            targets = Some(map.next_value::<Vec<String>>()?)
                        }
                        "path" | "targets" => return Err(A::Error::duplicate_field("path")),
                        other => {
                            return Err(A::Error::unknown_field(other, &["path", "targets"]));
                        }
                    }
                }
                let path = path.ok_or_else(|| A::Error::missing_field("path"))?;
                let targets = targets.ok_or_else(|| A::Error::missing_field("targets"))?;
                Ok(RouteEntry::Merged { path, targets })
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for RouteEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self {
            RouteEntry::Flag(f) => s.serialize_str(f),
            RouteEntry::Merged { path, targets } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("path", path)?;
                m.serialize_entry("targets", targets)?;
                m.end()
            }
        }
    }
}

/// Picks the flag if given, else the file's value, else the default.
fn pick<T>(
    flag: Option<T>,
    flag_name: &'static str,
    file: Option<Spanned<T>>,
    path: Option<&Path>,
    default: T,
) -> Sourced<T> {
    if let Some(value) = flag {
        return Sourced { value, origin: Origin::Flag(flag_name) };
    }
    match file {
        Some(s) => Sourced { origin: Origin::at(path, &s.referenced), value: s.value },
        None => Sourced { value: default, origin: Origin::Default },
    }
}

fn in_range(lo: u64, hi: u64, what: &'static str) -> impl FnOnce(u64) -> Result<u64, String> {
    move |v| {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{v} is out of range; {what} must be between {lo} and {hi}"))
        }
    }
}

fn timeout(text: String) -> Result<Duration, String> {
    let d = duration::parse(&text)?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err(format!("`{text}` is out of range; use a duration above 0 and at most 60m"));
    }
    Ok(d)
}

impl ProxyConfig {
    /// Reads `file` (if any), applies `overrides`, and validates the result.
    pub fn load(file: Option<&Path>, overrides: &ProxyOverrides) -> Result<Self, ConfigError> {
        let parsed = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                Some(parse_file(path, &text)?)
            }
            None => None,
        };
        Self::resolve(file, parsed.unwrap_or_default(), overrides)
    }

    /// Parses YAML text as if it were the file at `path` (used by tests and the generator).
    pub fn from_yaml(
        path: &Path,
        text: &str,
        overrides: &ProxyOverrides,
    ) -> Result<Self, ConfigError> {
        Self::resolve(Some(path), parse_file(path, text)?, overrides)
    }

    pub(crate) fn resolve(
        path: Option<&Path>,
        file: ProxyFile,
        o: &ProxyOverrides,
    ) -> Result<Self, ConfigError> {
        let mut c = Problems::default();
        let t = file.timeouts.unwrap_or_default();
        let l = file.limits.unwrap_or_default();
        let dur = |d: Duration| duration::format(d);

        let listen = pick(o.listen.clone(), "--listen", file.listen, path, defaults::LISTEN.into());
        let listen = c.check("listen", listen, |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("`{s}` is not an address; write IP:PORT such as 0.0.0.0:9090"))
        });
        let upstream =
            pick(o.upstream.clone(), "--upstream", file.upstream, path, defaults::UPSTREAM.into());
        let upstream = c.check("upstream", upstream, |s| url::parse_upstream(&s));

        let connect = pick(
            o.connect_timeout.clone(),
            "--connect-timeout",
            t.connect,
            path,
            dur(defaults::CONNECT_TIMEOUT),
        );
        let request_head = pick(
            o.request_head_timeout.clone(),
            "--request-head-timeout",
            t.request_head,
            path,
            dur(defaults::REQUEST_HEAD_TIMEOUT),
        );
        let upstream_t = pick(
            o.upstream_timeout.clone(),
            "--upstream-timeout",
            t.upstream,
            path,
            dur(defaults::UPSTREAM_TIMEOUT),
        );
        let grace = pick(
            o.shutdown_grace.clone(),
            "--shutdown-grace",
            t.shutdown_grace,
            path,
            dur(defaults::SHUTDOWN_GRACE),
        );
        let timeouts = (
            c.check("timeouts.connect", connect, timeout),
            c.check("timeouts.requestHead", request_head, timeout),
            c.check("timeouts.upstream", upstream_t, timeout),
            c.check("timeouts.shutdownGrace", grace, timeout),
        );

        let in_flight = pick(
            o.max_in_flight,
            "--max-in-flight",
            l.max_in_flight,
            path,
            defaults::MAX_IN_FLIGHT,
        );
        let conns = pick(
            o.max_connections,
            "--max-connections",
            l.max_connections,
            path,
            defaults::MAX_CONNECTIONS,
        );
        let head = pick(
            o.max_request_head_bytes,
            "--max-request-head-bytes",
            l.max_request_head_bytes,
            path,
            defaults::MAX_REQUEST_HEAD_BYTES,
        );
        let part = pick(
            o.max_part_bytes,
            "--max-part-bytes",
            l.max_part_bytes,
            path,
            defaults::MAX_PART_BYTES,
        );
        let limits = (
            c.check("limits.maxInFlight", in_flight, in_range(1, 10_000, "maxInFlight")),
            c.check("limits.maxConnections", conns, in_range(1, 100_000, "maxConnections")),
            c.check(
                "limits.maxRequestHeadBytes",
                head,
                in_range(1024, 1 << 20, "maxRequestHeadBytes"),
            ),
            c.check("limits.maxPartBytes", part, in_range(1024, 1 << 40, "maxPartBytes")),
        );

        let log_format =
            pick(o.log_format.clone(), "--log-format", file.log_format, path, "text".into());
        let log_format = c.check("logFormat", log_format, |s| match s.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{s}` is not a log format; use text or json")),
        });

        let routes = resolve_routes(&mut c, path, file.routes, &o.routes, upstream, limits.0);
        let forward_headers =
            resolve_forward_headers(&mut c, path, file.forward_headers, &o.forward_headers);
        let (auth, tls) = resolve_access(&mut c, path, file.auth, file.tls, o);
        if auth.bearer_token_file.is_some() && forward_headers.iter().any(|h| h == "authorization")
        {
            c.push(
                Origin::Default,
                "forwardHeaders",
                "`authorization` carries the sidecar's bearer token (auth.bearerTokenFile); \
                    forwarding it would hand the token to the app: leave it out"
                    .into(),
            );
        }

        match (listen, upstream, timeouts, limits, log_format, routes) {
            (
                Some(listen),
                Some(upstream),
                (Some(connect), Some(request_head), Some(upstream_timeout), Some(shutdown_grace)),
                (
                    Some(max_in_flight),
                    Some(max_connections),
                    Some(max_request_head_bytes),
                    Some(max_part_bytes),
                ),
                Some(log_format),
                Some(routes),
            ) if c.0.is_empty() => Ok(ProxyConfig {
                listen,
                upstream,
                routes,
                timeouts: Timeouts {
                    connect,
                    request_head,
                    upstream: upstream_timeout,
                    shutdown_grace,
                },
                limits: Limits {
                    max_in_flight,
                    max_connections,
                    max_request_head_bytes,
                    max_part_bytes,
                },
                log_format,
                forward_headers,
                auth,
                tls,
            }),
            _ => Err(ConfigError::Invalid { problems: c.0 }),
        }
    }

    /// The YAML that [`ProxyConfig::load`] reads back into this same configuration; this is what
    /// the generator writes into the sidecar's ConfigMap.
    pub fn to_yaml(&self) -> String {
        let s = |v: String| Some(Spanned::new(v, Location::UNKNOWN, Location::UNKNOWN));
        let n = |v: u64| Some(Spanned::new(v, Location::UNKNOWN, Location::UNKNOWN));
        let dur = |d: Duration| s(duration::format(d));
        let routes = self
            .routes
            .iter()
            .map(|r| Spanned::new(r.to_entry(self.upstream), Location::UNKNOWN, Location::UNKNOWN))
            .collect();
        let file = ProxyFile {
            listen: s(self.listen.to_string()),
            upstream: s(format!("http://{}", self.upstream)),
            routes: Some(Spanned::new(routes, Location::UNKNOWN, Location::UNKNOWN)),
            timeouts: Some(TimeoutsFile {
                connect: dur(self.timeouts.connect),
                request_head: dur(self.timeouts.request_head),
                upstream: dur(self.timeouts.upstream),
                shutdown_grace: dur(self.timeouts.shutdown_grace),
            }),
            limits: Some(LimitsFile {
                max_in_flight: n(self.limits.max_in_flight),
                max_connections: n(self.limits.max_connections),
                max_request_head_bytes: n(self.limits.max_request_head_bytes),
                max_part_bytes: n(self.limits.max_part_bytes),
            }),
            log_format: s(self.log_format.as_str().to_string()),
            forward_headers: (!self.forward_headers.is_empty()).then(|| {
                let names = self
                    .forward_headers
                    .iter()
                    .map(|h| Spanned::new(h.clone(), Location::UNKNOWN, Location::UNKNOWN))
                    .collect();
                Spanned::new(names, Location::UNKNOWN, Location::UNKNOWN)
            }),
            auth: (self.auth != Auth::default()).then(|| AuthFile {
                bearer_token_file: self
                    .auth
                    .bearer_token_file
                    .as_ref()
                    .and_then(|p| s(p.display().to_string())),
                allowed_clients: (!self.auth.allowed_clients.is_empty()).then(|| {
                    let blocks = self
                        .auth
                        .allowed_clients
                        .iter()
                        .map(|b| Spanned::new(b.to_string(), Location::UNKNOWN, Location::UNKNOWN))
                        .collect();
                    Spanned::new(blocks, Location::UNKNOWN, Location::UNKNOWN)
                }),
            }),
            tls: self.tls.as_ref().map(|t| TlsFile {
                cert_file: s(t.cert_file.display().to_string()),
                key_file: s(t.key_file.display().to_string()),
                client_ca_file: t.client_ca_file.as_ref().and_then(|p| s(p.display().to_string())),
            }),
        };
        // Serializing plain strings, numbers and sequences cannot fail.
        serde_saphyr::to_string(&file).unwrap_or_default()
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        // The defaults are valid by construction; a test guards that.
        ProxyConfig::load(None, &ProxyOverrides::default())
            .unwrap_or_else(|e| unreachable!("built-in defaults are invalid: {e}"))
    }
}

impl Route {
    /// The `PUBLIC=TARGET[|TARGET]...` form, with path-only targets where they go to `upstream`.
    pub fn to_flag(&self, upstream: SocketAddr) -> String {
        let targets: Vec<String> = self.targets.iter().map(|t| t.to_flag(upstream)).collect();
        format!("{}={}", self.public, targets.join("|"))
    }

    /// Whether the route fetches several targets and merges them.
    pub fn is_merged(&self) -> bool {
        self.targets.len() > 1
    }

    /// The file's shape: one string for one target, a map with a list for several.
    fn to_entry(&self, upstream: SocketAddr) -> RouteEntry {
        if self.is_merged() {
            RouteEntry::Merged {
                path: self.public.clone(),
                targets: self.targets.iter().map(|t| t.to_flag(upstream)).collect(),
            }
        } else {
            RouteEntry::Flag(self.to_flag(upstream))
        }
    }
}

impl Target {
    /// A path when the target is on `upstream`, else the whole loopback URL.
    pub fn to_flag(&self, upstream: SocketAddr) -> String {
        if self.addr == upstream { self.path.clone() } else { self.url() }
    }

    /// `http://ADDR/path`, as messages and metric labels name the target.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }
}

/// The request headers always forwarded: what a scrape needs and nothing that claims identity.
pub const SCRAPE_HEADERS: [&str; 4] =
    ["accept", "accept-encoding", "user-agent", "x-prometheus-scrape-timeout-seconds"];

/// Fields a config may not add: the sidecar frames and addresses each hop itself.
const NOT_FORWARDABLE: [&str; 12] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// `forwardHeaders` from the flags (which replace the file's) or the file: HTTP field names,
/// lower-cased, none of the sidecar's own framing fields, none twice.
fn resolve_forward_headers(
    c: &mut Problems,
    path: Option<&Path>,
    file: Option<Spanned<Vec<Spanned<String>>>>,
    flags: &[String],
) -> Vec<String> {
    let entries: Vec<(String, Sourced<String>)> = if flags.is_empty() {
        file.map(|l| l.value)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let origin = Origin::at(path, &h.referenced);
                (format!("forwardHeaders[{i}]"), Sourced { value: h.value, origin })
            })
            .collect()
    } else {
        flags
            .iter()
            .map(|f| {
                (
                    "forwardHeaders".to_string(),
                    Sourced { value: f.clone(), origin: Origin::Flag("--forward-header") },
                )
            })
            .collect()
    };
    let mut out: Vec<String> = Vec::new();
    for (field, value) in entries {
        let name = value.value.to_ascii_lowercase();
        let checked = c.check(&field, value, |raw| {
            let token = !raw.is_empty()
                && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                Err(format!("`{raw}` is not an HTTP header name"))
            } else if NOT_FORWARDABLE.contains(&name.as_str()) {
                Err(format!("`{raw}` describes the connection, which the sidecar sets itself; it cannot be forwarded"))
            } else if SCRAPE_HEADERS.contains(&name.as_str()) {
                Err(format!("`{raw}` is always forwarded; leave it out"))
            } else {
                Ok(name.clone())
            }
        });
        if let Some(name) = checked
            && !out.contains(&name)
        {
            out.push(name);
        }
    }
    out
}

/// A flag if given, else the file's value, if either.
fn pick_some(
    flag: Option<String>,
    flag_name: &'static str,
    file: Option<Spanned<String>>,
    path: Option<&Path>,
) -> Option<Sourced<String>> {
    match (flag, file) {
        (Some(value), _) => Some(Sourced { value, origin: Origin::Flag(flag_name) }),
        (None, Some(s)) => {
            Some(Sourced { origin: Origin::at(path, &s.referenced), value: s.value })
        }
        (None, None) => None,
    }
}

/// `auth` and `tls`, from flags (which win) and the file.
fn resolve_access(
    c: &mut Problems,
    path: Option<&Path>,
    auth: Option<AuthFile>,
    tls: Option<TlsFile>,
    o: &ProxyOverrides,
) -> (Auth, Option<Tls>) {
    let a = auth.unwrap_or_default();
    let t = tls.unwrap_or_default();
    let file_path = |text: String| {
        if text.trim().is_empty() {
            Err("the path is empty; give the file's path, or leave the key out".to_string())
        } else {
            Ok(std::path::PathBuf::from(text))
        }
    };
    let token =
        pick_some(o.bearer_token_file.clone(), "--bearer-token-file", a.bearer_token_file, path)
            .and_then(|v| c.check("auth.bearerTokenFile", v, file_path));

    let blocks: Vec<(String, Sourced<String>)> = if o.allowed_clients.is_empty() {
        a.allowed_clients
            .map(|l| l.value)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let origin = Origin::at(path, &b.referenced);
                (format!("auth.allowedClients[{i}]"), Sourced { value: b.value, origin })
            })
            .collect()
    } else {
        o.allowed_clients
            .iter()
            .map(|b| {
                let origin = Origin::Flag("--allow-client");
                ("auth.allowedClients".to_string(), Sourced { value: b.clone(), origin })
            })
            .collect()
    };
    let allowed_clients = blocks
        .into_iter()
        .filter_map(|(field, b)| c.check(&field, b, |b| Cidr::parse(&b)))
        .collect();

    let cert = pick_some(o.tls_cert_file.clone(), "--tls-cert-file", t.cert_file, path);
    let key = pick_some(o.tls_key_file.clone(), "--tls-key-file", t.key_file, path);
    let ca =
        pick_some(o.tls_client_ca_file.clone(), "--tls-client-ca-file", t.client_ca_file, path);
    let tls = match (cert, key) {
        (None, None) => {
            if let Some(ca) = ca {
                c.push(
                    ca.origin,
                    "tls.clientCAFile",
                    "a client CA needs TLS: give tls.certFile and tls.keyFile too".into(),
                );
            }
            None
        }
        (Some(cert), None) => {
            c.push(
                cert.origin,
                "tls.keyFile",
                "tls.certFile is set but tls.keyFile is not; give both".into(),
            );
            None
        }
        (None, Some(key)) => {
            c.push(
                key.origin,
                "tls.certFile",
                "tls.keyFile is set but tls.certFile is not; give both".into(),
            );
            None
        }
        (Some(cert), Some(key)) => {
            let cert = c.check("tls.certFile", cert, file_path);
            let key = c.check("tls.keyFile", key, file_path);
            let ca = ca.and_then(|ca| c.check("tls.clientCAFile", ca, file_path));
            match (cert, key) {
                (Some(cert_file), Some(key_file)) => {
                    Some(Tls { cert_file, key_file, client_ca_file: ca })
                }
                _ => None,
            }
        }
    };
    (Auth { bearer_token_file: token, allowed_clients }, tls)
}

/// The sidecar file's shape, for the error module's tests.
#[cfg(test)]
pub(crate) type ProxyFileProbe = ProxyFile;

fn parse_file(path: &Path, text: &str) -> Result<ProxyFile, ConfigError> {
    if text.trim().is_empty() {
        return Ok(ProxyFile::default());
    }
    serde_saphyr::from_str(text).map_err(|e| ConfigError::from_yaml(path.to_path_buf(), text, &e))
}

fn resolve_routes(
    c: &mut Problems,
    path: Option<&Path>,
    file: Option<Spanned<Vec<Spanned<RouteEntry>>>>,
    flags: &[String],
    upstream: Option<SocketAddr>,
    max_in_flight: Option<u64>,
) -> Option<Vec<Route>> {
    let entries: Vec<(String, Sourced<String>)> = if !flags.is_empty() {
        flags
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    format!("--route #{}", i + 1),
                    Sourced { value: f.clone(), origin: Origin::Flag("--route") },
                )
            })
            .collect()
    } else if let Some(list) = file {
        if list.value.is_empty() {
            c.push(
                Origin::at(path, &list.referenced),
                "routes",
                "the route list is empty; give at least one PUBLIC=TARGET such as \
                    /metrics=/metrics, or leave routes out for the seed's map"
                    .into(),
            );
            return None;
        }
        list.value
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    format!("routes[{i}]"),
                    Sourced { origin: Origin::at(path, &s.referenced), value: s.value.to_flag() },
                )
            })
            .collect()
    } else {
        SEED_ROUTES
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("routes[{i}]"),
                    Sourced { value: (*r).to_string(), origin: Origin::Default },
                )
            })
            .collect()
    };

    // Without a valid upstream, path-only targets cannot resolve; still check their syntax.
    let base = upstream.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
    let mut routes: Vec<(Route, Origin)> = Vec::new();
    let mut ok = true;
    for (field, raw) in entries {
        let origin = raw.origin.clone();
        let in_flight = max_in_flight.unwrap_or(u64::MAX);
        let parsed = c.check(&field, raw, |s| {
            let route = url::parse_route(&s, base)?;
            // Each target of a merged scrape holds an in-flight slot, so that memory stays
            // within what `limits.maxInFlight` was sized for.
            if route.targets.len() as u64 > in_flight {
                return Err(format!(
                    "`{s}` merges {} targets, but limits.maxInFlight is {in_flight} and each \
                        target takes a slot; raise limits.maxInFlight or merge fewer",
                    route.targets.len()
                ));
            }
            Ok(route)
        });
        match parsed {
            Some(route) => {
                if let Some((_, first)) = routes.iter().find(|(r, _)| r.public == route.public) {
                    let message = format!(
                        "public path `{}` is already routed (at {first}); each public path may \
                            appear once",
                        route.public
                    );
                    c.push(origin, &field, message);
                    ok = false;
                } else {
                    routes.push((route, origin));
                }
            }
            None => ok = false,
        }
    }
    ok.then(|| routes.into_iter().map(|(r, _)| r).collect())
}

#[cfg(test)]
mod tests;
