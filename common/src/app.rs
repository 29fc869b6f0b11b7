//! The application model the generator renders from: one app, the namespaces it runs in, its
//! Service, the sidecar, the monitor that Prometheus selects, and how the mesh is told to leave
//! the metrics port alone. The sidecar part resolves to the very [`ProxyConfig`] that
//! `meshscrape-proxy --config` reads from the generated ConfigMap.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::error::{ConfigError, Origin, Problem, Problems, Sourced};
use crate::names;
use crate::proxy::{self, LimitsFile, ProxyConfig, ProxyFile, ProxyOverrides, TimeoutsFile};

/// The default sidecar image tag; CI and the e2e tests build it under this name.
pub const DEFAULT_SIDECAR_IMAGE: &str = "meshscrape-proxy:0.1.0";

/// A validated application configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppConfig {
    /// The app's name: the Deployment and (by default) the Service are called this.
    pub name: String,
    /// Namespaces to render for, in the order given.
    pub namespaces: Vec<String>,
    /// Pod labels; also the Deployment's selector and the Service's selector.
    pub pod_labels: BTreeMap<String, String>,
    pub container: Container,
    pub service: Service,
    pub sidecar: Sidecar,
    pub monitor: Monitor,
    pub istio: IstioMode,
    pub network_policy: NetworkPolicy,
}

/// The application container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub port: u16,
    pub port_name: String,
    pub replicas: u32,
    pub readiness_path: Option<String>,
    pub liveness_path: Option<String>,
}

/// The Service in front of the pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// The Service port for the app's own traffic (maps to the container port).
    pub port: u16,
    /// Labels on the Service; the ServiceMonitor selects on these.
    pub labels: BTreeMap<String, String>,
}

/// The metrics sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sidecar {
    pub image: String,
    pub port: u16,
    /// The container port's and the Service port's name; the monitor refers to it.
    pub port_name: String,
    pub resources: Resources,
    /// What the sidecar is started with, via the ConfigMap.
    pub proxy: ProxyConfig,
}

/// CPU and memory requests and limits, as Kubernetes quantities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    pub requests_cpu: String,
    pub requests_memory: String,
    pub limits_cpu: String,
    pub limits_memory: String,
}

/// The prometheus-operator object that makes Prometheus scrape the sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Monitor {
    pub kind: MonitorKind,
    pub name: String,
    pub namespace: String,
    /// Labels the Prometheus object's `serviceMonitorSelector`/`podMonitorSelector` matches.
    pub labels: BTreeMap<String, String>,
    pub job_label: Option<String>,
    pub interval: String,
    pub scrape_timeout: Option<String>,
    pub honor_labels: bool,
    pub path: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorKind {
    ServiceMonitor,
    PodMonitor,
}

/// How Istio is kept from demanding mTLS on the metrics port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IstioMode {
    /// Pod annotation `traffic.sidecar.istio.io/excludeInboundPorts`.
    ExcludeAnnotation,
    /// A workload `PeerAuthentication` with `portLevelMtls` PERMISSIVE on the metrics port.
    PeerAuthentication,
    Both,
    None,
}

impl IstioMode {
    pub fn annotation(self) -> bool {
        matches!(self, IstioMode::ExcludeAnnotation | IstioMode::Both)
    }

    pub fn peer_authentication(self) -> bool {
        matches!(self, IstioMode::PeerAuthentication | IstioMode::Both)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IstioMode::ExcludeAnnotation => "exclude-annotation",
            IstioMode::PeerAuthentication => "peer-authentication",
            IstioMode::Both => "both",
            IstioMode::None => "none",
        }
    }
}

/// A NetworkPolicy that admits the plaintext metrics port only from Prometheus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub enabled: bool,
    /// Namespace labels that pick Prometheus's namespace.
    pub namespace_labels: BTreeMap<String, String>,
    /// Pod labels that pick the Prometheus pods (none: any pod in those namespaces).
    pub pod_labels: BTreeMap<String, String>,
}

// ---- the file's shape ----------------------------------------------------------------------

type S<T> = Spanned<T>;
type Labels = BTreeMap<String, String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AppFile {
    name: S<String>,
    namespaces: S<Vec<S<String>>>,
    labels: S<Labels>,
    container: ContainerFile,
    #[serde(default)]
    service: ServiceFile,
    #[serde(default)]
    sidecar: SidecarFile,
    monitor: MonitorFile,
    #[serde(default)]
    istio: IstioFile,
    #[serde(default)]
    network_policy: NetworkPolicyFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ContainerFile {
    name: Option<S<String>>,
    image: S<String>,
    port: S<i64>,
    port_name: Option<S<String>>,
    replicas: Option<S<u32>>,
    #[serde(default)]
    probes: ProbesFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProbesFile {
    readiness: Option<S<String>>,
    liveness: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceFile {
    name: Option<S<String>>,
    port: Option<S<i64>>,
    labels: Option<S<Labels>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SidecarFile {
    image: Option<S<String>>,
    port: Option<S<i64>>,
    port_name: Option<S<String>>,
    #[serde(default)]
    resources: ResourcesFile,
    routes: Option<S<Vec<S<String>>>>,
    timeouts: Option<TimeoutsFile>,
    limits: Option<LimitsFile>,
    log_format: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResourcesFile {
    #[serde(default)]
    requests: CpuMemFile,
    #[serde(default)]
    limits: CpuMemFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CpuMemFile {
    cpu: Option<S<String>>,
    memory: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MonitorFile {
    kind: Option<S<String>>,
    name: Option<S<String>>,
    namespace: S<String>,
    labels: S<Labels>,
    job_label: Option<S<String>>,
    interval: Option<S<String>>,
    scrape_timeout: Option<S<String>>,
    honor_labels: Option<bool>,
    path: Option<S<String>>,
    scheme: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IstioFile {
    mode: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NetworkPolicyFile {
    enabled: Option<bool>,
    namespace_labels: Option<S<Labels>>,
    pod_labels: Option<S<Labels>>,
}

// ---- validation ----------------------------------------------------------------------------

struct Check<'a> {
    path: &'a Path,
    problems: Problems,
}

impl Check<'_> {
    fn fail(&mut self, field: &str, loc: &Location, message: String) {
        self.problems.push(Origin::at(Some(self.path), loc), field, message);
    }

    /// Runs `f` on a spanned value; records a problem at its line on failure.
    fn value<T, U>(
        &mut self,
        field: &str,
        v: &S<T>,
        f: impl FnOnce(&T) -> Result<U, String>,
    ) -> Option<U> {
        let origin = Origin::at(Some(self.path), &v.referenced);
        self.problems.check(field, Sourced { value: &v.value, origin }, f)
    }

    fn labels(&mut self, field: &str, v: &S<Labels>, required: bool) -> Labels {
        if required && v.value.is_empty() {
            self.fail(field, &v.referenced, "needs at least one label, e.g. app: my-app".into());
        }
        for (k, val) in &v.value {
            if let Err(m) = names::label_key(k).and_then(|()| names::label_value(val)) {
                self.fail(&format!("{field}.{k}"), &v.referenced, m);
            }
        }
        v.value.clone()
    }
}

fn or_default<T: Clone>(v: &Option<S<T>>, default: T) -> S<T> {
    v.clone().unwrap_or_else(|| Spanned::new(default, Location::UNKNOWN, Location::UNKNOWN))
}

impl AppConfig {
    /// Reads and validates an application config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_yaml(path, &text)
    }

    /// Validates YAML text as if it came from `path`.
    pub fn from_yaml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: AppFile = serde_saphyr::from_str(text)
            .map_err(|e| ConfigError::from_yaml(path.to_path_buf(), text, &e))?;
        let mut c = Check { path, problems: Problems::default() };

        let name = c.value("name", &file.name, |n| names::dns1123_label(n).map(|()| n.clone()));
        if file.namespaces.value.is_empty() {
            c.fail(
                "namespaces",
                &file.namespaces.referenced,
                "list at least one namespace, e.g. [tools]".into(),
            );
        }
        let mut namespaces: Vec<String> = Vec::new();
        for (i, ns) in file.namespaces.value.iter().enumerate() {
            let field = format!("namespaces[{i}]");
            if namespaces.contains(&ns.value) {
                c.fail(&field, &ns.referenced, format!("`{}` is listed twice", ns.value));
            } else if c.value(&field, ns, |n| names::dns1123_label(n)).is_some() {
                namespaces.push(ns.value.clone());
            }
        }
        let pod_labels = c.labels("labels", &file.labels, true);

        // The app container.
        let f = &file.container;
        // Names and ports derived from another key are checked there, not reported twice.
        let container = Container {
            name: match &f.name {
                Some(n) => {
                    c.value("container.name", n, |n| names::dns1123_label(n).map(|()| n.clone()))
                }
                None => name.clone(),
            }
            .unwrap_or_default(),
            image: c.value("container.image", &f.image, image).unwrap_or_default(),
            port: c.value("container.port", &f.port, |p| names::port(*p)).unwrap_or(0),
            port_name: c
                .value("container.portName", &or_default(&f.port_name, "http".into()), |n| {
                    names::port_name(n).map(|()| n.clone())
                })
                .unwrap_or_default(),
            replicas: or_default(&f.replicas, 1).value,
            readiness_path: f
                .probes
                .readiness
                .as_ref()
                .and_then(|p| c.value("container.probes.readiness", p, |s| probe_path(s))),
            liveness_path: f
                .probes
                .liveness
                .as_ref()
                .and_then(|p| c.value("container.probes.liveness", p, |s| probe_path(s))),
        };

        // The Service.
        let f = &file.service;
        let service = Service {
            name: match &f.name {
                Some(n) => {
                    c.value("service.name", n, |n| names::dns1123_label(n).map(|()| n.clone()))
                }
                None => name.clone(),
            }
            .unwrap_or_default(),
            port: match &f.port {
                Some(p) => c.value("service.port", p, |p| names::port(*p)).unwrap_or(0),
                None => container.port,
            },
            labels: f
                .labels
                .as_ref()
                .map(|l| c.labels("service.labels", l, false))
                .unwrap_or_else(|| pod_labels.clone()),
        };

        // The sidecar, and the proxy configuration it is started with.
        let f = &file.sidecar;
        let sidecar_image =
            c.value("sidecar.image", &or_default(&f.image, DEFAULT_SIDECAR_IMAGE.into()), image);
        let sidecar_port_s = or_default(&f.port, 9090);
        let sidecar_port = c.value("sidecar.port", &sidecar_port_s, |p| names::port(*p));
        if let Some(p) = sidecar_port
            && p == container.port
        {
            c.fail(
                "sidecar.port",
                &sidecar_port_s.referenced,
                format!(
                    "{p} is also the app's port; set sidecar.port to another, e.g. {}",
                    if p == 9090 { 9091 } else { 9090 }
                ),
            );
        }
        let port_name_s = or_default(&f.port_name, "prometheus".into());
        let sidecar_port_name = c
            .value("sidecar.portName", &port_name_s, |n| names::port_name(n).map(|()| n.clone()))
            .unwrap_or_default();
        if sidecar_port_name == container.port_name {
            c.fail(
                "sidecar.portName",
                &port_name_s.referenced,
                format!("`{sidecar_port_name}` is also the app port's name; choose another"),
            );
        }
        let r = &f.resources;
        let mut quantity = |field: &str, v: &Option<S<String>>, default: &str| {
            c.value(field, &or_default(v, default.to_string()), |q| {
                names::quantity(q).map(|()| q.clone())
            })
            .unwrap_or_default()
        };
        let resources = Resources {
            requests_cpu: quantity("sidecar.resources.requests.cpu", &r.requests.cpu, "50m"),
            requests_memory: quantity(
                "sidecar.resources.requests.memory",
                &r.requests.memory,
                "10Mi",
            ),
            limits_cpu: quantity("sidecar.resources.limits.cpu", &r.limits.cpu, "100m"),
            limits_memory: quantity("sidecar.resources.limits.memory", &r.limits.memory, "15Mi"),
        };
        let unknown = |v: String| Some(Spanned::new(v, Location::UNKNOWN, Location::UNKNOWN));
        let proxy_file = ProxyFile {
            listen: unknown(
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), sidecar_port.unwrap_or(9090))
                    .to_string(),
            ),
            upstream: unknown(format!(
                "http://127.0.0.1:{}",
                if container.port == 0 { 8080 } else { container.port }
            )),
            routes: f.routes.clone(),
            timeouts: f.timeouts.clone(),
            limits: f.limits.clone(),
            log_format: f.log_format.clone(),
        };
        let proxy = match ProxyConfig::resolve(Some(path), proxy_file, &ProxyOverrides::default()) {
            Ok(p) => Some(p),
            Err(ConfigError::Invalid { problems }) => {
                c.problems.0.extend(
                    problems
                        .into_iter()
                        .map(|p| Problem { field: format!("sidecar.{}", p.field), ..p }),
                );
                None
            }
            Err(other) => return Err(other),
        };

        // The monitor.
        let f = &file.monitor;
        let kind = c.value("monitor.kind", &or_default(&f.kind, "ServiceMonitor".into()), |k| {
            match k.as_str() {
                "ServiceMonitor" => Ok(MonitorKind::ServiceMonitor),
                "PodMonitor" => Ok(MonitorKind::PodMonitor),
                _ => Err(format!("`{k}` is not a monitor kind; use ServiceMonitor or PodMonitor")),
            }
        });
        let interval_s = or_default(&f.interval, "30s".into());
        let interval_ms =
            c.value("monitor.interval", &interval_s, |d| names::prometheus_duration(d));
        let timeout_ms = f
            .scrape_timeout
            .as_ref()
            .and_then(|t| c.value("monitor.scrapeTimeout", t, |d| names::prometheus_duration(d)));
        if let (Some(i), Some(t), Some(ts)) = (interval_ms, timeout_ms, &f.scrape_timeout)
            && t > i
        {
            c.fail(
                "monitor.scrapeTimeout",
                &ts.referenced,
                format!(
                    "`{}` is longer than the interval `{}`; prometheus-operator drops such a monitor without a word. Use a timeout no longer than the interval",
                    ts.value, interval_s.value
                ),
            );
        }
        if let Some(scheme) = &f.scheme
            && scheme.value != "http"
        {
            c.fail(
                "monitor.scheme",
                &scheme.referenced,
                format!(
                    "`{}`: the sidecar serves plain http, so the scheme must be http",
                    scheme.value
                ),
            );
        }
        let path_s = or_default(&f.path, "/prometheus".into());
        if let Some(proxy) = &proxy
            && !proxy.routes.iter().any(|r| r.public == path_s.value)
        {
            let public: Vec<&str> = proxy.routes.iter().map(|r| r.public.as_str()).collect();
            c.fail(
                "monitor.path",
                &path_s.referenced,
                format!(
                    "`{}` is not one of the sidecar's routes ({}); Prometheus would get 404. Add a route or pick one of these",
                    path_s.value,
                    public.join(", ")
                ),
            );
        }
        let monitor_ns = c
            .value("monitor.namespace", &f.namespace, |n| {
                names::dns1123_label(n).map(|()| n.clone())
            })
            .unwrap_or_default();
        let monitor = Monitor {
            kind: kind.unwrap_or(MonitorKind::ServiceMonitor),
            name: match &f.name {
                Some(n) => {
                    c.value("monitor.name", n, |n| names::dns1123_subdomain(n).map(|()| n.clone()))
                }
                None => name.clone(),
            }
            .unwrap_or_default(),
            namespace: monitor_ns.clone(),
            labels: c.labels("monitor.labels", &f.labels, true),
            job_label: f.job_label.as_ref().and_then(|j| {
                c.value("monitor.jobLabel", j, |k| names::label_key(k).map(|()| k.clone()))
            }),
            interval: interval_s.value.clone(),
            scrape_timeout: f.scrape_timeout.as_ref().map(|t| t.value.clone()),
            honor_labels: f.honor_labels.unwrap_or(false),
            path: path_s.value.clone(),
        };
        if let (Some(job), MonitorKind::ServiceMonitor) = (&monitor.job_label, monitor.kind)
            && !service.labels.contains_key(job)
        {
            let loc = f.job_label.as_ref().map_or(Location::UNKNOWN, |j| j.referenced);
            c.fail(
                "monitor.jobLabel",
                &loc,
                format!(
                    "the Service has no label `{job}`, so the job would fall back to the Service name; add it to service.labels or drop jobLabel"
                ),
            );
        }

        let istio = c
            .value("istio.mode", &or_default(&file.istio.mode, "exclude-annotation".into()), |m| match m.as_str() {
                "exclude-annotation" => Ok(IstioMode::ExcludeAnnotation),
                "peer-authentication" => Ok(IstioMode::PeerAuthentication),
                "both" => Ok(IstioMode::Both),
                "none" => Ok(IstioMode::None),
                _ => Err(format!("`{m}` is not an Istio mode; use exclude-annotation, peer-authentication, both or none")),
            })
            .unwrap_or(IstioMode::None);

        let f = &file.network_policy;
        let default_ns_labels =
            Labels::from([("kubernetes.io/metadata.name".to_string(), monitor_ns)]);
        let network_policy = NetworkPolicy {
            enabled: f.enabled.unwrap_or(true),
            namespace_labels: f
                .namespace_labels
                .as_ref()
                .map(|l| c.labels("networkPolicy.namespaceLabels", l, true))
                .unwrap_or(default_ns_labels),
            pod_labels: f
                .pod_labels
                .as_ref()
                .map(|l| c.labels("networkPolicy.podLabels", l, false))
                .unwrap_or_default(),
        };

        match (name, proxy, sidecar_port, sidecar_image) {
            (Some(name), Some(proxy), Some(port), Some(image)) if c.problems.0.is_empty() => {
                Ok(AppConfig {
                    name,
                    namespaces,
                    pod_labels,
                    container,
                    service,
                    sidecar: Sidecar {
                        image,
                        port,
                        port_name: sidecar_port_name,
                        resources,
                        proxy,
                    },
                    monitor,
                    istio,
                    network_policy,
                })
            }
            _ => Err(ConfigError::Invalid { problems: c.problems.0 }),
        }
    }

    /// The same configuration for other namespaces (the `--namespace` flag).
    pub fn with_namespaces(mut self, namespaces: Vec<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        for ns in &namespaces {
            if let Err(message) = names::dns1123_label(ns) {
                problems.push(Problem {
                    origin: Origin::Flag("--namespace"),
                    field: "namespaces".into(),
                    message,
                });
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid { problems });
        }
        let mut unique = Vec::new();
        for ns in namespaces {
            if !unique.contains(&ns) {
                unique.push(ns);
            }
        }
        self.namespaces = unique;
        Ok(self)
    }
}

fn image(s: &String) -> Result<String, String> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!(
            "`{s}` is not an image reference; write it as registry.example.com/team/app:1.2.3"
        ))
    } else {
        Ok(s.clone())
    }
}

fn probe_path(s: &str) -> Result<String, String> {
    proxy::check_path(s).map(|()| s.to_string())
}

#[cfg(test)]
mod tests;
