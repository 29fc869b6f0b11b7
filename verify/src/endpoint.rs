//! `endpoint`: scrape a URL the way Prometheus does and check what comes back, by the rules of
//! the Prometheus version asked for: its Accept header, its Content-Type rule (Prometheus 3 fails
//! a scrape whose Content-Type is blank, unparsable or unsupported), and its parser.

use std::time::Duration;

use crate::exposition::{self, Rules};
use crate::promql::Version;
use crate::report::{Check, Report};
use crate::{fetch, protobuf};

/// Prometheus 2.x's scrape Accept header.
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// Prometheus 3.x's scrape Accept header with native histograms on: protobuf first.
pub const ACCEPT_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
/// Prometheus 3.x's scrape Accept header (3.4 and later, without native histograms).
pub const ACCEPT_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// Options for `endpoint`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scrape timeout, sent as `X-Prometheus-Scrape-Timeout-Seconds` and enforced.
    pub timeout: Duration,
    /// The largest body accepted (Prometheus's `body_size_limit`; 0 there means unlimited).
    pub max_bytes: usize,
    /// Further paths on the same host that must answer 200 (readiness, liveness routes).
    pub probes: Vec<String>,
    /// Whose rules judge the scrape.
    pub version: Version,
    /// The monitor's `fallbackScrapeProtocol`, if it sets one.
    pub fallback_protocol: Option<String>,
    /// Ask for protobuf first, as Prometheus does when it scrapes native histograms.
    pub protobuf: bool,
    /// Send `Authorization: Bearer` with this token, as a monitor's `authorization` makes
    /// Prometheus do.
    pub bearer_token: Option<String>,
    /// For https URLs: the CA, client certificate and server name of the monitor's `tlsConfig`.
    pub tls: Option<crate::tls::Client>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(10),
            max_bytes: 64 << 20,
            probes: Vec::new(),
            version: Version::V3,
            fallback_protocol: None,
            protobuf: false,
            bearer_token: None,
            tls: None,
        }
    }
}

/// The Accept header the Prometheus of `o.version` sends.
fn accept(o: &Options) -> &'static str {
    match (o.version, o.protobuf) {
        (_, true) => ACCEPT_PROTOBUF,
        (Version::V3, false) => ACCEPT_3,
        (Version::V2, false) => ACCEPT,
    }
}

pub async fn check(url: &str, o: &Options) -> Report {
    let mut report = Report::default();
    let mut headers = vec![
        ("accept", accept(o).to_string()),
        ("accept-encoding", "gzip".to_string()),
        ("x-prometheus-scrape-timeout-seconds", format!("{}", o.timeout.as_secs_f64())),
        ("user-agent", concat!("meshscrape-verify/", env!("CARGO_PKG_VERSION")).to_string()),
    ];
    if let Some(token) = &o.bearer_token {
        headers.push(("authorization", format!("Bearer {token}")));
    }
    let fetched = match fetch::get_with(url, &headers, o.timeout, o.max_bytes, o.tls.as_ref()).await
    {
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
                "see the reason; 404 means no route, 502 the app is down, 504 the app is too slow, \
                 401 the sidecar wants a bearer token (--bearer-token-file), 403 it does not admit \
                 this client's address (auth.allowedClients)",
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
    let verdict = judge_content_type(&content_type, o.version, o.fallback_protocol.as_deref());
    report.push(verdict.check.on(url));
    let Some(format) = verdict.format else { return report };
    // What the parser the media type selects makes of the body: (samples, summary) or why
    // Prometheus would refuse it.
    let parsed = if format == Format::Protobuf {
        protobuf::decode(&fetched.body, o.version)
            .map(|d| {
                let e = &d.exposition;
                let summary = format!(
                    "protobuf: {} families, {} samples, {} native histograms",
                    e.families.len(),
                    e.samples,
                    d.native_histograms
                );
                Body {
                    samples: e.samples,
                    summary,
                    duplicates: e.duplicates.clone(),
                    merge_targets: d.merge_targets.clone(),
                }
            })
            .map_err(|err| {
                format!("Prometheus {} would reject this protobuf body: {err}", o.version)
            })
    } else {
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
        let rules = Rules { openmetrics: format == Format::OpenMetrics, version: o.version };
        exposition::parse_with(text, rules)
            .map(|e| Body {
                samples: e.samples,
                summary: format!("{} families, {} samples", e.families.len(), e.samples),
                duplicates: e.duplicates,
                merge_targets: merge_targets_in_text(text),
            })
            .map_err(|err| format!("Prometheus {} would reject this body: {err}", o.version))
    };
    let body = match parsed {
        Ok(body) => body,
        Err(reason) => {
            report.push(Check::fail("exposition", reason, "fix the exporter's output").on(url));
            return probes(url, o, report).await;
        }
    };
    report.push(
        if body.samples == 0 {
            Check::fail("exposition", "no samples", "check the app's metrics path")
        } else {
            Check::pass("exposition", body.summary.clone())
        }
        .on(url),
    );
    merged(url, &body, &mut report);
    probes(url, o, report).await
}

/// What a body that parsed holds, for the checks after parsing.
struct Body {
    samples: usize,
    summary: String,
    duplicates: Vec<String>,
    merge_targets: Vec<(String, f64)>,
}

/// A merged route's targets (each must be in the scrape), and families in more than one place
/// (two targets exporting the same metric).
fn merged(url: &str, body: &Body, report: &mut Report) {
    let merge = !body.merge_targets.is_empty();
    if !body.duplicates.is_empty() {
        let mut names = body.duplicates.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if body.duplicates.len() > 5 {
            names.push_str(&format!(" and {} more", body.duplicates.len() - 5));
        }
        let fix = if merge {
            "two targets of this merged route export the same families; Prometheus keeps one \
                sample per series and drops the other: turn the family off in one exporter (the \
                client libraries' process_ and go_ collectors are the usual pair), or scrape the \
                targets on routes of their own"
        } else {
            "write each family's lines as one group, as the exposition formats require"
        };
        report.push(
            Check::fail(
                "families",
                format!("{} families stand in more than one place: {names}", body.duplicates.len()),
                fix,
            )
            .on(url),
        );
    }
    if !merge {
        return;
    }
    let left_out: Vec<&str> =
        body.merge_targets.iter().filter(|(_, v)| *v != 1.0).map(|(t, _)| t.as_str()).collect();
    let total = body.merge_targets.len();
    report.push(
        if left_out.is_empty() {
            Check::pass(
                "merged targets",
                format!("all {total} targets of the route are in the scrape"),
            )
        } else {
            Check::fail(
                "merged targets",
                format!(
                    "{} of {total} targets were left out: {}",
                    left_out.len(),
                    left_out.join(", ")
                ),
                "the sidecar's /-/metrics counts why (meshscrape_proxy_merge_target_failures_total \
                    by reason: connect, timeout, status, format, too_large), and its log names the \
                    target",
            )
        }
        .on(url),
    );
}

/// The `meshscrape_merge_target_up{target="..."} V` lines the sidecar appends to a merged scrape.
fn merge_targets_in_text(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(protobuf::MERGE_TARGET_UP)?.strip_prefix("{target=\"")?;
            let (target, value) = rest.split_once("\"}")?;
            Some((target.to_string(), exposition::parse_value(value.trim())?))
        })
        .collect()
}

/// The `--probe` routes on the same host: each must answer 200.
async fn probes(url: &str, o: &Options, mut report: Report) -> Report {
    for probe in &o.probes {
        let probe_url =
            match url.find("://").and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j)) {
                Some(path_start) => format!("{}{probe}", &url[..path_start]),
                None => format!("{url}{probe}"),
            };
        let auth: Vec<(&str, String)> =
            o.bearer_token.iter().map(|t| ("authorization", format!("Bearer {t}"))).collect();
        match fetch::get_with(&probe_url, &auth, o.timeout, 1 << 20, o.tls.as_ref()).await {
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

/// The parser a Content-Type selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
    Protobuf,
}

/// What a Content-Type makes of a scrape: the parser Prometheus picks (`None`: the scrape
/// fails) and the line that says so.
#[derive(Debug)]
pub struct Verdict {
    pub format: Option<Format>,
    pub check: Check,
}

/// The parser Prometheus `version` picks for `content_type`, given the monitor's
/// `fallbackScrapeProtocol` if it has one. Prometheus 3 fails a scrape whose Content-Type is blank,
/// unparsable or unsupported unless a fallback is set; Prometheus 2 falls back to the text parser.
/// The problems are worded as Prometheus 3 words them (`scrape.extractMediaType`), so a user can
/// find them in the target's last error.
pub fn judge_content_type(content_type: &str, version: Version, fallback: Option<&str>) -> Verdict {
    const FIX: &str = "make the app send Content-Type: text/plain; version=0.0.4 (or OpenMetrics), \
                       or set fallbackScrapeProtocol on the monitor (e.g. PrometheusText0.0.4; \
                       meshscrape-gen renders monitor.fallbackScrapeProtocol)";
    let problem = if content_type.trim().is_empty() {
        "non-compliant scrape target sending blank Content-Type".to_string()
    } else {
        match media_type(content_type) {
            Err(why) => format!("cannot parse Content-Type {content_type:?} ({why})"),
            Ok(media) => {
                let format = match media.as_str() {
                    "text/plain" => Some(Format::Text),
                    "application/openmetrics-text" => Some(Format::OpenMetrics),
                    "application/vnd.google.protobuf" => Some(Format::Protobuf),
                    _ => None,
                };
                if let Some(format) = format {
                    return Verdict {
                        format: Some(format),
                        check: Check::pass("content type", content_type),
                    };
                }
                format!("received unsupported Content-Type {content_type:?}")
            }
        }
    };
    let name = "content type";
    match (version, fallback) {
        (Version::V3, Some(protocol)) => Verdict {
            format: Some(if protocol.starts_with("OpenMetrics") {
                Format::OpenMetrics
            } else if protocol == "PrometheusProto" {
                Format::Protobuf
            } else {
                Format::Text
            }),
            check: Check::warn(
                name,
                format!("{problem}: Prometheus 3 parses it with the fallback {protocol}"),
                "make the app send a Content-Type; the fallback hides a misconfigured exporter",
            ),
        },
        (Version::V3, None) => Verdict {
            format: None,
            check: Check::fail(name, format!("{problem}: Prometheus 3 fails this scrape"), FIX),
        },
        (Version::V2, _) => Verdict {
            format: Some(Format::Text),
            check: Check::warn(
                name,
                format!(
                    "{problem}: Prometheus 2 falls back to the text parser; Prometheus 3 \
                         would fail"
                ),
                FIX,
            ),
        },
    }
}

/// The media type of a Content-Type value, lower-cased, as Go's `mime.ParseMediaType` reads it
/// (which Prometheus uses): a token, optionally `/token`, then `; key=value` parameters whose
/// value is a token or a quoted string; a trailing `;` is allowed.
fn media_type(value: &str) -> Result<String, &'static str> {
    fn token_char(c: char) -> bool {
        c.is_ascii() && !c.is_ascii_control() && !" ()<>@,;:\\\"/[]?=".contains(c)
    }
    fn token(s: &str) -> (&str, &str) {
        let end = s.find(|c: char| !token_char(c)).unwrap_or(s.len());
        s.split_at(end)
    }
    let (base, mut params) =
        value.split_once(';').map_or((value, ""), |(b, _)| (b, &value[b.len()..]));
    let media = base.trim().to_ascii_lowercase();
    let (major, rest) = token(&media);
    if major.is_empty() {
        return Err("no media type");
    }
    if !rest.is_empty() {
        let sub = rest.strip_prefix('/').ok_or("expected slash after first token")?;
        let (minor, rest) = token(sub);
        if minor.is_empty() || !rest.is_empty() {
            return Err("expected token after slash");
        }
    }
    while !params.trim_start().is_empty() {
        let p = params.trim_start();
        let after = p.strip_prefix(';').ok_or("invalid media parameter")?.trim_start();
        let (key, rest) = token(after);
        if key.is_empty() {
            if p.trim() == ";" {
                break; // a trailing semicolon
            }
            return Err("invalid media parameter");
        }
        let rest =
            rest.trim_start().strip_prefix('=').ok_or("invalid media parameter")?.trim_start();
        params = if let Some(q) = rest.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in q.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            &q[end.ok_or("invalid media parameter")? + 1..]
        } else {
            let (v, rest) = token(rest);
            if v.is_empty() {
                return Err("invalid media parameter");
            }
            rest
        };
    }
    Ok(media)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn prometheus_3_fails_blank_unparsable_and_unsupported_content_types() {
        for (ct, says) in [
            ("", "non-compliant scrape target sending blank Content-Type"),
            ("%%%;;", "cannot parse Content-Type"),
            ("text/html", "received unsupported Content-Type \"text/html\""),
            ("application/json", "unsupported"),
            ("application/octet-stream", "unsupported"),
        ] {
            let v = judge_content_type(ct, Version::V3, None);
            assert_eq!((v.format, v.check.status), (None, Status::Fail), "{ct}");
            assert!(v.check.message.contains(says), "{ct}: {}", v.check.message);
            assert!(v.check.fix.as_deref().unwrap().contains("fallbackScrapeProtocol"));
            let v = judge_content_type(ct, Version::V2, None);
            assert_eq!((v.format, v.check.status), (Some(Format::Text), Status::Warn), "{ct}");
            // With the monitor's fallback, Prometheus 3 parses it as that protocol says.
            let v = judge_content_type(ct, Version::V3, Some("OpenMetricsText1.0.0"));
            assert_eq!((v.format, v.check.status), (Some(Format::OpenMetrics), Status::Warn));
            assert!(v.check.message.contains("with the fallback OpenMetricsText1.0.0"));
        }
    }

    #[test]
    fn the_three_media_types_pick_their_parser_whatever_their_parameters() {
        for (ct, format) in [
            ("text/plain", Format::Text),
            ("text/plain; version=0.0.4; charset=utf-8", Format::Text),
            ("Text/Plain; version=1.0.0; escaping=allow-utf-8", Format::Text),
            ("text/plain;", Format::Text),
            ("application/openmetrics-text; version=1.0.0; charset=utf-8", Format::OpenMetrics),
            (
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; \
                 encoding=delimited",
                Format::Protobuf,
            ),
            ("text/plain; charset=\"utf-8\"", Format::Text),
        ] {
            let v = judge_content_type(ct, Version::V3, None);
            assert_eq!((v.format, v.check.status), (Some(format), Status::Pass), "{ct}");
        }
    }
}
