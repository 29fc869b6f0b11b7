//! The first link: the monitor as prometheus-operator reads it. The CRD schema (the API server
//! refuses what breaks it), then the rules the operator applies without a word: a scrape timeout
//! longer than the interval drops the monitor, an endpoint without a port scrapes nothing.

use std::sync::LazyLock;

use meshscrape_common::duration;
use meshscrape_common::operator::MonitorKind;
use meshscrape_common::schema::{crd_schema, validate};
use serde_json::Value;

use super::objects::s;
use crate::report::{Check, Report};

const CRDS: [&str; 2] = [
    include_str!("../../../schemas/monitoring.coreos.com_servicemonitors.yaml"),
    include_str!("../../../schemas/monitoring.coreos.com_podmonitors.yaml"),
];
/// The CRDs above, parsed once per process rather than once per `check`. They are part of the
/// binary; `the_embedded_crds_parse_and_hold_both_kinds` fails the build's tests if they stop
/// parsing, rather than every schema check being skipped.
static CRD_VALUES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    CRDS.iter().flat_map(|t| serde_saphyr::from_multiple::<Value>(t).unwrap_or_default()).collect()
});

/// Checks monitor `m` (identified as `mid`) of `kind` against its CRD and the operator's rules.
pub(super) fn check(m: &Value, mid: &str, kind: MonitorKind, report: &mut Report) {
    let kind_name = kind.as_str();
    let version =
        s(m, "/apiVersion").and_then(|a| a.strip_prefix("monitoring.coreos.com/")).unwrap_or("v1");
    let Some(schema) = crd_schema(&CRD_VALUES, kind_name, version) else {
        // The embedded CRDs hold v1 of both kinds (a test guards that they parse), so this is
        // an apiVersion prometheus-operator 0.93 does not serve.
        report.push(
            Check::fail(
                "schema",
                format!("prometheus-operator 0.93.0 serves no {kind_name} {version}"),
                "use apiVersion: monitoring.coreos.com/v1",
            )
            .on(mid)
            .at("apiVersion"),
        );
        return;
    };
    {
        let errors = validate(schema, m);
        if errors.is_empty() {
            report.push(
                Check::pass(
                    "schema",
                    format!("valid against the {kind_name} CRD (prometheus-operator 0.93.0)"),
                )
                .on(mid),
            );
        }
        for e in errors {
            report.push(
                Check::fail(
                    "schema",
                    e,
                    "fix the field to match the CRD; the API server rejects it otherwise",
                )
                .on(mid),
            );
        }
    }
    let endpoints_field = kind.endpoints_field();
    for (i, e) in super::objects::list(m, &format!("/spec/{endpoints_field}")).iter().enumerate() {
        let field = format!("spec.{endpoints_field}[{i}]");
        check_durations(e, mid, &field, report);
        if e.get("port").is_none() && e.get("targetPort").is_none() {
            report.push(
                Check::fail(
                    "endpoint port",
                    "the endpoint names no port",
                    "set port to the name of the metrics port",
                )
                .on(mid)
                .at(&field),
            );
        }
    }
}

/// `interval` and `scrapeTimeout` of one endpoint: valid, and the timeout no longer.
fn check_durations(e: &Value, mid: &str, field: &str, report: &mut Report) {
    let interval = e.get("interval").and_then(Value::as_str);
    let timeout = e.get("scrapeTimeout").and_then(Value::as_str);
    let parse = |d: Option<&str>| d.map(duration::parse);
    let check = match (parse(interval), parse(timeout)) {
        (Some(Err(msg)), _) => {
            Check::fail("interval", msg, "use a Prometheus duration such as 30s")
                .at(format!("{field}.interval"))
        }
        (_, Some(Err(msg))) => {
            Check::fail("scrapeTimeout", msg, "use a Prometheus duration such as 10s")
                .at(format!("{field}.scrapeTimeout"))
        }
        (Some(Ok(i)), Some(Ok(t))) if t > i => Check::fail(
            "scrapeTimeout",
            format!(
                "{} is longer than the interval {}; prometheus-operator drops this monitor \
                 without a word",
                timeout.unwrap_or(""),
                interval.unwrap_or("")
            ),
            "make scrapeTimeout no longer than interval",
        )
        .at(format!("{field}.scrapeTimeout")),
        _ => Check::pass("scrapeTimeout", "no longer than the interval").at(field),
    };
    report.push(check.on(mid));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_crds_parse_and_hold_both_kinds() {
        for kind in ["ServiceMonitor", "PodMonitor"] {
            assert!(crd_schema(&CRD_VALUES, kind, "v1").is_some(), "{kind}");
        }
    }
}
