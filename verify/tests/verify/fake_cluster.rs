//! A cluster to test against, without one: the objects a cluster would hold after the example is
//! applied, served by an API server that answers GET and LIST (kube's tower-test mock, or real
//! HTTP with the kubelet's WebSocket port-forward), loopback stand-ins for the sidecar and
//! Prometheus, and a connector that reaches them in place of a port-forward.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use meshscrape_verify::cluster::{self, Connector, Io};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

pub(crate) const SEED: &str = "# TYPE com_hybris_isAlive \
    summary\ncom_hybris_isAlive{quantile=\"0.5\",} 1.353475E-4\ncom_hybris_isAlive_count 50598.0\n";

/// The objects the fake API server holds, and what it was asked.
#[derive(Clone)]
pub(crate) struct World {
    pub(crate) objects: Vec<Value>,
    /// Plurals whose LIST answers 403.
    pub(crate) forbidden: Vec<&'static str>,
    pub(crate) requests: Arc<Mutex<Vec<String>>>,
}

pub(crate) fn plural(kind: &str) -> String {
    match kind {
        "Prometheus" => "prometheuses".into(),
        "NetworkPolicy" => "networkpolicies".into(),
        "AuthorizationPolicy" => "authorizationpolicies".into(),
        k => format!("{}s", k.to_ascii_lowercase()),
    }
}

pub(crate) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message, "metadata": {}})
}

pub(crate) fn labels_match(o: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        o.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v)
    })
}

impl World {
    /// Answers `/api/v1[/namespaces/NS]/PLURAL[/NAME]` and `/apis/GROUP/VERSION[...]` like an API server.
    pub(crate) fn answer(&self, method: &http::Method, uri: &http::Uri) -> (StatusCode, Value) {
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
            Some(n) if self.forbidden.contains(&plural_name) => (
                StatusCode::FORBIDDEN,
                status(
                    403,
                    "Forbidden",
                    &format!(
                        "{plural_name} \"{n}\" is forbidden: User \"ci\" cannot get resource \
                         \"{plural_name}\""
                    ),
                ),
            ),
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
                        "{plural_name} is forbidden: User \"ci\" cannot list resource \
                            \"{plural_name}\""
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

    pub(crate) fn client(&self) -> kube::Client {
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
pub(crate) fn healthy() -> World {
    world_of(include_str!("../fixtures/identity-service.yaml"))
}

/// The cluster `fixture` (gen's output) makes once applied: its objects, the kube-prometheus
/// Prometheus object, the namespaces, the pod, its EndpointSlice and Prometheus's own Service and pod.
pub(crate) fn world_of(fixture: &str) -> World {
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
    pub(crate) fn edit(&mut self, kind: &str, name: &str, f: impl FnOnce(&mut Value)) -> &mut Self {
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
pub(crate) struct Stubs {
    pub(crate) sidecar: SocketAddr,
    pub(crate) prom: SocketAddr,
    pub(crate) asked: Mutex<Vec<String>>,
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
/// A monitor's targets as prometheus-operator names them.
#[derive(Clone, Copy)]
pub(crate) struct Operator {
    pub(crate) pool: &'static str,
    pub(crate) job: &'static str,
}

pub(crate) async fn stubs(sidecar_up: bool, job: Operator) -> Arc<Stubs> {
    stubs_with_content_type(sidecar_up, job, "text/plain; version=0.0.4").await
}

/// Like `stubs`, with the sidecar's metrics route answering with `content_type` ("" for none).
pub(crate) async fn stubs_with_content_type(
    sidecar_up: bool,
    job: Operator,
    content_type: &'static str,
) -> Arc<Stubs> {
    let sidecar = if sidecar_up {
        http_server(vec![
            ("/prometheus", content_type, SEED.into()),
            ("/readiness", "text/plain", "ok\n".into()),
        ])
        .await
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    };
    Arc::new(Stubs { sidecar, prom: prometheus_stub(job).await, asked: Mutex::default() })
}

/// A loopback HTTP server answering by path from `answers` (404 otherwise).
pub(crate) async fn http_server(answers: Vec<(&'static str, &'static str, String)>) -> SocketAddr {
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
                let ct =
                    if ct.is_empty() { String::new() } else { format!("Content-Type: {ct}\r\n") };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\n{ct}Content-Length: {}\r\nConnection: \
                             close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    addr
}

/// A Prometheus API with one healthy target of the operator-named `op` and three series for any
/// query.
pub(crate) async fn prometheus_stub(op: Operator) -> SocketAddr {
    // As the operator's relabeling leaves them: `job` before relabeling is the scrape pool.
    let targets = json!({"status": "success", "data": {"activeTargets": [{
        "discoveredLabels": {"job": op.pool}, "labels": {"job": op.job, "namespace": "tools", "service": "identity-service"},
        "scrapePool": op.pool, "scrapeUrl": "http://10.0.0.12:9090/prometheus", "globalUrl": "http://10.0.0.12:9090/prometheus",
        "lastError": "", "lastScrape": "2026-11-25T10:00:00Z", "lastScrapeDuration": 0.0021, "health": "up", "scrapeInterval": "30s", "scrapeTimeout": "10s"}], "droppedTargets": []}});
    let query = json!({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1764064800, "3"]}]}});
    http_server(vec![
        ("/api/v1/targets", "application/json", targets.to_string()),
        ("/api/v1/query", "application/json", query.to_string()),
    ])
    .await
}

/// An API server over real HTTP: GET and LIST from `world`, and `pods/NAME/portforward` as the
/// kubelet speaks it (WebSocket, v4.channel.k8s.io: a first frame with the port on the data and
/// the error channel, then data frames prefixed with channel 0), bridged to `pods[NAME]`.
pub(crate) async fn api_server(
    world: World,
    pods: BTreeMap<&'static str, SocketAddr>,
) -> SocketAddr {
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

pub(crate) async fn forward_ws<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
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

pub(crate) fn kubeconfig(server: SocketAddr) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "meshscrape-verify-cluster-{}-{}",
        std::process::id(),
        server.port()
    ));
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: kind-test\nclusters:\n- name: test\n  \
            cluster: {{server: \"http://{server}\"}}\ncontexts:\n- name: kind-test\n  context: \
                {{cluster: test, user: test}}\nusers:\n- name: test\n  user: {{token: t}}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A sidecar with every access rule on, standing in for one behind a port-forward: TLS with a
/// certificate for `server_name` from one CA, client certificates required from another, and the
/// bearer token `token`; it answers `/prometheus` and `/readiness`. Also the PEM a monitor's
/// Secrets hold: (server CA, client certificate, client key).
pub(crate) async fn tls_sidecar(
    server_name: &str,
    token: &'static str,
) -> (SocketAddr, [String; 3]) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject as _};
    let ca = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    };
    let (server_ca, client_ca) = (ca("server CA"), ca("client CA"));
    let leaf = |issuer: &CertifiedIssuer<'_, KeyPair>, name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_crt, server_key) = leaf(&server_ca, server_name);
    let (client_crt, client_key) = leaf(&client_ca, "prometheus");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from_pem_slice(server_crt.as_bytes()).unwrap()],
            rustls::pki_types::PrivateKeyDer::from_pem_slice(server_key.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let authorized = head
                    .lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {token}")));
                let path = head.split(' ').nth(1).unwrap_or("");
                let (status, body) = match (authorized, path) {
                    (false, _) => ("401 Unauthorized", "a bearer token is required\n".to_string()),
                    (true, "/prometheus") => ("200 OK", SEED.to_string()),
                    (true, "/readiness") => ("200 OK", "ok\n".to_string()),
                    _ => ("404 Not Found", "no route\n".to_string()),
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, [server_ca.pem(), client_crt, client_key])
}
