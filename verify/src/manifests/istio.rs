//! The Istio link: under STRICT mTLS the scraped port must be left alone by the mesh, by the pod
//! annotation that excludes it from inbound capture, by leaving it out of the ports captured, or
//! by a workload PeerAuthentication that makes it PERMISSIVE.

use serde_json::Value;

use super::Scrape;
use super::objects::{id, labels, ns_of};
use crate::report::{Check, Report};

const EXCLUDE: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
const INCLUDE: &str = "traffic.sidecar.istio.io/includeInboundPorts";

pub(super) fn check(x: &Scrape<'_>, report: &mut Report) {
    let (w, wid, port) = (x.workload, x.workload_id.as_str(), x.port);
    let ann = labels(w, "/spec/template/metadata/annotations");
    let get = |k: &str| ann.get(k).map(String::as_str);
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
        x.objects.of_kind(&["PeerAuthentication"]).filter(|pa| ns_of(pa) == ns_of(w)).find(|pa| {
            let selects = pa
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .is_some_and(|ml| {
                    ml.iter().all(|(k, v)| pod_labels.get(k).map(String::as_str) == v.as_str())
                });
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
        Check::fail(
            "Istio",
            format!(
                "port {port} is captured by Istio (every inbound port is since 1.3); under STRICT \
                 mTLS Prometheus, holding no mesh certificate, is refused"
            ),
            format!(
                "add the pod annotation {EXCLUDE}: \"{port}\" or a PeerAuthentication with \
                 portLevelMtls {port}: PERMISSIVE"
            ),
        )
        .on(wid)
        .at("spec.template.metadata.annotations"),
    );
}
