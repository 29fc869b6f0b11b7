//! The second link: does a Prometheus object select the monitor? Its `serviceMonitorSelector` (or
//! `podMonitorSelector`) must match the monitor's labels and its namespace selector admit the
//! monitor's namespace (absent: Prometheus's own namespace only). Clusters often run more than
//! one Prometheus: the link holds when any of them selects the monitor, and the others are said
//! as notes, not failures. Without a Prometheus object in the input, `--prometheus-selector`
//! stands in for its selector.

use meshscrape_common::operator::MonitorKind;
use serde_json::Value;

use super::Options;
use super::objects::{Labels, Objects, id, ns_of};
use super::selectors::{selector_matches, show};
use crate::report::{Check, Report, Status};

/// The monitor as the selection sees it.
pub(super) struct Monitor<'a> {
    pub(super) id: &'a str,
    pub(super) kind: MonitorKind,
    pub(super) labels: &'a Labels,
    pub(super) namespace: &'a str,
}

/// Reports which Prometheus objects select the monitor; returns the namespace of the last one
/// that does (where NetworkPolicies must admit scrapes from), if any.
pub(super) fn check(
    objects: &Objects,
    options: &Options,
    m: &Monitor<'_>,
    report: &mut Report,
) -> Option<String> {
    let (sel_field, ns_field) = match m.kind {
        MonitorKind::PodMonitor => ("podMonitorSelector", "podMonitorNamespaceSelector"),
        MonitorKind::ServiceMonitor => {
            ("serviceMonitorSelector", "serviceMonitorNamespaceSelector")
        }
    };
    let proms: Vec<&Value> = objects.of_kind(&["Prometheus"]).collect();
    if proms.is_empty() {
        by_flag(options, m, report);
        return None;
    }
    let mut selected_by = None;
    let mut verdicts = Vec::new();
    for p in &proms {
        let pid = id(p);
        let Some(sel) = p.pointer(&format!("/spec/{sel_field}")) else {
            verdicts.push(
                Check::fail(
                    "Prometheus selection",
                    format!("{pid} has no spec.{sel_field}, so it selects no {}", m.kind.as_str()),
                    format!("set spec.{sel_field} on {pid}"),
                )
                .on(m.id),
            );
            continue;
        };
        if !selector_matches(sel, m.labels) {
            verdicts.push(
                Check::fail(
                    "Prometheus selection",
                    format!("{pid} selects {} but the monitor's labels do not match", show(sel)),
                    format!("add {} to metadata.labels", show(sel)),
                )
                .on(m.id)
                .at("metadata.labels"),
            );
            continue;
        }
        let ns_ok = match p.pointer(&format!("/spec/{ns_field}")) {
            // Absent: only the Prometheus object's own namespace.
            None => ns_of(p) == m.namespace,
            Some(nsel) => selector_matches(nsel, &objects.ns_labels_or_name(m.namespace)),
        };
        if ns_ok {
            verdicts
                .push(Check::pass("Prometheus selection", format!("selected by {pid}")).on(m.id));
            selected_by = Some(ns_of(p).to_string());
        } else {
            verdicts.push(
                Check::fail(
                    "Prometheus selection",
                    format!("{pid} does not admit namespace {} (spec.{ns_field})", m.namespace),
                    format!("move the monitor to {} or widen spec.{ns_field}", ns_of(p)),
                )
                .on(m.id)
                .at("metadata.namespace"),
            );
        }
    }
    // One that selects it is enough; the others are context.
    let any = verdicts.iter().any(|c: &Check| c.status == Status::Pass);
    for mut check in verdicts {
        if any && check.status == Status::Fail {
            check.status = Status::Info;
            check.fix =
                check.fix.map(|f| format!("only if this Prometheus should scrape it too: {f}"));
        }
        report.push(check);
    }
    selected_by
}

/// No Prometheus object: the labels `--prometheus-selector` requires, or a warning.
fn by_flag(options: &Options, m: &Monitor<'_>, report: &mut Report) {
    if options.prometheus_selector.is_empty() {
        report.push(
            Check::warn(
                "Prometheus selection",
                "no Prometheus object in the input and no --prometheus-selector; cannot tell \
                 whether Prometheus selects this monitor",
                "pass the Prometheus object's YAML or --prometheus-selector K=V",
            )
            .on(m.id),
        );
        return;
    }
    let missing: Vec<String> = options
        .prometheus_selector
        .iter()
        .filter(|(k, v)| m.labels.get(k) != Some(v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if missing.is_empty() {
        report.push(
            Check::pass(
                "Prometheus selection",
                "carries the labels the Prometheus selector requires",
            )
            .on(m.id),
        );
    } else {
        report.push(
            Check::fail(
                "Prometheus selection",
                format!("lacks label(s) {}", missing.join(", ")),
                format!("add {} to metadata.labels", missing.join(", ")),
            )
            .on(m.id)
            .at("metadata.labels"),
        );
    }
}
