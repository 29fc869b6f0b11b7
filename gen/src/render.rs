//! Rendering: one document per object, per namespace, in a fixed order, each checked before it
//! is returned. Nothing is written here, so a failure leaves no partial output anywhere.

use std::path::Path;

use meshscrape_common::app::MonitorKind;
use meshscrape_common::{AppConfig, ProxyConfig, ProxyOverrides};

use crate::GenError;
use crate::context::context;
use crate::objects::{self, Object};
use crate::templates::Templates;

/// One rendered, checked object.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// Where its template came from.
    pub source: String,
    /// The YAML document as rendered (no leading `---`).
    pub text: String,
    pub object: Object,
}

/// Renders every object for every namespace: per namespace the ConfigMap, Deployment, Service,
/// PeerAuthentication and NetworkPolicy (as configured), then the monitor in its own namespace.
pub fn render(config: &AppConfig, templates: &Templates) -> Result<Vec<Rendered>, GenError> {
    let mut out = Vec::new();
    for ns in &config.namespaces {
        let ctx = context(config, ns);
        let mut names = vec!["configmap.yaml.j2", "deployment.yaml.j2", "service.yaml.j2"];
        if config.istio.peer_authentication() {
            names.push("peerauthentication.yaml.j2");
        }
        if config.network_policy.enabled {
            names.push("networkpolicy.yaml.j2");
        }
        for name in names {
            out.push(one(config, templates, name, &ctx)?);
        }
    }
    // The monitor lives once, in Prometheus's namespace, and selects across the app's namespaces.
    let first = config.namespaces.first().map_or("default", String::as_str);
    out.push(one(
        config,
        templates,
        monitor_template(config.monitor.kind),
        &context(config, first),
    )?);
    Ok(out)
}

/// The template that renders a monitor of `kind`.
pub(crate) fn monitor_template(kind: MonitorKind) -> &'static str {
    match kind {
        MonitorKind::ServiceMonitor => "servicemonitor.yaml.j2",
        MonitorKind::PodMonitor => "podmonitor.yaml.j2",
    }
}

/// Renders and checks one template for `namespace`.
pub fn render_one(
    config: &AppConfig,
    templates: &Templates,
    name: &str,
    namespace: &str,
) -> Result<Rendered, GenError> {
    one(config, templates, name, &context(config, namespace))
}

fn one(
    config: &AppConfig,
    templates: &Templates,
    name: &str,
    ctx: &serde_json::Value,
) -> Result<Rendered, GenError> {
    let text = templates.render(name, ctx)?;
    let source = templates.source(name);
    let fail = |kind: &str, obj: &str, message: String| GenError::Object {
        template: source.clone(),
        kind: kind.to_string(),
        name: obj.to_string(),
        message,
    };
    let (object, value) = objects::parse(&text).map_err(|m| fail("object", "", m))?;
    let kind = value["kind"].as_str().unwrap_or_default().to_string();
    let obj_name =
        value.pointer("/metadata/name").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if namespace.is_empty() {
        return Err(fail(
            &kind,
            &obj_name,
            "metadata.namespace is missing; every namespaced object must carry one".into(),
        ));
    }
    // The ConfigMap must hold exactly what the sidecar will read back.
    if let Object::ConfigMap(cm) = &object {
        let yaml = cm
            .data
            .as_ref()
            .and_then(|d| d.get("sidecar.yaml"))
            .ok_or_else(|| fail(&kind, &obj_name, "data.sidecar.yaml is missing".into()))?;
        let read =
            ProxyConfig::from_yaml(Path::new("sidecar.yaml"), yaml, &ProxyOverrides::default())
                .map_err(|e| {
                    fail(
                        &kind,
                        &obj_name,
                        format!("meshscrape-proxy would reject data.sidecar.yaml: {e}"),
                    )
                })?;
        if read != config.sidecar.proxy {
            return Err(fail(
                &kind,
                &obj_name,
                "data.sidecar.yaml does not read back as the configured sidecar".into(),
            ));
        }
    }
    Ok(Rendered { namespace, kind, name: obj_name, source, text, object })
}
