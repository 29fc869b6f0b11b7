//! The admission webhook's decision: AdmissionReviews of every workload kind in, JSON patches
//! out that give exactly what `gen inject` gives; the skip rules; annotations that choose the
//! sidecar's settings; and hostile or malformed reviews, each refused or allowed unchanged,
//! never a panic.

use meshscrape_gen::admission::{self, BadReview, Decision, Scope};
use meshscrape_gen::inject::{Extras, inject};
use meshscrape_gen::templates::Templates;
use serde_json::{Value, json};

use super::support::config_with;

fn scope(opted_in: bool) -> Scope {
    Scope { own_namespace: "meshscrape-system".into(), namespace_opted_in: opted_in }
}

fn review_of(object: &Value, namespace: &str, operation: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": object["kind"]},
            "operation": operation,
            "namespace": namespace,
            "object": object,
        }
    }))
    .unwrap()
}

/// Applies a JSON Patch of `add` and `remove` on object members, as the API server would.
pub(crate) fn apply(mut doc: Value, ops: &[Value]) -> Value {
    for op in ops {
        let path = op["path"].as_str().unwrap();
        let (parent, key) = path.rsplit_once('/').unwrap();
        let key = key.replace("~1", "/").replace("~0", "~");
        let target = doc.pointer_mut(parent).unwrap_or_else(|| panic!("no parent for {path}"));
        match op["op"].as_str().unwrap() {
            "add" => {
                target.as_object_mut().unwrap().insert(key, op["value"].clone());
            }
            "remove" => {
                target.as_object_mut().unwrap().remove(&key).expect("removed member exists");
            }
            other => panic!("unexpected op {other}"),
        }
    }
    doc
}

/// The review's answer: (the patched object, the decision, the response).
pub(crate) fn admit(object: &Value, namespace: &str, opted_in: bool) -> (Value, Decision, Value) {
    let config = config_with(|t| t);
    let templates = Templates::load(None).unwrap();
    let (answer, decision) = admission::review(
        &config,
        &templates,
        &review_of(object, namespace, "CREATE"),
        &scope(opted_in),
    )
    .unwrap();
    let response = answer["response"].clone();
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true, "fails open, always allowed");
    let patched = match response.get("patch") {
        Some(p) => {
            assert_eq!(response["patchType"], "JSONPatch");
            let bytes: k8s_openapi::ByteString = serde_json::from_value(p.clone()).unwrap();
            let ops: Vec<Value> = serde_json::from_slice(&bytes.0).unwrap();
            apply(object.clone(), &ops)
        }
        None => object.clone(),
    };
    (patched, decision, response)
}

pub(crate) fn pod(annotations: Value) -> Value {
    json!({"metadata": {"labels": {"app": "x"}, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "x:1", "ports": [{"containerPort": 8080}]}]}})
}

/// Every kind, annotated: the patch gives what `gen inject` gives for the same object.
pub(crate) fn workloads(annotations: Value) -> Vec<Value> {
    let t = pod(annotations);
    let mut job_pod = t.clone();
    job_pod["spec"]["restartPolicy"] = json!("Never");
    let mut bare = t.clone();
    bare["apiVersion"] = json!("v1");
    bare["kind"] = json!("Pod");
    bare["metadata"]["name"] = json!("bare");
    let meta = |k: &str| json!({"name": k.to_lowercase()});
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("Deployment"), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": t}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("StatefulSet"), "spec": {"serviceName": "x", "selector": {"matchLabels": {"app": "x"}}, "template": t}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("DaemonSet"), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": t}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("Job"), "spec": {"template": job_pod}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta("CronJob"), "spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": job_pod}}}}),
        bare,
    ]
}

#[test]
fn every_kind_gets_what_gen_inject_gives() {
    let config = config_with(|t| t);
    let templates = Templates::load(None).unwrap();
    for object in workloads(json!({"meshscrape.io/inject": "true"})) {
        let (patched, decision, _) = admit(&object, "tools", false);
        assert_eq!(decision, Decision::Injected, "{}", object["kind"]);
        let mut in_ns = object.clone();
        in_ns["metadata"]["namespace"] = json!("tools");
        let mut expected = inject(&config, &templates, vec![in_ns], Extras::default())
            .unwrap()
            .documents
            .remove(0);
        expected["metadata"].as_object_mut().unwrap().remove("namespace");
        assert_eq!(patched, expected, "{}", object["kind"]);
        // Twice: the sidecar is there, nothing more.
        let (again, decision, response) = admit(&patched, "tools", false);
        assert_eq!(decision, Decision::Skipped("the sidecar is already there".into()));
        assert!(response.get("patch").is_none());
        assert_eq!(again, patched);
    }
}

#[test]
fn who_is_injected_into_and_who_is_not() {
    let deployment = |annotations: Value| workloads(annotations).remove(0);
    let injected = |o: &Value, ns: &str, opted: bool| admit(o, ns, opted).1 == Decision::Injected;
    // The namespace label opts everyone in, unless the template says no.
    assert!(injected(&deployment(json!({})), "tools", true));
    assert!(!injected(&deployment(json!({})), "tools", false));
    assert!(!injected(&deployment(json!({"meshscrape.io/inject": "false"})), "tools", true));
    // Never in kube-system or the webhook's own namespace.
    let asked = deployment(json!({"meshscrape.io/inject": "true"}));
    assert!(!injected(&asked, "kube-system", true));
    assert!(!injected(&asked, "meshscrape-system", true));
    // Other kinds and operations pass.
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}});
    assert!(!injected(&cm, "tools", true));
    let config = config_with(|t| t);
    let templates = Templates::load(None).unwrap();
    let (answer, decision) =
        admission::review(&config, &templates, &review_of(&asked, "tools", "DELETE"), &scope(true))
            .unwrap();
    assert_eq!(decision, Decision::Skipped("operation DELETE".into()));
    assert!(answer["response"].get("patch").is_none());
}

#[test]
fn annotations_choose_the_port_routes_and_form_and_bad_ones_are_warned_about() {
    let object = workloads(json!({
        "meshscrape.io/inject": "true",
        "meshscrape.io/port": "9464",
        "meshscrape.io/routes": "/metrics=/metrics /stats=http://127.0.0.1:9100/metrics",
        "meshscrape.io/native": "true",
    }))
    .remove(0);
    let (patched, decision, _) = admit(&object, "tools", false);
    assert_eq!(decision, Decision::Injected);
    let spec = &patched["spec"]["template"]["spec"];
    let sidecar = &spec["initContainers"][0];
    assert_eq!(sidecar["name"], "meshscrape-proxy");
    assert_eq!(sidecar["restartPolicy"], "Always", "native");
    assert_eq!(sidecar["ports"][0]["containerPort"], 9464);
    let args: Vec<&str> =
        sidecar["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(
        args,
        [
            "--config",
            "/etc/meshscrape/sidecar.yaml",
            "--listen",
            "0.0.0.0:9464",
            "--route",
            "/metrics=/metrics",
            "--route",
            "/stats=http://127.0.0.1:9100/metrics"
        ]
    );
    assert_eq!(
        patched["spec"]["template"]["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeInboundPorts"],
        "9464"
    );

    for (key, value, says) in [
        ("meshscrape.io/port", "ninety", "give a port number"),
        ("meshscrape.io/port", "8080", "is the app's"),
        ("meshscrape.io/routes", "/metrics=http://10.0.0.1/metrics", "loopback"),
        ("meshscrape.io/native", "yes", "write \"true\" or \"false\""),
        ("meshscrape.io/inject", "enabled", "write \"true\" or \"false\""),
    ] {
        let mut annotations = json!({"meshscrape.io/inject": "true"});
        annotations[key] = json!(value);
        let object = workloads(annotations).remove(0);
        let (patched, decision, response) = admit(&object, "tools", false);
        assert_eq!(patched, object, "{key}: {value}: allowed unchanged");
        assert!(matches!(decision, Decision::Skipped(_)), "{key}");
        let warning = response["warnings"][0].as_str().unwrap_or_default();
        assert!(warning.starts_with("meshscrape: ") && warning.contains(says), "{key}: {warning}");
    }
}

#[test]
fn hostile_and_malformed_reviews_are_refused_or_passed_never_a_panic() {
    let config = config_with(|t| t);
    let templates = Templates::load(None).unwrap();
    let review = |body: &[u8]| admission::review(&config, &templates, body, &scope(true));
    for (body, says) in [
        (&b"not json"[..], "not JSON"),
        (b"[]", "kind is not AdmissionReview"),
        (br#"{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "u"}}"#, "admission.k8s.io/v1"),
        (br#"{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}"#, "no request"),
        (br#"{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 7}}"#, "request.uid"),
    ] {
        let err: BadReview = review(body).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
    // Well-formed reviews of objects of the wrong shape: allowed unchanged, with the reason.
    let shapes = [
        json!({"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": "a string"}}),
        json!({"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": {"metadata": {"annotations": {"meshscrape.io/inject": "true"}}, "spec": {"containers": "nope"}}}}),
        json!({"kind": "Pod", "metadata": {"name": "x", "annotations": {"meshscrape.io/inject": "true"}}, "spec": []}),
        json!({"kind": ["Deployment"]}),
        json!("a string object"),
    ];
    for object in shapes {
        let body = review_of(&object, "tools", "CREATE");
        let (answer, decision) = review(&body).unwrap();
        assert_eq!(answer["response"]["allowed"], true);
        assert!(answer["response"].get("patch").is_none(), "{object}: {answer}");
        assert!(matches!(decision, Decision::Skipped(_)), "{object}");
    }
    // A deeply nested object does not overflow a stack.
    let mut deep = json!("x");
    for _ in 0..100 {
        deep = json!({"a": deep});
    }
    let mut object = workloads(json!({"meshscrape.io/inject": "true"})).remove(0);
    object["spec"]["template"]["metadata"]["labels"]["deep"] = json!(deep.to_string());
    assert!(review(&review_of(&object, "tools", "CREATE")).is_ok());
}
