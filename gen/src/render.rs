//! Rendering: one document per object, per namespace, in a fixed order, each checked before it
//! is returned. Nothing is written here, so a failure leaves no partial output anywhere.

use std::path::Path;

use meshscrape_common::app::MonitorKind;
use meshscrape_common::{AppConfig, ProxyConfig, ProxyOverrides};

use crate::GenError;
use crate::context::Context;
use crate::objects::{self, Object};
use crate::output::Document;
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
    render_each(config, templates, |r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// [`render`], handing each object to `sink` as soon as it is checked and keeping none, so memory
/// does not grow with the number of namespaces. Stops at the first error, `sink`'s included.
pub fn render_each(
    config: &AppConfig,
    templates: &Templates,
    mut sink: impl FnMut(Rendered) -> Result<(), GenError>,
) -> Result<(), GenError> {
    let base = Context::new(config);
    let mut checked = Checked::default();
    for (ns, name) in plan(config) {
        sink(one(config, templates, name, &base.for_namespace(ns), &mut checked)?)?;
    }
    Ok(())
}

/// Writes the YAML stream [`output::stream`](crate::output::stream) would make of [`render`]'s
/// objects, without checking them: for output already checked by [`render_each`] with the same
/// config and templates, which render the same text (rendering is deterministic).
pub fn write_unchecked(
    config: &AppConfig,
    templates: &Templates,
    out: &mut impl std::io::Write,
) -> Result<(), GenError> {
    let base = Context::new(config);
    let io = |source| GenError::Io { path: "stdout".into(), source };
    for (ns, name) in plan(config) {
        let text = templates.render(name, &base.for_namespace(ns))?;
        let source = templates.source(name);
        write!(out, "{}", Document { source: &source, text: &text }).map_err(io)?;
    }
    Ok(())
}

/// Which template renders in which namespace, in output order.
fn plan(config: &AppConfig) -> impl Iterator<Item = (&str, &'static str)> {
    let mut names = vec!["configmap.yaml.j2", "deployment.yaml.j2", "service.yaml.j2"];
    if config.istio.peer_authentication() {
        names.push("peerauthentication.yaml.j2");
    }
    if config.network_policy.enabled {
        names.push("networkpolicy.yaml.j2");
    }
    // The monitor lives once, in Prometheus's namespace, and selects across the app's namespaces;
    // it is rendered with the first namespace's context.
    let first = config.namespaces.first().map_or("default", String::as_str);
    let monitor = std::iter::once((first, monitor_template(config.monitor.kind)));
    config
        .namespaces
        .iter()
        .flat_map(move |ns| names.clone().into_iter().map(move |name| (ns.as_str(), name)))
        .chain(monitor)
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
    let ctx = Context::new(config).for_namespace(namespace);
    one(config, templates, name, &ctx, &mut Checked::default())
}

/// The ConfigMap payload last found to read back as the configured sidecar: every namespace's is
/// usually the same text, and reading it back once is enough.
#[derive(Default)]
struct Checked {
    sidecar_yaml: Option<String>,
}

fn one(
    config: &AppConfig,
    templates: &Templates,
    name: &str,
    ctx: &minijinja::Value,
    checked: &mut Checked,
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
        if checked.sidecar_yaml.as_deref() == Some(yaml.as_str()) {
            return Ok(Rendered { namespace, kind, name: obj_name, source, text, object });
        }
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
        checked.sidecar_yaml = Some(yaml.clone());
    }
    Ok(Rendered { namespace, kind, name: obj_name, source, text, object })
}
