//! The AuthorizationPolicy link: Prometheus's plaintext request carries no peer identity, so an
//! ALLOW policy that selects the workload denies it unless one of its rules admits the port
//! without naming a source principal or namespace, and a DENY policy denies it when a rule
//! matches a request without one. Both data planes apply them. Policies in the workload's
//! namespace count when their selector matches the pods (or they have none); policies in the
//! root namespace without a selector count mesh-wide.

use serde_json::Value;

use super::Scrape;
use super::objects::{id, labels, list, ns_of};
use super::selectors::selector_matches;
use crate::report::{Check, Report};

pub(super) fn check(x: &Scrape<'_>, report: &mut Report) {
    let pod_labels = labels(x.workload, "/spec/template/metadata/labels");
    let ns = ns_of(x.workload);
    let applying: Vec<&Value> = x
        .objects
        .in_namespaces(&["AuthorizationPolicy"], &[ns, x.istio_root_namespace])
        .filter(|p| {
            let selector = p.pointer("/spec/selector");
            match (ns_of(p) == ns, ns_of(p) == x.istio_root_namespace, selector) {
                (true, _, Some(sel)) => selector_matches(sel, &pod_labels),
                (true, _, None) | (false, true, None) => true,
                _ => false,
            }
        })
        .collect();
    if applying.is_empty() {
        return;
    }
    let port = x.port.to_string();
    for p in applying.iter().filter(|p| action(p) == "DENY") {
        if list(p, "/spec/rules").iter().any(|r| rule_matches(r, &port, Source::Deny)) {
            report.push(
                Check::fail(
                    "AuthorizationPolicy",
                    format!(
                        "{} is a DENY policy with a rule that matches a request without a peer \
                         identity on port {port}: Prometheus's plaintext scrape is denied",
                        id(p)
                    ),
                    format!(
                        "leave port {port} out of that rule (to: operation: notPorts: [\"{port}\"])"
                    ),
                )
                .on(&x.workload_id),
            );
            return;
        }
    }
    let allows: Vec<&&Value> = applying.iter().filter(|p| action(p) == "ALLOW").collect();
    if allows.is_empty() {
        report.push(
            Check::pass(
                "AuthorizationPolicy",
                format!("no policy denies port {port} in plaintext"),
            )
            .on(&x.workload_id),
        );
        return;
    }
    match allows
        .iter()
        .find(|p| list(p, "/spec/rules").iter().any(|r| rule_matches(r, &port, Source::Allow)))
    {
        Some(p) => report.push(
            Check::pass(
                "AuthorizationPolicy",
                format!("{} admits port {port} without a peer identity", id(p)),
            )
            .on(&x.workload_id),
        ),
        None => {
            let ids: Vec<String> = allows.iter().map(|p| id(p)).collect();
            report.push(
                Check::fail(
                    "AuthorizationPolicy",
                    format!(
                        "{} select the pods and allow only what a rule admits; no rule admits port \
                         {port} without a source principal or namespace, which Prometheus's \
                         plaintext request lacks",
                        ids.join(", ")
                    ),
                    format!(
                        "add a rule to {} admitting the metrics port from anyone: \
                         {{to: [{{operation: {{ports: [\"{port}\"]}}}}]}}",
                        ids[0]
                    ),
                )
                .on(&x.workload_id),
            );
        }
    }
}

/// A policy's action; ALLOW when it says none.
fn action(p: &Value) -> &str {
    p.pointer("/spec/action").and_then(Value::as_str).unwrap_or("ALLOW")
}

/// Whose rule is asked: an ALLOW rule must admit a request without identity, a DENY rule
/// matches one when its sources do not demand an identity.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Allow,
    Deny,
}

/// Whether a rule matches Prometheus's scrape: a plaintext request to `port`, with no peer
/// principal, no namespace and no request principal. `when` conditions are taken as not met
/// for an ALLOW rule and met for a DENY rule (the cautious reading for each).
fn rule_matches(rule: &Value, port: &str, side: Source) -> bool {
    let from_ok = match rule.get("from").and_then(Value::as_array) {
        None => true,
        Some(froms) if froms.is_empty() => true,
        Some(froms) => froms.iter().all(|f| {
            let src = f.get("source").unwrap_or(&Value::Null);
            // Positive identity fields need an identity; negative ones match its absence.
            !["principals", "requestPrincipals", "namespaces"].iter().any(|k| src.get(k).is_some())
        }),
    };
    let to_ok = match rule.get("to").and_then(Value::as_array) {
        None => true,
        Some(tos) if tos.is_empty() => true,
        Some(tos) => tos.iter().any(|t| {
            let op = t.get("operation").unwrap_or(&Value::Null);
            let listed = |k: &str| {
                op.get(k)
                    .and_then(Value::as_array)
                    .map(|ps| ps.iter().any(|p| p.as_str() == Some(port)))
            };
            listed("ports").unwrap_or(true) && !listed("notPorts").unwrap_or(false)
        }),
    };
    let when_ok = rule.get("when").is_none() || side == Source::Deny;
    from_ok && to_ok && when_ok
}
