//! `cluster` against kube's HTTP-level mock (tower-test): an API server answering GET and LIST
//! from a set of realistic objects (the generated example as applied, a kube-prometheus
//! Prometheus object, the pods, EndpointSlices and namespaces a cluster would hold), with the
//! port-forward replaced by a connector to a loopback server. Then the binary itself against the
//! same objects served over real HTTP, with the kubelet's WebSocket port-forward protocol bridged
//! to loopback servers, so kubeconfig loading and the real port-forward run too. A real cluster
//! is the ignored test at the end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use meshscrape_verify::cluster::{self, Connector, Io};
use meshscrape_verify::endpoint;
use meshscrape_verify::report::{Report, Status};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const SEED: &str = "# TYPE com_hybris_isAlive summary\ncom_hybris_isAlive{quantile=\"0.5\",} 1.353475E-4\ncom_hybris_isAlive_count 50598.0\n";
const JOB: &str = "serviceMonitor/monitoring/argo-monitor/0";

/// The objects the fake API server holds, and what it was asked.
#[derive(Clone)]
struct World {
    objects: Vec<Value>,
    /// Plurals whose LIST answers 403.
    forbidden: Vec<&'static str>,
    requests: Arc<Mutex<Vec<String>>>,
}

fn plural(kind: &str) -> String {
    match kind {
        "Prometheus" => "prometheuses".into(),
        "NetworkPolicy" => "networkpolicies".into(),
        k => format!("{}s", k.to_ascii_lowercase()),
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message, "metadata": {}})
}

fn labels_match(o: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        o.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v)
    })
}

impl World {
    /// Answers `/api/v1[/namespaces/NS]/PLURAL[/NAME]` and `/apis/GROUP/VERSION[...]` like an API server.
    fn answer(&self, method: &http::Method, uri: &http::Uri) -> (StatusCode, Value) {
        self.requests.lock().unwrap().push(format!("{method} {uri}"));
        let path = uri.path();
        let rest = path
            .strip_prefix("/api/v1/")
            .or_else(|| path.strip_prefix("/apis/").and_then(|p| p.splitn(3, '/').nth(2)))
            .unwrap_or("");
        let segs: Vec<&str> = rest.split('/').collect();
        let (ns, plural_name, name) = match segs.as_slice() {
            ["namespaces", ns, p, rest @ ..] => (Some(*ns), *p, rest.first().copied()),
            [p, rest @ ..] => (None, *p, rest.first().copied()),
            [] => return (StatusCode::NOT_FOUND, status(404, "NotFound", "no such path")),
        };
        let labels = uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|q| q.strip_prefix("labelSelector="))
            .map(|s| s.replace("%3D", "=").replace("%2C", ",").replace("%2F", "/"))
            .unwrap_or_default();
        let mut found = self.objects.iter().filter(|o| {
            plural(o["kind"].as_str().unwrap_or("")) == plural_name
                && ns.is_none_or(|ns| {
                    o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
                })
                && name
                    .is_none_or(|n| o.pointer("/metadata/name").and_then(Value::as_str) == Some(n))
                && labels_match(o, &labels)
        });
        match name {
            Some(n) => match found.next().cloned() {
                Some(o) => (StatusCode::OK, o),
                None => (
                    StatusCode::NOT_FOUND,
                    status(404, "NotFound", &format!("{plural_name} \"{n}\" not found")),
                ),
            },
            None if self.forbidden.contains(&plural_name) => (
                StatusCode::FORBIDDEN,
                status(
                    403,
                    "Forbidden",
                    &format!(
                        "{plural_name} is forbidden: User \"ci\" cannot list resource \"{plural_name}\""
                    ),
                ),
            ),
            None => {
                // Items of a real list carry no apiVersion or kind.
                let items: Vec<Value> = found
                    .map(|o| {
                        let mut o = o.clone();
                        o.as_object_mut().unwrap().retain(|k, _| k != "apiVersion" && k != "kind");
                        o
                    })
                    .collect();
                (
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
        }
    }

    fn client(&self) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let world = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (code, body) = world.answer(req.method(), req.uri());
                send.send_response(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        kube::Client::new(service, "default")
    }
}

/// The generated example as `kubectl apply` leaves it, plus what a cluster adds around it.
fn healthy() -> World {
    let fixture = include_str!("../fixtures/identity-service.yaml");
    let mut objects: Vec<Value> = serde_saphyr::from_multiple(fixture).unwrap();
    objects.push(serde_saphyr::from_str(include_str!("../fixtures/prometheus.yaml")).unwrap());
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap().clone();
    let template = &deployment["spec"]["template"];
    for ns in ["tools", "monitoring"] {
        objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}));
    }
    // The pod the Deployment made, both containers ready.
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"].clone(), "spec": template["spec"].clone()});
    pod["metadata"]["name"] = json!("identity-service-7d9f8-abcde");
    pod["metadata"]["namespace"] = json!("tools");
    pod["status"] = json!({"phase": "Running", "podIP": "10.0.0.12", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
        {"name": "identity-app", "ready": true, "restartCount": 0, "image": "x", "imageID": "", "state": {"running": {}}},
        {"name": "meshscrape-proxy", "ready": true, "restartCount": 0, "image": "x", "imageID": "", "state": {"running": {}}}
    ]});
    objects.push(pod);
    objects.push(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "identity-service-x7k2p", "namespace": "tools", "labels": {"kubernetes.io/service-name": "identity-service"}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "prometheus", "port": 9090, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.0.0.12"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "namespace": "tools", "name": "identity-service-7d9f8-abcde"}}]}));
    // prometheus-operator's governing Service and its pod.
    objects.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "prometheus-operated", "namespace": "monitoring"},
        "spec": {"selector": {"app.kubernetes.io/name": "prometheus"}, "ports": [{"name": "web", "port": 9090, "targetPort": "web"}]}}));
    objects.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prometheus-kube-prometheus-0", "namespace": "monitoring", "labels": {"app.kubernetes.io/name": "prometheus"}},
        "spec": {"containers": [{"name": "prometheus", "image": "quay.io/prometheus/prometheus", "ports": [{"name": "web", "containerPort": 9090}]}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
    World { objects, forbidden: Vec::new(), requests: Arc::default() }
}

impl World {
    fn edit(&mut self, kind: &str, name: &str, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(self
            .objects
            .iter_mut()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}")));
        self
    }
}

/// Stands in for port-forwards: a stream to a Prometheus pod goes to `prom`, any other to
/// `sidecar` (both listen on 9090 in their pods); records what was asked.
struct Stubs {
    sidecar: SocketAddr,
    prom: SocketAddr,
    asked: Mutex<Vec<String>>,
}

impl Connector for Stubs {
    fn connect<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> cluster::Connecting<'a> {
        self.asked.lock().unwrap().push(format!("{namespace}/{pod}:{port}"));
        let addr = if pod.starts_with("prometheus-") { self.prom } else { self.sidecar };
        Box::pin(async move { Ok(Box::new(TcpStream::connect(addr).await?) as Box<dyn Io>) })
    }
}

/// The sidecar's routes (or, when not `sidecar_up`, a closed port) and a Prometheus that knows
/// `job`.
async fn stubs(sidecar_up: bool, job: &str) -> Arc<Stubs> {
    let sidecar = if sidecar_up {
        http_server(vec![
            ("/prometheus", "text/plain; version=0.0.4", SEED.into()),
            ("/readiness", "text/plain", "ok\n".into()),
        ])
        .await
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    };
    Arc::new(Stubs { sidecar, prom: prometheus_stub(job).await, asked: Mutex::default() })
}

/// A loopback HTTP server answering by path from `answers` (404 otherwise).
async fn http_server(answers: Vec<(&'static str, &'static str, String)>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .to_string();
                let (ct, body) = answers
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map(|(_, ct, b)| (*ct, b.clone()))
                    .unwrap_or(("text/plain", String::new()));
                let status = if body.is_empty() { "404 Not Found" } else { "200 OK" };
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                            .as_bytes(),
                    )
                    .await;
            });
        }
    });
    addr
}

fn options() -> cluster::Options {
    cluster::Options {
        namespace: "tools".into(),
        service: "identity-service".into(),
        port_forward: true,
        endpoint: endpoint::Options {
            timeout: Duration::from_secs(2),
            max_bytes: 1 << 20,
            probes: vec!["/readiness".into()],
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
    let report = cluster::check(
        &world.client(),
        &o,
        stubs(true, "podMonitor/monitoring/argo-monitor/0").await,
    )
    .await
    .unwrap();
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
            && c.object.as_deref() == Some("job podMonitor/monitoring/argo-monitor/0")),
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

/// A Prometheus API that has one healthy target of `job` and three series for any query.
async fn prometheus_stub(job: &str) -> SocketAddr {
    let targets = json!({"status": "success", "data": {"activeTargets": [{
        "discoveredLabels": {"job": job}, "labels": {"job": job, "namespace": "tools", "service": "identity-service"},
        "scrapePool": job, "scrapeUrl": "http://10.0.0.12:9090/prometheus", "globalUrl": "http://10.0.0.12:9090/prometheus",
        "lastError": "", "lastScrape": "2026-11-25T10:00:00Z", "lastScrapeDuration": 0.0021, "health": "up", "scrapeInterval": "30s", "scrapeTimeout": "10s"}], "droppedTargets": []}});
    let query = json!({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1764064800, "3"]}]}});
    http_server(vec![
        ("/api/v1/targets", "application/json", targets.to_string()),
        ("/api/v1/query", "application/json", query.to_string()),
    ])
    .await
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

/// An API server over real HTTP: GET and LIST from `world`, and `pods/NAME/portforward` as the
/// kubelet speaks it (WebSocket, v4.channel.k8s.io: a first frame with the port on the data and
/// the error channel, then data frames prefixed with channel 0), bridged to `pods[NAME]`.
async fn api_server(world: World, pods: BTreeMap<&'static str, SocketAddr>) -> SocketAddr {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (world, pods) = (world.clone(), pods.clone());
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    let (world, pods) = (world.clone(), pods.clone());
                    async move {
                        let segs: Vec<&str> = req.uri().path().split('/').collect();
                        if segs.last() == Some(&"portforward") {
                            world.requests.lock().unwrap().push(format!(
                                "{} {}",
                                req.method(),
                                req.uri()
                            ));
                            let pod = segs[segs.len() - 2].to_string();
                            let port: u16 = req
                                .uri()
                                .query()
                                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ports=")))
                                .and_then(|p| p.parse().ok())
                                .unwrap_or_else(|| panic!("{}", req.uri()));
                            let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
                            let upgrade = hyper::upgrade::on(&mut req);
                            let target = pods.get(pod.as_str()).copied();
                            tokio::spawn(async move {
                                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                                    TokioIo::new(upgrade.await.unwrap()),
                                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                                    None,
                                )
                                .await;
                                forward_ws(ws, port, target).await;
                            });
                            let accept =
                                tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
                            let resp = Response::builder()
                                .status(StatusCode::SWITCHING_PROTOCOLS)
                                .header("upgrade", "websocket")
                                .header("connection", "Upgrade")
                                .header("sec-websocket-accept", accept)
                                .header("sec-websocket-protocol", "v4.channel.k8s.io")
                                .body(http_body_util::Full::new(bytes::Bytes::new()))
                                .unwrap();
                            return Ok::<_, std::convert::Infallible>(resp);
                        }
                        let (code, body) = world.answer(req.method(), req.uri());
                        Ok(Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(bytes::Bytes::from(
                                serde_json::to_vec(&body).unwrap(),
                            )))
                            .unwrap())
                    }
                });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn forward_ws<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    port: u16,
    target: Option<SocketAddr>,
) {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let (mut sink, mut source) = ws.split();
    let p = port.to_le_bytes();
    let _ = sink.send(Message::binary(vec![0, p[0], p[1]])).await;
    let _ = sink.send(Message::binary(vec![1, p[0], p[1]])).await;
    let Some(target) = target else {
        let _ = sink
            .send(Message::binary(b"\x01error forwarding port: connection refused".to_vec()))
            .await;
        let _ = sink.send(Message::Close(None)).await;
        return;
    };
    let (mut from_pod, mut to_pod) = TcpStream::connect(target).await.unwrap().into_split();
    let up = async move {
        while let Some(Ok(msg)) = source.next().await {
            let go_on = match msg {
                Message::Binary(b) if b.len() > 1 && b[0] == 0 => {
                    to_pod.write_all(&b[1..]).await.is_ok()
                }
                m => !m.is_close(),
            };
            if !go_on {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 16384];
        while let Ok(n) = from_pod.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut frame = vec![0u8];
            frame.extend_from_slice(&buf[..n]);
            if sink.send(Message::binary(frame)).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    tokio::join!(up, down);
}

fn kubeconfig(server: SocketAddr) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "meshscrape-verify-cluster-{}-{}",
        std::process::id(),
        server.port()
    ));
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: kind-test\nclusters:\n- name: test\n  cluster: {{server: \"http://{server}\"}}\ncontexts:\n- name: kind-test\n  context: {{cluster: test, user: test}}\nusers:\n- name: test\n  user: {{token: t}}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    path
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
    assert!(passed("metric", "job serviceMonitor/monitoring/argo-monitor/0"), "{stdout}");
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
