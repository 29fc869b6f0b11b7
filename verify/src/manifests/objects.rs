//! The objects under check, as JSON values, and the few ways the links read them: by kind, by
//! JSON pointer, with the labels a namespace carries.

use std::collections::BTreeMap;

use serde_json::Value;

/// Labels as Kubernetes has them: string keys and values.
pub(crate) type Labels = BTreeMap<String, String>;

/// The input: every object read, in order.
#[derive(Debug, Default)]
pub struct Objects {
    pub(crate) docs: Vec<Value>,
}

impl Objects {
    /// Objects already parsed, e.g. read from a cluster (each with apiVersion and kind set).
    pub fn from_values(docs: Vec<Value>) -> Objects {
        Objects { docs }
    }

    pub(crate) fn of_kind<'a>(&'a self, kinds: &'a [&str]) -> impl Iterator<Item = &'a Value> + 'a {
        self.docs.iter().filter(move |d| s(d, "/kind").is_some_and(|k| kinds.contains(&k)))
    }

    fn namespace_labels(&self, ns: &str) -> Option<Labels> {
        self.of_kind(&["Namespace"]).find(|n| s(n, "/metadata/name") == Some(ns)).map(|n| {
            let mut l = labels(n, "/metadata/labels");
            l.entry("kubernetes.io/metadata.name".into()).or_insert_with(|| ns.to_string());
            l
        })
    }

    /// Labels of namespace `ns`: from a Namespace object in the input, else only the label every
    /// namespace has since Kubernetes 1.21.
    pub(crate) fn ns_labels_or_name(&self, ns: &str) -> Labels {
        self.namespace_labels(ns)
            .unwrap_or_else(|| Labels::from([("kubernetes.io/metadata.name".into(), ns.into())]))
    }
}

/// The workload kinds whose pod template the links read.
pub(crate) const WORKLOADS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

/// The string at a JSON pointer, if there is one.
pub(crate) fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// An object's namespace, `default` when it names none.
pub(crate) fn ns_of(v: &Value) -> &str {
    s(v, "/metadata/namespace").unwrap_or("default")
}

/// `Kind/namespace/name`, as every check names its object.
pub(crate) fn id(v: &Value) -> String {
    format!(
        "{}/{}/{}",
        s(v, "/kind").unwrap_or("?"),
        ns_of(v),
        s(v, "/metadata/name").unwrap_or("?")
    )
}

/// The string labels at `pointer` (other values are no labels Kubernetes would accept).
pub(crate) fn labels(v: &Value, pointer: &str) -> Labels {
    v.pointer(pointer)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// The array at `pointer`, empty when there is none.
pub(crate) fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The containers of a pod spec that serve ports: its containers and its native sidecars (init
/// containers with `restartPolicy: Always`), in that order; `true` marks a native sidecar.
pub(crate) fn serving_containers(pod_spec: &Value) -> Vec<(&Value, bool)> {
    let native = list(pod_spec, "/initContainers")
        .iter()
        .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"));
    list(pod_spec, "/containers")
        .iter()
        .map(|c| (c, false))
        .chain(native.map(|c| (c, true)))
        .collect()
}
