//! `manifests`: resolves, offline, every link between a ServiceMonitor or PodMonitor and the
//! process that answers the scrape. One module per link, in the order a scrape meets them:
//! `rules` (the CRD and the operator's silent rules), `selection` (a Prometheus object selects
//! the monitor), the monitor selecting Services or workloads (here), `port` (Service port to
//! container port), `route` (the sidecar's ConfigMap), `istio` (the mTLS exclusion) and
//! `network_policy`. Loading is in `load`, label selectors in `selectors`.

mod authz;
mod istio;
mod load;
mod network_policy;
mod objects;
mod port;
mod route;
mod rules;
mod selection;
mod selectors;

use meshscrape_common::operator::MonitorKind;
use serde_json::Value;

pub use load::load;
pub use objects::Objects;
pub(crate) use objects::{s, serving_containers};
pub use selectors::{selector_matches, selects};

use crate::report::{Check, Report};
use objects::{WORKLOADS, id, labels, list, ns_of};
use selectors::{admits, monitor_selector, namespace_scope, show};

/// Options for `manifests`.
#[derive(Debug)]
pub struct Options {
    /// `K=V` labels a Prometheus object's monitor selector requires, when no Prometheus is given.
    pub prometheus_selector: Vec<(String, String)>,
    /// Istio's root namespace (`meshConfig.rootNamespace`), whose policies apply mesh-wide.
    pub istio_root_namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Options { prometheus_selector: Vec::new(), istio_root_namespace: "istio-system".into() }
    }
}

/// One monitor endpoint landed on a container port: what the links after the port read.
struct Scrape<'a> {
    objects: &'a Objects,
    monitor_id: &'a str,
    /// `spec.endpoints[i]` or `spec.podMetricsEndpoints[i]`.
    field: &'a str,
    endpoint: &'a Value,
    workload: &'a Value,
    workload_id: String,
    container: &'a Value,
    port: i64,
    /// The Service port in front of it, for a ServiceMonitor.
    service_port: Option<i64>,
    /// Where Prometheus runs: the selecting Prometheus object's namespace, else the monitor's.
    prometheus_namespace: &'a str,
    /// Istio's root namespace, whose policies apply mesh-wide.
    istio_root_namespace: &'a str,
}

/// Runs every check over the input.
pub fn check(objects: &Objects, options: &Options) -> Report {
    let mut report = Report::default();
    let monitors: Vec<&Value> = objects.of_kind(&["ServiceMonitor", "PodMonitor"]).collect();
    if monitors.is_empty() {
        report.push(Check::fail(
            "monitors",
            "no ServiceMonitor or PodMonitor in the input",
            "include the monitor's YAML (meshscrape-gen renders one)",
        ));
    }
    for m in monitors {
        check_monitor(objects, options, m, &mut report);
    }
    report
}

fn check_monitor(objects: &Objects, options: &Options, m: &Value, report: &mut Report) {
    let mid = id(m);
    let Some(kind) = objects::s(m, "/kind").and_then(MonitorKind::from_kind) else { return };
    let pod_monitor = kind == MonitorKind::PodMonitor;
    rules::check(m, &mid, kind, report);

    let monitor_ns = ns_of(m).to_string();
    let monitor_labels = labels(m, "/metadata/labels");
    let who =
        selection::Monitor { id: &mid, kind, labels: &monitor_labels, namespace: &monitor_ns };
    let prom_ns = selection::check(objects, options, &who, report);

    // The objects that carry the port: Services (ServiceMonitor) or workloads (PodMonitor).
    let selector = monitor_selector(m);
    let candidates: Vec<&Value> = objects
        .of_kind(if pod_monitor { &WORKLOADS[..] } else { &["Service"][..] })
        .filter(|o| {
            let pointer =
                if pod_monitor { "/spec/template/metadata/labels" } else { "/metadata/labels" };
            selector_matches(&selector, &labels(o, pointer))
        })
        .collect();
    let (scoped, elsewhere): (Vec<&Value>, Vec<&Value>) =
        candidates.into_iter().partition(|o| admits(m, ns_of(o)));
    let what = if pod_monitor { "workload" } else { "Service" };
    if scoped.is_empty() {
        let hint = match elsewhere.first() {
            Some(o) => format!(
                "{} matches the labels but is in namespace {}, which spec.namespaceSelector does \
                 not admit; add it to matchNames",
                id(o),
                ns_of(o)
            ),
            None => format!("label the {what} {} or change spec.selector", show(&selector)),
        };
        let (any, match_names) = namespace_scope(m);
        let scope = if any {
            "any namespace".to_string()
        } else if match_names.is_empty() {
            format!("namespace {monitor_ns} (no namespaceSelector: the monitor's own)")
        } else {
            format!("namespaces {}", match_names.join(", "))
        };
        report.push(
            Check::fail(
                &format!("{what} selection"),
                format!("no {what} in {scope} carries {}", show(&selector)),
                hint,
            )
            .on(&mid)
            .at("spec.selector"),
        );
        return;
    }
    let endpoints_field = kind.endpoints_field();
    let endpoints = list(m, &format!("/spec/{endpoints_field}"));
    let prometheus_namespace = prom_ns.as_deref().unwrap_or(&monitor_ns);
    for target in scoped {
        report.push(
            Check::pass(&format!("{what} selection"), format!("selects {}", id(target))).on(&mid),
        );
        for (i, endpoint) in endpoints.iter().enumerate() {
            let field = format!("spec.{endpoints_field}[{i}]");
            let e = port::Endpoint { field: &field, endpoint, target, pod_monitor };
            for landing in port::resolve(objects, &e, report) {
                let x = Scrape {
                    objects,
                    monitor_id: &mid,
                    field: &field,
                    endpoint,
                    workload: landing.workload,
                    workload_id: id(landing.workload),
                    container: landing.container,
                    port: landing.port,
                    service_port: landing.service_port,
                    prometheus_namespace,
                    istio_root_namespace: &options.istio_root_namespace,
                };
                route::check(&x, report);
                istio::check(&x, report);
                authz::check(&x, report);
                network_policy::check(&x, report);
            }
        }
    }
}

#[cfg(test)]
mod tests;
