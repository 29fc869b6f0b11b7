//! `cluster`: the seed's steps 5 to 7 as one command, against a live cluster, read-only.
//!
//! It reads the Service and its pods, the ServiceMonitors that select the Service and the
//! PodMonitors that select its pods, the Prometheus objects, and the workloads, ConfigMaps,
//! PeerAuthentications and NetworkPolicies of its namespace, and runs the offline `manifests`
//! checks on what the cluster really holds. Then the live links: the EndpointSlices' readiness on
//! the metrics port (for a ServiceMonitor; Prometheus scrapes a PodMonitor's pods directly), and
//! the pods whose metrics container is ready.
//! Last, a port-forward to one ready pod's metrics port runs the `endpoint` checks, and, with
//! `--prometheus NS/SERVICE`, one to Prometheus runs the `prometheus` checks for the monitor's job.
//!
//! Only GET, LIST and the port-forward are used; nothing is ever written.

mod credentials;
mod forward;
mod live;
mod read;

use std::sync::Arc;

use meshscrape_common::operator::{self, MonitorKind};
use serde_json::Value;

pub use forward::{Connecting, Connector, Io, PortForward};

use crate::error::Error;
use crate::manifests::s;
use crate::report::{Check, Report};
use crate::{endpoint, manifests};
use forward::through_forward;
use live::{check_endpoint_slices, check_pods, check_prometheus};
use read::{Reader, label_selector, resource};

/// What to check.
#[derive(Debug, Default)]
pub struct Options {
    pub namespace: String,
    pub service: String,
    /// The Service port to check; by default the port the selecting monitor's endpoint names.
    pub port: Option<String>,
    /// `(namespace, service)` of Prometheus, to ask it about the monitor's job.
    pub prometheus: Option<(String, String)>,
    /// Scrape a pod through a port-forward (on by default in the CLI).
    pub port_forward: bool,
    pub endpoint: endpoint::Options,
    pub expect_metric: Option<String>,
    /// Whose rules apply to the scrape and the query.
    pub prometheus_version: crate::promql::Version,
    /// Istio's root namespace, whose policies apply mesh-wide.
    pub istio_root_namespace: String,
    /// Say what is happening on stderr.
    pub progress: bool,
}

pub(super) fn name_of(v: &Value) -> &str {
    s(v, "/metadata/name").unwrap_or("?")
}

fn say(options: &Options, what: &str) {
    if options.progress {
        eprintln!("{what}…");
    }
}

/// The targets prometheus-operator makes of monitor `m`'s first endpoint: its scrape pool, and
/// the `job` label it gives them (the Service's name, the value of the Service or pod label that
/// `jobLabel` names, or `<ns>/<name>` for a PodMonitor).
fn operator_target(m: &Value, service: &Value, pods: &[Value]) -> live::Target {
    let kind =
        s(m, "/kind").and_then(MonitorKind::from_kind).unwrap_or(MonitorKind::ServiceMonitor);
    let (ns, name) = (s(m, "/metadata/namespace").unwrap_or("default"), name_of(m));
    let job_label = s(m, "/spec/jobLabel").unwrap_or_default();
    let carrier = match kind {
        MonitorKind::ServiceMonitor => Some(service),
        MonitorKind::PodMonitor => pods.first(),
    };
    let job_label_value = carrier
        .and_then(|o| o.pointer("/metadata/labels"))
        .and_then(|l| l.get(job_label))
        .and_then(Value::as_str)
        .filter(|_| !job_label.is_empty());
    live::Target {
        scrape_pool: Some(operator::scrape_pool(kind, ns, name, 0)),
        job: Some(operator::job(kind, ns, name, name_of(service), job_label_value)),
    }
}

/// Runs every check. `Err` when the cluster cannot be read at all (exit 2).
pub async fn check(
    client: &kube::Client,
    options: &Options,
    connector: Arc<dyn Connector>,
) -> Result<Report, Error> {
    let mut report = Report::default();
    let reader = Reader { client };
    let (ns, name) = (options.namespace.as_str(), options.service.as_str());
    let sid = format!("Service/{ns}/{name}");

    say(options, &format!("reading {sid}"));
    let Some(service) = reader.get(&resource("", "v1", "Service", "services"), ns, name).await?
    else {
        report.push(
            Check::fail(
                "Service",
                format!("there is no {sid}"),
                format!("check --namespace and --service (kubectl get services -n {ns})"),
            )
            .on(&sid),
        );
        return Ok(report);
    };
    report.push(Check::pass("Service", "exists").on(&sid));

    // The pods behind the Service: PodMonitors select them, and their containers are checked.
    let selector =
        service.pointer("/spec/selector").and_then(Value::as_object).cloned().unwrap_or_default();
    // `None`: no selector, or pods may not be listed (either is said in the report).
    let pods = if selector.is_empty() {
        report.push(
            Check::warn(
                "pods",
                "the Service has no selector, so its pods cannot be found",
                "check the EndpointSlices by hand",
            )
            .on(&sid),
        );
        None
    } else {
        reader
            .list(
                &resource("", "v1", "Pod", "pods"),
                Some(ns),
                Some(&label_selector(&selector)),
                &mut report,
            )
            .await?
    };

    // The monitors that select the Service (ServiceMonitor) or its pods (PodMonitor), and the
    // objects the offline chain needs, as the cluster holds them.
    say(options, "reading monitors, Prometheus objects and the namespace's workloads");
    let service_monitors = reader
        .list(
            &resource("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"),
            None,
            None,
            &mut report,
        )
        .await?;
    let pod_monitors = reader
        .list(
            &resource("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors"),
            None,
            None,
            &mut report,
        )
        .await?;
    let monitors_hidden = service_monitors.is_none() || pod_monitors.is_none();
    let monitors: Vec<Value> = service_monitors.into_iter().chain(pod_monitors).flatten().collect();
    let pod_list = pods.as_deref().unwrap_or_default();
    let selecting: Vec<Value> = monitors
        .iter()
        .filter(|m| {
            manifests::selects(m, &service) || pod_list.iter().any(|p| manifests::selects(m, p))
        })
        .cloned()
        .collect();
    if selecting.is_empty() && monitors_hidden {
        report.push(
            Check::warn(
                "monitor",
                "cannot tell which monitor selects the Service: monitors may not be listed",
                "grant list on servicemonitors and podmonitors",
            )
            .on(&sid),
        );
    } else if selecting.is_empty() {
        let why = if monitors.is_empty() {
            "there are no monitors at all (is prometheus-operator installed, and may you list \
                them?)"
                .to_string()
        } else {
            format!("none of the {} ServiceMonitors and PodMonitors does", monitors.len())
        };
        report.push(
            Check::fail(
                "monitor",
                format!("no monitor selects {sid} or its pods: {why}"),
                "apply the monitor meshscrape-gen renders, or fix its spec.selector and \
                    spec.namespaceSelector",
            )
            .on(&sid),
        );
        if let Some((pns, psvc)) = &options.prometheus {
            report.push(
                Check::warn(
                    "Prometheus",
                    "no monitor selects the Service, so there is no job to ask Prometheus about",
                    "fix the monitor check above, then run again",
                )
                .on(format!("Service/{pns}/{psvc}")),
            );
        }
    } else {
        let mut docs = vec![service.clone()];
        docs.extend(selecting.iter().cloned());
        docs.extend(
            reader
                .list(
                    &resource("monitoring.coreos.com", "v1", "Prometheus", "prometheuses"),
                    None,
                    None,
                    &mut report,
                )
                .await?
                .unwrap_or_default(),
        );
        docs.extend(
            reader
                .list(&resource("", "v1", "Namespace", "namespaces"), None, None, &mut report)
                .await?
                .unwrap_or_default(),
        );
        for (group, kind, plural) in [
            ("apps", "Deployment", "deployments"),
            ("apps", "StatefulSet", "statefulsets"),
            ("apps", "DaemonSet", "daemonsets"),
        ] {
            docs.extend(
                reader
                    .list(&resource(group, "v1", kind, plural), Some(ns), None, &mut report)
                    .await?
                    .unwrap_or_default(),
            );
        }
        docs.extend(
            reader
                .list(
                    &resource("", "v1", "ConfigMap", "configmaps"),
                    Some(ns),
                    Some("app.kubernetes.io/managed-by=meshscrape-gen"),
                    &mut report,
                )
                .await?
                .unwrap_or_default(),
        );
        // Istio's policies: the app's namespace's, and the root namespace's (mesh-wide).
        let root = options.istio_root_namespace.as_str();
        for (kind, plural) in [
            ("PeerAuthentication", "peerauthentications"),
            ("AuthorizationPolicy", "authorizationpolicies"),
        ] {
            let ar = resource("security.istio.io", "v1", kind, plural);
            for scope in [ns, root]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<std::collections::BTreeSet<_>>()
            {
                docs.extend(
                    reader.list(&ar, Some(scope), None, &mut report).await?.unwrap_or_default(),
                );
            }
        }
        docs.extend(
            reader
                .list(
                    &resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
                    Some(ns),
                    None,
                    &mut report,
                )
                .await?
                .unwrap_or_default(),
        );
        report.checks.extend(
            manifests::check(
                &manifests::Objects::from_values(docs),
                &manifests::Options {
                    istio_root_namespace: options.istio_root_namespace.clone(),
                    ..Default::default()
                },
            )
            .checks,
        );
    }

    // The port: named on the command line (a Service port), else by the first monitor's endpoint:
    // a Service port for a ServiceMonitor, a container port for a PodMonitor.
    let monitor = selecting.first().cloned().unwrap_or(Value::Null);
    let pod_monitor = s(&monitor, "/kind") == Some("PodMonitor");
    let monitor_endpoint = monitor
        .pointer(if pod_monitor { "/spec/podMetricsEndpoints/0" } else { "/spec/endpoints/0" })
        .cloned()
        .unwrap_or(Value::Null);
    let Some(port_name) =
        options.port.clone().or_else(|| s(&monitor_endpoint, "/port").map(str::to_string))
    else {
        report.push(
            Check::fail(
                "port",
                "no port to check: no monitor names one",
                "pass --port NAME (the Service's metrics port)",
            )
            .on(&sid),
        );
        return Ok(report);
    };
    let container_port = if pod_monitor && options.port.is_none() {
        Value::String(port_name.clone())
    } else {
        let Some(service_port) = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .and_then(|ps| ps.iter().find(|p| s(p, "/name") == Some(port_name.as_str())))
        else {
            report.push(
                Check::fail(
                    "port",
                    format!("{sid} has no port named {port_name}"),
                    "name the Service's metrics port as the monitor's endpoint does",
                )
                .on(&sid)
                .at("spec.ports"),
            );
            return Ok(report);
        };
        say(options, "reading EndpointSlices");
        check_endpoint_slices(&reader, options, &sid, &port_name, &mut report).await?;
        service_port
            .get("targetPort")
            .or_else(|| service_port.get("port"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let ready_pod =
        pods.as_deref().and_then(|pods| check_pods(pods, &container_port, &sid, &mut report));

    let path = s(&monitor_endpoint, "/path").unwrap_or("/metrics").to_string();
    if options.port_forward {
        match &ready_pod {
            Some((pod, port)) => {
                say(options, &format!("port-forwarding pod/{ns}/{pod}:{port} and scraping {path}"));
                let target = format!("pod/{ns}/{pod}:{port}");
                // The scrape as the monitor's Prometheus makes it, with the monitor's fallback.
                let protocols = monitor.pointer("/spec/scrapeProtocols").and_then(Value::as_array);
                let endpoint_options = endpoint::Options {
                    fallback_protocol: s(&monitor, "/spec/fallbackScrapeProtocol")
                        .map(str::to_string),
                    // Protobuf first when the monitor says so (or scrapes native histograms).
                    protobuf: protocols.and_then(|p| p.first()).and_then(Value::as_str)
                        == Some("PrometheusProto")
                        || monitor.pointer("/spec/scrapeNativeHistograms")
                            == Some(&Value::Bool(true)),
                    ..options.endpoint.clone()
                };
                // With the monitor's credentials, if it gives Prometheus any (the sidecar's
                // access rules).
                let monitor_ns = s(&monitor, "/metadata/namespace").unwrap_or(ns).to_string();
                let monitor_id = format!(
                    "{}/{monitor_ns}/{}",
                    s(&monitor, "/kind").unwrap_or("?"),
                    name_of(&monitor)
                );
                let pod_ip = pods
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .find(|p| name_of(p) == pod)
                    .and_then(|p| s(p, "/status/podIP"))
                    .map(str::to_string);
                let credentials = credentials::read(
                    &reader,
                    &monitor_ns,
                    &monitor_id,
                    &monitor_endpoint,
                    pod_ip.as_deref(),
                    &mut report,
                )
                .await?;
                let endpoint_options = endpoint::Options {
                    bearer_token: credentials.token.or(endpoint_options.bearer_token.clone()),
                    tls: credentials.tls.or(endpoint_options.tls.clone()),
                    ..endpoint_options
                };
                let scheme = if credentials.https { "https" } else { "http" };
                let found =
                    through_forward(connector.clone(), ns, pod, *port, &target, scheme, |base| {
                        let url = format!("{base}{path}");
                        async move { endpoint::check(&url, &endpoint_options).await }
                    })
                    .await;
                report.checks.extend(found.checks);
            }
            None if pods.is_none() => {
                report.push(
                    Check::warn(
                        "scrape",
                        "no pod to scrape: the pods cannot be found",
                        "see the warnings above",
                    )
                    .on(&sid),
                );
            }
            None => report.push(
                Check::fail(
                    "scrape",
                    "no pod is ready to scrape",
                    "fix the pod and container checks above first",
                )
                .on(&sid),
            ),
        }
    }

    if let Some((pns, psvc)) = &options.prometheus {
        for m in &selecting {
            let target = operator_target(m, &service, pods.as_deref().unwrap_or_default());
            say(
                options,
                &format!(
                    "port-forwarding to Prometheus {pns}/{psvc} and asking about scrape pool {}",
                    target.scrape_pool.as_deref().unwrap_or("?")
                ),
            );
            check_prometheus(&reader, connector.clone(), options, (pns, psvc), target, &mut report)
                .await?;
        }
    }
    Ok(report)
}
