//! `endpoint`: scrape a URL the way Prometheus does and check what comes back.

use std::time::Duration;

use crate::exposition;
use crate::fetch;
use crate::report::{Check, Report};

/// Prometheus 2.x's scrape Accept header.
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Options for `endpoint`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scrape timeout, sent as `X-Prometheus-Scrape-Timeout-Seconds` and enforced.
    pub timeout: Duration,
    /// The largest body accepted (Prometheus's `body_size_limit`; 0 there means unlimited).
    pub max_bytes: usize,
    /// Further paths on the same host that must answer 200 (readiness, liveness routes).
    pub probes: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { timeout: Duration::from_secs(10), max_bytes: 64 << 20, probes: Vec::new() }
    }
}

pub async fn check(url: &str, o: &Options) -> Report {
    let mut report = Report::default();
    let headers = [
        ("accept", ACCEPT.to_string()),
        ("accept-encoding", "gzip".to_string()),
        ("x-prometheus-scrape-timeout-seconds", format!("{}", o.timeout.as_secs_f64())),
        ("user-agent", concat!("meshscrape-verify/", env!("CARGO_PKG_VERSION")).to_string()),
    ];
    let fetched = match fetch::get(url, &headers, o.timeout, o.max_bytes).await {
        Ok(f) => f,
        Err(e) => {
            report.push(
                Check::fail(
                    "scrape",
                    e.to_string(),
                    "check that the sidecar listens there and the route exists",
                )
                .on(url),
            );
            return report;
        }
    };
    let ms = fetched.elapsed.as_millis();
    if fetched.status.is_redirection() {
        let to = fetched.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("?");
        report.push(
            Check::fail(
                "status",
                format!("{} redirect to {to}", fetched.status),
                "scrape the final URL directly; a sidecar route should not redirect",
            )
            .on(url),
        );
        return report;
    }
    if fetched.status != http::StatusCode::OK {
        let reason = String::from_utf8_lossy(&fetched.body[..fetched.body.len().min(200)])
            .trim()
            .to_string();
        report.push(
            Check::fail(
                "status",
                format!("{}: {reason}", fetched.status),
                "see the reason; 404 means no route, 502 the app is down, 504 the app is too slow",
            )
            .on(url),
        );
        return report;
    }
    report.push(
        Check::pass("status", format!("200 in {ms} ms, {} bytes", fetched.body.len())).on(url),
    );
    let content_type =
        fetched.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let openmetrics = content_type.starts_with("application/openmetrics-text");
    if openmetrics || content_type.starts_with("text/plain") {
        report.push(Check::pass("content type", content_type.clone()).on(url));
    } else {
        report.push(
            Check::warn(
                "content type",
                format!(
                    "`{content_type}` is neither text/plain nor OpenMetrics; Prometheus falls \
                    back to the text parser"
                ),
                "serve text/plain; version=0.0.4",
            )
            .on(url),
        );
    }
    let text = match std::str::from_utf8(&fetched.body) {
        Ok(t) => t,
        Err(e) => {
            report.push(
                Check::fail(
                    "exposition",
                    format!("the body is not UTF-8: {e}"),
                    "serve the Prometheus text format",
                )
                .on(url),
            );
            return report;
        }
    };
    match exposition::parse(text, openmetrics) {
        Ok(e) if e.samples == 0 => report
            .push(Check::fail("exposition", "no samples", "check the app's metrics path").on(url)),
        Ok(e) => report.push(
            Check::pass(
                "exposition",
                format!("{} families, {} samples", e.families.len(), e.samples),
            )
            .on(url),
        ),
        Err(err) => report.push(
            Check::fail(
                "exposition",
                format!("Prometheus would reject this body: {err}"),
                "fix the exporter's output",
            )
            .on(url),
        ),
    }
    for probe in &o.probes {
        let probe_url =
            match url.find("://").and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j)) {
                Some(path_start) => format!("{}{probe}", &url[..path_start]),
                None => format!("{url}{probe}"),
            };
        match fetch::get(&probe_url, &[], o.timeout, 1 << 20).await {
            Ok(f) if f.status == http::StatusCode::OK => {
                report.push(Check::pass("probe", "200").on(&probe_url))
            }
            Ok(f) => report.push(
                Check::fail(
                    "probe",
                    format!("{}: {}", f.status, String::from_utf8_lossy(&f.body).trim()),
                    "check the route and the app's health endpoint",
                )
                .on(&probe_url),
            ),
            Err(e) => report.push(
                Check::fail(
                    "probe",
                    e.to_string(),
                    "check the route and the app's health endpoint",
                )
                .on(&probe_url),
            ),
        }
    }
    report
}
