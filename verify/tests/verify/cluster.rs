//! `cluster` against kube's HTTP-level mock (tower-test): an API server answering GET and LIST
//! from a set of realistic objects (the generated example as applied, a kube-prometheus
//! Prometheus object, the pods, EndpointSlices and namespaces a cluster would hold), with the
//! port-forward replaced by a connector to a loopback server. Then the binary itself against the
//! same objects served over real HTTP, with the kubelet's WebSocket port-forward protocol bridged
//! to loopback servers, so kubeconfig loading and the real port-forward run too. A real cluster
//! is the ignored test at the end. The fake cluster itself is in `fake_cluster`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use meshscrape_verify::cluster;
use meshscrape_verify::endpoint;
use meshscrape_verify::report::{Report, Status};
use serde_json::{Value, json};

use super::fake_cluster::*;

/// The ServiceMonitor's targets as prometheus-operator writes them: the scrape pool, and the job
/// label, which is the Service's name (not the scrape pool).
const JOB: Operator =
    Operator { pool: "serviceMonitor/monitoring/argo-monitor/0", job: "identity-service" };
/// The same monitor as a PodMonitor: the job is `<ns>/<name>` of the monitor.
const POD_JOB: Operator =
    Operator { pool: "podMonitor/monitoring/argo-monitor/0", job: "monitoring/argo-monitor" };

fn options() -> cluster::Options {
    cluster::Options {
        namespace: "tools".into(),
        service: "identity-service".into(),
        istio_root_namespace: "istio-system".into(),
        port_forward: true,
        endpoint: endpoint::Options {
            timeout: Duration::from_secs(2),
            max_bytes: 1 << 20,
            probes: vec!["/readiness".into()],
            ..Default::default()
        },
        ..Default::default()
    }
}

fn find<'a>(report: &'a Report, name: &str) -> Vec<&'a meshscrape_verify::report::Check> {
    report.checks.iter().filter(|c| c.name == name).collect()
}

fn text(report: &Report) -> String {
    report.render(meshscrape_verify::report::Format::Human, false)
}

#[tokio::test]
async fn a_healthy_cluster_passes_every_link_and_is_only_read() {
    let world = healthy();
    let lb = stubs(true, JOB).await;
    let report = cluster::check(&world.client(), &options(), lb.clone()).await.unwrap();
    assert!(!report.failed(), "{}", text(&report));
    // The offline chain ran on what the cluster holds, the Prometheus object included.
    for name in [
        "Service",
        "Service selection",
        "Prometheus selection",
        "Service port",
        "container port",
        "sidecar route",
        "Istio",
        "EndpointSlices",
        "metrics container",
        "port-forward",
        "status",
        "exposition",
        "probe",
    ] {
        assert!(
            find(&report, name).iter().any(|c| c.status == Status::Pass),
            "no passing {name} check:\n{}",
            text(&report)
        );
    }
    assert!(
        find(&report, "EndpointSlices")[0]
            .message
            .contains("1 of 1 endpoints ready on port prometheus (9090)")
    );
    assert_eq!(
        find(&report, "status")[0].object.as_deref(),
        Some("pod/tools/identity-service-7d9f8-abcde:9090/prometheus")
    );
    assert_eq!(
        *lb.asked.lock().unwrap(),
        ["tools/identity-service-7d9f8-abcde:9090", "tools/identity-service-7d9f8-abcde:9090"]
    );
    let requests = world.requests.lock().unwrap();
    assert!(
        requests.iter().all(|r| r.starts_with("GET ")),
        "the verifier wrote to the cluster: {requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains(
            "endpointslices?&labelSelector=kubernetes.io%2Fservice-name%3Didentity-service"
        ) || r.contains("endpointslices?labelSelector=")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn broken_links_each_fail_with_a_fix() {
    let mut world = healthy();
    // The sidecar was OOM-killed and is not ready; the slice says so too; the monitor lost the
    // label the Prometheus object selects.
    world
        .edit("Pod", "identity-service-7d9f8-abcde", |p| {
            p["status"]["containerStatuses"][1] = json!({"name": "meshscrape-proxy", "ready": false, "restartCount": 3, "image": "x", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}});
        })
        .edit("EndpointSlice", "identity-service-x7k2p", |s| s["endpoints"][0]["conditions"]["ready"] = json!(false))
        .edit("ServiceMonitor", "argo-monitor", |m| {
            m["metadata"]["labels"].as_object_mut().unwrap().remove("prometheus");
        });
    let report = cluster::check(&world.client(), &options(), stubs(true, JOB).await).await.unwrap();
    assert_eq!(report.exit_code(), 1);
    let fail = |name: &str| {
        find(&report, name)
            .into_iter()
            .find(|c| c.status == Status::Fail)
            .cloned()
            .unwrap_or_else(|| panic!("no failing {name} check:\n{}", text(&report)))
    };
    assert!(fail("Prometheus selection").fix.unwrap().contains("prometheus=kube-prometheus"));
    assert!(fail("EndpointSlices").message.starts_with("0 of 1 endpoints ready"));
    let container = fail("metrics container");
    assert!(container.message.contains("not ready (CrashLoopBackOff)"), "{}", container.message);
    assert!(container.fix.unwrap().contains("memory limit"));
    assert!(fail("scrape").message.contains("no pod is ready"));
}

#[tokio::test]
async fn a_missing_service_or_monitor_is_named() {
    let world = healthy();
    let mut o = options();
    o.service = "identiy-service".into();
    let report = cluster::check(&world.client(), &o, stubs(true, JOB).await).await.unwrap();
    assert_eq!(report.checks.len(), 1);
    assert!(
        report.checks[0].message.contains("there is no Service/tools/identiy-service"),
        "{}",
        text(&report)
    );

    let mut world = healthy();
    world.edit("Service", "identity-service", |s| {
        s["metadata"]["labels"].as_object_mut().unwrap().remove("app");
    });
    let report = cluster::check(&world.client(), &options(), stubs(true, JOB).await).await.unwrap();
    let monitor = find(&report, "monitor");
    assert!(
        monitor[0].status == Status::Fail
            && monitor[0].message.contains("none of the 1 ServiceMonitors and PodMonitors does"),
        "{}",
        text(&report)
    );
    // Asked about Prometheus too, it says why it cannot, instead of saying nothing.
    let mut o = options();
    o.prometheus = Some(("monitoring".into(), "prometheus-operated".into()));
    let report = cluster::check(&world.client(), &o, stubs(true, JOB).await).await.unwrap();
    assert!(
        find(&report, "Prometheus")
            .iter()
            .any(|c| c.status == Status::Warn && c.message.contains("no job to ask")),
        "{}",
        text(&report)
    );
}

#[tokio::test]
async fn a_pod_monitor_is_followed_to_the_container_port_it_names() {
    // The generator's PodMonitor form: it selects the pods and names the sidecar's container port.
    let mut world = healthy();
    world.edit("ServiceMonitor", "argo-monitor", |m| {
        m["kind"] = json!("PodMonitor");
        let endpoints = m["spec"]["endpoints"].take();
        m["spec"].as_object_mut().unwrap().remove("endpoints");
        m["spec"]["podMetricsEndpoints"] = endpoints;
        m["spec"]["selector"] = json!({"matchLabels": {"run": "identity-app"}});
    });
    let mut o = options();
    o.prometheus = Some(("monitoring".into(), "prometheus-operated".into()));
    let report = cluster::check(&world.client(), &o, stubs(true, POD_JOB).await).await.unwrap();
    assert!(!report.failed(), "{}", text(&report));
    for name in [
        "Prometheus selection",
        "workload selection",
        "container port",
        "sidecar route",
        "metrics container",
        "status",
        "probe",
    ] {
        assert!(
            find(&report, name).iter().any(|c| c.status == Status::Pass),
            "no passing {name} check:\n{}",
            text(&report)
        );
    }
    // Prometheus scrapes pods directly for a PodMonitor, so the Service's slices are not checked,
    // and the job it is asked about is the PodMonitor's.
    assert!(find(&report, "EndpointSlices").is_empty(), "{}", text(&report));
    assert!(
        find(&report, "targets").iter().any(|c| c.status == Status::Pass
            && c.object.as_deref()
                == Some(
                    "scrape pool podMonitor/monitoring/argo-monitor/0, job monitoring/argo-monitor"
                )),
        "{}",
        text(&report)
    );
    assert_eq!(
        find(&report, "status")[0].object.as_deref(),
        Some("pod/tools/identity-service-7d9f8-abcde:9090/prometheus")
    );
}

#[tokio::test]
async fn checks_that_need_a_forbidden_list_are_skipped_not_failed() {
    let mut world = healthy();
    world.forbidden = vec!["pods", "endpointslices", "servicemonitors"];
    // No monitor can be read to name the port, so it is named on the command line.
    let mut o = options();
    o.port = Some("prometheus".into());
    let report = cluster::check(&world.client(), &o, stubs(true, JOB).await).await.unwrap();
    let warned: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Warn)
        .map(|c| c.message.as_str())
        .collect();
    for plural in ["pods", "endpointslices", "servicemonitors"] {
        assert!(
            warned.iter().any(|m| m.starts_with(&format!("may not list {plural} "))),
            "{}",
            text(&report)
        );
    }
    // What could not be read is not reported as broken.
    assert!(!report.failed(), "{}", text(&report));
    assert!(find(&report, "monitor").iter().all(|c| c.status == Status::Warn), "{}", text(&report));
    assert!(find(&report, "scrape").iter().all(|c| c.status == Status::Warn), "{}", text(&report));
}

#[tokio::test]
async fn forbidden_lists_warn_and_a_refused_port_forward_fails() {
    let mut world = healthy();
    world.forbidden = vec!["namespaces"];
    let mut o = options();
    o.prometheus = Some(("monitoring".into(), "prometheus-operated".into()));
    let report = cluster::check(&world.client(), &o, stubs(false, JOB).await).await.unwrap();
    let access = find(&report, "access");
    assert!(
        access[0].status == Status::Warn && access[0].message.contains("may not list namespaces"),
        "{}",
        text(&report)
    );
    // The pod's port answers nothing: the scrape fails, naming the pod, not a local address.
    let scrape = find(&report, "scrape");
    assert!(
        scrape.iter().any(|c| c.status == Status::Fail
            && c.object
                .as_deref()
                .is_some_and(|o| o.starts_with("pod/tools/identity-service-7d9f8-abcde:9090"))),
        "{}",
        text(&report)
    );
    assert!(
        !text(&report).contains("127.0.0.1"),
        "a local address leaked into the report:\n{}",
        text(&report)
    );
}

#[tokio::test]
async fn a_blank_content_type_fails_the_scrape_unless_the_monitor_sets_a_fallback() {
    let mut world = healthy();
    let stubs = stubs_with_content_type(true, JOB, "").await;
    let report = cluster::check(&world.client(), &options(), stubs.clone()).await.unwrap();
    let ct = find(&report, "content type");
    assert_eq!(ct[0].status, Status::Fail, "{}", text(&report));
    assert!(ct[0].message.contains("blank Content-Type: Prometheus 3 fails this scrape"));

    world.edit("ServiceMonitor", "argo-monitor", |m| {
        m["spec"]["fallbackScrapeProtocol"] = json!("PrometheusText0.0.4")
    });
    let report = cluster::check(&world.client(), &options(), stubs).await.unwrap();
    assert!(!report.failed(), "{}", text(&report));
    let ct = find(&report, "content type");
    assert_eq!(ct[0].status, Status::Warn, "{}", text(&report));
    assert!(ct[0].message.contains("with the fallback PrometheusText0.0.4"), "{}", text(&report));
    assert_eq!(find(&report, "exposition")[0].status, Status::Pass, "{}", text(&report));
}

#[tokio::test]
async fn prometheus_is_asked_through_its_own_port_forward() {
    let world = healthy();
    let mut o = options();
    o.prometheus = Some(("monitoring".into(), "prometheus-operated".into()));
    o.expect_metric = Some("com_hybris_isAlive_count".into());
    let report = cluster::check(&world.client(), &o, stubs(true, JOB).await).await.unwrap();
    assert!(!report.failed(), "{}", text(&report));
    let health = find(&report, "health");
    assert_eq!(health[0].status, Status::Pass);
    assert!(find(&report, "metric")[0].message.contains("3 series"));
    assert!(
        find(&report, "port-forward").iter().any(
            |c| c.object.as_deref() == Some("pod/monitoring/prometheus-kube-prometheus-0:9090")
        ),
        "{}",
        text(&report)
    );
}

#[tokio::test]
async fn an_api_server_that_cannot_be_reached_is_an_error_not_a_report() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    drop(handle); // every request fails at the transport
    let client = kube::Client::new(service, "default");
    let err =
        cluster::check(&client, &options(), stubs(true, JOB).await).await.unwrap_err().to_string();
    assert!(err.starts_with("reading Service/tools/identity-service: "), "{err}");
}

#[tokio::test]
async fn the_binary_walks_a_cluster_over_http_and_scrapes_through_real_port_forwards() {
    let world = healthy();
    let stubs = stubs(true, JOB).await;
    let (sidecar, prom) = (stubs.sidecar, stubs.prom);
    let api = api_server(
        world.clone(),
        BTreeMap::from([
            ("identity-service-7d9f8-abcde", sidecar),
            ("prometheus-kube-prometheus-0", prom),
        ]),
    )
    .await;
    let config = kubeconfig(api);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_meshscrape-verify"))
            .args([
                "cluster",
                "-n",
                "tools",
                "--service",
                "identity-service",
                "--context",
                "kind-test",
                "--probe",
                "/readiness",
            ])
            .args([
                "--prometheus",
                "monitoring/prometheus-operated",
                "--expect-metric",
                "com_hybris_isAlive_count",
                "--output",
                "json",
            ])
            .env("KUBECONFIG", &config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let passed = |name: &str, object: &str| {
        report["checks"].as_array().unwrap().iter().any(|c| {
            c["name"] == name
                && c["status"] == "pass"
                && c["object"].as_str().is_some_and(|o| o.starts_with(object))
        })
    };
    assert!(passed("status", "pod/tools/identity-service-7d9f8-abcde:9090/prometheus"), "{stdout}");
    assert!(passed("probe", "pod/tools/identity-service-7d9f8-abcde:9090/readiness"), "{stdout}");
    assert!(passed("health", "http://10.0.0.12:9090/prometheus"), "{stdout}");
    assert!(
        passed(
            "metric",
            "scrape pool serviceMonitor/monitoring/argo-monitor/0, job identity-service"
        ),
        "{stdout}"
    );
    // Progress went to stderr, one line per slow step.
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("port-forwarding pod/tools/identity-service-7d9f8-abcde:9090")
    );
    let requests = world.requests.lock().unwrap();
    assert!(requests.iter().all(|r| r.starts_with("GET ")), "{requests:?}");
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.contains("/portforward?") && r.ends_with("ports=9090"))
            .count(),
        4,
        "{requests:?}"
    );
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn a_real_cluster_with_the_example_applied() {
    // kubectl apply the output of `meshscrape-gen --config examples/identity-service.yaml` first.
    let client = kube::Client::try_default().await.expect("a kubeconfig");
    let report =
        cluster::check(&client, &options(), Arc::new(cluster::PortForward(client.clone())))
            .await
            .unwrap();
    assert!(!report.failed(), "{}", text(&report));
}

/// The sidecar as a native sidecar: in the Deployment's and the pod's initContainers with
/// restartPolicy Always, its status among the init containers'. Every link holds, and the port's
/// home is noted for Prometheus 2.
#[tokio::test]
async fn a_native_sidecar_is_found_in_init_containers_and_checked_the_same_way() {
    let mut world = healthy();
    let make_native = |spec: &mut Value| {
        let containers = spec["containers"].as_array_mut().unwrap();
        let i = containers.iter().position(|c| c["name"] == "meshscrape-proxy").unwrap();
        let mut proxy = containers.remove(i);
        proxy["restartPolicy"] = json!("Always");
        spec["initContainers"] = json!([proxy]);
    };
    world.edit("Deployment", "identity-service", |d| {
        make_native(&mut d["spec"]["template"]["spec"])
    });
    world.edit("Pod", "identity-service-7d9f8-abcde", |p| {
        make_native(&mut p["spec"]);
        let statuses = p["status"]["containerStatuses"].as_array_mut().unwrap();
        let i = statuses.iter().position(|s| s["name"] == "meshscrape-proxy").unwrap();
        let status = statuses.remove(i);
        p["status"]["initContainerStatuses"] = json!([status]);
    });
    let report = cluster::check(&world.client(), &options(), stubs(true, JOB).await).await.unwrap();
    assert!(!report.failed(), "{}", text(&report));
    let container = find(&report, "metrics container");
    assert!(
        container[0].message.contains("meshscrape-proxy is ready on port 9090"),
        "{}",
        text(&report)
    );
    let notes: Vec<_> = report.checks.iter().filter(|c| c.status == Status::Info).collect();
    assert!(
        notes.iter().any(|c| c.message.contains("native sidecar") && c.message.contains("3.0")),
        "{}",
        text(&report)
    );
    for name in ["sidecar route", "Istio", "status", "exposition"] {
        assert!(
            find(&report, name).iter().any(|c| c.status == Status::Pass),
            "{name}: {}",
            text(&report)
        );
    }
}

/// The data plane read from the Namespace the API server holds: under ambient, the annotation
/// alone leaves the port behind ztunnel (and is enough in a sidecar-injected namespace), the generated PeerAuthentication mends it, and an
/// AuthorizationPolicy that admits only a principal denies the scrape.
#[tokio::test]
async fn under_ambient_the_cluster_is_judged_by_ztunnel_rules() {
    let mut world = healthy();
    world.edit("Namespace", "tools", |n| {
        n["metadata"]["labels"]["istio.io/dataplane-mode"] = json!("ambient")
    });
    let report = cluster::check(&world.client(), &options(), stubs(true, JOB).await).await.unwrap();
    assert!(!report.failed(), "{}", text(&report));
    assert!(find(&report, "Istio data plane")[0].message.starts_with("ambient (namespace tools"));

    let mut annotation_only = world.clone();
    annotation_only.objects.retain(|o| o["kind"] != "PeerAuthentication");
    let report = cluster::check(&annotation_only.client(), &options(), stubs(true, JOB).await)
        .await
        .unwrap();
    let istio = find(&report, "Istio");
    assert_eq!(istio[0].status, Status::Fail, "{}", text(&report));
    assert!(istio[0].message.contains("ztunnel"), "{}", text(&report));
    // The same objects in a sidecar-injected namespace: the annotation is what Envoy reads.
    annotation_only.edit("Namespace", "tools", |n| {
        n["metadata"]["labels"] =
            json!({"kubernetes.io/metadata.name": "tools", "istio-injection": "enabled"})
    });
    let report = cluster::check(&annotation_only.client(), &options(), stubs(true, JOB).await)
        .await
        .unwrap();
    assert!(
        find(&report, "Istio data plane")[0].message.starts_with("sidecar ("),
        "{}",
        text(&report)
    );
    assert_eq!(find(&report, "Istio")[0].status, Status::Pass, "{}", text(&report));

    world.objects.push(json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "frontend-only", "namespace": "tools"},
        "spec": {"selector": {"matchLabels": {"run": "identity-app"}}, "action": "ALLOW",
                 "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/web/sa/web"]}}]}]}}));
    let report = cluster::check(&world.client(), &options(), stubs(true, JOB).await).await.unwrap();
    let authz = find(&report, "AuthorizationPolicy");
    assert_eq!(authz[0].status, Status::Fail, "{}", text(&report));
    assert!(
        authz[0].message.contains("AuthorizationPolicy/tools/frontend-only"),
        "{}",
        text(&report)
    );
}

/// The access example applied (TLS with client certificates, a bearer token), the monitor's
/// Secrets in its namespace as base64 `data`: the check reads them and scrapes the sidecar over
/// https, as Prometheus would, and the offline chain finds the two sides agreeing. Without leave
/// to read Secrets, it says so and the scrape, made anonymously, is refused.
#[tokio::test]
async fn a_sidecar_with_access_rules_is_scraped_with_the_monitors_credentials() {
    fn b64(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
    let (sidecar, [ca, client_crt, client_key]) =
        tls_sidecar("identity-service.metrics.meshscrape", "s3cret").await;
    let mut world = world_of(include_str!("../fixtures/identity-service-tls.yaml"));
    for (name, data) in [
        ("meshscrape-ca", json!({"ca.crt": b64(ca.as_bytes())})),
        (
            "prometheus-meshscrape-client",
            json!({"tls.crt": b64(client_crt.as_bytes()), "tls.key": b64(client_key.as_bytes())}),
        ),
        ("meshscrape-token", json!({"token": b64(b"s3cret\n")})),
    ] {
        world.objects.push(json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "monitoring"}, "data": data}));
    }
    let stubs = Arc::new(Stubs {
        sidecar,
        prom: stubs(true, JOB).await.prom,
        asked: std::sync::Mutex::default(),
    });
    let report = cluster::check(&world.client(), &options(), stubs.clone()).await.unwrap();
    assert!(!report.failed(), "{}", text(&report));
    let pod = "pod/tools/identity-service-7d9f8-abcde:9090";
    assert!(
        report.checks.iter().any(|c| c.name == "status"
            && c.status == Status::Pass
            && c.object.as_deref() == Some(&format!("{pod}/prometheus"))),
        "{}",
        text(&report)
    );
    assert!(
        report.checks.iter().any(|c| c.name == "sidecar access" && c.status == Status::Pass),
        "{}",
        text(&report)
    );
    assert!(!text(&report).contains("127.0.0.1"), "a local address leaked:\n{}", text(&report));

    // No leave to read Secrets: a warning naming the Secret, and the anonymous scrape refused.
    world.forbidden.push("secrets");
    let report = cluster::check(&world.client(), &options(), stubs).await.unwrap();
    assert!(
        find(&report, "access").iter().any(|c| c.status == Status::Warn
            && c.message.starts_with("may not read Secret/monitoring/")),
        "{}",
        text(&report)
    );
    assert!(
        find(&report, "scrape")
            .iter()
            .any(|c| c.status == Status::Fail && c.message.contains("uses https; give the CA")),
        "{}",
        text(&report)
    );
}
