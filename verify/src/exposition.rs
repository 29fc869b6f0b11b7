//! A parser for what Prometheus accepts from a target: the text format 0.0.4 and OpenMetrics
//! 1.0, as real exporters write them (trailing commas in label sets, escaped label values,
//! `+Inf`/`NaN`, timestamps, histograms and summaries, OpenMetrics exemplars).

use std::collections::BTreeMap;

use meshscrape_common::error::printable;

/// What a scrape body holds.
#[derive(Debug, Default, PartialEq)]
pub struct Exposition {
    /// Metric families by name, with their declared type (if any) and sample count.
    pub families: BTreeMap<String, Family>,
    pub samples: usize,
}

#[derive(Debug, Default, PartialEq)]
pub struct Family {
    pub kind: Option<String>,
    pub samples: usize,
}

/// A line the parser rejected, 1-based.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

const SUFFIXES: [&str; 8] =
    ["_bucket", "_sum", "_count", "_total", "_created", "_info", "_gcount", "_gsum"];

/// Parses a body; `openmetrics` demands the `# EOF` terminator and nothing after it.
pub fn parse(text: &str, openmetrics: bool) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    let mut eof = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        // Messages quote the line's pieces; `printable` keeps a 100 KB name from becoming a 100 KB error.
        let err = |message: String| ParseError { line: n, message: printable(&message) };
        let line = raw.trim_end_matches('\r');
        if eof {
            return Err(err("content after # EOF".into()));
        }
        if line.trim().is_empty() {
            if openmetrics {
                return Err(err("OpenMetrics does not allow empty lines".into()));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("EOF"), None, None) => eof = true,
                (Some("TYPE"), Some(name), Some(kind)) => {
                    check_name(name).map_err(err)?;
                    let kind = kind.trim();
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "untyped",
                        "unknown",
                        "info",
                        "stateset",
                        "gaugehistogram",
                    ];
                    if !known.contains(&kind) {
                        return Err(err(format!("unknown metric type `{kind}`")));
                    }
                    out.families.entry(name.to_string()).or_default().kind = Some(kind.to_string());
                }
                (Some("HELP" | "UNIT"), Some(name), _) => {
                    check_name(name).map_err(err)?;
                    out.families.entry(name.to_string()).or_default();
                }
                _ => {}
            }
            continue;
        }
        let name = sample(line, openmetrics).map_err(err)?;
        let family = SUFFIXES
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|base| out.families.get(*base).is_some_and(|f| f.kind.is_some()))
            .unwrap_or(name)
            .to_string();
        out.families.entry(family).or_default().samples += 1;
        out.samples += 1;
    }
    if openmetrics && !eof {
        return Err(ParseError {
            line: text.lines().count(),
            message: "OpenMetrics body does not end with # EOF".into(),
        });
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("`{name}` is not a metric name"))
    }
}

/// Parses one sample line; returns its metric name.
fn sample(line: &str, openmetrics: bool) -> Result<&str, String> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    check_name(name)?;
    if name_end == line.len() {
        return Err(format!("sample `{name}` has no value"));
    }
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        rest = labels(after)?;
    }
    // An OpenMetrics exemplar follows " # ".
    let rest = match rest.find(" # ") {
        Some(i) if openmetrics => &rest[..i],
        _ => rest,
    };
    let mut parts = rest.split_whitespace();
    let value = parts.next().ok_or_else(|| format!("sample `{name}` has no value"))?;
    parse_value(value)
        .ok_or_else(|| format!("`{value}` is not a sample value (a float, +Inf, -Inf or NaN)"))?;
    if let Some(ts) = parts.next() {
        let ok = if openmetrics { ts.parse::<f64>().is_ok() } else { ts.parse::<i64>().is_ok() };
        if !ok {
            return Err(format!("`{ts}` is not a timestamp"));
        }
    }
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected `{extra}` after the value"));
    }
    Ok(name)
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if v.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')) => {
            v.parse().ok()
        }
        _ => None,
    }
}

/// Parses `name="value",...}` (trailing comma allowed); returns what follows the `}`.
fn labels(mut s: &str) -> Result<&str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("a label has no =")?;
        let label = s[..eq].trim();
        if label.is_empty()
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || label.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!("`{label}` is not a label name"));
        }
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("the value of label `{label}` is not quoted"))?;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in s.char_indices() {
            match (escaped, c) {
                (true, '\\' | '"' | 'n') => escaped = false,
                (true, other) => {
                    return Err(format!("label `{label}` has an invalid escape \\{other}"));
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, '\n') => return Err(format!("label `{label}` has a raw newline")),
                _ => {}
            }
        }
        let end = end.ok_or_else(|| format!("the value of label `{label}` is not closed"))?;
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("labels must be separated by commas".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seeds_dropwizard_output_with_trailing_commas() {
        let body = "# HELP com_hybris_HealthEndpoint_isAlive Generated from Dropwizard metric import (metric=x, type=com.codahale.metrics.Timer)\n\
# TYPE com_hybris_HealthEndpoint_isAlive summary\n\
com_hybris_HealthEndpoint_isAlive{quantile=\"0.5\",} 1.353475E-4\n\
com_hybris_HealthEndpoint_isAlive{quantile=\"0.999\",} 0.056941702324000205\n\
com_hybris_HealthEndpoint_isAlive_count 50598.0 \n";
        let e = parse(body, false).unwrap();
        assert_eq!(e.samples, 3);
        let f = &e.families["com_hybris_HealthEndpoint_isAlive"];
        assert_eq!((f.kind.as_deref(), f.samples), (Some("summary"), 3));
    }

    #[test]
    fn parses_histograms_special_values_escapes_and_timestamps() {
        let body = "# TYPE req_seconds histogram\nreq_seconds_bucket{le=\"0.1\"} 1\nreq_seconds_bucket{le=\"+Inf\"} 2\nreq_seconds_sum 0.3\nreq_seconds_count 2\n\
temp{path=\"C:\\\\x\",quote=\"say \\\"hi\\\"\",nl=\"a\\nb\"} NaN 1700000000000\nneg -Inf\n";
        let e = parse(body, false).unwrap();
        assert_eq!(e.families["req_seconds"].samples, 4);
        assert_eq!(e.families["temp"].samples, 1);
        assert_eq!(e.samples, 6);
    }

    #[test]
    fn openmetrics_needs_eof_and_allows_exemplars() {
        let body = "# TYPE a counter\na_total 1 # {trace_id=\"x\"} 1.0 1.5\n# EOF\n";
        assert_eq!(parse(body, true).unwrap().families["a"].samples, 1);
        assert!(
            parse("# TYPE a counter\na_total 1\n", true).unwrap_err().message.contains("# EOF")
        );
        assert!(parse("a 1\n# EOF\nb 2\n", true).unwrap_err().message.contains("after # EOF"));
    }

    #[test]
    fn rejects_garbage_naming_the_line() {
        for (body, line, needle) in [
            ("ok 1\n<html><body>", 2, "not a metric name"),
            ("ok 1\nbad{a=1} 2\n", 2, "not quoted"),
            ("x{a=\"1\" b=\"2\"} 1\n", 1, "separated by commas"),
            ("x{a=\"1} 1\n", 1, "not closed"),
            ("x 1 2 3\n", 1, "unexpected"),
            ("x one\n", 1, "not a sample value"),
            ("# TYPE x strange\n", 1, "unknown metric type"),
        ] {
            let e = parse(body, false).unwrap_err();
            assert_eq!(e.line, line, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
    }
}
