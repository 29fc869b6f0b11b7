//! The admission webhook's decision: an AdmissionReview in, an AdmissionReview response out, with
//! a JSON Patch that adds the sidecar. The sidecar itself comes from [`inject`](crate::inject),
//! the same code `meshscrape-gen inject` runs: one implementation, two front doors.
//!
//! It fails open. Anything it cannot or should not inject into is allowed unchanged, with the
//! reason as a warning the API server shows to `kubectl`. A review that is not an AdmissionReview
//! at all is the only error.
//!
//! What is injected into, and how:
//! - workloads with a pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob)
//!   and bare Pods, on CREATE and UPDATE;
//! - never in `kube-system` or the webhook's own namespace, never twice;
//! - when the pod template says `meshscrape.io/inject: "true"`, or when the namespace opted in
//!   (the webhook configuration's namespace selector, `meshscrape.io/inject=enabled`) and the
//!   template does not say `"false"`;
//! - `meshscrape.io/port`, `meshscrape.io/routes` (entries separated by spaces, each as
//!   `--route` takes it) and `meshscrape.io/native` on the template choose the sidecar's port,
//!   routes and form. They are validated as the config file is; an invalid one means no
//!   injection and a warning that names the annotation.

use meshscrape_common::{AppConfig, ProxyConfig, ProxyOverrides};
use serde_json::{Value, json};

use crate::inject::{Extras, inject, pod_template};
use crate::templates::Templates;

pub const INJECT: &str = "meshscrape.io/inject";
pub const PORT: &str = "meshscrape.io/port";
pub const ROUTES: &str = "meshscrape.io/routes";
pub const NATIVE: &str = "meshscrape.io/native";
const SIDECAR: &str = "meshscrape-proxy";

/// Where the review came from.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The webhook's own namespace: never injected into.
    pub own_namespace: String,
    /// Whether this review came through the namespace opt-in webhook (the namespace carries
    /// `meshscrape.io/inject=enabled`).
    pub namespace_opted_in: bool,
}

/// A body that is not an AdmissionReview the webhook can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
#[error("not an AdmissionReview: {0}")]
pub struct BadReview(pub String);

/// What was decided, for the webhook's metrics and log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Injected,
    /// Allowed unchanged; why.
    Skipped(String),
}

/// Answers one AdmissionReview (`admission.k8s.io/v1`).
pub fn review(
    config: &AppConfig,
    templates: &Templates,
    body: &[u8],
    scope: &Scope,
) -> Result<(Value, Decision), BadReview> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| BadReview(format!("not JSON: {e}")))?;
    if review.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err(BadReview("kind is not AdmissionReview".into()));
    }
    let api_version = review.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if api_version != "admission.k8s.io/v1" {
        return Err(BadReview(format!(
            "apiVersion `{api_version}`; this webhook answers admission.k8s.io/v1"
        )));
    }
    let request = review.get("request").ok_or_else(|| BadReview("no request".into()))?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty() && u.len() <= 128)
        .ok_or_else(|| BadReview("request.uid is missing or not a short string".into()))?;
    let respond = |patch: Option<Vec<Value>>, warning: Option<String>| {
        let mut response = json!({"uid": uid, "allowed": true});
        if let Some(ops) = patch.filter(|ops| !ops.is_empty()) {
            let bytes = serde_json::to_vec(&ops).unwrap_or_default();
            response["patchType"] = json!("JSONPatch");
            response["patch"] =
                serde_json::to_value(k8s_openapi::ByteString(bytes)).unwrap_or(Value::Null);
        }
        if let Some(w) = warning {
            response["warnings"] = json!([format!("meshscrape: {w}")]);
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    };
    match decide(config, templates, request, scope) {
        Ok(ops) => Ok((respond(Some(ops), None), Decision::Injected)),
        Err(Skip { why, warn }) => {
            let warning = warn.then(|| why.clone());
            Ok((respond(None, warning), Decision::Skipped(why)))
        }
    }
}

/// Why nothing is injected; `warn` when the person who applied the object should hear it.
struct Skip {
    why: String,
    warn: bool,
}

fn skip(why: impl Into<String>) -> Skip {
    Skip { why: why.into(), warn: false }
}

fn warn(why: impl Into<String>) -> Skip {
    Skip { why: why.into(), warn: true }
}

fn decide(
    config: &AppConfig,
    templates: &Templates,
    request: &Value,
    scope: &Scope,
) -> Result<Vec<Value>, Skip> {
    let operation = request.get("operation").and_then(Value::as_str).unwrap_or("");
    if operation != "CREATE" && operation != "UPDATE" {
        return Err(skip(format!("operation {operation}")));
    }
    let namespace = request.get("namespace").and_then(Value::as_str).unwrap_or("");
    if namespace == "kube-system" || namespace == scope.own_namespace {
        return Err(skip(format!("namespace {namespace} is never injected into")));
    }
    let object =
        request.get("object").filter(|o| o.is_object()).ok_or_else(|| skip("no object"))?;
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(template) = pod_template(kind) else {
        return Err(skip(format!("{kind} has no pod template")));
    };
    let Some(pod) = object.pointer(template) else {
        return Err(skip("no pod template"));
    };
    let annotation = |key: &str| {
        pod.pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")))
            .and_then(Value::as_str)
    };
    match annotation(INJECT) {
        Some("true") => {}
        Some("false") => return Err(skip(format!("{INJECT} is \"false\""))),
        Some(other) => {
            return Err(warn(format!("{INJECT} is `{other}`; write \"true\" or \"false\"")));
        }
        None if scope.namespace_opted_in => {}
        None => return Err(skip(format!("neither {INJECT} nor the namespace label asks"))),
    }
    let already = ["containers", "initContainers"].iter().any(|list| {
        pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).is_some_and(|cs| {
            cs.iter().any(|c| c.get("name").and_then(Value::as_str) == Some(SIDECAR))
        })
    });
    if already {
        return Err(skip("the sidecar is already there"));
    }

    let mut config = config.clone();
    let mut extra_args: Vec<String> = Vec::new();
    if let Some(port) = annotation(PORT) {
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
            warn(format!("{PORT} is `{port}`; give a port number from 1 to 65535"))
        })?;
        config.sidecar.port = port;
        extra_args.extend(["--listen".into(), format!("0.0.0.0:{port}")]);
    }
    if let Some(routes) = annotation(ROUTES) {
        let routes: Vec<String> = routes.split_whitespace().map(str::to_string).collect();
        let overrides = ProxyOverrides {
            upstream: Some(format!("http://{}", config.sidecar.proxy.upstream)),
            routes: routes.clone(),
            ..Default::default()
        };
        let checked =
            ProxyConfig::load(None, &overrides).map_err(|e| warn(format!("{ROUTES}: {e}")))?;
        config.sidecar.proxy.routes = checked.routes;
        for r in routes {
            extra_args.extend(["--route".into(), r]);
        }
    }
    match annotation(NATIVE) {
        Some("true") => config.sidecar.native = true,
        Some("false") => config.sidecar.native = false,
        Some(other) => {
            return Err(warn(format!("{NATIVE} is `{other}`; write \"true\" or \"false\"")));
        }
        None => {}
    }
    if config.sidecar.port == config.container.port {
        return Err(warn(format!(
            "the sidecar's port {} is the app's; set {PORT} to another",
            config.sidecar.port
        )));
    }

    // The workload as `gen inject` leaves it, in the review's namespace.
    let mut doc = object.clone();
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), Value::String(namespace.to_string()));
    }
    config.namespaces = vec![namespace.to_string()];
    let injected = inject(&config, templates, vec![doc], Extras::default())
        .map_err(|e| warn(format!("cannot inject: {e}")))?;
    let Some(mut after) = injected.documents.into_iter().next() else {
        return Err(warn("cannot inject: nothing came back"));
    };
    if !extra_args.is_empty() {
        // The namespace's ConfigMap holds the config's settings; the annotations' go on the
        // command line, which wins over the file.
        for list in ["containers", "initContainers"] {
            let pointer = format!("{template}/spec/{list}");
            if let Some(c) = after
                .pointer_mut(&pointer)
                .and_then(Value::as_array_mut)
                .and_then(|cs| cs.iter_mut().find(|c| c["name"] == SIDECAR))
                && let Some(args) = c.get_mut("args").and_then(Value::as_array_mut)
            {
                args.extend(extra_args.iter().cloned().map(Value::String));
            }
        }
    }
    Ok(patch(object, &after, template))
}

/// A JSON Patch that turns `before` into `after` where injection writes: the pod template's
/// annotations, containers, init containers and volumes, each added or replaced whole.
fn patch(before: &Value, after: &Value, template: &str) -> Vec<Value> {
    let mut ops = Vec::new();
    if before.pointer(&format!("{template}/metadata")).is_none() {
        if let Some(meta) = after.pointer(&format!("{template}/metadata")) {
            ops.push(json!({"op": "add", "path": format!("{template}/metadata"), "value": meta}));
        }
    } else {
        push_diff(&mut ops, before, after, &format!("{template}/metadata/annotations"));
    }
    for field in ["containers", "initContainers", "volumes"] {
        push_diff(&mut ops, before, after, &format!("{template}/spec/{field}"));
    }
    ops
}

fn push_diff(ops: &mut Vec<Value>, before: &Value, after: &Value, path: &str) {
    match (before.pointer(path), after.pointer(path)) {
        (b, Some(a)) if b != Some(a) => {
            ops.push(json!({"op": "add", "path": path, "value": a}));
        }
        (Some(_), None) => ops.push(json!({"op": "remove", "path": path})),
        _ => {}
    }
}
