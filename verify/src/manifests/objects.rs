//! The objects under check, as JSON values, and the few ways the links read them: by kind, by
//! JSON pointer, with the labels a namespace carries.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// Labels as Kubernetes has them: string keys and values.
pub(crate) type Labels = BTreeMap<String, String>;

/// The input: every object read, in order, indexed by kind and namespace so that a link looks
/// at the objects of its own namespace only (a dump of a thousand namespaces would otherwise
/// make every link scan every object: quadratic).
#[derive(Debug, Default)]
pub struct Objects {
    pub(crate) docs: Vec<Value>,
    /// Positions in `docs` by (kind, namespace), ascending.
    by_kind_ns: HashMap<(String, String), Vec<usize>>,
    /// Positions in `docs` by kind, ascending.
    by_kind: HashMap<String, Vec<usize>>,
    /// Position of each Namespace object by name.
    namespaces: HashMap<String, usize>,
}

impl Objects {
    /// Objects already parsed, e.g. read from a cluster (each with apiVersion and kind set).
    pub fn from_values(docs: Vec<Value>) -> Objects {
        let mut objects = Objects { docs, ..Objects::default() };
        for (i, d) in objects.docs.iter().enumerate() {
            let Some(kind) = s(d, "/kind") else { continue };
            objects.by_kind.entry(kind.to_string()).or_default().push(i);
            objects.by_kind_ns.entry((kind.to_string(), ns_of(d).to_string())).or_default().push(i);
            if kind == "Namespace"
                && let Some(name) = s(d, "/metadata/name")
            {
                objects.namespaces.entry(name.to_string()).or_insert(i);
            }
        }
        objects
    }

    /// Every object of these kinds, in input order.
    pub(crate) fn of_kind<'a>(&'a self, kinds: &[&str]) -> std::vec::IntoIter<&'a Value> {
        self.positions(kinds.iter().filter_map(|k| self.by_kind.get(*k)))
    }

    /// The objects of these kinds in namespace `ns`, in input order.
    pub(crate) fn in_namespace<'a>(
        &'a self,
        kinds: &[&str],
        ns: &str,
    ) -> std::vec::IntoIter<&'a Value> {
        self.in_namespaces(kinds, &[ns])
    }

    /// The objects of these kinds in any of `namespaces` (each counted once), in input order.
    pub(crate) fn in_namespaces<'a>(
        &'a self,
        kinds: &[&str],
        namespaces: &[&str],
    ) -> std::vec::IntoIter<&'a Value> {
        let mut unique = namespaces.to_vec();
        unique.sort_unstable();
        unique.dedup();
        self.positions(
            kinds
                .iter()
                .flat_map(|k| {
                    unique.iter().filter_map(|ns| {
                        self.by_kind_ns.get(&((*k).to_string(), (*ns).to_string()))
                    })
                })
                .collect::<Vec<_>>()
                .into_iter(),
        )
    }

    /// The Namespace object named `name`, if the input has one.
    pub(crate) fn namespace(&self, name: &str) -> Option<&Value> {
        self.namespaces.get(name).map(|&i| &self.docs[i])
    }

    fn positions<'a, 'b>(
        &'a self,
        lists: impl Iterator<Item = &'b Vec<usize>>,
    ) -> std::vec::IntoIter<&'a Value> {
        let mut at: Vec<usize> = lists.flatten().copied().collect();
        at.sort_unstable();
        at.into_iter().map(|i| &self.docs[i]).collect::<Vec<_>>().into_iter()
    }

    fn namespace_labels(&self, ns: &str) -> Option<Labels> {
        self.namespace(ns).map(|n| {
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
