//! `meshscrape-gen inject`: adds the sidecar to workloads you already have, the way
//! `istioctl kube-inject` adds Envoy. The sidecar container, its volume and the pod annotations
//! come from the same Deployment template `meshscrape-gen` renders, so both paths agree.
//!
//! Everything else in the input is kept as it was (key order included; YAML comments are not
//! kept). Injecting twice gives the same output as injecting once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use meshscrape_common::AppConfig;
use serde_json::{Map, Value};

use crate::GenError;
use crate::objects::Object;
use crate::render::{monitor_template, render_one};
use crate::templates::Templates;

/// Where each kind keeps its pod template: the pod's `metadata` and `spec` are at this pointer
/// ("" for a bare Pod, whose own metadata and spec they are).
pub fn pod_template(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        "Pod" => Some(""),
        _ => None,
    }
}

/// Whether pods of this kind run to completion, so that a classic sidecar, which never exits,
/// would keep them from ever finishing: those get the native sidecar (Kubernetes 1.29+), which
/// the kubelet stops once the app's containers are done.
fn runs_to_completion(kind: &str, doc: &Value, template: &str) -> bool {
    match kind {
        "Job" | "CronJob" => true,
        "Pod" => doc
            .pointer(&format!("{template}/spec/restartPolicy"))
            .and_then(Value::as_str)
            .is_some_and(|p| p != "Always"),
        _ => false,
    }
}
const SIDECAR: &str = "meshscrape-proxy";
const VOLUME: &str = "meshscrape-config";
/// Every volume the sidecar brings is named so.
const VOLUME_PREFIX: &str = "meshscrape-";
const EXCLUDE: &str = "traffic.sidecar.istio.io/excludeInboundPorts";

/// What to emit besides the injected workloads and their ConfigMaps.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// Add the named metrics port to input Services that select an injected workload.
    pub service_port: bool,
    /// Emit the ServiceMonitor or PodMonitor.
    pub monitor: bool,
}

/// The result: documents to print, and notes for stderr.
#[derive(Debug, Default)]
pub struct Injected {
    pub documents: Vec<Value>,
    pub notes: Vec<String>,
}

/// Reads the documents of every input (`-` is stdin, read at most once) in order; null documents
/// (an empty `---` section) are dropped.
pub fn read_inputs(
    inputs: &[PathBuf],
    stdin: impl FnOnce() -> std::io::Result<String>,
) -> Result<Vec<Value>, GenError> {
    let mut stdin = Some(stdin);
    let mut docs = Vec::new();
    for input in inputs {
        let name = input.display().to_string();
        let io = |source| GenError::Io { path: name.clone(), source };
        let text = if input == Path::new("-") {
            let read = stdin.take().ok_or_else(|| GenError::Input {
                path: name.clone(),
                message: "stdin (-) can be given once".into(),
            })?;
            read().map_err(io)?
        } else {
            std::fs::read_to_string(input).map_err(io)?
        };
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| GenError::Input {
                path: name.clone(),
                message: format!("not YAML: {}", e.without_snippet()),
            })?;
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    Ok(docs)
}

impl Injected {
    /// The documents as one YAML stream, each after a `---` line.
    pub fn to_yaml(&self) -> Result<String, GenError> {
        let mut out = String::new();
        for doc in &self.documents {
            out.push_str("---\n");
            out.push_str(
                &serde_saphyr::to_string(doc).map_err(|e| GenError::Input {
                    path: "output".into(),
                    message: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }
}

/// Injects into every workload in `docs`; passes every other document through.
pub fn inject(
    config: &AppConfig,
    templates: &Templates,
    docs: Vec<Value>,
    extras: Extras,
) -> Result<Injected, GenError> {
    let mut out = Injected::default();
    let mut added: Vec<Value> = Vec::new();
    let mut pod_labels: Vec<(Option<String>, Map<String, Value>)> = Vec::new();
    let mut parts_by_ns: BTreeMap<String, Parts> = BTreeMap::new();
    for mut doc in docs {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let template = pod_template(&kind);
        if let Some(template) = template
            && let Err(why) = injectable(&doc, template)
        {
            // A workload the user asked to inject but whose shape Kubernetes would refuse too:
            // say where, rather than guess, overwrite or skip it.
            return Err(GenError::Input {
                path: describe(&kind, &name),
                message: format!("cannot inject: {why}"),
            });
        }
        let Some(template) =
            template.filter(|t| doc.pointer(&format!("{t}/spec")).is_some_and(Value::is_object))
        else {
            if !is_ours(&doc) && kind != "Service" {
                out.notes.push(format!(
                    "passing {} through untouched: not a workload with a pod template \
                     (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod)",
                    describe(&kind, &name)
                ));
            }
            out.documents.push(doc);
            continue;
        };
        let namespace =
            doc.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string);
        let render_ns = namespace.clone().unwrap_or_else(|| config.namespaces[0].clone());
        // Rendered once per namespace, however many workloads live there.
        if !parts_by_ns.contains_key(&render_ns) {
            parts_by_ns.insert(render_ns.clone(), sidecar_parts(config, templates, &render_ns)?);
        }
        let parts = &parts_by_ns[&render_ns];
        let native = parts.native || runs_to_completion(&kind, &doc, template);
        if native && !parts.native {
            out.notes.push(format!(
                "{} runs to completion: its sidecar is a native one (an init container with \
                 restartPolicy: Always, Kubernetes 1.29+), which stops when the app is done",
                describe(&kind, &name)
            ));
        }
        apply(&mut doc, template, parts, native);
        if let Some(labels) =
            doc.pointer(&format!("{template}/metadata/labels")).and_then(Value::as_object)
        {
            pod_labels.push((namespace.clone(), labels.clone()));
        }
        let mut cm = parts.config_map.clone();
        if namespace.is_none()
            && let Some(meta) = cm.get_mut("metadata").and_then(Value::as_object_mut)
        {
            // The workload takes its namespace from kubectl; its ConfigMap must too.
            meta.remove("namespace");
        }
        out.notes.push(format!("injected {} into {}", SIDECAR, describe(&kind, &name)));
        out.documents.push(doc);
        added.push(cm);
    }
    if extras.service_port {
        let port = service_port(config);
        for doc in &mut out.documents {
            if doc.get("kind").and_then(Value::as_str) == Some("Service")
                && selects_injected(doc, &pod_labels)
            {
                upsert_named(doc, "/spec/ports", port.clone());
            }
        }
    }
    if extras.monitor {
        let template = monitor_template(config.monitor.kind);
        let monitor = render_one(config, templates, template, &config.namespaces[0])?;
        added.push(
            serde_saphyr::from_str(&monitor.text)
                .map_err(|e| GenError::Input { path: monitor.source, message: e.to_string() })?,
        );
    }
    // An object we emit that is already in the input (a second injection) replaces it in place.
    for obj in added {
        match out.documents.iter_mut().find(|d| same_object(d, &obj)) {
            Some(existing) => *existing = obj,
            None => out.documents.push(obj),
        }
    }
    Ok(out)
}

/// The pieces of the rendered Deployment that make up the sidecar.
struct Parts {
    container: Value,
    /// Whether the config asks for a native sidecar (it goes in `initContainers`).
    native: bool,
    /// The container as a native sidecar, for pods that run to completion.
    native_container: Value,
    /// The sidecar's volumes: its ConfigMap, and the Secrets of its access settings if any.
    volumes: Vec<Value>,
    annotations: Map<String, Value>,
    config_map: Value,
}

fn sidecar_parts(
    config: &AppConfig,
    templates: &Templates,
    namespace: &str,
) -> Result<Parts, GenError> {
    let deployment = render_one(config, templates, "deployment.yaml.j2", namespace)?;
    let config_map = render_one(config, templates, "configmap.yaml.j2", namespace)?;
    let Object::Deployment(_) = &deployment.object else {
        return Err(GenError::Input {
            path: deployment.source,
            message: "the deployment template did not render a Deployment".into(),
        });
    };
    let value: Value = serde_saphyr::from_str(&deployment.text)
        .map_err(|e| GenError::Input { path: deployment.source.clone(), message: e.to_string() })?;
    let find = |path: &str, name: &str| {
        value
            .pointer(path)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .cloned()
    };
    let missing = |what: &str| GenError::Input {
        path: deployment.source.clone(),
        message: format!("the deployment template has no {what}"),
    };
    let native = find("/spec/template/spec/initContainers", SIDECAR);
    // The native form too, rendered from the same template, when the config asks for the classic.
    let native_container = match &native {
        Some(c) => c.clone(),
        None => {
            let mut native_config = config.clone();
            native_config.sidecar.native = true;
            let rendered = render_one(&native_config, templates, "deployment.yaml.j2", namespace)?;
            let value: Value = serde_saphyr::from_str(&rendered.text).map_err(|e| {
                GenError::Input { path: rendered.source.clone(), message: e.to_string() }
            })?;
            value
                .pointer("/spec/template/spec/initContainers")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| c["name"] == SIDECAR))
                .cloned()
                .ok_or_else(|| missing("native meshscrape-proxy container"))?
        }
    };
    Ok(Parts {
        native: native.is_some(),
        native_container,
        container: native
            .or_else(|| find("/spec/template/spec/containers", SIDECAR))
            .ok_or_else(|| missing("meshscrape-proxy container"))?,
        volumes: {
            find("/spec/template/spec/volumes", VOLUME)
                .ok_or_else(|| missing("meshscrape-config volume"))?;
            value
                .pointer("/spec/template/spec/volumes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|v| v["name"].as_str().is_some_and(|n| n.starts_with(VOLUME_PREFIX)))
                .cloned()
                .collect()
        },
        annotations: value
            .pointer("/spec/template/metadata/annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        config_map: serde_saphyr::from_str(&config_map.text)
            .map_err(|e| GenError::Input { path: config_map.source, message: e.to_string() })?,
    })
}

fn apply(doc: &mut Value, template: &str, parts: &Parts, native: bool) {
    let Some(template) = doc.pointer_mut(template) else { return };
    let meta = object_at(template, "metadata");
    let annotations = object_at(meta, "annotations");
    for (k, v) in &parts.annotations {
        let merged = match (k.as_str(), annotations.get(k).and_then(Value::as_str), v.as_str()) {
            // Keep ports someone else excluded; add ours once.
            (EXCLUDE, Some(existing), Some(ours)) => {
                let mut ports: Vec<&str> =
                    existing.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
                if !ports.contains(&ours) {
                    ports.push(ours);
                }
                Value::String(ports.join(","))
            }
            _ => v.clone(),
        };
        annotations.as_object_mut().map(|a| a.insert(k.clone(), merged));
    }
    let spec = object_at(template, "spec");
    // A native sidecar lives in initContainers, a classic one in containers; a change of the
    // setting moves it, so the pod never holds two.
    let (into, out_of, container) = if native {
        ("initContainers", "containers", &parts.native_container)
    } else {
        ("containers", "initContainers", &parts.container)
    };
    remove_named(spec, out_of, SIDECAR);
    upsert_named(spec, &format!("/{into}"), container.clone());
    // Ours from an earlier injection that this one no longer has (TLS turned off) go.
    if let Some(list) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        list.retain(|v| {
            let name = v["name"].as_str().unwrap_or("");
            !name.starts_with(VOLUME_PREFIX) || parts.volumes.iter().any(|p| p["name"] == name)
        });
    }
    for volume in &parts.volumes {
        upsert_named(spec, "/volumes", volume.clone());
    }
}

/// Removes the item called `name` from the list `key` of `v`, and the list if that empties it.
fn remove_named(v: &mut Value, key: &str, name: &str) {
    let Some(obj) = v.as_object_mut() else { return };
    if let Some(list) = obj.get_mut(key).and_then(Value::as_array_mut) {
        list.retain(|item| item.get("name").and_then(Value::as_str) != Some(name));
        if list.is_empty() {
            obj.remove(key);
        }
    }
}

/// Whether a workload has the shape injection writes into: every field it touches absent, null
/// or of the kind Kubernetes defines. `Err` names the first field that is not, and what it is.
fn injectable(doc: &Value, template: &str) -> Result<(), String> {
    let shape = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    };
    let want = |pointer: &str, mapping: bool| -> Result<(), String> {
        match doc.pointer(pointer) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Object(_)) if mapping => Ok(()),
            Some(Value::Array(_)) if !mapping => Ok(()),
            Some(other) => Err(format!(
                "{} is {}, not {}",
                pointer.trim_start_matches('/').replace('/', "."),
                shape(other),
                if mapping { "a mapping" } else { "a list" }
            )),
        }
    };
    want("/spec", true)?;
    if !template.is_empty() {
        match doc.pointer(template) {
            None | Some(Value::Null) => return Ok(()), // not a pod template: passed through
            Some(Value::Object(_)) => {}
            Some(other) => {
                let field = template.trim_start_matches('/').replace('/', ".");
                return Err(format!("{field} is {}, not a mapping", shape(other)));
            }
        }
    }
    want(&format!("{template}/metadata"), true)?;
    want(&format!("{template}/metadata/annotations"), true)?;
    want(&format!("{template}/metadata/labels"), true)?;
    want(&format!("{template}/spec"), true)?;
    want(&format!("{template}/spec/containers"), false)?;
    want(&format!("{template}/spec/initContainers"), false)?;
    want(&format!("{template}/spec/volumes"), false)
}

/// `v[key]`, made an object if it was absent or null.
fn object_at<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    let slot = &mut v[key];
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot
}

/// Replaces the list item with the same `name`, or appends it.
fn upsert_named(v: &mut Value, pointer: &str, item: Value) {
    let key = pointer.trim_start_matches('/');
    let parent = match pointer.rsplit_once('/') {
        Some(("", _)) | None => Some(&mut *v),
        Some((p, _)) => v.pointer_mut(p),
    };
    let Some(parent) = parent.and_then(Value::as_object_mut) else { return };
    let last = key.rsplit('/').next().unwrap_or(key);
    let list = parent.entry(last).or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    let Some(list) = list.as_array_mut() else { return };
    match list.iter_mut().find(|x| x.get("name") == item.get("name")) {
        Some(existing) => *existing = item,
        None => list.push(item),
    }
}

fn service_port(config: &AppConfig) -> Value {
    serde_json::json!({
        "name": config.sidecar.port_name,
        "port": config.sidecar.port,
        "targetPort": config.sidecar.port,
        "protocol": "TCP",
    })
}

fn selects_injected(service: &Value, pods: &[(Option<String>, Map<String, Value>)]) -> bool {
    let ns = service.pointer("/metadata/namespace").and_then(Value::as_str);
    let Some(selector) = service.pointer("/spec/selector").and_then(Value::as_object) else {
        return false;
    };
    !selector.is_empty()
        && pods.iter().any(|(pod_ns, labels)| {
            pod_ns.as_deref() == ns && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
}

fn is_ours(doc: &Value) -> bool {
    doc.pointer("/metadata/labels/app.kubernetes.io~1managed-by").and_then(Value::as_str)
        == Some("meshscrape-gen")
}

fn same_object(a: &Value, b: &Value) -> bool {
    ["/kind", "/metadata/name", "/metadata/namespace"].iter().all(|p| a.pointer(p) == b.pointer(p))
}

fn describe(kind: &str, name: &str) -> String {
    match (kind, name) {
        ("", _) => "a document without a kind".into(),
        (k, "") => k.to_string(),
        (k, n) => format!("{k}/{n}"),
    }
}
