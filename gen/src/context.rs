//! The values the templates see. Built from a validated [`AppConfig`] only, so templates never
//! decide anything; they lay out what was decided here.

use std::collections::BTreeMap;

use meshscrape_common::AppConfig;
use serde_json::{Value, json};

/// FNV-1a, 64 bit: a stable digest of the sidecar config for the pod template annotation.
fn fnv1a(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn merged(
    base: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = extra.clone();
    out.extend(base.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// The template context: everything but the namespace, converted for the template engine once.
pub(crate) struct Context(minijinja::Value);

impl Context {
    pub(crate) fn new(c: &AppConfig) -> Self {
        Context(minijinja::Value::from(minijinja::value::Serde(base(c))))
    }

    /// The context for one namespace.
    pub(crate) fn for_namespace(&self, namespace: &str) -> minijinja::Value {
        minijinja::context! { namespace => namespace, ..self.0.clone() }
    }
}

/// The namespace-independent part of the template context.
fn base(c: &AppConfig) -> Value {
    let common = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), c.name.clone()),
        ("app.kubernetes.io/managed-by".to_string(), "meshscrape-gen".to_string()),
    ]);
    let mut template_labels = c.pod_labels.clone();
    template_labels.entry("app.kubernetes.io/name".into()).or_insert_with(|| c.name.clone());
    let config_yaml = c.sidecar.proxy.to_yaml();
    json!({
        "name": c.name,
        "namespaces": c.namespaces,
        "pod_labels": c.pod_labels,
        "template_labels": template_labels,
        "common_labels": merged(&c.pod_labels, &common),
        "service_labels": merged(&c.service.labels, &common),
        "monitor_labels": merged(&c.monitor.labels, &common),
        "container": {
            "name": c.container.name,
            "image": c.container.image,
            "port": c.container.port,
            "port_name": c.container.port_name,
            "replicas": c.container.replicas,
            "readiness_path": c.container.readiness_path,
            "liveness_path": c.container.liveness_path,
        },
        "service": { "name": c.service.name, "port": c.service.port, "labels": c.service.labels },
        "sidecar": {
            "image": c.sidecar.image,
            "port": c.sidecar.port,
            "port_name": c.sidecar.port_name,
            "config_name": format!("{}-meshscrape", c.name),
            "config_yaml": config_yaml,
            "config_hash": fnv1a(&config_yaml),
            "native": c.sidecar.native,
            "scheme": if c.sidecar.tls.is_some() { "https" } else { "http" },
            "token": c.sidecar.token_secret.as_ref().map(|t| json!({"name": t.name, "key": t.key})),
            "tls": c.sidecar.tls.as_ref().map(|t| json!({
                "secret": t.secret,
                "server_name": t.server_name,
                "ca": {"name": t.ca.name, "key": t.ca.key},
                "client_ca": t.client_ca.as_ref().map(|ca| json!({"name": ca.name, "key": ca.key})),
                "client_cert_secret": t.client_cert_secret,
            })),
            "mounts": {
                "token": meshscrape_common::app::mounts::TOKEN,
                "tls": meshscrape_common::app::mounts::TLS,
                "client_ca": meshscrape_common::app::mounts::CLIENT_CA,
            },
            "resources": {
                "requests_cpu": c.sidecar.resources.requests_cpu,
                "requests_memory": c.sidecar.resources.requests_memory,
                "limits_cpu": c.sidecar.resources.limits_cpu,
                "limits_memory": c.sidecar.resources.limits_memory,
            },
        },
        "monitor": {
            "name": c.monitor.name,
            "namespace": c.monitor.namespace,
            "job_label": c.monitor.job_label,
            "interval": c.monitor.interval,
            "scrape_timeout": c.monitor.scrape_timeout,
            "honor_labels": c.monitor.honor_labels,
            "path": c.monitor.path,
            "scrape_protocols": c.monitor.scrape_protocols,
            "fallback_scrape_protocol": c.monitor.fallback_scrape_protocol,
            "scrape_class": c.monitor.scrape_class,
        },
        "istio": {
            "enabled": c.istio != meshscrape_common::app::IstioMode::None,
            "annotation": c.istio.annotation(),
            "peer_authentication": c.istio.peer_authentication(),
        },
        "network_policy": {
            "namespace_labels": c.network_policy.namespace_labels,
            "pod_labels": c.network_policy.pod_labels,
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv1a_is_stable() {
        assert_eq!(super::fnv1a(""), "cbf29ce484222325");
        assert_eq!(super::fnv1a("a"), "af63dc4c8601ec8c");
    }
}
