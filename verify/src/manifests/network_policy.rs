//! The NetworkPolicy link: when policies select the pod for ingress, one must admit the scraped
//! port from Prometheus's namespace: by number, by the container port's name, or in a range up
//! to `endPort`.

use serde_json::Value;

use super::Scrape;
use super::objects::{id, labels, list, ns_of, s};
use super::selectors::selector_matches;
use crate::report::{Check, Report};

pub(super) fn check(x: &Scrape<'_>, report: &mut Report) {
    let (w, port, prom_ns) = (x.workload, x.port, x.prometheus_namespace);
    let pod_labels = labels(w, "/spec/template/metadata/labels");
    let policies: Vec<&Value> = x
        .objects
        .in_namespace(&["NetworkPolicy"], ns_of(w))
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
    let prom_ns_labels = x.objects.ns_labels_or_name(prom_ns);
    // The container port's name: a policy may name the port instead of numbering it.
    let port_name = list(x.container, "/ports")
        .iter()
        .find(|p| p.get("containerPort").and_then(Value::as_i64) == Some(port))
        .and_then(|p| s(p, "/name"));
    let covers = |entry: &Value| match entry.get("port") {
        None | Some(Value::Null) => true,
        Some(Value::String(name)) => Some(name.as_str()) == port_name,
        Some(v) => match (v.as_i64(), entry.get("endPort").and_then(Value::as_i64)) {
            (Some(first), Some(last)) => (first..=last).contains(&port),
            (Some(only), None) => only == port,
            _ => false,
        },
    };
    let admits = |p: &&Value| {
        p.pointer("/spec/ingress").and_then(Value::as_array).into_iter().flatten().any(|rule| {
            let port_ok = rule
                .get("ports")
                .and_then(Value::as_array)
                .is_none_or(|ps| ps.is_empty() || ps.iter().any(covers));
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
            .on(&x.workload_id),
        ),
        None => {
            let ids: Vec<String> = policies.iter().map(|p| id(p)).collect();
            report.push(
                Check::fail(
                    "NetworkPolicy",
                    format!(
                        "{} select the pods but none admits port {port} from Prometheus's \
                         namespace {prom_ns}",
                        ids.join(", ")
                    ),
                    format!(
                        "add an ingress rule from namespaceSelector \
                         kubernetes.io/metadata.name={prom_ns} to port {port}"
                    ),
                )
                .on(&x.workload_id),
            );
        }
    }
}
