//! The application model the generator renders from: one app, the namespaces it runs in, its
//! Service, the sidecar, the monitor that Prometheus selects, and how the mesh is told to leave
//! the metrics port alone. The sidecar part resolves to the very [`ProxyConfig`] that
//! `meshscrape-proxy --config` reads from the generated ConfigMap.

mod file;
mod sections;

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{ConfigError, Origin, Problem, Problems};
use crate::names;
pub use crate::operator::MonitorKind;
use crate::proxy::ProxyConfig;

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
    /// The Istio data plane the namespaces run, when the config says (`istio.dataplane`).
    pub dataplane: Option<Dataplane>,
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
    /// A Kubernetes native sidecar (an init container with `restartPolicy: Always`, GA in
    /// 1.33): started before the app once its startup probe passes, stopped after it.
    pub native: bool,
    /// The Secret (in each workload namespace, and of the same name in the monitor's) holding
    /// the bearer token the sidecar requires and Prometheus sends.
    pub token_secret: Option<SecretKey>,
    /// TLS on the sidecar's port, and what Prometheus needs to speak it.
    pub tls: Option<SidecarTls>,
}

/// One key of a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKey {
    pub name: String,
    pub key: String,
}

/// The Secrets behind the sidecar's TLS and Prometheus's side of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarTls {
    /// A `kubernetes.io/tls` Secret in each workload namespace (`tls.crt`, `tls.key`), as
    /// cert-manager writes one.
    pub secret: String,
    /// A DNS name in that certificate, which Prometheus checks (it scrapes pod IPs).
    pub server_name: String,
    /// The CA Prometheus trusts, in the monitor's namespace.
    pub ca: SecretKey,
    /// The CA the sidecar checks client certificates against (mutual TLS), in each workload
    /// namespace.
    pub client_ca: Option<SecretKey>,
    /// Prometheus's client certificate, a `kubernetes.io/tls` Secret in the monitor's namespace.
    pub client_cert_secret: Option<String>,
}

/// Where the sidecar container finds the Secrets it mounts.
pub mod mounts {
    pub const TOKEN: &str = "/var/run/meshscrape/token";
    pub const TLS: &str = "/var/run/meshscrape/tls";
    pub const CLIENT_CA: &str = "/var/run/meshscrape/client-ca";
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
    /// Protocols Prometheus asks for, most preferred first (operator's `scrapeProtocols`);
    /// empty: Prometheus's default.
    pub scrape_protocols: Vec<String>,
    /// The parser for a blank or unsupported Content-Type (Prometheus 3 fails the scrape
    /// without one).
    pub fallback_scrape_protocol: Option<String>,
    /// The operator's scrape class to apply.
    pub scrape_class: Option<String>,
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

    /// The mode named as in the config file.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            IstioMode::ExcludeAnnotation,
            IstioMode::PeerAuthentication,
            IstioMode::Both,
            IstioMode::None,
        ]
        .into_iter()
        .find(|m| m.as_str() == name)
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

/// The Istio data plane that enforces mTLS for the pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataplane {
    /// An Envoy sidecar in each pod; it reads the pod's traffic annotations.
    Sidecar,
    /// Ambient mode: the node's ztunnel, which ignores those annotations and honours a
    /// workload-selected PeerAuthentication's portLevelMtls (Istio 1.25 and later).
    Ambient,
}

impl Dataplane {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sidecar" => Some(Dataplane::Sidecar),
            "ambient" => Some(Dataplane::Ambient),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dataplane::Sidecar => "sidecar",
            Dataplane::Ambient => "ambient",
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

impl AppConfig {
    /// Reads and validates an application config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_yaml(path, &text)
    }

    /// Validates YAML text as if it came from `path`: every section in turn, every problem
    /// recorded, then one error holding them all.
    pub fn from_yaml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: file::AppFile = serde_saphyr::from_str(text)
            .map_err(|e| ConfigError::from_yaml(path.to_path_buf(), text, &e))?;
        let mut c = sections::Check { path, problems: Problems::default() };

        let name = c.value("name", &file.name, |n| names::dns1123_label(n).map(|()| n.clone()));
        let namespaces = sections::namespaces(&mut c, &file.namespaces);
        let pod_labels = c.labels("labels", &file.labels, true);
        let container = sections::container(&mut c, &file.container, name.as_ref());
        let service =
            sections::service(&mut c, &file.service, name.as_ref(), &container, &pod_labels);
        let sidecar = sections::sidecar(&mut c, &file.sidecar, &container)?;
        let proxy = sidecar.as_ref().map(|s| &s.proxy);
        let monitor = sections::monitor(
            &mut c,
            &file.monitor,
            name.as_ref(),
            proxy,
            file.sidecar.tls.is_some(),
            &service,
        );
        let (istio, dataplane) = sections::istio(&mut c, &file.istio);
        let network_policy =
            sections::network_policy(&mut c, &file.network_policy, &monitor.namespace);

        match (name, sidecar) {
            (Some(name), Some(sidecar)) if c.problems.0.is_empty() => Ok(AppConfig {
                name,
                namespaces,
                pod_labels,
                container,
                service,
                sidecar,
                monitor,
                istio,
                dataplane,
                network_policy,
            }),
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

#[cfg(test)]
mod tests;
