//! The Istio link: under STRICT mTLS the scraped port must be left alone by the data plane the
//! workload actually runs on, and that decides what counts.
//!
//! - Sidecar mode (Envoy in the pod): the pod annotation that excludes the port from inbound
//!   capture, leaving it out of the captured ports, or a workload PeerAuthentication that makes
//!   the port PERMISSIVE.
//! - Ambient mode (the node's ztunnel): only a PeerAuthentication in the workload's namespace
//!   with a workload selector and `portLevelMtls` keyed by the container port (istiod turns it
//!   into a ztunnel policy; Istio 1.25+). The annotation does nothing, and a policy in the root
//!   namespace or without a selector is skipped for this.
//! - Either: a workload whose effective mode (workload policy, then namespace, then root) is
//!   PERMISSIVE or DISABLE is reachable in plaintext anyway.
//!
//! The data plane comes from the labels: `istio.io/dataplane-mode` on the pod (which wins) or the
//! namespace, `istio-injection=enabled` or `istio.io/rev` for sidecar injection. Without the
//! workload's Namespace object the data plane is unknown, and the exclusion must hold on both.

use serde_json::Value;

use super::Scrape;
use super::objects::{Labels, id, labels, ns_of};
use crate::report::{Check, Report};

const EXCLUDE: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
const INCLUDE: &str = "traffic.sidecar.istio.io/includeInboundPorts";
const MODE: &str = "istio.io/dataplane-mode";

/// Which data plane enforces mTLS for the workload, and why that is known.
#[derive(Debug, PartialEq, Eq)]
enum Plane {
    Sidecar(String),
    Ambient(String),
    /// In no mesh: nothing intercepts the port.
    Outside(String),
    Unknown,
}

pub(super) fn check(x: &Scrape<'_>, report: &mut Report) {
    let wid = x.workload_id.as_str();
    let plane = plane(x);
    let said = match &plane {
        Plane::Sidecar(why) => format!("sidecar ({why})"),
        Plane::Ambient(why) => format!("ambient ({why})"),
        Plane::Outside(why) => format!("none: the pods are in no mesh ({why})"),
        Plane::Unknown => "unknown: the input has no Namespace object for the workload, so the \
                           exclusion must hold on both sidecar and ambient"
            .into(),
    };
    report.push(Check::pass("Istio data plane", said).on(wid));
    let policies = Policies::of(x);
    let verdict = match &plane {
        Plane::Outside(_) => Ok("the pods are in no mesh, so nothing demands mTLS".to_string()),
        Plane::Sidecar(_) => sidecar(x, &policies),
        Plane::Ambient(_) => ambient(x, &policies),
        Plane::Unknown => match (sidecar(x, &policies), ambient(x, &policies)) {
            (Ok(s), Ok(a)) if s == a => Ok(format!("{s}, on either data plane")),
            (Ok(s), Ok(a)) => Ok(format!("under sidecar mode {s}; under ambient {a}")),
            (Err(e), _) => Err(format!("under sidecar mode {e}")),
            (_, Err(e)) => Err(format!("under ambient {e}")),
        },
    };
    match verdict {
        Ok(message) => report.push(Check::pass("Istio", message).on(wid)),
        Err(message) => report.push(
            Check::fail("Istio", message, fix(x, &plane))
                .on(wid)
                .at("spec.template.metadata.annotations"),
        ),
    }
}

/// The data plane from the pod template's labels and the namespace's, pod first.
fn plane(x: &Scrape<'_>) -> Plane {
    let w = x.workload;
    let pod_labels = labels(w, "/spec/template/metadata/labels");
    let pod_annotations = labels(w, "/spec/template/metadata/annotations");
    let inject = pod_labels
        .get("sidecar.istio.io/inject")
        .or_else(|| pod_annotations.get("sidecar.istio.io/inject"))
        .map(String::as_str);
    if inject == Some("true") {
        return Plane::Sidecar("the pod's sidecar.istio.io/inject is true".into());
    }
    let ns = ns_of(w);
    let namespace = x.objects.namespace(ns).map(|n| labels(n, "/metadata/labels"));
    let pod_mode = pod_labels.get(MODE).map(String::as_str);
    let ns_sidecar = namespace.as_ref().and_then(|l| {
        if l.get("istio-injection").map(String::as_str) == Some("enabled") {
            Some(format!("namespace {ns} has istio-injection=enabled"))
        } else {
            l.get("istio.io/rev").map(|rev| format!("namespace {ns} has istio.io/rev={rev}"))
        }
    });
    // A pod with an injected sidecar is not captured by ztunnel.
    if let Some(why) = ns_sidecar.filter(|_| inject != Some("false")) {
        return Plane::Sidecar(why);
    }
    match pod_mode {
        Some("ambient") => return Plane::Ambient(format!("the pod's {MODE} is ambient")),
        Some("none") => return Plane::Outside(format!("the pod's {MODE} is none")),
        _ => {}
    }
    if inject == Some("false") && namespace.is_none() {
        return Plane::Outside("the pod's sidecar.istio.io/inject is false".into());
    }
    match namespace {
        None => Plane::Unknown,
        Some(l) if l.get(MODE).map(String::as_str) == Some("ambient") => {
            Plane::Ambient(format!("namespace {ns} has {MODE}=ambient"))
        }
        Some(_) => Plane::Outside(format!(
            "namespace {ns} has neither {MODE}=ambient nor sidecar injection labels"
        )),
    }
}

/// The PeerAuthentications that bear on the workload, as Istio ranks them.
struct Policies<'a> {
    /// In the workload's namespace, with a selector matching its pods.
    workload: Vec<&'a Value>,
    /// In the workload's namespace, without a selector.
    namespace: Vec<&'a Value>,
    /// In the root namespace, without a selector (mesh-wide).
    root: Vec<&'a Value>,
    /// Policies with a portLevelMtls that cannot apply: in the root namespace, or selector-less.
    misplaced: Vec<&'a Value>,
}

impl<'a> Policies<'a> {
    fn of(x: &Scrape<'a>) -> Self {
        let pod_labels = labels(x.workload, "/spec/template/metadata/labels");
        let ns = ns_of(x.workload);
        let mut p =
            Policies { workload: vec![], namespace: vec![], root: vec![], misplaced: vec![] };
        // Only the workload's namespace and the root namespace can hold a policy for it.
        let candidates =
            x.objects.in_namespaces(&["PeerAuthentication"], &[ns, x.istio_root_namespace]);
        for pa in candidates {
            let pa_ns = ns_of(pa);
            let selector = pa.pointer("/spec/selector/matchLabels").and_then(Value::as_object);
            let port_level = pa.pointer("/spec/portLevelMtls").is_some();
            match (selector, pa_ns == ns, pa_ns == x.istio_root_namespace) {
                (Some(ml), true, _) if selects(ml, &pod_labels) => p.workload.push(pa),
                (Some(_), _, _) => {}
                (None, true, _) => p.namespace.push(pa),
                (None, false, true) => p.root.push(pa),
                (None, false, false) => {}
            }
            if port_level && (selector.is_none() || pa_ns == x.istio_root_namespace) {
                p.misplaced.push(pa);
            }
        }
        p
    }

    /// A workload policy that sets the port PERMISSIVE (DISABLE acts as PERMISSIVE in ambient).
    fn port_permissive(&self, port: i64) -> Option<&'a Value> {
        self.workload.iter().copied().find(|pa| {
            let mode =
                pa.pointer(&format!("/spec/portLevelMtls/{port}/mode")).and_then(Value::as_str);
            matches!(mode, Some("PERMISSIVE" | "DISABLE"))
        })
    }

    /// The workload's mode as Istio resolves it (workload, then namespace, then root), when a
    /// policy in the input sets one; `None` when none does (the input may not hold them all).
    fn effective(&self) -> Option<(&'a Value, &'a str)> {
        [&self.workload, &self.namespace, &self.root].into_iter().find_map(|tier| {
            tier.iter().find_map(|pa| {
                let mode = pa.pointer("/spec/mtls/mode").and_then(Value::as_str)?;
                (mode != "UNSET").then_some((*pa, mode))
            })
        })
    }
}

fn selects(match_labels: &serde_json::Map<String, Value>, pod: &Labels) -> bool {
    match_labels.iter().all(|(k, v)| pod.get(k).map(String::as_str) == v.as_str())
}

/// The sidecar mode's rules: `Ok` says how the port is left alone, `Err` why it is not.
fn sidecar(x: &Scrape<'_>, policies: &Policies<'_>) -> Result<String, String> {
    let port = x.port;
    let ann = labels(x.workload, "/spec/template/metadata/annotations");
    let get = |k: &str| ann.get(k).map(String::as_str);
    let listed =
        |v: Option<&str>| v.is_some_and(|v| v.split(',').any(|p| p.trim() == port.to_string()));
    if get("sidecar.istio.io/inject") == Some("false") {
        return Ok("the pod is not in the mesh (sidecar.istio.io/inject: \"false\")".into());
    }
    if listed(get(EXCLUDE)) {
        return Ok(format!("port {port} is excluded from inbound capture ({EXCLUDE})"));
    }
    if let Some(include) = get(INCLUDE)
        && include.trim() != "*"
        && !listed(Some(include))
    {
        return Ok(format!("port {port} is not in {INCLUDE}, so Istio does not capture it"));
    }
    permissive(policies, port).ok_or_else(|| {
        format!(
            "port {port} is captured by Istio (every inbound port is since 1.3); under STRICT mTLS \
             Prometheus, holding no mesh certificate, is refused"
        )
    })
}

/// The ambient rules: only a workload PeerAuthentication keyed by the container port counts.
fn ambient(x: &Scrape<'_>, policies: &Policies<'_>) -> Result<String, String> {
    let port = x.port;
    if let Some(ok) = permissive(policies, port) {
        return Ok(ok);
    }
    // Why not: the mistakes that look right.
    if let Some(service_port) = x.service_port.filter(|p| *p != port)
        && let Some(pa) = policies
            .workload
            .iter()
            .find(|pa| pa.pointer(&format!("/spec/portLevelMtls/{service_port}")).is_some())
    {
        return Err(format!(
            "{} keys portLevelMtls by {service_port}, the Service port; ztunnel matches the \
             container port {port}, so the scrape stays behind STRICT mTLS",
            id(pa)
        ));
    }
    if let Some(pa) = policies.misplaced.first() {
        return Err(format!(
            "{} sets portLevelMtls but is in the root namespace or has no workload selector, \
             which ambient skips for this; port {port} stays behind STRICT mTLS",
            id(pa)
        ));
    }
    let annotation =
        labels(x.workload, "/spec/template/metadata/annotations").contains_key(EXCLUDE);
    Err(format!(
        "port {port} is behind ztunnel's STRICT mTLS{}",
        if annotation { ", and ztunnel ignores the excludeInboundPorts annotation" } else { "" }
    ))
}

/// Reachable in plaintext on either data plane: the port PERMISSIVE, or the workload's mode.
fn permissive(policies: &Policies<'_>, port: i64) -> Option<String> {
    if let Some(pa) = policies.port_permissive(port) {
        return Some(format!("{} sets port {port} PERMISSIVE", id(pa)));
    }
    match policies.effective() {
        Some((pa, mode @ ("PERMISSIVE" | "DISABLE"))) => {
            Some(format!("mTLS is {mode} for the workload ({}), so plaintext is admitted", id(pa)))
        }
        _ => None,
    }
}

fn fix(x: &Scrape<'_>, plane: &Plane) -> String {
    let port = x.port;
    let pa = format!(
        "a PeerAuthentication in namespace {} selecting the pods with portLevelMtls {port}: \
         PERMISSIVE (the container port; Istio 1.25+ under ambient)",
        ns_of(x.workload)
    );
    match plane {
        Plane::Sidecar(_) => format!("add the pod annotation {EXCLUDE}: \"{port}\" or {pa}"),
        Plane::Ambient(_) => {
            format!("add {pa}; meshscrape-gen renders it with istio.mode: peer-authentication")
        }
        _ => format!(
            "add {pa} and the pod annotation {EXCLUDE}: \"{port}\" (meshscrape-gen's istio.mode: \
             both, its default when istio.dataplane is not set)"
        ),
    }
}
