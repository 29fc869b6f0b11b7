//! The sidecar's own metrics, rendered in the Prometheus text format at `/-/metrics`.
//!
//! Hand-rolled rather than a metrics crate: a handful of counters and one histogram, updated once
//! per request, do not justify a dependency in a security-relevant static binary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::access::Denied;

/// Upper bounds (seconds) of the upstream latency histogram: loopback scrapes, 1 ms to 10 s.
const BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Why an upstream exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// Could not connect (refused, unreachable, connect timeout).
    Connect,
    /// No complete answer before the deadline.
    Timeout,
    /// The app answered with something that is not HTTP/1, or closed mid-head.
    Protocol,
    /// The body broke off or was malformed.
    Body,
}

impl UpstreamError {
    const ALL: [UpstreamError; 4] = [Self::Connect, Self::Timeout, Self::Protocol, Self::Body];

    fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
            Self::Body => "body",
        }
    }
}

/// Why the sidecar closed a client connection it had accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// At `maxConnections`, a newer client took the slot of this one, which had waited longest
    /// for a request head (see `connections`).
    Crowded,
    /// It did not send a whole request head within `timeouts.requestHead`.
    HeadTimeout,
    /// It stopped reading a response before the response's deadline (see `stall`).
    StalledReader,
}

impl Shed {
    const ALL: [Shed; 3] = [Self::Crowded, Self::HeadTimeout, Self::StalledReader];

    fn as_str(self) -> &'static str {
        match self {
            Self::Crowded => "crowded",
            Self::HeadTimeout => "head_timeout",
            Self::StalledReader => "stalled_reader",
        }
    }
}

/// Per-route counters, shared by every configuration that routes the same public path, so that a
/// reload never sets a counter back.
#[derive(Debug)]
pub struct RouteStats {
    label: String,
    /// Whether this is a forwarded route (which counts bytes), not a path of the sidecar's own.
    forwards: bool,
    requests: Mutex<BTreeMap<u16, u64>>,
    latency: Histogram,
    bytes: AtomicU64,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Why one target of a merged route was left out of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PartFailure {
    /// Could not connect.
    Connect,
    /// No response head (or no first byte of the body) before the scrape's deadline.
    Timeout,
    /// Not a valid HTTP/1 answer, or the body broke off before its first byte.
    Protocol,
    /// A status other than 2xx.
    Status,
    /// A format the others could not be merged with, even when asked for plain text.
    Format,
    /// More than `limits.maxPartBytes`.
    TooLarge,
}

impl PartFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
            Self::Status => "status",
            Self::Format => "format",
            Self::TooLarge => "too_large",
        }
    }
}

/// The configuration in force, as `/-/metrics` reports it.
#[derive(Debug, Default)]
struct ConfigState {
    hash: String,
    loaded_at: f64,
    last_successful: bool,
    /// Keys whose new value waits for a restart.
    restart_required: Vec<&'static str>,
}

/// Everything `/-/metrics` serves, kept across reloads.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    errors: [AtomicU64; 4],
    shed: [AtomicU64; 3],
    /// Merged routes: failures by (route, target, reason), and whether each target was in the
    /// last scrape.
    part_failures: Mutex<BTreeMap<(String, String, PartFailure), u64>>,
    part_up: Mutex<BTreeMap<(String, String), bool>>,
    /// Successful and failed reloads.
    reloads: [AtomicU64; 2],
    /// Requests and connections turned away by the access rules, by reason.
    denied: [AtomicU64; 4],
    config: Mutex<ConfigState>,
}

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-increment; the data is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RouteStats {
    pub fn request(&self, status: u16) {
        *lock(&self.requests).entry(status).or_insert(0) += 1;
    }

    pub fn upstream_latency(&self, elapsed: Duration) {
        let h = &self.latency;
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        h.count.fetch_add(1, Relaxed);
        h.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
    }

    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Metrics {
    /// The counters of a route (`forwards`) or of one of the sidecar's own paths, made on first use.
    pub fn route(&self, label: &str, forwards: bool) -> Arc<RouteStats> {
        lock(&self.routes)
            .entry(label.to_string())
            .or_insert_with(|| {
                Arc::new(RouteStats {
                    label: label.to_string(),
                    forwards,
                    requests: Mutex::default(),
                    latency: Histogram::default(),
                    bytes: AtomicU64::new(0),
                })
            })
            .clone()
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn shed(&self, why: Shed) {
        self.shed[why as usize].fetch_add(1, Relaxed);
    }

    /// One target of a merged route was in the scrape (`None`) or left out, and why.
    pub fn part(&self, route: &str, target: &str, failure: Option<PartFailure>) {
        if let Some(why) = failure {
            *lock(&self.part_failures)
                .entry((route.to_string(), target.to_string(), why))
                .or_insert(0) += 1;
        }
        lock(&self.part_up).insert((route.to_string(), target.to_string()), failure.is_none());
    }

    /// A configuration took effect: at start-up or by a reload.
    pub fn config_loaded(&self, hash: String, restart_required: Vec<&'static str>, reload: bool) {
        if reload {
            self.reloads[0].fetch_add(1, Relaxed);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        *lock(&self.config) =
            ConfigState { hash, loaded_at: now, last_successful: true, restart_required };
    }

    /// A request or connection turned away by the access rules.
    pub fn denied(&self, why: Denied) {
        self.denied[why as usize].fetch_add(1, Relaxed);
    }

    /// A reload was refused; the configuration in force stays.
    pub fn reload_failed(&self) {
        self.reloads[1].fetch_add(1, Relaxed);
        lock(&self.config).last_successful = false;
    }

    /// Renders every metric in the Prometheus text exposition format 0.0.4. The two gauges come
    /// from the limiters, which already count them.
    pub fn render(
        &self,
        in_flight: usize,
        connections: usize,
        cert_not_after: Option<i64>,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let routes: Vec<Arc<RouteStats>> = lock(&self.routes).values().cloned().collect();

        head(
            &mut out,
            "meshscrape_proxy_requests_total",
            "counter",
            "Requests answered, by route and status code.",
        );
        for r in &routes {
            let label = escape(&r.label);
            for (status, n) in lock(&r.requests).iter() {
                let _ = writeln!(
                    out,
                    "meshscrape_proxy_requests_total{{route=\"{label}\",status=\"{status}\"}} {n}"
                );
            }
        }

        head(
            &mut out,
            "meshscrape_proxy_upstream_duration_seconds",
            "histogram",
            "Time from sending a request to the app until its response head arrived, by route.",
        );
        for r in &routes {
            let h = &r.latency;
            let count = h.count.load(Relaxed);
            if count == 0 {
                continue;
            }
            let label = escape(&r.label);
            let name = "meshscrape_proxy_upstream_duration_seconds";
            for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{label}\",le=\"{bound}\"}} {}",
                    bucket.load(Relaxed)
                );
            }
            let _ = writeln!(out, "{name}_bucket{{route=\"{label}\",le=\"+Inf\"}} {count}");
            let sum = h.sum_micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{route=\"{label}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{route=\"{label}\"}} {count}");
        }

        head(
            &mut out,
            "meshscrape_proxy_upstream_errors_total",
            "counter",
            "Failed exchanges with the app, by kind.",
        );
        for kind in UpstreamError::ALL {
            let _ = writeln!(
                out,
                "meshscrape_proxy_upstream_errors_total{{kind=\"{}\"}} {}",
                kind.as_str(),
                self.errors[kind as usize].load(Relaxed)
            );
        }

        head(
            &mut out,
            "meshscrape_proxy_response_bytes_total",
            "counter",
            "Body bytes forwarded from the app, by route.",
        );
        for r in routes.iter().filter(|r| r.forwards) {
            let _ = writeln!(
                out,
                "meshscrape_proxy_response_bytes_total{{route=\"{}\"}} {}",
                escape(&r.label),
                r.bytes.load(Relaxed)
            );
        }

        let part_up = lock(&self.part_up).clone();
        if !part_up.is_empty() {
            head(
                &mut out,
                "meshscrape_proxy_merge_target_up",
                "gauge",
                "Whether the target was in the last scrape of its merged route (1) or left out (0).",
            );
            for ((route, target), up) in &part_up {
                let _ = writeln!(
                    out,
                    "meshscrape_proxy_merge_target_up{{route=\"{}\",target=\"{}\"}} {}",
                    escape(route),
                    escape(target),
                    u8::from(*up)
                );
            }
            head(
                &mut out,
                "meshscrape_proxy_merge_target_failures_total",
                "counter",
                "Times a target of a merged route was left out of a scrape, by reason.",
            );
            for ((route, target, why), n) in lock(&self.part_failures).iter() {
                let _ = writeln!(
                    out,
                    "meshscrape_proxy_merge_target_failures_total{{route=\"{}\",target=\"{}\",reason=\"{}\"}} {n}",
                    escape(route),
                    escape(target),
                    why.as_str()
                );
            }
        }

        head(
            &mut out,
            "meshscrape_proxy_connections_shed_total",
            "counter",
            "Client connections the sidecar closed to protect its capacity, by reason.",
        );
        for why in Shed::ALL {
            let _ = writeln!(
                out,
                "meshscrape_proxy_connections_shed_total{{reason=\"{}\"}} {}",
                why.as_str(),
                self.shed[why as usize].load(Relaxed)
            );
        }

        head(
            &mut out,
            "meshscrape_proxy_denied_total",
            "counter",
            "Requests and connections turned away by the access rules (auth, tls), by reason.",
        );
        for why in Denied::ALL {
            let _ = writeln!(
                out,
                "meshscrape_proxy_denied_total{{reason=\"{}\"}} {}",
                why.as_str(),
                self.denied[why as usize].load(Relaxed)
            );
        }
        if let Some(not_after) = cert_not_after {
            head(
                &mut out,
                "meshscrape_proxy_tls_certificate_expiry_timestamp_seconds",
                "gauge",
                "When the listener's certificate in force expires, in seconds since the epoch.",
            );
            let _ = writeln!(
                out,
                "meshscrape_proxy_tls_certificate_expiry_timestamp_seconds {not_after}"
            );
        }

        let config = lock(&self.config);
        head(
            &mut out,
            "meshscrape_proxy_config_reloads_total",
            "counter",
            "Reloads of the configuration (SIGHUP or a changed file), by result.",
        );
        for (i, result) in ["success", "failure"].iter().enumerate() {
            let _ = writeln!(
                out,
                "meshscrape_proxy_config_reloads_total{{result=\"{result}\"}} {}",
                self.reloads[i].load(Relaxed)
            );
        }
        head(
            &mut out,
            "meshscrape_proxy_config_last_reload_successful",
            "gauge",
            "Whether the last attempt to load the configuration succeeded.",
        );
        let _ = writeln!(
            out,
            "meshscrape_proxy_config_last_reload_successful {}",
            u8::from(config.last_successful)
        );
        head(
            &mut out,
            "meshscrape_proxy_config_last_reload_success_timestamp_seconds",
            "gauge",
            "When the configuration in force took effect, in seconds since the epoch.",
        );
        let _ = writeln!(
            out,
            "meshscrape_proxy_config_last_reload_success_timestamp_seconds {:.3}",
            config.loaded_at
        );
        head(
            &mut out,
            "meshscrape_proxy_config_info",
            "gauge",
            "The configuration in force, by a hash of its settings.",
        );
        let _ = writeln!(out, "meshscrape_proxy_config_info{{hash=\"{}\"}} 1", config.hash);
        head(
            &mut out,
            "meshscrape_proxy_config_restart_required",
            "gauge",
            "Settings changed in the file that take effect only when the sidecar restarts.",
        );
        for key in &config.restart_required {
            let _ = writeln!(out, "meshscrape_proxy_config_restart_required{{key=\"{key}\"}} 1");
        }
        drop(config);

        head(
            &mut out,
            "meshscrape_proxy_in_flight_requests",
            "gauge",
            "Requests being forwarded to the app now (a merged scrape counts once per target).",
        );
        let _ = writeln!(out, "meshscrape_proxy_in_flight_requests {in_flight}");
        head(
            &mut out,
            "meshscrape_proxy_open_connections",
            "gauge",
            "Client connections open now.",
        );
        let _ = writeln!(out, "meshscrape_proxy_open_connections {connections}");
        out
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges_as_text() {
        let m = Metrics::default();
        let route = m.route("/prometheus", true);
        route.request(200);
        m.route("/prometheus", true).request(200);
        m.route(UNMATCHED, false).request(404);
        route.upstream_latency(Duration::from_millis(3));
        route.bytes(1234);
        m.upstream_error(UpstreamError::Timeout);
        m.part("/merged", "http://127.0.0.1:9100/metrics", Some(PartFailure::Status));
        m.config_loaded("0123abcd".into(), vec!["listen"], true);
        m.reload_failed();
        m.denied(Denied::BadToken);
        let text = m.render(3, 2, Some(1_796_256_000));
        for line in [
            "meshscrape_proxy_requests_total{route=\"/prometheus\",status=\"200\"} 2",
            "meshscrape_proxy_requests_total{route=\"unmatched\",status=\"404\"} 1",
            "meshscrape_proxy_upstream_duration_seconds_bucket{route=\"/prometheus\",le=\"0.0025\"} 0",
            "meshscrape_proxy_upstream_duration_seconds_bucket{route=\"/prometheus\",le=\"0.005\"} 1",
            "meshscrape_proxy_upstream_duration_seconds_bucket{route=\"/prometheus\",le=\"+Inf\"} \
                1",
            "meshscrape_proxy_upstream_duration_seconds_count{route=\"/prometheus\"} 1",
            "meshscrape_proxy_upstream_errors_total{kind=\"timeout\"} 1",
            "meshscrape_proxy_upstream_errors_total{kind=\"connect\"} 0",
            "meshscrape_proxy_response_bytes_total{route=\"/prometheus\"} 1234",
            "# TYPE meshscrape_proxy_upstream_duration_seconds histogram",
            "meshscrape_proxy_merge_target_up{route=\"/merged\",target=\"http://127.0.0.1:9100/metrics\"} 0",
            "meshscrape_proxy_merge_target_failures_total{route=\"/merged\",target=\"http://127.0.0.1:9100/metrics\",reason=\"status\"} 1",
            "meshscrape_proxy_config_reloads_total{result=\"success\"} 1",
            "meshscrape_proxy_config_reloads_total{result=\"failure\"} 1",
            "meshscrape_proxy_config_last_reload_successful 0",
            "meshscrape_proxy_config_info{hash=\"0123abcd\"} 1",
            "meshscrape_proxy_config_restart_required{key=\"listen\"} 1",
            "meshscrape_proxy_in_flight_requests 3",
            "meshscrape_proxy_denied_total{reason=\"bad_token\"} 1",
            "meshscrape_proxy_tls_certificate_expiry_timestamp_seconds 1796256000",
            "meshscrape_proxy_open_connections 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("response_bytes_total{route=\"unmatched\""), "{text}");
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
