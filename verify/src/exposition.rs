//! A parser for what Prometheus accepts from a target: the text format (0.0.4 and 1.0.0) and
//! OpenMetrics 1.0, as real exporters write them (trailing commas in label sets, escaped label
//! values, every float spelling Go's ParseFloat takes, timestamps, histograms and summaries,
//! OpenMetrics exemplars), and, under Prometheus 3's rules, UTF-8 metric and label names in the
//! quoted form: `{"my.dotted.requests", "error.message"="Not Found"} 3`.

use std::collections::BTreeMap;

use meshscrape_common::error::printable;

use crate::promql::Version;

/// What a scrape body holds.
#[derive(Debug, Default, PartialEq)]
pub struct Exposition {
    /// Metric families by name, with their declared type (if any) and sample count.
    pub families: BTreeMap<String, Family>,
    pub samples: usize,
    /// Families whose samples stand in more than one place, or that are typed twice: what a
    /// merged scrape shows when two of its targets export the same metric. Prometheus keeps one
    /// sample per series and timestamp and drops the other.
    pub duplicates: Vec<String>,
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

/// Which grammar a body is read with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// OpenMetrics: `# EOF` at the end and nothing after it, no empty lines, exemplars.
    pub openmetrics: bool,
    /// Whose parser: Prometheus 3 reads quoted UTF-8 metric and label names (2 rejects them),
    /// and takes exemplars on any OpenMetrics series and a trailing comma in its label sets
    /// (2 takes exemplars only on `_total` and `_bucket` series, and no trailing comma).
    pub version: Version,
}

/// Parses a body; `openmetrics` demands the `# EOF` terminator and nothing after it. Quoted
/// UTF-8 names are read as Prometheus 3 reads them.
pub fn parse(text: &str, openmetrics: bool) -> Result<Exposition, ParseError> {
    parse_with(text, Rules { openmetrics, version: Version::V3 })
}

/// Parses a body under `rules`.
pub fn parse_with(text: &str, rules: Rules) -> Result<Exposition, ParseError> {
    let openmetrics = rules.openmetrics;
    let mut out = Exposition::default();
    let mut eof = false;
    // The family of the sample before, and every family left behind.
    let mut current = String::new();
    let mut left: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut place = |out: &mut Exposition, family: String| {
        if family != current {
            if left.contains(&family) && !out.duplicates.contains(&family) {
                out.duplicates.push(family.clone());
            }
            left.insert(std::mem::replace(&mut current, family));
        }
    };
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        // Messages quote the line's pieces; `printable` keeps a 100 KB name from becoming a 100 KB error.
        let err = |message: String| ParseError { line: n, message: printable(&message) };
        if openmetrics {
            if raw.is_empty() && i + 1 == text.split('\n').count() {
                break; // the newline that ends the body
            }
            if eof {
                return Err(err("content after # EOF".into()));
            }
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() {
                return Err(err("OpenMetrics does not allow empty lines".into()));
            }
            if let Some(comment) = line.strip_prefix('#') {
                eof |= openmetrics_comment(comment, rules, &mut out).map_err(err)?;
                continue;
            }
            let family = count(&mut out, openmetrics_sample(line, rules).map_err(err)?);
            place(&mut out, family);
            continue;
        }
        // The text format: Prometheus's lexer ends a line at \r as at \n, skips spaces and tabs
        // before a line and between its tokens, and takes any other `#` line as a comment.
        for line in raw.split('\r') {
            let line = line.trim_start_matches([' ', '\t']);
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                text_comment(comment, rules, &mut out).map_err(err)?;
                continue;
            }
            let family = count(&mut out, sample(line, rules).map_err(err)?);
            place(&mut out, family);
        }
    }
    if openmetrics && !eof {
        return Err(ParseError {
            line: text.lines().count(),
            message: "OpenMetrics body does not end with # EOF".into(),
        });
    }
    Ok(out)
}

/// Adds a sample of metric `name` to its family (a typed family owns its suffixed series), and
/// returns the family's name.
fn count(out: &mut Exposition, name: String) -> String {
    let family = SUFFIXES
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find(|base| out.families.get(*base).is_some_and(|f| f.kind.is_some()))
        .unwrap_or(&name)
        .to_string();
    out.families.entry(family.clone()).or_default().samples += 1;
    out.samples += 1;
    family
}

/// Declares `name` of type `kind`; a second declaration marks it a duplicate.
fn declare(out: &mut Exposition, name: String, kind: &str) {
    let family = out.families.entry(name.clone()).or_default();
    if family.kind.is_some() && !out.duplicates.contains(&name) {
        out.duplicates.push(name);
        return;
    }
    family.kind = Some(kind.to_string());
}

/// A text-format comment line (after `#`): `# HELP name text` and `# TYPE name type` with
/// whitespace after `#` and after the keyword; anything else is a comment.
fn text_comment(comment: &str, rules: Rules, out: &mut Exposition) -> Result<(), String> {
    let Some(rest) = comment.strip_prefix([' ', '\t']) else { return Ok(()) };
    let rest = rest.trim_start_matches([' ', '\t']);
    let (keyword, after) = rest.split_at(rest.find([' ', '\t']).unwrap_or(rest.len()));
    if !matches!(keyword, "HELP" | "TYPE") || after.is_empty() {
        return Ok(());
    }
    let (name, rest) = metric_name(after.trim_start_matches([' ', '\t']), rules)?;
    // The rest of the line after the one byte that ends the name, verbatim, as Prometheus reads
    // it: `# TYPE x  counter` (two spaces) is the type " counter", and a name that runs into a
    // multi-byte character leaves the rest of that character, which is not UTF-8.
    let Some(text) = rest.get(rest.chars().next().map_or(0, |_| 1)..) else {
        return Err(format!("the {keyword} text after `{name}` is not valid UTF-8"));
    };
    if keyword == "TYPE" {
        let kind = text;
        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
            return Err(format!(
                "unknown metric type `{kind}` (the text format has counter, gauge, histogram, \
                 summary and untyped, after one space)"
            ));
        }
        declare(out, name, kind);
    } else {
        out.families.entry(name).or_default();
    }
    Ok(())
}

/// An OpenMetrics comment line (after `#`); `true` for `# EOF`. OpenMetrics has no free
/// comments: `# HELP`, `# TYPE` and `# UNIT`, each with single spaces, and `# EOF`.
fn openmetrics_comment(comment: &str, rules: Rules, out: &mut Exposition) -> Result<bool, String> {
    if comment == " EOF" {
        return Ok(true);
    }
    let invalid = || format!("`#{comment}` is not a HELP, TYPE, UNIT or EOF line");
    let rest = comment.strip_prefix(' ').ok_or_else(invalid)?;
    let (keyword, rest) = rest.split_once(' ').ok_or_else(invalid)?;
    if !matches!(keyword, "TYPE" | "HELP" | "UNIT") {
        return Err(invalid());
    }
    let (name, rest) = metric_name(rest, rules)?;
    if keyword == "TYPE" {
        let kind =
            rest.strip_prefix(' ').ok_or_else(|| format!("a TYPE of `{name}` without a type"))?;
        let known = [
            "counter",
            "gauge",
            "histogram",
            "gaugehistogram",
            "stateset",
            "info",
            "summary",
            "unknown",
        ];
        if !known.contains(&kind) {
            return Err(format!("unknown metric type `{kind}`"));
        }
        declare(out, name, kind);
    } else {
        if !rest.is_empty() && !rest.starts_with(' ') {
            return Err(format!("unexpected `{rest}` after the metric name in {keyword}"));
        }
        out.families.entry(name).or_default();
    }
    Ok(false)
}

/// One OpenMetrics sample line: `name{labels} value[ timestamp][ # {labels} value[ timestamp]]`
/// with single spaces and no whitespace inside a label set.
fn openmetrics_sample(line: &str, rules: Rules) -> Result<String, String> {
    let (name, rest) = if line.starts_with('{') {
        (None, line)
    } else {
        let (name, rest) = metric_name(line, rules)?;
        (Some(name), rest)
    };
    let (name, rest) = match rest.strip_prefix('{') {
        Some(after) => {
            let (in_braces, rest) = strict_labels(after, name.is_none(), rules)?;
            (name.or(in_braces), rest)
        }
        None => (name, rest),
    };
    let name =
        name.ok_or("the label set names no metric (its first item must be the quoted name)")?;
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("sample `{name}`: expected one space and a value"))?;
    let (sample, exemplar) = match rest.split_once(" # ") {
        Some((sample, exemplar)) => (sample, Some(exemplar)),
        None => (rest, None),
    };
    let mut parts = sample.split(' ');
    let value = parts.next().unwrap_or_default();
    parse_value(value).ok_or_else(|| {
        format!("`{value}` is not a sample value (a float as Go writes it, +Inf, -Inf or NaN)")
    })?;
    if let Some(ts) = parts.next() {
        parse_value(ts).ok_or_else(|| format!("`{ts}` is not a timestamp"))?;
    }
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected `{extra}` after the value"));
    }
    if let Some(exemplar) = exemplar {
        if rules.version == Version::V2 && !(name.ends_with("_total") || name.ends_with("_bucket"))
        {
            return Err(format!(
                "`{name}` cannot carry an exemplar in Prometheus 2 (only _total and _bucket series)"
            ));
        }
        let labels =
            exemplar.strip_prefix('{').ok_or("an exemplar must start with its label set")?;
        let (_, rest) = strict_labels(labels, false, rules)?;
        let rest = rest.strip_prefix(' ').ok_or("an exemplar needs one space and a value")?;
        let mut parts = rest.split(' ');
        let value = parts.next().unwrap_or_default();
        parse_value(value).ok_or_else(|| format!("`{value}` is not an exemplar value"))?;
        if let Some(ts) = parts.next() {
            parse_value(ts).ok_or_else(|| format!("`{ts}` is not an exemplar timestamp"))?;
        }
        if let Some(extra) = parts.next() {
            return Err(format!("unexpected `{extra}` after the exemplar"));
        }
    }
    Ok(name)
}

/// `name="value",...}` with no whitespace (a trailing comma allowed, as Prometheus allows it);
/// returns the metric name when `name_first` and the first item is a quoted name alone.
fn strict_labels(
    mut s: &str,
    name_first: bool,
    rules: Rules,
) -> Result<(Option<String>, &str), String> {
    let mut metric = None;
    if let Some(rest) = s.strip_prefix('}') {
        return Ok((None, rest));
    }
    let mut first = true;
    loop {
        let label = if s.starts_with('"') {
            if rules.version == Version::V2 {
                return Err(quoted_in_v2("label", s));
            }
            let (name, rest) = quoted(s)?;
            if first && name_first && (rest.starts_with(',') || rest.starts_with('}')) {
                if name.is_empty() {
                    return Err("the metric name is empty".into());
                }
                metric = Some(name);
                s = rest;
                first = false;
                match s.strip_prefix(',') {
                    Some(r) => {
                        s = r;
                        continue;
                    }
                    None => return Ok((metric, &s[1..])),
                }
            }
            s = rest;
            name
        } else {
            let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
            let label = &s[..end];
            if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!(
                    "`{}` is not a label name",
                    s.chars().take(20).collect::<String>()
                ));
            }
            s = &s[end..];
            label.to_string()
        };
        first = false;
        s = s.strip_prefix('=').ok_or_else(|| format!("label `{label}` must be followed by ="))?;
        if !s.starts_with('"') {
            return Err(format!("the value of label `{label}` is not quoted"));
        }
        let (_, rest) = quoted(s).map_err(|e| format!("label `{label}`: {e}"))?;
        s = rest;
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((metric, rest));
        }
        s = s.strip_prefix(',').ok_or("labels must be separated by commas")?;
        // A trailing comma: Prometheus 3 ends the set there; 2 wants another label.
        if let Some(rest) = s.strip_prefix('}') {
            if rules.version == Version::V2 {
                return Err("a label set ends with a comma, which Prometheus 2 refuses".into());
            }
            return Ok((metric, rest));
        }
    }
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

/// A metric name at the start of `s`, bare or (under UTF-8 rules) quoted; returns it and the rest.
fn metric_name(s: &str, rules: Rules) -> Result<(String, &str), String> {
    if s.starts_with('"') {
        if rules.version == Version::V2 {
            return Err(quoted_in_v2("metric", s));
        }
        let (name, rest) = quoted(s)?;
        if name.is_empty() {
            return Err("the metric name is empty".into());
        }
        return Ok((name, rest));
    }
    // As Prometheus's lexer reads it: the longest run of name characters.
    let end =
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(s.len());
    if end == 0 {
        let token = s.split([' ', '\t', '{']).next().unwrap_or(s);
        return Err(format!("`{token}` is not a metric name"));
    }
    check_name(&s[..end])?;
    Ok((s[..end].to_string(), &s[end..]))
}

fn quoted_in_v2(what: &str, s: &str) -> String {
    let shown: String = s.chars().take(40).collect();
    format!(
        "a quoted {what} name ({shown}…) is Prometheus 3's UTF-8 form; Prometheus 2 rejects the \
         body (\"INVALID\" is not a valid start token)"
    )
}

/// A double-quoted string at the start of `s` with `\\`, `\"` and `\n` escapes; returns its
/// value and what follows the closing quote.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let body = s.strip_prefix('"').ok_or("expected a quoted string")?;
    let mut value = String::new();
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match (escaped, c) {
            (true, '\\' | '"') => {
                value.push(c);
                escaped = false;
            }
            (true, 'n') => {
                value.push('\n');
                escaped = false;
            }
            // Prometheus unescapes \\, \" and \n and keeps any other escape as written.
            (true, other) => {
                value.push('\\');
                value.push(other);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, '"') => return Ok((value, &body[i + 1..])),
            (false, '\n') => return Err("a raw newline in a quoted string".into()),
            (false, c) => value.push(c),
        }
    }
    Err(format!("the quoted string {} is not closed", printable(s)))
}

/// Parses one text-format sample line (spaces and tabs allowed between its tokens, a timestamp
/// in integer milliseconds); returns its metric name.
fn sample(line: &str, rules: Rules) -> Result<String, String> {
    let (mut name, mut rest) = if line.starts_with('{') {
        (None, line)
    } else {
        let (name, rest) = metric_name(line, rules)?;
        (Some(name), rest)
    };
    rest = rest.trim_start_matches([' ', '\t']);
    if let Some(after) = rest.strip_prefix('{') {
        let (in_braces, after) = labels(after, name.is_none(), rules)?;
        if let Some(n) = in_braces {
            name = Some(n);
        }
        rest = after;
    }
    let name =
        name.ok_or("the label set names no metric (its first item must be the quoted name)")?;
    let rest = rest.trim_start_matches([' ', '\t']);
    if rest.is_empty() {
        return Err(format!("sample `{name}` has no value"));
    }
    // The value runs to the next space, tab or `{`.
    let end = rest.find([' ', '\t', '{']).unwrap_or(rest.len());
    let (value, rest) = rest.split_at(end);
    parse_value(value).ok_or_else(|| {
        format!("`{value}` is not a sample value (a float as Go writes it, +Inf, -Inf or NaN)")
    })?;
    let mut parts = rest.split([' ', '\t']).filter(|p| !p.is_empty());
    if let Some(ts) = parts.next()
        && !(ts.bytes().all(|b| b.is_ascii_digit()) && ts.parse::<i64>().is_ok())
    {
        return Err(format!("`{ts}` is not a timestamp"));
    }
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected `{extra}` after the value"));
    }
    Ok(name)
}

/// A float as Prometheus reads one: Go's `strconv.ParseFloat` without hexadecimal mantissas
/// or underscores (Prometheus refuses `p`, `P` and `_`). That takes `inf`, `+Inf`, `-infinity`
/// and `NaN` in any case (NaN without a sign), and decimals such as `.5`, `5.`, `1e-3`.
pub fn parse_value(v: &str) -> Option<f64> {
    let unsigned = v.strip_prefix(['+', '-']).unwrap_or(v);
    let negative = v.starts_with('-');
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Some(if negative { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if v.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    let decimal = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && unsigned.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    // Go's ParseFloat fails on overflow (1e309) where Rust's parse gives infinity.
    if decimal { v.parse().ok().filter(|f: &f64| f.is_finite()) } else { None }
}

/// Parses a text-format label set `name="value",...}` (spaces between tokens, trailing and
/// missing commas allowed); returns the metric name when `name_first` and the set's first item
/// is a quoted name alone, and what follows the `}`.
fn labels(mut s: &str, name_first: bool, rules: Rules) -> Result<(Option<String>, &str), String> {
    let mut metric = None;
    let mut first = true;
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((metric, rest));
        }
        let label = if s.starts_with('"') {
            if rules.version == Version::V2 {
                return Err(quoted_in_v2("label", s));
            }
            let (name, rest) = quoted(s)?;
            let rest = rest.trim_start();
            if first && name_first && (rest.starts_with(',') || rest.starts_with('}')) {
                // `{"my.metric", ...}`: the metric's name, not a label.
                if name.is_empty() {
                    return Err("the metric name is empty".into());
                }
                metric = Some(name);
                s = rest.strip_prefix(',').unwrap_or(rest);
                first = false;
                continue;
            }
            s = rest;
            name
        } else {
            let end = s.find(|c: char| c == '=' || c.is_whitespace()).ok_or("a label has no =")?;
            let label = &s[..end];
            if label.is_empty()
                || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || label.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(format!("`{label}` is not a label name"));
            }
            s = s[end..].trim_start();
            label.to_string()
        };
        first = false;
        s = s.strip_prefix('=').ok_or("a label has no =")?.trim_start();
        if !s.starts_with('"') {
            return Err(format!("the value of label `{label}` is not quoted"));
        }
        let (_, rest) = quoted(s).map_err(|e| {
            if e.contains("not closed") {
                format!("the value of label `{label}` is not closed")
            } else {
                format!("label `{label}`: {e}")
            }
        })?;
        s = rest.trim_start();
        // A comma between labels is optional: Prometheus's text parser reads the next label
        // without one (OpenMetrics, which wants it, is read by `strict_labels`).
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_in_two_places_are_duplicates_in_either_grammar() {
        let text = "a 1\nb 1\na 2\n# TYPE c counter\nc_total 1\n# TYPE c counter\n";
        let e = parse(text, false).unwrap();
        assert_eq!(e.duplicates, ["a", "c"]);
        let om = "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n# EOF\n";
        assert_eq!(parse(om, true).unwrap().duplicates, ["a"]);
        // A histogram's series are one family, in one place.
        let h = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
        assert!(parse(h, false).unwrap().duplicates.is_empty());
    }

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
            ("x{a=\"1} 1\n", 1, "not closed"),
            ("x 1 2 3\n", 1, "unexpected"),
            ("x one\n", 1, "not a sample value"),
            ("# TYPE x strange\n", 1, "unknown metric type"),
        ] {
            let e = parse(body, false).unwrap_err();
            assert_eq!(e.line, line, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
        // A missing comma between labels: OpenMetrics refuses it; Prometheus's text parser reads
        // on (verify/tests/verify/differential.rs holds the checker to what the server does).
        let body = "x{a=\"1\" b=\"2\"} 1\n";
        let e = parse(&format!("{body}# EOF\n"), true).unwrap_err();
        assert!(e.message.contains("separated by commas"), "{}", e.message);
        assert!(parse(body, false).is_ok());
    }

    #[test]
    fn reads_the_text_format_as_prometheus_lexes_it() {
        for ok in [
            "  up 1\n",              // space before a line
            "up {a=\"1\"} 1\n",      // space before the labels
            "up{a=\"1\"}1\n",        // none before the value
            "up+Inf\n",              // nor after the name
            "x{path=\"a\\qb\"} 1\n", // an escape Prometheus keeps as written
            "# EOF\nup 1\n",         // only a comment in the text format
            "#HELP x is a comment\nup 1\n",
            "x inf\nx -Infinity\nx nan\nx .5\nx 5.\nx 1e-3\n",
        ] {
            assert!(parse(ok, false).is_ok(), "{ok:?}: {:?}", parse(ok, false));
        }
        for (bad, says) in [
            ("# TYPE x counter \n", "unknown metric type `counter `"),
            ("# TYPE x  counter\n", "unknown metric type ` counter`"),
            ("# TYPE x info\n", "unknown metric type `info`"),
            ("x 1e309\n", "not a sample value"),
            ("x +nan\n", "not a sample value"),
            ("x 0x10\n", "not a sample value"),
            ("x 1 -5\n", "not a timestamp"),
            ("{\"\"} 1\n", "the metric name is empty"),
        ] {
            let e = parse(bad, false).unwrap_err();
            assert!(e.message.contains(says), "{bad:?}: {}", e.message);
        }
    }
}
