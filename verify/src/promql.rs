//! PromQL built safely: a metric selector in the form the Prometheus being asked can read, with
//! every label value escaped. Prometheus 3 reads UTF-8 metric and label names in the quoted form
//! (`{"my.dotted.metric", "error.message"="x"}`); Prometheus 2 can hold only names of the legacy
//! alphabet, so for any other name the query is refused here with the reason, never sent.

use std::fmt;

/// The major version of Prometheus whose rules apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Version {
    /// Prometheus 2.x (2.42 is Debian bookworm's).
    #[value(name = "2")]
    V2,
    /// Prometheus 3.x (3.5 is the LTS).
    #[default]
    #[value(name = "3")]
    V3,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V2 => "2",
            Version::V3 => "3",
        })
    }
}

/// Why no query can be built.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The name is outside the legacy alphabet and the Prometheus asked is a 2.x.
    #[error(
        "Prometheus 2 cannot hold the {what} name `{name}` (only [a-zA-Z_:][a-zA-Z0-9_:]* for \
         metrics, [a-zA-Z_][a-zA-Z0-9_]* for labels), so no series of it can exist there; ask a \
         Prometheus 3 (--prometheus-version 3) or check the name"
    )]
    NotInV2 { what: &'static str, name: String },
    /// An empty metric name.
    #[error("the metric name is empty")]
    Empty,
}

/// Whether `name` is a metric name in the legacy alphabet, which every version reads bare.
pub fn is_legacy_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a label name in the legacy alphabet.
pub fn is_legacy_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `s` as a PromQL double-quoted string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A selector for `metric` with equality matchers, e.g. `up{job="x"}` or, for a UTF-8 name on
/// Prometheus 3, `{"my.metric", job="x"}`.
pub fn selector(
    metric: &str,
    matchers: &[(&str, &str)],
    version: Version,
) -> Result<String, QueryError> {
    if metric.is_empty() {
        return Err(QueryError::Empty);
    }
    let mut parts = Vec::new();
    for (name, value) in matchers {
        let name = if is_legacy_label_name(name) {
            (*name).to_string()
        } else if version == Version::V3 {
            quote(name)
        } else {
            return Err(QueryError::NotInV2 { what: "label", name: (*name).to_string() });
        };
        parts.push(format!("{name}={}", quote(value)));
    }
    if is_legacy_metric_name(metric) {
        return Ok(format!("{metric}{{{}}}", parts.join(",")));
    }
    if version == Version::V2 {
        return Err(QueryError::NotInV2 { what: "metric", name: metric.to_string() });
    }
    parts.insert(0, quote(metric));
    Ok(format!("{{{}}}", parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_are_written_bare_for_both_versions() {
        for v in [Version::V2, Version::V3] {
            assert_eq!(
                selector("up", &[("job", "identity-service")], v).unwrap(),
                r#"up{job="identity-service"}"#
            );
        }
    }

    #[test]
    fn utf8_names_use_the_quoted_form_on_prometheus_3() {
        assert_eq!(
            selector(
                "my.dotted.requests",
                &[("job", "a"), ("error.message", "Not Found")],
                Version::V3
            )
            .unwrap(),
            r#"{"my.dotted.requests", job="a", "error.message"="Not Found"}"#
        );
    }

    #[test]
    fn prometheus_2_gets_no_query_for_a_name_it_cannot_hold() {
        let err = selector("my.dotted.requests", &[], Version::V2).unwrap_err().to_string();
        assert!(
            err.contains("Prometheus 2 cannot hold the metric name `my.dotted.requests`"),
            "{err}"
        );
        assert!(selector("up", &[("error.message", "x")], Version::V2).is_err());
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(
            selector("up", &[("job", "a\"b\\c\nd")], Version::V3).unwrap(),
            r#"up{job="a\"b\\c\nd"}"#
        );
        assert_eq!(quote(r#"{"x"}"#), r#""{\"x\"}""#);
    }
}
