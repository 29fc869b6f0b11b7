//! `prometheus`: ask Prometheus itself how the target is doing: `/api/v1/targets` (active and
//! dropped) and `/api/v1/query` for an expected metric.
//!
//! Targets are found as prometheus-operator writes them (`meshscrape_common::operator`): by
//! scrape pool (`serviceMonitor/<ns>/<name>/<i>`, the `scrapePool` of each target) and by the
//! `job` label, which the operator sets to the Service's name, not to the scrape pool.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::error::FetchError;
use crate::fetch;
use crate::promql::{self, Version};
use crate::report::{Check, Report};

/// Options for `prometheus`. At least one of `scrape_pool` and `job` names the targets.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The targets' scrape pool, e.g. `serviceMonitor/monitoring/argo-monitor/0`.
    pub scrape_pool: Option<String>,
    /// The targets' `job` label, e.g. the Service's name for a ServiceMonitor.
    pub job: Option<String>,
    /// Further target labels that must match, `K=V`.
    pub labels: Vec<(String, String)>,
    pub expect_metric: Option<String>,
    pub timeout: Duration,
    /// Whose rules build the query.
    pub version: Version,
}

impl Options {
    /// How the targets are named in the report.
    fn who(&self) -> String {
        match (&self.scrape_pool, &self.job) {
            (Some(pool), Some(job)) => format!("scrape pool {pool}, job {job}"),
            (Some(pool), None) => format!("scrape pool {pool}"),
            (None, Some(job)) => format!("job {job}"),
            (None, None) => "every target".into(),
        }
    }

    /// Whether an active target is one of ours.
    fn matches_active(&self, t: &Value) -> bool {
        let labels = &t["labels"];
        self.scrape_pool.as_ref().is_none_or(|p| t["scrapePool"] == p.as_str())
            && self.job.as_ref().is_none_or(|j| labels["job"] == j.as_str())
            && self.labels.iter().all(|(k, v)| labels[k.as_str()] == v.as_str())
    }

    /// Whether a dropped target was one of ours. Its `job` is the scrape pool's name (the
    /// relabeling that would have set the operator's job did not keep it).
    fn matches_dropped(&self, t: &Value) -> bool {
        let discovered_job = &t["discoveredLabels"]["job"];
        match (&self.scrape_pool, &self.job) {
            (Some(pool), _) => t["scrapePool"] == pool.as_str() || discovered_job == pool.as_str(),
            (None, Some(job)) => discovered_job == job.as_str(),
            (None, None) => true,
        }
    }
}

/// Why Prometheus's HTTP API gave no data.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request got no usable answer.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The answer is not the API's JSON: not a Prometheus server, or not its base URL.
    #[error(
        "{url} answered {status} with {content_type}, not JSON; is --url the Prometheus server's \
         base URL (e.g. http://127.0.0.1:9090)?"
    )]
    NotJson { url: String, status: http::StatusCode, content_type: String },
    /// Prometheus refused the request, with its error type and message.
    #[error("{url}: {kind} {message}")]
    Refused { url: String, kind: String, message: String },
}

async fn api(base: &str, path_and_query: &str, timeout: Duration) -> Result<Value, ApiError> {
    let url = format!("{}{path_and_query}", base.trim_end_matches('/'));
    let f = fetch::get(&url, &[("accept", "application/json".into())], timeout, 32 << 20).await?;
    let content_type =
        f.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let v: Value = serde_json::from_slice(&f.body).map_err(|_| ApiError::NotJson {
        url: url.clone(),
        status: f.status,
        content_type,
    })?;
    if v["status"] != "success" {
        return Err(ApiError::Refused {
            url,
            kind: v["errorType"].as_str().unwrap_or("error").to_string(),
            message: v["error"].as_str().unwrap_or("").to_string(),
        });
    }
    Ok(v["data"].clone())
}

/// Percent-encodes a query-string value: everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    const QUERY_VALUE: &AsciiSet =
        &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

fn seconds(d: &str) -> Option<f64> {
    meshscrape_common::duration::parse(d).ok().map(|d| d.as_secs_f64())
}

/// Asks Prometheus at `url` about the targets. `Err` when its targets API cannot be read at
/// all (nothing answers, or not Prometheus's JSON): then nothing was checked.
pub async fn check(url: &str, o: &Options) -> Result<Report, ApiError> {
    let mut report = Report::default();
    let who = o.who();
    let data = api(url, "/api/v1/targets?state=any", o.timeout).await?;
    let active: Vec<&Value> = data["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| o.matches_active(t))
        .collect();
    let dropped = data["droppedTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| o.matches_dropped(t))
        .count();
    if active.is_empty() {
        let targets = data["activeTargets"].as_array().map_or(&[][..], Vec::as_slice);
        let known = |f: fn(&Value) -> Option<&str>| {
            let set: std::collections::BTreeSet<&str> = targets.iter().filter_map(f).collect();
            set.into_iter().collect::<Vec<_>>().join(", ")
        };
        let jobs = known(|t| t["labels"]["job"].as_str());
        let pools = known(|t| t["scrapePool"].as_str());
        let msg = if dropped > 0 {
            format!(
                "no active target, but {dropped} discovered target(s) of this job were dropped by \
                    relabeling"
            )
        } else {
            format!("Prometheus has no such target (jobs: {jobs}; scrape pools: {pools})")
        };
        report.push(
            Check::fail(
                "targets",
                msg,
                "run `meshscrape-verify manifests` on the monitor and the objects it should select",
            )
            .on(&who),
        );
        return Ok(report);
    }
    report.push(Check::pass("targets", format!("{} active target(s)", active.len())).on(&who));
    if dropped > 0 {
        report.push(
            Check::warn(
                "targets",
                format!("{dropped} discovered target(s) of this job were dropped by relabeling"),
                "expected for the Service's other ports; otherwise check relabelings",
            )
            .on(&who),
        );
    }
    let job_of_targets =
        active.first().and_then(|t| t["labels"]["job"].as_str()).map(str::to_string);
    for t in active {
        let scrape_url = t["scrapeUrl"].as_str().unwrap_or("?").to_string();
        match t["health"].as_str() {
            Some("up") => report.push(Check::pass("health", "up").on(&scrape_url)),
            Some("unknown") => report.push(
                Check::warn("health", "not scraped yet", "wait one scrape interval and run again")
                    .on(&scrape_url),
            ),
            other => report.push(
                Check::fail(
                    "health",
                    format!("{}: {}", other.unwrap_or("?"), t["lastError"].as_str().unwrap_or("")),
                    "run `meshscrape-verify endpoint` on the scrape URL",
                )
                .on(&scrape_url),
            ),
        }
        let duration = t["lastScrapeDuration"].as_f64().unwrap_or(0.0);
        if let Some(timeout) = t["scrapeTimeout"].as_str().and_then(seconds) {
            if duration > timeout * 0.8 {
                report.push(
                    Check::warn(
                        "scrape duration",
                        format!("last scrape took {duration:.3}s of a {timeout}s timeout"),
                        "raise scrapeTimeout (not beyond the interval) or make the endpoint faster",
                    )
                    .on(&scrape_url),
                );
            } else {
                report.push(
                    Check::pass(
                        "scrape duration",
                        format!("{duration:.3}s of a {timeout}s timeout"),
                    )
                    .on(&scrape_url),
                );
            }
        }
    }
    if let Some(metric) = &o.expect_metric {
        // The job the series carry: the one asked for, else the one our targets have.
        let mut matchers: Vec<(&str, &str)> = Vec::new();
        if let Some(job) = o.job.as_deref().or(job_of_targets.as_deref()) {
            matchers.push(("job", job));
        }
        matchers.extend(o.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let query = match promql::selector(metric, &matchers, o.version) {
            Ok(selector) => format!("count({selector})"),
            Err(e) => {
                let fix = "pass the name the app exports";
                report.push(Check::fail("metric", e.to_string(), fix).on(&who));
                return Ok(report);
            }
        };
        match api(url, &format!("/api/v1/query?query={}", encode(&query)), o.timeout).await {
            Ok(d) if d["result"].as_array().is_some_and(|r| !r.is_empty()) => {
                let n = d["result"][0]["value"][1].as_str().unwrap_or("?").to_string();
                report.push(Check::pass("metric", format!("{metric}: {n} series")).on(&who));
            }
            Ok(_) => report.push(
                Check::fail(
                    "metric",
                    format!("{metric} has no series for this job"),
                    "check the metric name, and that the target is up",
                )
                .on(&who),
            ),
            Err(e) => report.push(Check::fail("metric", e.to_string(), "check --url").on(&who)),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_promql_for_a_query_string() {
        assert_eq!(super::encode("count(up{job=\"a b\"})"), "count%28up%7Bjob%3D%22a%20b%22%7D%29");
    }
}
