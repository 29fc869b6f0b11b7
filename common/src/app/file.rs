//! The application config file's shape, as serde reads it: every value keeps its line and column
//! (`Spanned`) so that validation can point at it, and unknown keys are errors, so a misspelt key
//! is never silently ignored. What the values mean is decided in `sections`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::proxy::{LimitsFile, TimeoutsFile};

pub(super) type S<T> = Spanned<T>;
pub(super) type Labels = BTreeMap<String, String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct AppFile {
    pub(super) name: S<String>,
    pub(super) namespaces: S<Vec<S<String>>>,
    pub(super) labels: S<Labels>,
    pub(super) container: ContainerFile,
    #[serde(default)]
    pub(super) service: ServiceFile,
    #[serde(default)]
    pub(super) sidecar: SidecarFile,
    pub(super) monitor: MonitorFile,
    #[serde(default)]
    pub(super) istio: IstioFile,
    #[serde(default)]
    pub(super) network_policy: NetworkPolicyFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ContainerFile {
    pub(super) name: Option<S<String>>,
    pub(super) image: S<String>,
    pub(super) port: S<i64>,
    pub(super) port_name: Option<S<String>>,
    pub(super) replicas: Option<S<u32>>,
    #[serde(default)]
    pub(super) probes: ProbesFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ProbesFile {
    pub(super) readiness: Option<S<String>>,
    pub(super) liveness: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ServiceFile {
    pub(super) name: Option<S<String>>,
    pub(super) port: Option<S<i64>>,
    pub(super) labels: Option<S<Labels>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SidecarFile {
    pub(super) image: Option<S<String>>,
    pub(super) port: Option<S<i64>>,
    pub(super) port_name: Option<S<String>>,
    #[serde(default)]
    pub(super) resources: ResourcesFile,
    pub(super) routes: Option<S<Vec<S<crate::proxy::RouteEntry>>>>,
    pub(super) timeouts: Option<TimeoutsFile>,
    pub(super) limits: Option<LimitsFile>,
    pub(super) log_format: Option<S<String>>,
    pub(super) forward_headers: Option<S<Vec<S<String>>>>,
    pub(super) native: Option<bool>,
    pub(super) auth: Option<SidecarAuthFile>,
    pub(super) tls: Option<SidecarTlsFile>,
}

/// A key of a Secret.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SecretKeyFile {
    pub(super) name: S<String>,
    pub(super) key: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SidecarAuthFile {
    pub(super) bearer_token_secret: Option<SecretKeyFile>,
    pub(super) allowed_clients: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SidecarTlsFile {
    pub(super) secret: S<String>,
    pub(super) server_name: S<String>,
    pub(super) ca_secret: SecretKeyFile,
    #[serde(rename = "clientCASecret")]
    pub(super) client_ca_secret: Option<SecretKeyFile>,
    pub(super) client_cert_secret: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ResourcesFile {
    #[serde(default)]
    pub(super) requests: CpuMemFile,
    #[serde(default)]
    pub(super) limits: CpuMemFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CpuMemFile {
    pub(super) cpu: Option<S<String>>,
    pub(super) memory: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct MonitorFile {
    pub(super) kind: Option<S<String>>,
    pub(super) name: Option<S<String>>,
    pub(super) namespace: S<String>,
    pub(super) labels: S<Labels>,
    pub(super) job_label: Option<S<String>>,
    pub(super) interval: Option<S<String>>,
    pub(super) scrape_timeout: Option<S<String>>,
    pub(super) honor_labels: Option<bool>,
    pub(super) path: Option<S<String>>,
    pub(super) scheme: Option<S<String>>,
    pub(super) scrape_protocols: Option<S<Vec<S<String>>>>,
    pub(super) fallback_scrape_protocol: Option<S<String>>,
    pub(super) scrape_class: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct IstioFile {
    pub(super) mode: Option<S<String>>,
    pub(super) dataplane: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct NetworkPolicyFile {
    pub(super) enabled: Option<bool>,
    pub(super) namespace_labels: Option<S<Labels>>,
    pub(super) pod_labels: Option<S<Labels>>,
}
