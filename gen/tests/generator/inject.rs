//! `inject`: the sidecar added to existing workloads, everything else kept, twice = once.

use std::io::Write as _;
use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use meshscrape_gen::inject::{Extras, inject};
use meshscrape_gen::templates::Templates;
use serde_json::Value;

use super::support::{config_with, root};

fn input() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("gen/tests/fixtures/workloads.yaml")).unwrap();
    serde_saphyr::from_multiple(&text).unwrap()
}

fn run(docs: Vec<Value>, extras: Extras) -> Vec<Value> {
    inject(&config_with(|t| t), &Templates::load(None).unwrap(), docs, extras).unwrap().documents
}

#[test]
fn adds_the_sidecar_and_keeps_everything_else() {
    let before = input();
    let after = run(before.clone(), Extras::default());
    let deployment: Deployment =
        serde_json::from_value(after[0].clone()).expect("still a valid Deployment");
    let pod = deployment.spec.as_ref().unwrap().template.clone();
    let containers: Vec<&str> =
        pod.spec.as_ref().unwrap().containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(containers, ["identity-app", "meshscrape-proxy"]);
    let annotations = pod.metadata.unwrap().annotations.unwrap();
    assert_eq!(
        annotations["traffic.sidecar.istio.io/excludeInboundPorts"], "8443,9090",
        "existing exclusions are kept"
    );

    // Take the injected parts out again: what is left is exactly the input.
    let mut stripped = after[0].clone();
    let spec = &mut stripped["spec"]["template"]["spec"];
    spec["containers"].as_array_mut().unwrap().retain(|c| c["name"] != "meshscrape-proxy");
    spec.as_object_mut().unwrap().remove("volumes");
    let ann = stripped["spec"]["template"]["metadata"]["annotations"].as_object_mut().unwrap();
    ann.remove("meshscrape.io/config-hash");
    ann.insert("traffic.sidecar.istio.io/excludeInboundPorts".into(), "8443".into());
    assert_eq!(stripped, before[0]);

    assert_eq!(after[1], before[1], "the Service is untouched without --with-service-port");
    // The CronJob's pods run to completion: a native sidecar, which stops when the job is done.
    let job_pod = &after[2]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(job_pod["initContainers"][0]["name"], "meshscrape-proxy");
    assert_eq!(job_pod["initContainers"][0]["restartPolicy"], "Always");
    assert!(
        job_pod["containers"].as_array().unwrap().iter().all(|c| c["name"] != "meshscrape-proxy")
    );
    assert_eq!(after[3]["kind"], "ConfigMap");
    assert_eq!(after[3]["metadata"]["namespace"], "tools");
    assert_eq!(after.len(), 4);
}

#[test]
fn injecting_twice_changes_nothing() {
    let extras = Extras { service_port: true, monitor: true };
    let once = run(input(), extras);
    let twice = run(once.clone(), extras);
    assert_eq!(once, twice);
}

#[test]
fn service_port_and_monitor_on_request() {
    let after = run(input(), Extras { service_port: true, monitor: true });
    let svc: Service = serde_json::from_value(after[1].clone()).unwrap();
    let ports = svc.spec.unwrap().ports.unwrap();
    let metrics =
        ports.iter().find(|p| p.name.as_deref() == Some("prometheus")).expect("metrics port added");
    assert_eq!(metrics.port, 9090);
    assert_eq!(after.last().unwrap()["kind"], "ServiceMonitor");
}

#[test]
fn binary_reads_stdin_notes_pass_through_and_rejects_non_yaml() {
    let bin = env!("CARGO_BIN_EXE_meshscrape-gen");
    let mut child = Command::new(bin)
        .args(["inject", "--config", "examples/identity-service.yaml"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read_to_string(root().join("gen/tests/fixtures/workloads.yaml")).unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CronJob/cleanup runs to completion: its sidecar is a native one"),
        "{stderr}"
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    // Annotations must stay strings after the YAML round trip.
    let _: Deployment = serde_json::from_value(docs[0].clone()).unwrap();

    let bad =
        std::env::temp_dir().join(format!("meshscrape-inject-bad-{}.yaml", std::process::id()));
    std::fs::write(&bad, "kind: [Deployment\n").unwrap();
    let out = Command::new(bin)
        .args(["inject", "--config", "examples/identity-service.yaml"])
        .arg(&bad)
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&bad.display().to_string()));
    std::fs::remove_file(bad).unwrap();
}

fn names(doc: &Value, list: &str) -> Vec<String> {
    doc.pointer(&format!("/spec/template/spec/{list}"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[test]
fn a_native_sidecar_goes_in_init_containers_and_moves_when_the_setting_changes() {
    let native = config_with(|t| {
        t.replace("  portName: prometheus\n", "  portName: prometheus\n  native: true\n")
    });
    assert!(native.sidecar.native);
    let templates = Templates::load(None).unwrap();
    let injected = inject(&native, &templates, input(), Extras::default()).unwrap().documents;
    let deployment = &injected[0];
    assert_eq!(names(deployment, "initContainers"), ["meshscrape-proxy"]);
    assert_eq!(names(deployment, "containers"), ["identity-app"]);
    let proxy = &deployment["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["startupProbe"]["httpGet"]["path"], "/-/ready");
    let _: Deployment = serde_json::from_value(deployment.clone()).expect("a valid Deployment");

    // Injecting again changes nothing; turning the setting off moves it back, and on again.
    let again = inject(&native, &templates, injected.clone(), Extras::default()).unwrap().documents;
    assert_eq!(again, injected);
    let classic = run(injected.clone(), Extras::default());
    assert_eq!(names(&classic[0], "containers"), ["identity-app", "meshscrape-proxy"]);
    assert!(classic[0]["spec"]["template"]["spec"].get("initContainers").is_none());
    assert_eq!(
        inject(&native, &templates, classic, Extras::default()).unwrap().documents,
        injected
    );
}

/// Every kind with a pod template, and a bare Pod: the sidecar where the kind keeps its pod, the
/// native form for pods that run to completion, each a valid object of its kind, and twice = once.
#[test]
fn every_workload_kind_and_a_bare_pod_get_the_sidecar_where_their_pod_is() {
    use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet, StatefulSet};
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    use k8s_openapi::api::core::v1::Pod;
    let pod = r#"{"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "app", "image": "x:1"}]}}"#;
    let template: Value = serde_json::from_str(pod).unwrap();
    let with_restart = |policy: &str| {
        let mut t = template.clone();
        t["spec"]["restartPolicy"] = policy.into();
        t
    };
    let meta = |kind: &str| serde_json::json!({"name": kind.to_lowercase(), "namespace": "tools"});
    let docs = vec![
        serde_json::json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("StatefulSet"), "spec": {"serviceName": "x", "selector": {"matchLabels": {"app": "x"}}, "template": template}}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("DaemonSet"), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template}}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta("ReplicaSet"), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template}}),
        serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("Job"), "spec": {"template": with_restart("Never")}}),
        serde_json::json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta("CronJob"), "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": with_restart("OnFailure")}}}}),
        {
            let mut p = with_restart("Always");
            p["apiVersion"] = "v1".into();
            p["kind"] = "Pod".into();
            p["metadata"] = meta("Pod");
            p
        },
        {
            let mut p = with_restart("Never");
            p["apiVersion"] = "v1".into();
            p["kind"] = "Pod".into();
            p["metadata"] = serde_json::json!({"name": "one-shot", "namespace": "tools"});
            p
        },
    ];
    let once = run(docs, Extras::default());
    let twice = run(once.clone(), Extras::default());
    assert_eq!(once, twice, "injecting twice changes nothing");
    let sidecar_in = |doc: &Value, pointer: &str| -> (bool, bool) {
        let spec = doc.pointer(pointer).unwrap();
        let has = |list: &str| {
            spec[list].as_array().is_some_and(|a| a.iter().any(|c| c["name"] == "meshscrape-proxy"))
        };
        (has("containers"), has("initContainers"))
    };
    for (i, (pointer, native)) in [
        ("/spec/template/spec", false),
        ("/spec/template/spec", false),
        ("/spec/template/spec", false),
        ("/spec/template/spec", true),
        ("/spec/jobTemplate/spec/template/spec", true),
        ("/spec", false),
        ("/spec", true),
    ]
    .into_iter()
    .enumerate()
    {
        let doc = &once[i];
        assert_eq!(sidecar_in(doc, pointer), (!native, native), "{}: {doc}", doc["kind"]);
        let volumes = doc.pointer(&format!("{pointer}/volumes")).unwrap();
        assert!(volumes.as_array().unwrap().iter().any(|v| v["name"] == "meshscrape-config"));
    }
    // Each still a valid object of its kind.
    let _: StatefulSet = serde_json::from_value(once[0].clone()).unwrap();
    let _: DaemonSet = serde_json::from_value(once[1].clone()).unwrap();
    let _: ReplicaSet = serde_json::from_value(once[2].clone()).unwrap();
    let _: Job = serde_json::from_value(once[3].clone()).unwrap();
    let _: CronJob = serde_json::from_value(once[4].clone()).unwrap();
    let _: Pod = serde_json::from_value(once[5].clone()).unwrap();
    let _: Pod = serde_json::from_value(once[6].clone()).unwrap();
    assert_eq!(once[7]["kind"], "ConfigMap");
    assert_eq!(once.len(), 8, "one ConfigMap for the namespace");
}
