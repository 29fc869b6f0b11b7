//! The sidecar's own metrics, rendered in the Prometheus text format at `/-/metrics`.
//!
//! Hand-rolled rather than a metrics crate: a handful of counters and one histogram, updated once
//! per request, do not justify a dependency in a security-relevant static binary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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

/// A label value per route index; index 0 is requests that matched no route.
#[derive(Debug)]
pub struct Metrics {
    labels: Vec<String>,
    requests: Mutex<BTreeMap<(usize, u16), u64>>,
    latency: Vec<Histogram>,
    bytes: Vec<AtomicU64>,
    errors: [AtomicU64; 4],
    shed: [AtomicU64; 3],
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// The route label of requests that matched no route.
pub const UNMATCHED: usize = 0;

impl Metrics {
    /// `labels[0]` must be the label of unmatched requests.
    pub fn new(labels: Vec<String>) -> Self {
        let n = labels.len();
        Metrics {
            labels,
            requests: Mutex::new(BTreeMap::new()),
            latency: (0..n).map(|_| Histogram::default()).collect(),
            bytes: (0..n).map(|_| AtomicU64::new(0)).collect(),
            errors: Default::default(),
            shed: Default::default(),
        }
    }

    pub fn request(&self, route: usize, status: u16) {
        // A poisoned lock only means another thread panicked mid-increment; the map is still usable.
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((route, status)).or_insert(0) += 1;
    }

    pub fn upstream_latency(&self, route: usize, elapsed: Duration) {
        let h = &self.latency[route];
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        h.count.fetch_add(1, Relaxed);
        h.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn bytes(&self, route: usize, n: u64) {
        self.bytes[route].fetch_add(n, Relaxed);
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn shed(&self, why: Shed) {
        self.shed[why as usize].fetch_add(1, Relaxed);
    }

    /// Renders every metric in the Prometheus text exposition format 0.0.4. The two gauges come
    /// from the limiters, which already count them.
    pub fn render(&self, in_flight: usize, connections: usize) -> String {
        let mut out = String::with_capacity(4096);
        let label = |i: usize| escape(&self.labels[i]);

        head(
            &mut out,
            "meshscrape_proxy_requests_total",
            "counter",
            "Requests answered, by route and status code.",
        );
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for ((route, status), n) in requests {
            let _ = writeln!(
                out,
                "meshscrape_proxy_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }

        head(
            &mut out,
            "meshscrape_proxy_upstream_duration_seconds",
            "histogram",
            "Time from sending a request to the app until its response head arrived, by route.",
        );
        for (i, h) in self.latency.iter().enumerate() {
            let count = h.count.load(Relaxed);
            if count == 0 {
                continue;
            }
            let name = "meshscrape_proxy_upstream_duration_seconds";
            for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{}\",le=\"{bound}\"}} {}",
                    label(i),
                    bucket.load(Relaxed)
                );
            }
            let _ = writeln!(out, "{name}_bucket{{route=\"{}\",le=\"+Inf\"}} {count}", label(i));
            let sum = h.sum_micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{route=\"{}\"}} {sum}", label(i));
            let _ = writeln!(out, "{name}_count{{route=\"{}\"}} {count}", label(i));
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
        for (i, b) in self.bytes.iter().enumerate().skip(1) {
            let _ = writeln!(
                out,
                "meshscrape_proxy_response_bytes_total{{route=\"{}\"}} {}",
                label(i),
                b.load(Relaxed)
            );
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
            "meshscrape_proxy_in_flight_requests",
            "gauge",
            "Requests being forwarded to the app now.",
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
        let m = Metrics::new(vec!["unmatched".into(), "/prometheus".into()]);
        m.request(1, 200);
        m.request(1, 200);
        m.request(UNMATCHED, 404);
        m.upstream_latency(1, Duration::from_millis(3));
        m.bytes(1, 1234);
        m.upstream_error(UpstreamError::Timeout);
        let text = m.render(3, 2);
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
            "meshscrape_proxy_in_flight_requests 3",
            "meshscrape_proxy_open_connections 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
