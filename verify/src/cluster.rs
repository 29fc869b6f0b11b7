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

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::TypeMeta;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::manifests::s;
use crate::report::{Check, Report, Status};
use crate::{endpoint, manifests, prometheus};

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
    /// Say what is happening on stderr.
    pub progress: bool,
}

/// A byte stream to a pod's port.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A stream being opened; `Err` says why it could not be.
pub type Connecting<'a> = Pin<Box<dyn Future<Output = Result<Box<dyn Io>, String>> + Send + 'a>>;

/// Opens a stream to `port` of `pod` in `namespace`: the API server's port-forward in real use,
/// a local socket in tests.
pub trait Connector: Send + Sync {
    fn connect<'a>(&'a self, namespace: &'a str, pod: &'a str, port: u16) -> Connecting<'a>;
}

/// `kubectl port-forward`, through the kube client.
pub struct PortForward(pub kube::Client);

impl Connector for PortForward {
    fn connect<'a>(&'a self, namespace: &'a str, pod: &'a str, port: u16) -> Connecting<'a> {
        Box::pin(async move {
            let pods: Api<Pod> = Api::namespaced(self.0.clone(), namespace);
            let mut forwarder = pods.portforward(pod, &[port]).await.map_err(|e| {
                format!("port-forward to pod/{namespace}/{pod}:{port}: {}", api_error(&e))
            })?;
            let stream = forwarder.take_stream(port).ok_or("the port-forward opened no stream")?;
            // The forwarder ends when the stream is dropped.
            tokio::spawn(async move {
                let _ = forwarder.join().await;
            });
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    let api_version =
        if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version,
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => meshscrape_common::error::chain(other),
    }
}

/// Reads objects as `serde_json` values with apiVersion and kind set (list items lack them).
struct Reader<'a> {
    client: &'a kube::Client,
}

impl Reader<'_> {
    fn api(&self, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    fn value(ar: &ApiResource, mut o: DynamicObject) -> Value {
        o.types = Some(TypeMeta { api_version: ar.api_version.clone(), kind: ar.kind.clone() });
        serde_json::to_value(o).unwrap_or(Value::Null)
    }

    /// `Ok(None)` when it does not exist; `Err` only when the API server cannot be asked at all.
    async fn get(
        &self,
        ar: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, String> {
        match self.api(ar, Some(namespace)).get(name).await {
            Ok(o) => Ok(Some(Self::value(ar, o))),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(None),
            Err(e) => Err(format!("reading {}/{namespace}/{name}: {}", ar.kind, api_error(&e))),
        }
    }

    /// A list; kinds the cluster does not serve are empty. `None` when it may not be read, with a
    /// warning in `report`, so that checks needing it are skipped rather than failed.
    async fn list(
        &self,
        ar: &ApiResource,
        namespace: Option<&str>,
        labels: Option<&str>,
        report: &mut Report,
    ) -> Result<Option<Vec<Value>>, String> {
        let mut lp = ListParams::default();
        if let Some(l) = labels {
            lp = lp.labels(l);
        }
        let scope =
            namespace.map_or("in all namespaces".to_string(), |ns| format!("in namespace {ns}"));
        match self.api(ar, namespace).list(&lp).await {
            Ok(list) => Ok(Some(list.items.into_iter().map(|o| Self::value(ar, o)).collect())),
            Err(kube::Error::Api(s)) if s.is_forbidden() => {
                report.push(Check::warn(
                    "access",
                    format!("may not list {} {scope}: {}", ar.plural, s.message),
                    format!("grant get and list on {} (kubectl auth can-i list {}); the checks that need them are skipped", ar.plural, ar.plural),
                ));
                Ok(None)
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Some(Vec::new())),
            Err(e) => Err(format!("listing {} {scope}: {}", ar.plural, api_error(&e))),
        }
    }
}

fn name_of(v: &Value) -> &str {
    s(v, "/metadata/name").unwrap_or("?")
}

/// `k=v,k2=v2` from a Service's spec.selector.
fn label_selector(selector: &Map<String, Value>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

fn say(options: &Options, what: &str) {
    if options.progress {
        eprintln!("{what}…");
    }
}

/// Runs every check. `Err` when the cluster cannot be read at all (exit 2).
pub async fn check(
    client: &kube::Client,
    options: &Options,
    connector: Arc<dyn Connector>,
) -> Result<Report, String> {
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
            "there are no monitors at all (is prometheus-operator installed, and may you list them?)".to_string()
        } else {
            format!("none of the {} ServiceMonitors and PodMonitors does", monitors.len())
        };
        report.push(
            Check::fail(
                "monitor",
                format!("no monitor selects {sid} or its pods: {why}"),
                "apply the monitor meshscrape-gen renders, or fix its spec.selector and spec.namespaceSelector",
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
        docs.extend(
            reader
                .list(
                    &resource(
                        "security.istio.io",
                        "v1",
                        "PeerAuthentication",
                        "peerauthentications",
                    ),
                    Some(ns),
                    None,
                    &mut report,
                )
                .await?
                .unwrap_or_default(),
        );
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
                &manifests::Options::default(),
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
                let found = through_forward(connector.clone(), ns, pod, *port, &target, |base| {
                    let url = format!("{base}{path}");
                    async move { endpoint::check(&url, &options.endpoint).await }
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
            let kind =
                if s(m, "/kind") == Some("PodMonitor") { "podMonitor" } else { "serviceMonitor" };
            let job = format!(
                "{kind}/{}/{}/0",
                s(m, "/metadata/namespace").unwrap_or("default"),
                name_of(m)
            );
            say(
                options,
                &format!("port-forwarding to Prometheus {pns}/{psvc} and asking about job {job}"),
            );
            check_prometheus(&reader, connector.clone(), options, pns, psvc, &job, &mut report)
                .await?;
        }
    }
    Ok(report)
}

/// EndpointSlices of the Service: how many endpoints are ready on the metrics port.
async fn check_endpoint_slices(
    reader: &Reader<'_>,
    options: &Options,
    sid: &str,
    port_name: &str,
    report: &mut Report,
) -> Result<(), String> {
    let slices = reader
        .list(
            &resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
            Some(&options.namespace),
            Some(&format!("kubernetes.io/service-name={}", options.service)),
            report,
        )
        .await?;
    // May not be listed: said in the report already.
    let Some(slices) = slices else { return Ok(()) };
    if slices.is_empty() {
        report.push(
            Check::fail(
                "EndpointSlices",
                "the Service has no EndpointSlices",
                "its spec.selector matches no pod, or no pod is scheduled (kubectl get pods -l …)",
            )
            .on(sid),
        );
        return Ok(());
    }
    let (mut ready, mut total, mut number) = (0, 0, None);
    for slice in &slices {
        let ports = slice.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let Some(p) = ports.iter().find(|p| s(p, "/name") == Some(port_name)) else { continue };
        number = p.get("port").and_then(Value::as_i64);
        for e in slice.get("endpoints").and_then(Value::as_array).into_iter().flatten() {
            total += 1;
            // An absent `ready` is "unknown", which consumers are told to read as ready.
            if e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false) {
                ready += 1;
            }
        }
    }
    let Some(number) = number else {
        report.push(
            Check::fail(
                "EndpointSlices",
                format!("no EndpointSlice carries the port {port_name}"),
                "the Service's targetPort matches no container port of its pods",
            )
            .on(sid),
        );
        return Ok(());
    };
    let what = format!("{ready} of {total} endpoints ready on port {port_name} ({number})");
    report.push(
        match (ready, total) {
            (0, _) => Check::fail(
                "EndpointSlices",
                what,
                "no pod is ready: see the pod checks; Prometheus scrapes only ready endpoints",
            ),
            (r, t) if r < t => {
                Check::warn("EndpointSlices", what, "some pods are not ready: see the pod checks")
            }
            _ => Check::pass("EndpointSlices", what),
        }
        .on(sid),
    );
    Ok(())
}

/// The pods behind the Service: is the container that serves the metrics port (`target`: a
/// number or a container port name) ready? Returns a ready pod and the container port to scrape.
fn check_pods(
    pods: &[Value],
    target: &Value,
    sid: &str,
    report: &mut Report,
) -> Option<(String, u16)> {
    if pods.is_empty() {
        report.push(
            Check::fail(
                "pods",
                "no pod matches the Service's selector",
                "check the Deployment's pod labels against the Service's spec.selector",
            )
            .on(sid),
        );
        return None;
    }
    let mut chosen = None;
    for pod in pods {
        let pid = format!("Pod/{}/{}", s(pod, "/metadata/namespace").unwrap_or(""), name_of(pod));
        let containers =
            pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
        let found = containers.iter().find_map(|c| {
            let p = c.get("ports")?.as_array()?.iter().find(|p| match target {
                Value::Number(n) => p.get("containerPort").and_then(Value::as_i64) == n.as_i64(),
                Value::String(name) => s(p, "/name") == Some(name),
                _ => false,
            })?;
            Some((
                s(c, "/name").unwrap_or("?").to_string(),
                p.get("containerPort").and_then(Value::as_u64).unwrap_or(0),
            ))
        });
        let Some((cname, port)) = found else {
            report.push(
                Check::fail(
                    "metrics container",
                    format!("no container declares port {target}"),
                    "declare the sidecar's containerPort and name it as the Service's targetPort or the PodMonitor's port",
                )
                .on(&pid),
            );
            continue;
        };
        let statuses = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let status = statuses.iter().find(|st| s(st, "/name") == Some(cname.as_str()));
        let ready = status.and_then(|st| st.get("ready")).and_then(Value::as_bool) == Some(true);
        let restarts =
            status.and_then(|st| st.get("restartCount")).and_then(Value::as_i64).unwrap_or(0);
        let last = status.and_then(|st| s(st, "/lastState/terminated/reason"));
        let waiting = status.and_then(|st| s(st, "/state/waiting/reason"));
        if ready {
            let mut check =
                Check::pass("metrics container", format!("{cname} is ready on port {port}"));
            if restarts > 0 {
                check = Check::warn(
                    "metrics container",
                    format!(
                        "{cname} is ready on port {port} but restarted {restarts} time(s){}",
                        last.map(|r| format!(", last: {r}")).unwrap_or_default()
                    ),
                    restart_fix(last),
                );
            }
            report.push(check.on(&pid));
            if chosen.is_none() {
                chosen = Some((name_of(pod).to_string(), u16::try_from(port).unwrap_or(0)));
            }
        } else {
            let why = waiting.or(last).map(|r| format!(" ({r})")).unwrap_or_default();
            report.push(
                Check::fail(
                    "metrics container",
                    format!("{cname} is not ready{why}"),
                    restart_fix(last.or(waiting)),
                )
                .on(&pid),
            );
        }
    }
    chosen
}

fn restart_fix(reason: Option<&str>) -> String {
    match reason {
        Some("OOMKilled") => "the container ran out of memory: raise its memory limit or lower limits.maxInFlight in the sidecar config".into(),
        Some("CrashLoopBackOff") | Some("Error") => {
            "read its log (kubectl logs --previous -c <container>); exit 64 means a bad sidecar config".into()
        }
        _ => "kubectl describe pod and kubectl logs -c <container> say why".into(),
    }
}

/// Ask Prometheus, through a port-forward to one of its pods, about `job`.
async fn check_prometheus(
    reader: &Reader<'_>,
    connector: Arc<dyn Connector>,
    options: &Options,
    ns: &str,
    name: &str,
    job: &str,
    report: &mut Report,
) -> Result<(), String> {
    let psid = format!("Service/{ns}/{name}");
    let Some(svc) = reader.get(&resource("", "v1", "Service", "services"), ns, name).await? else {
        report.push(
            Check::fail(
                "Prometheus",
                format!("there is no {psid}"),
                "pass --prometheus NAMESPACE/SERVICE, e.g. monitoring/prometheus-operated",
            )
            .on(&psid),
        );
        return Ok(());
    };
    let selector =
        svc.pointer("/spec/selector").and_then(Value::as_object).cloned().unwrap_or_default();
    let Some(pods) = reader
        .list(
            &resource("", "v1", "Pod", "pods"),
            Some(ns),
            Some(&label_selector(&selector)),
            report,
        )
        .await?
    else {
        return Ok(());
    };
    let ready = pods.iter().find(|p| {
        p.pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| s(c, "/type") == Some("Ready") && s(c, "/status") == Some("True"))
    });
    let Some(pod) = ready else {
        report.push(
            Check::fail(
                "Prometheus",
                format!("no ready pod behind {psid}"),
                "check the Prometheus pods (kubectl get pods -n …)",
            )
            .on(&psid),
        );
        return Ok(());
    };
    // The web port: a number, or a name the pod's containers declare; 9090 when unsaid.
    let first = svc.pointer("/spec/ports/0").cloned().unwrap_or(Value::Null);
    let port = match first.get("targetPort") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(pname)) => pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c.get("ports").and_then(Value::as_array).into_iter().flatten())
            .find(|p| s(p, "/name") == Some(pname.as_str()))
            .and_then(|p| p.get("containerPort")?.as_u64()),
        _ => first.get("port").and_then(Value::as_u64),
    }
    .and_then(|p| u16::try_from(p).ok())
    .unwrap_or(9090);
    let popts = prometheus::Options {
        job: job.to_string(),
        labels: Vec::new(),
        expect_metric: options.expect_metric.clone(),
        timeout: options.endpoint.timeout,
    };
    let target = format!("pod/{ns}/{}:{port}", name_of(pod));
    let found = through_forward(connector, ns, name_of(pod), port, &target, |base| async move {
        prometheus::check(&base, &popts).await
    })
    .await;
    report.checks.extend(found.checks);
    Ok(())
}

/// Opens a local port whose connections are forwarded to the pod's port, runs `run` with its
/// base URL, and names the pod instead of the local address in the checks it returns.
async fn through_forward<F, Fut>(
    connector: Arc<dyn Connector>,
    ns: &str,
    pod: &str,
    port: u16,
    target: &str,
    run: F,
) -> Report
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Report>,
{
    let errors = Arc::new(Mutex::new(None::<String>));
    let (addr, task) =
        match bridge(connector, ns.to_string(), pod.to_string(), port, errors.clone()).await {
            Ok(b) => b,
            Err(e) => {
                let mut r = Report::default();
                r.push(
                    Check::fail(
                        "port-forward",
                        format!("cannot open a local port: {e}"),
                        "free a local port",
                    )
                    .on(target),
                );
                return r;
            }
        };
    let base = format!("http://{addr}");
    let mut found = run(base.clone()).await;
    task.abort();
    for c in &mut found.checks {
        if let Some(o) = &mut c.object {
            *o = o.replace(&base, target);
        }
        c.message = c.message.replace(&base, target);
    }
    if let Some(e) = errors.lock().ok().and_then(|mut e| e.take()) {
        found.checks.insert(
            0,
            Check::fail(
                "port-forward",
                e,
                "you need create on pods/portforward (kubectl auth can-i create pods/portforward), and the pod must be running",
            )
            .on(target),
        );
    } else if found.checks.iter().all(|c| c.status != Status::Fail) {
        found.checks.insert(0, Check::pass("port-forward", "open").on(target));
    }
    found
}

/// A local listener whose every connection is a new stream to the pod's port.
async fn bridge(
    connector: Arc<dyn Connector>,
    ns: String,
    pod: String,
    port: u16,
    errors: Arc<Mutex<Option<String>>>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((mut local, _)) = listener.accept().await {
            let (connector, ns, pod, errors) =
                (connector.clone(), ns.clone(), pod.clone(), errors.clone());
            tokio::spawn(async move {
                match connector.connect(&ns, &pod, port).await {
                    Ok(mut remote) => {
                        let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                    }
                    Err(e) => {
                        if let Ok(mut slot) = errors.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    Ok((addr, task))
}
