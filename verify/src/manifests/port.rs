//! The port links: from a monitor's endpoint to the container port that serves it. For a
//! ServiceMonitor the endpoint names a Service port, whose `targetPort` (a number or a container
//! port name) must be declared by a container of a workload the Service selects; for a PodMonitor
//! the endpoint names the container port directly.

use std::fmt;

use serde_json::Value;

use super::objects::{Objects, WORKLOADS, id, labels, list, ns_of, serving_containers};
use crate::report::{Check, Report};

/// A monitor endpoint's target (a Service or a workload) and where the scrape lands in it.
pub(super) struct Endpoint<'a> {
    /// `spec.endpoints[i]` or `spec.podMetricsEndpoints[i]`.
    pub(super) field: &'a str,
    pub(super) endpoint: &'a Value,
    /// The Service (ServiceMonitor) or workload (PodMonitor) the monitor selected.
    pub(super) target: &'a Value,
    pub(super) pod_monitor: bool,
}

/// A workload container declaring the scraped port.
pub(super) struct Landing<'a> {
    pub(super) workload: &'a Value,
    pub(super) container: &'a Value,
    pub(super) port: i64,
    /// The Service port in front of it (ServiceMonitor), a number people mistake for it.
    pub(super) service_port: Option<i64>,
}

/// Resolves `e` to the containers that serve it, reporting each link on the way.
pub(super) fn resolve<'a>(
    objects: &'a Objects,
    e: &Endpoint<'a>,
    report: &mut Report,
) -> Vec<Landing<'a>> {
    let port_name = e.endpoint.get("port").and_then(Value::as_str);
    let (workloads, want, service_port): (Vec<&'a Value>, PortRef, Option<i64>) = if e.pod_monitor {
        (vec![e.target], PortRef::Name(port_name.unwrap_or_default().to_string()), None)
    } else {
        let Some((want, number)) = service_port(e, port_name, report) else { return Vec::new() };
        let Some(w) = selected_workloads(objects, e.target, report) else { return Vec::new() };
        (w, want, Some(number))
    };
    let mut found = Vec::new();
    for w in workloads {
        let wid = id(w);
        let pod_spec = w.pointer("/spec/template/spec").unwrap_or(&Value::Null);
        let declared = serving_containers(pod_spec).into_iter().find_map(|(c, native)| {
            let p = list(c, "/ports").iter().find(|p| want.matches(p))?;
            Some((c, p["containerPort"].as_i64().unwrap_or(0), native))
        });
        let Some((container, port, native)) = declared else {
            report.push(
                Check::fail(
                    "container port",
                    format!(
                        "no container declares port {want}; Prometheus matches endpoints to \
                         container ports, and Istio 1.3+ captures undeclared ports anyway"
                    ),
                    format!("declare containerPort {want} on the sidecar container"),
                )
                .on(&wid)
                .at("spec.template.spec.containers[].ports"),
            );
            continue;
        };
        let cname = container["name"].as_str().unwrap_or("?");
        report.push(
            Check::pass("container port", format!("container {cname} declares port {port}"))
                .on(&wid),
        );
        if native {
            report.push(
                Check::info(
                    "container port",
                    format!(
                        "port {port} is on {cname}, a native sidecar (an init container): \
                         Prometheus attaches the container's metadata to such a target only from \
                         3.0; 2.x scrapes it without container labels"
                    ),
                    "nothing to do on Prometheus 3; on 2.x, relabelings that use container \
                     labels will not see it",
                )
                .on(&wid)
                .at("spec.template.spec.initContainers"),
            );
        }
        found.push(Landing { workload: w, container, port, service_port });
    }
    found
}

/// The container port the Service port the endpoint names targets, and that port's number.
fn service_port(
    e: &Endpoint<'_>,
    port_name: Option<&str>,
    report: &mut Report,
) -> Option<(PortRef, i64)> {
    let tid = id(e.target);
    let ports = list(e.target, "/spec/ports");
    let Some(sp) = ports.iter().find(|p| p.get("name").and_then(Value::as_str) == port_name) else {
        let names: Vec<&str> =
            ports.iter().filter_map(|p| p.get("name").and_then(Value::as_str)).collect();
        report.push(
            Check::fail(
                "Service port",
                format!(
                    "no port named {} (ports: {})",
                    port_name.unwrap_or("?"),
                    if names.is_empty() { "unnamed".into() } else { names.join(", ") }
                ),
                format!(
                    "name the Service's metrics port {} or change {}.port",
                    port_name.unwrap_or("?"),
                    e.field
                ),
            )
            .on(&tid)
            .at("spec.ports"),
        );
        return None;
    };
    report.push(
        Check::pass(
            "Service port",
            format!("has port {} ({})", port_name.unwrap_or(""), sp["port"]),
        )
        .on(&tid),
    );
    let number = sp["port"].as_i64().unwrap_or(0);
    let target = match sp.get("targetPort") {
        Some(Value::Number(n)) => PortRef::Number(n.as_i64().unwrap_or(0)),
        Some(Value::String(name)) => PortRef::Name(name.clone()),
        _ => PortRef::Number(number),
    };
    Some((target, number))
}

/// The workloads in the Service's namespace whose pod template its selector matches; `None`
/// (with a warning) when the input holds none.
fn selected_workloads<'a>(
    objects: &'a Objects,
    service: &Value,
    report: &mut Report,
) -> Option<Vec<&'a Value>> {
    let sel = labels(service, "/spec/selector");
    let ns = ns_of(service);
    let w: Vec<&Value> = objects
        .in_namespace(&WORKLOADS, ns)
        .filter(|w| {
            let pod = labels(w, "/spec/template/metadata/labels");
            !sel.is_empty() && sel.iter().all(|(k, v)| pod.get(k) == Some(v))
        })
        .collect();
    if w.is_empty() {
        let tid = id(service);
        let given: Vec<String> = objects.in_namespace(&WORKLOADS, ns).map(id).collect();
        // Workloads were given and none is this Service's: its endpoints will be empty. With
        // none given at all, the links after the Service cannot be checked, which is a warning.
        let check = if given.is_empty() {
            Check::warn(
                "workload",
                format!(
                    "no Deployment, StatefulSet or DaemonSet in the input matches the selector of \
                     {tid}"
                ),
                "include the workload's YAML to check the container port, sidecar and Istio links",
            )
        } else {
            Check::fail(
                "workload",
                format!(
                    "the selector of {tid} matches none of the workloads in namespace {ns} ({}), \
                     so the Service has no endpoints and Prometheus no target",
                    given.join(", ")
                ),
                "make spec.selector match the pod template's labels",
            )
        };
        report.push(check.on(&tid).at("spec.selector"));
        return None;
    }
    Some(w)
}

/// A container port, as a Service's `targetPort` or a PodMonitor's `port` names it.
enum PortRef {
    Number(i64),
    Name(String),
}

impl PortRef {
    fn matches(&self, p: &Value) -> bool {
        match self {
            PortRef::Number(n) => p.get("containerPort").and_then(Value::as_i64) == Some(*n),
            PortRef::Name(name) => p.get("name").and_then(Value::as_str) == Some(name),
        }
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => write!(f, "named {n}"),
        }
    }
}
