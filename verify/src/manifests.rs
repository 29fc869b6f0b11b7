//! `manifests`: resolves, offline, every link between a ServiceMonitor or PodMonitor and the
//! process that answers the scrape: the Prometheus object that selects it, the namespaces and
//! Services it selects, the named port, the container port, the sidecar route, the Istio
//! exclusion and the NetworkPolicies in the way, plus the operator's own validation rules.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use meshscrape_common::schema::{crd_schema, validate};
use meshscrape_common::{ProxyConfig, ProxyOverrides, duration};
use serde_json::{Map, Value};

use crate::report::{Check, Report};

const CRDS: [&str; 2] = [
    include_str!("../../schemas/monitoring.coreos.com_servicemonitors.yaml"),
    include_str!("../../schemas/monitoring.coreos.com_podmonitors.yaml"),
];
/// The CRDs above, parsed once per process rather than once per `check`.
static CRD_VALUES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    CRDS.iter().flat_map(|t| serde_saphyr::from_multiple::<Value>(t).unwrap_or_default()).collect()
});
const WORKLOADS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];
const EXCLUDE: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
const INCLUDE: &str = "traffic.sidecar.istio.io/includeInboundPorts";

/// The input: every YAML document read, with where it came from.
#[derive(Debug, Default)]
pub struct Objects {
    docs: Vec<Value>,
}

/// Reads files, folders (recursively, `*.yaml`/`*.yml`) or `-` for stdin.
pub fn load(
    paths: &[String],
    stdin: impl FnOnce() -> std::io::Result<String>,
) -> Result<Objects, String> {
    let mut texts = Vec::new();
    let mut seen = HashSet::new();
    let mut stdin = Some(stdin);
    for p in paths {
        if p == "-" {
            let read = stdin.take().ok_or("stdin (-) can be given once")?;
            texts.push(("stdin".to_string(), read().map_err(|e| format!("stdin: {e}"))?));
        } else {
            collect(Path::new(p), &mut texts, &mut seen)?;
        }
    }
    let mut docs = Vec::new();
    for (name, text) in texts {
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| format!("{name}: not YAML: {}", e.without_snippet()))?;
        for doc in parsed {
            // `kind: List` (kubectl get -o yaml) holds its objects in items.
            match doc.get("kind").and_then(Value::as_str) {
                Some("List") => docs.extend(doc["items"].as_array().cloned().unwrap_or_default()),
                _ if doc.is_object() => docs.push(doc),
                _ => {}
            }
        }
    }
    Ok(Objects { docs })
}

/// Reads `path`, or every YAML file under it. Symbolic links are followed, but each folder and file
/// is read once, by its canonical path, so a link back up the tree is no endless walk and a file
/// linked twice is not counted twice.
fn collect(
    path: &Path,
    out: &mut Vec<(String, String)>,
    seen: &mut HashSet<PathBuf>,
) -> Result<(), String> {
    let shown = |e: std::io::Error| format!("{}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(shown)?;
    if !seen.insert(std::fs::canonicalize(path).map_err(shown)?) {
        return Ok(());
    }
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(shown)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() || e.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                collect(&e, out, seen)?;
            }
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(shown)?;
    out.push((path.display().to_string(), text));
    Ok(())
}

/// The string at a JSON pointer, if there is one.
pub(crate) fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn ns_of(v: &Value) -> &str {
    s(v, "/metadata/namespace").unwrap_or("default")
}

fn id(v: &Value) -> String {
    format!(
        "{}/{}/{}",
        s(v, "/kind").unwrap_or("?"),
        ns_of(v),
        s(v, "/metadata/name").unwrap_or("?")
    )
}

fn labels(v: &Value, pointer: &str) -> Map<String, Value> {
    v.pointer(pointer).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// A Kubernetes label selector (matchLabels and matchExpressions) against labels.
pub fn selector_matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    let ml = selector.get("matchLabels").and_then(Value::as_object);
    if !ml.into_iter().flatten().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&Value> =
            e["values"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        match e["operator"].as_str() {
            Some("In") => labels.get(key).is_some_and(|v| values.contains(&v)),
            Some("NotIn") => labels.get(key).is_none_or(|v| !values.contains(&v)),
            Some("Exists") => labels.contains_key(key),
            Some("DoesNotExist") => !labels.contains_key(key),
            _ => false,
        }
    })
}

fn show(labels: &Value) -> String {
    let ml = labels.get("matchLabels").and_then(Value::as_object).cloned().unwrap_or_default();
    let parts: Vec<String> =
        ml.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
    if parts.is_empty() { "(any labels)".into() } else { parts.join(",") }
}

impl Objects {
    /// Objects already parsed, e.g. read from a cluster (each with apiVersion and kind set).
    pub fn from_values(docs: Vec<Value>) -> Objects {
        Objects { docs }
    }

    fn of_kind<'a>(&'a self, kinds: &'a [&str]) -> impl Iterator<Item = &'a Value> + 'a {
        self.docs.iter().filter(move |d| s(d, "/kind").is_some_and(|k| kinds.contains(&k)))
    }

    fn namespace_labels(&self, ns: &str) -> Option<Map<String, Value>> {
        self.of_kind(&["Namespace"]).find(|n| s(n, "/metadata/name") == Some(ns)).map(|n| {
            let mut l = labels(n, "/metadata/labels");
            l.entry("kubernetes.io/metadata.name").or_insert_with(|| Value::String(ns.to_string()));
            l
        })
    }

    /// Labels of namespace `ns`: from a Namespace object in the input, else only the label every
    /// namespace has since Kubernetes 1.21.
    fn ns_labels_or_name(&self, ns: &str) -> Map<String, Value> {
        self.namespace_labels(ns).unwrap_or_else(|| {
            Map::from_iter([("kubernetes.io/metadata.name".to_string(), Value::String(ns.into()))])
        })
    }
}

/// Options for `manifests`.
#[derive(Debug, Default)]
pub struct Options {
    /// `K=V` labels a Prometheus object's monitor selector requires, when no Prometheus is given.
    pub prometheus_selector: Vec<(String, String)>,
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
        check_monitor(objects, options, &CRD_VALUES, m, &mut report);
    }
    report
}

fn check_monitor(
    objects: &Objects,
    options: &Options,
    crds: &[Value],
    m: &Value,
    report: &mut Report,
) {
    let mid = id(m);
    let kind = s(m, "/kind").unwrap_or("");
    let pod_monitor = kind == "PodMonitor";
    let endpoints_field = if pod_monitor { "podMetricsEndpoints" } else { "endpoints" };

    // The operator's own validation: the CRD schema, then rules it applies silently.
    let version =
        s(m, "/apiVersion").and_then(|a| a.strip_prefix("monitoring.coreos.com/")).unwrap_or("v1");
    if let Some(schema) = crd_schema(crds, kind, version) {
        let errors = validate(schema, m);
        if errors.is_empty() {
            report.push(
                Check::pass(
                    "schema",
                    format!("valid against the {kind} CRD (prometheus-operator 0.93.0)"),
                )
                .on(&mid),
            );
        }
        for e in errors {
            report.push(
                Check::fail(
                    "schema",
                    e,
                    "fix the field to match the CRD; the API server rejects it otherwise",
                )
                .on(&mid),
            );
        }
    }
    let endpoints = m
        .pointer(&format!("/spec/{endpoints_field}"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, e) in endpoints.iter().enumerate() {
        let field = format!("spec.{endpoints_field}[{i}]");
        let interval = e.get("interval").and_then(Value::as_str);
        let timeout = e.get("scrapeTimeout").and_then(Value::as_str);
        let parse = |d: Option<&str>| d.map(duration::parse);
        match (parse(interval), parse(timeout)) {
            (Some(Err(msg)), _) => {
                report.push(Check::fail("interval", msg, "use a Prometheus duration such as 30s").on(&mid).at(format!("{field}.interval")))
            }
            (_, Some(Err(msg))) => {
                report.push(Check::fail("scrapeTimeout", msg, "use a Prometheus duration such as 10s").on(&mid).at(format!("{field}.scrapeTimeout")))
            }
            (Some(Ok(i_ms)), Some(Ok(t_ms))) if t_ms > i_ms => report.push(
                Check::fail(
                    "scrapeTimeout",
                    format!(
                        "{} is longer than the interval {}; prometheus-operator drops this monitor without a word",
                        timeout.unwrap_or(""),
                        interval.unwrap_or("")
                    ),
                    "make scrapeTimeout no longer than interval",
                )
                .on(&mid)
                .at(format!("{field}.scrapeTimeout")),
            ),
            _ => report.push(Check::pass("scrapeTimeout", "no longer than the interval").on(&mid).at(&field)),
        }
        if e.get("port").is_none() && e.get("targetPort").is_none() {
            report.push(
                Check::fail(
                    "endpoint port",
                    "the endpoint names no port",
                    "set port to the name of the metrics port",
                )
                .on(&mid)
                .at(&field),
            );
        }
    }

    let monitor_ns = ns_of(m).to_string();
    let monitor_labels = labels(m, "/metadata/labels");
    let prom_ns = check_prometheus_selection(
        objects,
        options,
        &mid,
        pod_monitor,
        &monitor_labels,
        &monitor_ns,
        report,
    );

    // Which namespaces the monitor looks in.
    let (any, match_names) = namespace_scope(m);

    let selector = m.pointer("/spec/selector").cloned().unwrap_or(Value::Object(Map::new()));
    // The objects that carry the port: Services (ServiceMonitor) or workloads (PodMonitor).
    let candidates: Vec<&Value> = objects
        .of_kind(if pod_monitor { &WORKLOADS[..] } else { &["Service"][..] })
        .filter(|o| {
            let l = if pod_monitor {
                labels(o, "/spec/template/metadata/labels")
            } else {
                labels(o, "/metadata/labels")
            };
            selector_matches(&selector, &l)
        })
        .collect();
    let (scoped, elsewhere): (Vec<&Value>, Vec<&Value>) =
        candidates.into_iter().partition(|o| admits(m, ns_of(o)));
    let what = if pod_monitor { "workload" } else { "Service" };
    if scoped.is_empty() {
        let hint = match elsewhere.first() {
            Some(o) => format!(
                "{} matches the labels but is in namespace {}, which spec.namespaceSelector does not admit; add it to matchNames",
                id(o),
                ns_of(o)
            ),
            None => format!("label the {what} {} or change spec.selector", show(&selector)),
        };
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
    for target in scoped {
        report.push(
            Check::pass(&format!("{what} selection"), format!("selects {}", id(target))).on(&mid),
        );
        for (i, e) in endpoints.iter().enumerate() {
            let field = format!("spec.{endpoints_field}[{i}]");
            check_endpoint(objects, m, &mid, &field, e, target, pod_monitor, &prom_ns, report);
        }
    }
}

/// A monitor's `spec.namespaceSelector`: `any`, and the `matchNames` (empty: its own namespace).
fn namespace_scope(m: &Value) -> (bool, Vec<String>) {
    let nsel = m.pointer("/spec/namespaceSelector");
    let any = nsel.and_then(|n| n.get("any")).and_then(Value::as_bool) == Some(true);
    let match_names = nsel
        .and_then(|n| n.get("matchNames"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    (any, match_names)
}

/// Whether monitor `m` looks in namespace `ns`.
fn admits(m: &Value, ns: &str) -> bool {
    let (any, match_names) = namespace_scope(m);
    any || if match_names.is_empty() { ns == ns_of(m) } else { match_names.iter().any(|n| n == ns) }
}

/// Whether monitor `m` selects `target`, a Service for a ServiceMonitor or a Pod for a PodMonitor:
/// the target's namespace admitted and its labels matched.
pub fn selects(m: &Value, target: &Value) -> bool {
    let wanted = match s(m, "/kind") {
        Some("ServiceMonitor") => "Service",
        Some("PodMonitor") => "Pod",
        _ => return false,
    };
    let selector = m.pointer("/spec/selector").cloned().unwrap_or(Value::Object(Map::new()));
    s(target, "/kind") == Some(wanted)
        && admits(m, ns_of(target))
        && selector_matches(&selector, &labels(target, "/metadata/labels"))
}

#[allow(clippy::too_many_arguments)]
fn check_prometheus_selection(
    objects: &Objects,
    options: &Options,
    mid: &str,
    pod_monitor: bool,
    monitor_labels: &Map<String, Value>,
    monitor_ns: &str,
    report: &mut Report,
) -> Option<String> {
    let (sel_field, ns_field) = if pod_monitor {
        ("podMonitorSelector", "podMonitorNamespaceSelector")
    } else {
        ("serviceMonitorSelector", "serviceMonitorNamespaceSelector")
    };
    let proms: Vec<&Value> = objects.of_kind(&["Prometheus"]).collect();
    if proms.is_empty() {
        if options.prometheus_selector.is_empty() {
            report.push(
                Check::warn(
                    "Prometheus selection",
                    "no Prometheus object in the input and no --prometheus-selector; cannot tell whether Prometheus selects this monitor",
                    "pass the Prometheus object's YAML or --prometheus-selector K=V",
                )
                .on(mid),
            );
        } else {
            let missing: Vec<String> = options
                .prometheus_selector
                .iter()
                .filter(|(k, v)| monitor_labels.get(k).and_then(Value::as_str) != Some(v.as_str()))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if missing.is_empty() {
                report.push(
                    Check::pass(
                        "Prometheus selection",
                        "carries the labels the Prometheus selector requires",
                    )
                    .on(mid),
                );
            } else {
                report.push(
                    Check::fail(
                        "Prometheus selection",
                        format!("lacks label(s) {}", missing.join(", ")),
                        format!("add {} to metadata.labels", missing.join(", ")),
                    )
                    .on(mid)
                    .at("metadata.labels"),
                );
            }
        }
        return None;
    }
    let mut selected_by = None;
    for p in &proms {
        let pid = id(p);
        let Some(sel) = p.pointer(&format!("/spec/{sel_field}")) else {
            report.push(
                Check::fail(
                    "Prometheus selection",
                    format!(
                        "{pid} has no spec.{sel_field}, so it selects no {}",
                        if pod_monitor { "PodMonitor" } else { "ServiceMonitor" }
                    ),
                    format!("set spec.{sel_field} on {pid}"),
                )
                .on(mid),
            );
            continue;
        };
        if !selector_matches(sel, monitor_labels) {
            report.push(
                Check::fail(
                    "Prometheus selection",
                    format!("{pid} selects {} but the monitor's labels do not match", show(sel)),
                    format!("add {} to metadata.labels", show(sel)),
                )
                .on(mid)
                .at("metadata.labels"),
            );
            continue;
        }
        let ns_ok = match p.pointer(&format!("/spec/{ns_field}")) {
            // Absent: only the Prometheus object's own namespace.
            None => ns_of(p) == monitor_ns,
            Some(nsel) => selector_matches(nsel, &objects.ns_labels_or_name(monitor_ns)),
        };
        if ns_ok {
            report.push(Check::pass("Prometheus selection", format!("selected by {pid}")).on(mid));
            selected_by = Some(ns_of(p).to_string());
        } else {
            report.push(
                Check::fail(
                    "Prometheus selection",
                    format!("{pid} does not admit namespace {monitor_ns} (spec.{ns_field})"),
                    format!("move the monitor to {} or widen spec.{ns_field}", ns_of(p)),
                )
                .on(mid)
                .at("metadata.namespace"),
            );
        }
    }
    selected_by
}

#[allow(clippy::too_many_arguments)]
fn check_endpoint(
    objects: &Objects,
    m: &Value,
    mid: &str,
    field: &str,
    e: &Value,
    target: &Value,
    pod_monitor: bool,
    prom_ns: &Option<String>,
    report: &mut Report,
) {
    let ns = ns_of(target);
    let port_name = e.get("port").and_then(Value::as_str);
    // Resolve to (workload, container port number).
    let (workloads, want): (Vec<&Value>, PortRef) = if pod_monitor {
        (vec![target], PortRef::Name(port_name.unwrap_or_default().to_string()))
    } else {
        let tid = id(target);
        let ports =
            target.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let Some(sp) = ports.iter().find(|p| p.get("name").and_then(Value::as_str) == port_name)
        else {
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
                        "name the Service's metrics port {} or change {field}.port",
                        port_name.unwrap_or("?")
                    ),
                )
                .on(&tid)
                .at("spec.ports"),
            );
            return;
        };
        report.push(
            Check::pass(
                "Service port",
                format!("has port {} ({})", port_name.unwrap_or(""), sp["port"]),
            )
            .on(&tid),
        );
        let want = match sp.get("targetPort") {
            Some(Value::Number(n)) => PortRef::Number(n.as_i64().unwrap_or(0)),
            Some(Value::String(name)) => PortRef::Name(name.clone()),
            _ => PortRef::Number(sp["port"].as_i64().unwrap_or(0)),
        };
        let sel = labels(target, "/spec/selector");
        let w: Vec<&Value> = objects
            .of_kind(&WORKLOADS)
            .filter(|w| {
                ns_of(w) == ns
                    && !sel.is_empty()
                    && sel
                        .iter()
                        .all(|(k, v)| labels(w, "/spec/template/metadata/labels").get(k) == Some(v))
            })
            .collect();
        if w.is_empty() {
            report.push(
                Check::warn(
                    "workload",
                    format!("no Deployment, StatefulSet or DaemonSet in the input matches the selector of {tid}"),
                    "include the workload's YAML to check the container port, sidecar and Istio links",
                )
                .on(&tid)
                .at("spec.selector"),
            );
            return;
        }
        (w, want)
    };
    for w in workloads {
        let wid = id(w);
        let containers = w
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let found = containers.iter().find_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)?
                .iter()
                .find(|p| want.matches(p))
                .map(|p| (c.clone(), p["containerPort"].as_i64().unwrap_or(0)))
        });
        let Some((container, port)) = found else {
            report.push(Check::fail("container port", format!("no container declares port {want}; Prometheus matches endpoints to container ports, and Istio 1.3+ captures undeclared ports anyway"), format!("declare containerPort {want} on the sidecar container")).on(&wid).at("spec.template.spec.containers[].ports"));
            continue;
        };
        let cname = container["name"].as_str().unwrap_or("?");
        report.push(
            Check::pass("container port", format!("container {cname} declares port {port}"))
                .on(&wid),
        );
        check_sidecar_route(objects, &wid, ns, &container, w, port, e, mid, field, report);
        check_istio(objects, &wid, w, port, report);
        check_network_policy(
            objects,
            &wid,
            w,
            port,
            prom_ns.as_deref().unwrap_or(ns_of(m)),
            report,
        );
    }
}

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

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => write!(f, "named {n}"),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_sidecar_route(
    objects: &Objects,
    wid: &str,
    ns: &str,
    container: &Value,
    w: &Value,
    port: i64,
    e: &Value,
    mid: &str,
    field: &str,
    report: &mut Report,
) {
    let image = container["image"].as_str().unwrap_or("");
    if container["name"] != "meshscrape-proxy" && !image.contains("meshscrape-proxy") {
        return;
    }
    let path = e.get("path").and_then(Value::as_str).unwrap_or("/metrics");
    // The ConfigMap mounted by the sidecar and named in its --config.
    let mounts = container["volumeMounts"].as_array().cloned().unwrap_or_default();
    let volumes = w
        .pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cm_name = mounts.iter().find_map(|mnt| {
        volumes
            .iter()
            .find(|v| v["name"] == mnt["name"])
            .and_then(|v| v.pointer("/configMap/name"))
            .and_then(Value::as_str)
    });
    let Some(cm_name) = cm_name else {
        report.push(
            Check::warn(
                "sidecar route",
                "the sidecar mounts no ConfigMap, so it runs with flags or defaults; cannot check its routes offline",
                "mount the ConfigMap meshscrape-gen renders",
            )
            .on(wid),
        );
        return;
    };
    let Some(cm) = objects
        .of_kind(&["ConfigMap"])
        .find(|c| ns_of(c) == ns && s(c, "/metadata/name") == Some(cm_name))
    else {
        report.push(
            Check::warn(
                "sidecar route",
                format!("ConfigMap {ns}/{cm_name} is not in the input"),
                "include the sidecar's ConfigMap",
            )
            .on(wid),
        );
        return;
    };
    let cmid = id(cm);
    let Some((key, yaml)) = cm
        .get("data")
        .and_then(Value::as_object)
        .and_then(|d| d.iter().next())
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
    else {
        report.push(
            Check::fail(
                "sidecar route",
                "the ConfigMap has no data",
                "render it with meshscrape-gen",
            )
            .on(&cmid),
        );
        return;
    };
    let proxy = match ProxyConfig::from_yaml(Path::new(&key), &yaml, &ProxyOverrides::default()) {
        Ok(p) => p,
        Err(err) => {
            report.push(
                Check::fail(
                    "sidecar config",
                    format!("meshscrape-proxy would refuse to start: {err}"),
                    "fix the ConfigMap's sidecar configuration",
                )
                .on(&cmid)
                .at(format!("data.{key}")),
            );
            return;
        }
    };
    if i64::from(proxy.listen.port()) != port {
        report.push(
            Check::fail(
                "sidecar listen port",
                format!(
                    "the sidecar listens on {} but the scrape goes to {port}",
                    proxy.listen.port()
                ),
                format!("set listen to 0.0.0.0:{port}"),
            )
            .on(&cmid)
            .at(format!("data.{key}")),
        );
    }
    if proxy.routes.iter().any(|r| r.public == path) {
        report.push(Check::pass("sidecar route", format!("the sidecar routes {path}")).on(&cmid));
    } else {
        let public: Vec<&str> = proxy.routes.iter().map(|r| r.public.as_str()).collect();
        report.push(
            Check::fail(
                "sidecar route",
                format!(
                    "the sidecar has no route for {path} (routes: {}); Prometheus would get 404",
                    public.join(", ")
                ),
                format!("add a route {path}=<app path> or set {field}.path to one of the routes"),
            )
            .on(mid)
            .at(format!("{field}.path")),
        );
    }
}

fn check_istio(objects: &Objects, wid: &str, w: &Value, port: i64, report: &mut Report) {
    let ann = labels(w, "/spec/template/metadata/annotations");
    let get = |k: &str| ann.get(k).and_then(Value::as_str);
    let listed =
        |v: Option<&str>| v.is_some_and(|v| v.split(',').any(|p| p.trim() == port.to_string()));
    if get("sidecar.istio.io/inject") == Some("false") {
        report.push(
            Check::pass("Istio", "the pod is not in the mesh (sidecar.istio.io/inject: \"false\")")
                .on(wid),
        );
        return;
    }
    if listed(get(EXCLUDE)) {
        report.push(
            Check::pass(
                "Istio",
                format!("port {port} is excluded from inbound capture ({EXCLUDE})"),
            )
            .on(wid),
        );
        return;
    }
    if let Some(include) = get(INCLUDE)
        && include.trim() != "*"
        && !listed(Some(include))
    {
        report.push(
            Check::pass(
                "Istio",
                format!("port {port} is not in {INCLUDE}, so Istio does not capture it"),
            )
            .on(wid),
        );
        return;
    }
    let pod_labels = labels(w, "/spec/template/metadata/labels");
    let permissive =
        objects.of_kind(&["PeerAuthentication"]).filter(|pa| ns_of(pa) == ns_of(w)).find(|pa| {
            let selects = pa
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .is_some_and(|ml| ml.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
            let mode =
                pa.pointer(&format!("/spec/portLevelMtls/{port}/mode")).and_then(Value::as_str);
            selects && matches!(mode, Some("PERMISSIVE" | "DISABLE"))
        });
    if let Some(pa) = permissive {
        report
            .push(Check::pass("Istio", format!("{} sets port {port} PERMISSIVE", id(pa))).on(wid));
        return;
    }
    report.push(
        Check::fail("Istio", format!("port {port} is captured by Istio (every inbound port is since 1.3); under STRICT mTLS Prometheus, holding no mesh certificate, is refused"), format!("add the pod annotation {EXCLUDE}: \"{port}\" or a PeerAuthentication with portLevelMtls {port}: PERMISSIVE"))
            .on(wid)
            .at("spec.template.metadata.annotations"),
    );
}

fn check_network_policy(
    objects: &Objects,
    wid: &str,
    w: &Value,
    port: i64,
    prom_ns: &str,
    report: &mut Report,
) {
    let pod_labels = labels(w, "/spec/template/metadata/labels");
    let policies: Vec<&Value> = objects
        .of_kind(&["NetworkPolicy"])
        .filter(|p| ns_of(p) == ns_of(w))
        // An empty podSelector selects every pod, which selector_matches already says.
        .filter(|p| {
            p.pointer("/spec/podSelector").is_some_and(|sel| selector_matches(sel, &pod_labels))
        })
        .filter(|p| {
            let types = p.pointer("/spec/policyTypes").and_then(Value::as_array);
            types.is_none_or(|t| t.iter().any(|x| x == "Ingress"))
        })
        .collect();
    if policies.is_empty() {
        return;
    }
    let prom_ns_labels = objects.ns_labels_or_name(prom_ns);
    let admits = |p: &&Value| {
        p.pointer("/spec/ingress").and_then(Value::as_array).into_iter().flatten().any(|rule| {
            let port_ok = rule.get("ports").and_then(Value::as_array).is_none_or(|ps| {
                ps.is_empty()
                    || ps.iter().any(|x| x.get("port").is_none_or(|v| v.as_i64() == Some(port)))
            });
            let from_ok = rule.get("from").and_then(Value::as_array).is_none_or(|fs| {
                fs.is_empty()
                    || fs.iter().any(|f| {
                        f.get("namespaceSelector")
                            .is_some_and(|ns| selector_matches(ns, &prom_ns_labels))
                            || (f.get("namespaceSelector").is_none()
                                && f.get("podSelector").is_some()
                                && prom_ns == ns_of(w))
                    })
            });
            port_ok && from_ok
        })
    };
    match policies.iter().find(|p| admits(p)) {
        Some(p) => report.push(
            Check::pass(
                "NetworkPolicy",
                format!("{} admits port {port} from namespace {prom_ns}", id(p)),
            )
            .on(wid),
        ),
        None => {
            let ids: Vec<String> = policies.iter().map(|p| id(p)).collect();
            report.push(
                Check::fail(
                    "NetworkPolicy",
                    format!("{} select the pods but none admits port {port} from Prometheus's namespace {prom_ns}", ids.join(", ")),
                    format!("add an ingress rule from namespaceSelector kubernetes.io/metadata.name={prom_ns} to port {port}"),
                )
                .on(wid),
            );
        }
    }
}

#[cfg(test)]
mod tests;
