//! Label selectors, matched by kube's own `Selector`, and which namespaces a monitor looks in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt as _};
use serde_json::Value;

use super::objects::{Labels, labels, ns_of, s};

/// Whether a Kubernetes label selector (`matchLabels` and `matchExpressions`) selects `labels`.
/// An empty selector selects everything; one that is not a valid selector (an unknown operator,
/// `In` without values, a value of the wrong type) selects nothing, as the API server would
/// select nothing with an object it refuses.
pub fn selector_matches(selector: &Value, labels: &Labels) -> bool {
    serde_json::from_value::<LabelSelector>(selector.clone())
        .ok()
        .and_then(|s| Selector::try_from(s).ok())
        .is_some_and(|s| s.matches(labels))
}

/// A selector's `matchLabels` as `k=v,…`, for messages.
pub(crate) fn show(selector: &Value) -> String {
    let ml = labels(selector, "/matchLabels");
    let parts: Vec<String> = ml.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() { "(any labels)".into() } else { parts.join(",") }
}

/// A monitor's `spec.namespaceSelector`: `any`, and the `matchNames` (empty: its own namespace).
pub(crate) fn namespace_scope(m: &Value) -> (bool, Vec<String>) {
    let nsel = m.pointer("/spec/namespaceSelector");
    let any = nsel.and_then(|n| n.get("any")).and_then(Value::as_bool) == Some(true);
    let match_names = nsel
        .and_then(|n| n.get("matchNames"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    (any, match_names)
}

/// Whether monitor `m` looks in namespace `ns`.
pub(crate) fn admits(m: &Value, ns: &str) -> bool {
    let (any, match_names) = namespace_scope(m);
    any || if match_names.is_empty() { ns == ns_of(m) } else { match_names.iter().any(|n| n == ns) }
}

/// The monitor's `spec.selector`, `{}` when absent.
pub(crate) fn monitor_selector(m: &Value) -> Value {
    m.pointer("/spec/selector").cloned().unwrap_or(Value::Object(Default::default()))
}

/// Whether monitor `m` selects `target`, a Service for a ServiceMonitor or a Pod for a PodMonitor:
/// the target's namespace admitted and its labels matched.
pub fn selects(m: &Value, target: &Value) -> bool {
    let wanted = match s(m, "/kind") {
        Some("ServiceMonitor") => "Service",
        Some("PodMonitor") => "Pod",
        _ => return false,
    };
    s(target, "/kind") == Some(wanted)
        && admits(m, ns_of(target))
        && selector_matches(&monitor_selector(m), &labels(target, "/metadata/labels"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn match_labels_and_expressions_both_apply() {
        let sel = json!({
            "matchLabels": {"app": "shop"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        });
        assert!(selector_matches(&sel, &l(&[("app", "shop"), ("tier", "api")])));
        assert!(!selector_matches(&sel, &l(&[("app", "shop"), ("tier", "db")])));
        assert!(!selector_matches(&sel, &l(&[("app", "shop"), ("tier", "api"), ("canary", "1")])));
        assert!(!selector_matches(&sel, &l(&[("tier", "api")])));
    }

    #[test]
    fn an_empty_selector_selects_all_and_an_invalid_one_nothing() {
        assert!(selector_matches(&json!({}), &l(&[("app", "shop")])));
        for bad in [
            json!({"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            json!({"matchLabels": {"app": 1}}),
            json!("app=shop"),
        ] {
            assert!(!selector_matches(&bad, &l(&[("app", "shop"), ("a", "x")])), "{bad}");
        }
    }
}
