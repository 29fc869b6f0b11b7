//! Real Prometheus servers, 3.5 (`scripts/fetch-prometheus3`) and 2.42 (Debian's package), scrape
//! a demo app through the sidecar with the generated configuration; then the app dies and comes
//! back. And each judges a UTF-8 body and a blank Content-Type as the verifier says it will.
//! Without a binary a test says so and skips it, unless MESHSCRAPE_E2E_REQUIRE_DOCKER is set (CI),
//! where a missing Prometheus fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshscrape_common::{ProxyConfig, ProxyOverrides};
use meshscrape_e2e::{Example, METRIC, ScrapeJob, human, prometheus_yml, until};
use meshscrape_verify::promql::Version;
use meshscrape_verify::{endpoint, prometheus, report::Status};
use tokio::net::TcpListener;

/// The demo app (`src/bin/demo-app.rs`, the seed's identity-service as monitoring sees it) on
/// `addr`; killed when dropped.
struct DemoApp(Child);

impl DemoApp {
    /// Starts it on a port of its own choosing (127.0.0.1:0) and reads the address from its
    /// `listening on` line: no port is picked here and released for it to race for.
    fn start() -> (DemoApp, SocketAddr) {
        DemoApp::start_on("127.0.0.1:0")
    }

    /// Starts it on `addr` (one it had before), reading back the address it bound.
    fn start_on(addr: &str) -> (DemoApp, SocketAddr) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_demo-app"))
            .arg(addr)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start demo-app");
        let stderr = child.stderr.take().unwrap();
        // Owned at once, so every way out of here kills and reaps it.
        let app = DemoApp(child);
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line);
        let addr = line
            .strip_prefix("demo-app: listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("demo-app did not say where it listens: {line:?}"));
        (app, addr)
    }
}

impl Drop for DemoApp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a server that takes its listen port as a flag and cannot be told to pick one and say
/// which (Prometheus, node_exporter): on a port picked free, and again on another if the server
/// exits because something else took that port before it could bind it. Returns once `probe`
/// answers with `expect` in its body, so the port is known to be this server's.
fn start_on_free_port(command: impl Fn(u16) -> Command, probe: &str, expect: &str) -> (Child, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = command(port).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(status)) = child.try_wait() {
                last = format!("exited with {status} on port {port}");
                break;
            }
            if http_get(port, probe).is_some_and(|body| body.contains(expect)) {
                return (child, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("could not start the server on a free port: {last}");
}

/// A plain blocking GET on loopback; the body, or `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    reply.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// Starts `binary` with the scrape jobs (see `meshscrape_e2e::prometheus_yml`).
fn start_prometheus(binary: &Path, jobs: &[ScrapeJob]) -> Prometheus {
    start_prometheus_with(binary, |_| prometheus_yml(jobs))
}

/// Starts `binary` with the prometheus.yml `config` writes, given the folder it runs in.
fn start_prometheus_with(binary: &Path, config: impl FnOnce(&Path) -> String) -> Prometheus {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("meshscrape-e2e-prom-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prometheus.yml"), config(&dir)).unwrap();
    let (child, port) = start_on_free_port(
        |port| {
            let mut c = Command::new(binary);
            c.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"));
            c
        },
        "/-/healthy",
        "Prometheus",
    );
    Prometheus { child, dir, url: format!("http://127.0.0.1:{port}") }
}

#[tokio::test]
async fn prometheus_scrapes_the_app_through_the_generated_sidecar_and_sees_it_recover() {
    for (version, binary) in prometheus_servers() {
        eprintln!("Prometheus {version}: {}", binary.display());
        scrape_through_the_sidecar_and_recover(&binary, version).await;
    }
}

async fn scrape_through_the_sidecar_and_recover(binary: &Path, version: Version) {
    // The example, rendered: the sidecar runs exactly the ConfigMap's configuration, on test ports.
    let example = Example::render_fast();
    let (app, app_addr) = DemoApp::start();
    let overrides = ProxyOverrides {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some(format!("http://{app_addr}")),
        ..Default::default()
    };
    let proxy_config =
        ProxyConfig::from_yaml(Path::new("sidecar.yaml"), &example.sidecar_yaml, &overrides)
            .unwrap();
    let (sidecar_addr, proxy_app) = serve_sidecar(proxy_config).await;

    let mut job = example.job();
    job.target = sidecar_addr.to_string();
    let path = job.path.clone();
    let prom = start_prometheus(binary, std::slice::from_ref(&job));
    let options = job.expecting(&format!("{METRIC}_count"), version);

    // 1. Prometheus reports the target up and has the seed's metric.
    let report = until(&prom.url, &options, false, Duration::from_secs(60)).await;
    assert!(!report.failed(), "{}", human(&report));
    assert!(report.checks.iter().any(|c| c.name == "metric" && c.status == Status::Pass));

    // 2. The endpoint check through the sidecar, with the seed's probe routes.
    let eo = endpoint::Options {
        probes: vec!["/readiness".into(), "/liveness".into()],
        ..Default::default()
    };
    let report = endpoint::check(&format!("http://{sidecar_addr}{path}"), &eo).await;
    assert!(!report.failed(), "{}", human(&report));

    // 3. The app dies: 502 through the sidecar, readiness fails, Prometheus marks the target down.
    drop(app);
    let report = endpoint::check(&format!("http://{sidecar_addr}{path}"), &eo).await;
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.message.clone())
        .collect();
    assert!(failed.iter().any(|m| m.starts_with("502")), "{failed:?}");
    let report = until(&prom.url, &options, true, Duration::from_secs(30)).await;
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "health" && c.status == Status::Fail && c.message.contains("down")),
        "{}",
        human(&report)
    );

    // 4. The app comes back on the same port; everything recovers without restarting the sidecar.
    let (_app, again) = DemoApp::start_on(&app_addr.to_string());
    assert_eq!(again, app_addr);
    let report = until(&prom.url, &options, false, Duration::from_secs(30)).await;
    assert!(!report.failed(), "{}", human(&report));
    assert!(
        proxy_app
            .render_metrics()
            .contains("meshscrape_proxy_requests_total{route=\"/prometheus\",status=\"502\"}")
    );
}

/// The sidecar with `config`, served in this process; its address and handler.
async fn serve_sidecar(config: ProxyConfig) -> (SocketAddr, Arc<meshscrape_proxy::App>) {
    let listener = TcpListener::bind(config.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Arc::new(meshscrape_proxy::App::new(&config).unwrap());
    let served = app.clone();
    tokio::spawn(async move {
        meshscrape_proxy::server::serve(listener, served, &config, std::future::pending()).await
    });
    (addr, app)
}

/// node_exporter 1.11, from beside Prometheus 3.5's binary, on a free port; it and the port.
fn start_node_exporter(prometheus3: &Path) -> (Child, u16) {
    let node_exporter = prometheus3.with_file_name("node_exporter");
    assert!(node_exporter.is_file(), "{} is missing", node_exporter.display());
    start_on_free_port(
        |port| {
            let mut c = Command::new(&node_exporter);
            c.arg(format!("--web.listen-address=127.0.0.1:{port}"));
            c
        },
        "/metrics",
        "node_exporter_build_info",
    )
}

/// The Prometheus servers on this machine: 3.5 and 2.42. One that is missing is skipped with a
/// note, or fails the test where MESHSCRAPE_E2E_REQUIRE_DOCKER says everything must run (CI).
fn prometheus_servers() -> Vec<(Version, PathBuf)> {
    let required = std::env::var_os("MESHSCRAPE_E2E_REQUIRE_DOCKER").is_some();
    let v3 = meshscrape_e2e::prometheus3_binary();
    let mut found = Vec::new();
    for (version, binary, fix) in [
        (Version::V3, v3, "run scripts/fetch-prometheus3 (or set MESHSCRAPE_PROMETHEUS3)"),
        (Version::V2, PathBuf::from("prometheus"), "apt-get install prometheus"),
    ] {
        let out = Command::new(&binary).arg("--version").output();
        let major = out.ok().and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            let v = text.split("version ").nth(1)?.chars().next()?;
            Some(v)
        });
        let want = if version == Version::V3 { '3' } else { '2' };
        if major == Some(want) {
            found.push((version, binary));
        } else if required {
            panic!("no Prometheus {version} at {}: {fix}", binary.display());
        } else {
            eprintln!("SKIPPED Prometheus {version}: none at {} ({fix})", binary.display());
        }
    }
    found
}

/// A loopback target that answers every GET with `content_type` (none when `None`) and `body`.
async fn target(content_type: Option<&'static str>, body: &'static str) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let ct = content_type.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 200 OK\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

/// What the verifier says of a body and a Content-Type is what each real Prometheus records: a
/// quoted UTF-8 name is up on 3 and down on 2, a blank Content-Type down on 3 and up on 2; and
/// the PromQL built for a UTF-8 name finds its series on 3 and is not sent to 2.
#[tokio::test]
async fn each_prometheus_judges_utf8_names_and_blank_content_types_as_the_verifier_does() {
    const UTF8: &str = "{\"my.dotted.requests\", \"error.message\"=\"Not Found\"} 3\n";
    let utf8 = target(Some("text/plain; version=1.0.0; charset=utf-8"), UTF8).await;
    let blank = target(None, "# TYPE plain_total counter\nplain_total 1\n").await;
    let job = |name: &str, addr: SocketAddr| ScrapeJob {
        name: name.into(),
        job: name.into(),
        path: "/metrics".into(),
        scheme: "http".into(),
        honor_labels: false,
        interval: "1s".into(),
        timeout: "1s".into(),
        target: addr.to_string(),
    };
    for (version, binary) in prometheus_servers() {
        let prom = start_prometheus(&binary, &[job("utf8", utf8), job("blank", blank)]);
        let endpoint_options = endpoint::Options { version, ..Default::default() };
        for (name, addr, up_on_3) in [("utf8", utf8, true), ("blank", blank, false)] {
            let up = if version == Version::V3 { up_on_3 } else { !up_on_3 };
            // The verifier's verdict on the scrape.
            let report =
                endpoint::check(&format!("http://{addr}/metrics"), &endpoint_options).await;
            assert_eq!(report.failed(), !up, "Prometheus {version}, {name}:\n{}", human(&report));
            // Prometheus's own.
            let options = prometheus::Options {
                scrape_pool: Some(name.into()),
                timeout: Duration::from_secs(5),
                version,
                ..Default::default()
            };
            let report = until(&prom.url, &options, !up, Duration::from_secs(30)).await;
            let health = report.checks.iter().find(|c| c.name == "health");
            let health = health.unwrap_or_else(|| panic!("no health check: {}", human(&report)));
            assert_eq!(
                health.status == Status::Pass,
                up,
                "Prometheus {version}, {name}: {}",
                human(&report)
            );
            if !up && version == Version::V3 {
                assert!(health.message.contains("blank Content-Type"), "{}", human(&report));
            }
        }
        // The query for a UTF-8 name.
        let options = prometheus::Options {
            scrape_pool: Some("utf8".into()),
            expect_metric: Some("my.dotted.requests".into()),
            timeout: Duration::from_secs(5),
            version,
            ..Default::default()
        };
        let report = prometheus::check(&prom.url, &options).await.expect("Prometheus answers");
        let metric = report.checks.iter().find(|c| c.name == "metric").expect("a metric check");
        match version {
            Version::V3 => {
                assert_eq!(metric.status, Status::Pass, "{}", human(&report));
                assert!(metric.message.contains("1 series"), "{}", human(&report));
            }
            Version::V2 => {
                assert!(metric.message.contains("Prometheus 2 cannot hold"), "{}", human(&report))
            }
        }
    }
}

/// Protobuf, as real exporters serve it: node_exporter 1.11's decodes to the families its text
/// output has, and Prometheus 3.5's own metrics decode with their native histograms.
#[tokio::test]
async fn protobuf_from_node_exporter_and_prometheus_decodes_to_their_text_families() {
    let Some((_, prometheus3)) = prometheus_servers().into_iter().find(|(v, _)| *v == Version::V3)
    else {
        return;
    };
    let (mut exporter, port) = start_node_exporter(&prometheus3);
    let prom = start_prometheus(&prometheus3, &[]);
    for url in [format!("http://127.0.0.1:{port}/metrics"), format!("{}/metrics", prom.url)] {
        let text = until_answered(&url, false).await;
        let proto = until_answered(&url, true).await;
        let says = |r: &meshscrape_verify::report::Report| {
            r.checks.iter().find(|c| c.name == "exposition").map(|c| c.message.clone())
        };
        let (text, proto) = (says(&text).unwrap(), says(&proto).unwrap());
        // "N families, M samples" and "protobuf: N families, M samples, K native histograms".
        let families =
            |m: &str| m.split(" families").next().unwrap().rsplit(' ').next().unwrap().to_string();
        assert!(proto.starts_with("protobuf: "), "{url}: {proto}");
        if url.starts_with(&prom.url) {
            // A young Prometheus registers metrics as it serves (its own /metrics among them), so
            // two scrapes need not list the same families; its native histograms must be there.
            let native = proto.rsplit(", ").next().unwrap();
            assert!(!native.starts_with("0 "), "Prometheus 3.5 exposes native histograms: {proto}");
        } else {
            assert_eq!(families(&text), families(&proto), "{url}: {text} / {proto}");
        }
    }
    let _ = exporter.kill();
    let _ = exporter.wait();
}

/// The endpoint check once the server answers (it may still be starting).
async fn until_answered(url: &str, protobuf: bool) -> meshscrape_verify::report::Report {
    let options = endpoint::Options { protobuf, ..Default::default() };
    for _ in 0..100 {
        let report = endpoint::check(url, &options).await;
        if !report.failed() {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered a clean scrape");
}

/// A merged route, as a platform team would write one for an app with an exporter beside it: the
/// demo app and a real node_exporter 1.11 behind one path. Each Prometheus stores both targets'
/// series from the one scrape, and the verifier finds every target in it, asked for text and
/// (as Prometheus 3 asks when it scrapes native histograms) for protobuf, which only
/// node_exporter speaks: the sidecar must then fall back to text for both.
#[tokio::test]
async fn each_prometheus_stores_a_merged_scrape_of_the_app_and_node_exporter() {
    let servers = prometheus_servers();
    let Some((_, prometheus3)) = servers.iter().find(|(v, _)| *v == Version::V3) else { return };
    let (mut exporter, port) = start_node_exporter(prometheus3);
    let (_app, app_addr) = DemoApp::start();
    let app_url = format!("http://{app_addr}/prometheus");
    let exporter_url = format!("http://127.0.0.1:{port}/metrics");
    let proxy_config = ProxyConfig::load(
        None,
        &ProxyOverrides {
            listen: Some("127.0.0.1:0".into()),
            routes: vec![format!("/metrics={app_url}|{exporter_url}")],
            ..Default::default()
        },
    )
    .unwrap();
    let (sidecar_addr, proxy_app) = serve_sidecar(proxy_config).await;

    // The verifier, as each Prometheus asks.
    let url = format!("http://{sidecar_addr}/metrics");
    for (version, protobuf) in [(Version::V3, false), (Version::V3, true), (Version::V2, false)] {
        let o = endpoint::Options { version, protobuf, ..Default::default() };
        let report = endpoint::check(&url, &o).await;
        assert!(!report.failed(), "{version} protobuf={protobuf}: {}", human(&report));
        assert!(
            report
                .checks
                .iter()
                .any(|c| c.message == "all 2 targets of the route are in the scrape"),
            "{}",
            human(&report)
        );
    }

    let example = Example::render_fast();
    for (version, binary) in servers {
        let mut job = example.job();
        job.target = sidecar_addr.to_string();
        job.path = "/metrics".into();
        let prom = start_prometheus(&binary, std::slice::from_ref(&job));
        for metric in [
            format!("{METRIC}_count"),
            "node_exporter_build_info".into(),
            "meshscrape_merge_target_up".into(),
        ] {
            let options = job.expecting(&metric, version);
            let report = until(&prom.url, &options, false, Duration::from_secs(60)).await;
            assert!(!report.failed(), "Prometheus {version}, {metric}: {}", human(&report));
        }
    }
    // Every scrape had both targets in it.
    let rendered = proxy_app.render_metrics();
    for target in [&app_url, &exporter_url] {
        let up =
            format!("meshscrape_proxy_merge_target_up{{route=\"/metrics\",target=\"{target}\"}} 1");
        assert!(rendered.contains(&up), "{up} not in:\n{rendered}");
    }
    assert!(!rendered.contains("meshscrape_proxy_merge_target_failures_total{"), "{rendered}");
    let _ = exporter.kill();
    let _ = exporter.wait();
}

/// The sidecar with every access rule on (TLS, client certificates from a CA of its own, a bearer
/// token), and each Prometheus scraping it with the settings a monitor renders into its config:
/// `tls_config` (CA, client certificate, server name) and `authorization`. A job without the
/// token is refused with 401. The verifier's endpoint check scrapes it with the same credentials.
#[tokio::test]
async fn each_prometheus_scrapes_a_sidecar_that_requires_tls_client_certificates_and_a_token() {
    let servers = prometheus_servers();
    if servers.is_empty() {
        return;
    }
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("meshscrape-e2e-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let ca = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    };
    let leaf = |issuer: &CertifiedIssuer<'_, KeyPair>, names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    // The sidecar's certificate from one CA; Prometheus's client certificate from another.
    let server_ca = ca("meshscrape test server CA");
    let client_ca = ca("meshscrape test client CA");
    let (server_crt, server_key) =
        leaf(&server_ca, vec!["identity-service.metrics.meshscrape".into()]);
    let (client_crt, client_key) = leaf(&client_ca, vec!["prometheus".into()]);
    let files = [
        ("server.crt", server_crt),
        ("server.key", server_key),
        ("client-ca.crt", client_ca.pem()),
        ("ca.crt", server_ca.pem()),
        ("client.crt", client_crt),
        ("client.key", client_key),
        ("token", "e2e-token\n".to_string()),
    ];
    let path: std::collections::BTreeMap<&str, String> =
        files.iter().map(|(name, text)| (*name, write(name, text))).collect();

    let (_app, app_addr) = DemoApp::start();
    let proxy_config = ProxyConfig::load(
        None,
        &ProxyOverrides {
            listen: Some("127.0.0.1:0".into()),
            upstream: Some(format!("http://{app_addr}")),
            routes: vec!["/prometheus=/prometheus".into()],
            tls_cert_file: Some(path["server.crt"].clone()),
            tls_key_file: Some(path["server.key"].clone()),
            tls_client_ca_file: Some(path["client-ca.crt"].clone()),
            bearer_token_file: Some(path["token"].clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let (sidecar_addr, proxy_app) = serve_sidecar(proxy_config).await;

    // The verifier with the monitor's credentials, and without the token.
    let url = format!("https://{sidecar_addr}/prometheus");
    let credentials = [
        "--ca-file",
        path["ca.crt"].as_str(),
        "--cert-file",
        path["client.crt"].as_str(),
        "--key-file",
        path["client.key"].as_str(),
        "--server-name",
        "identity-service.metrics.meshscrape",
    ];
    let mut args = vec!["endpoint", url.as_str(), "--bearer-token-file", path["token"].as_str()];
    args.extend(credentials);
    let (code, out) = meshscrape_e2e::verify_cli(&args).await;
    assert_eq!(code, 0, "{out}");
    let mut args = vec!["endpoint", url.as_str()];
    args.extend(credentials);
    let (code, out) = meshscrape_e2e::verify_cli(&args).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("401 Unauthorized: a bearer token is required"), "{out}");

    for (version, binary) in servers {
        let job = |name: &str, token: bool| {
            let auth = if token {
                format!(
                    "    authorization:\n      type: Bearer\n      credentials_file: {}\n",
                    path["token"]
                )
            } else {
                String::new()
            };
            format!(
                "  - job_name: {name}\n    metrics_path: /prometheus\n    scheme: https\n    \
                 scrape_interval: 1s\n    scrape_timeout: 1s\n    tls_config:\n      ca_file: {}\n      \
                 cert_file: {}\n      key_file: {}\n      server_name: identity-service.metrics.meshscrape\n\
                 {auth}    static_configs:\n      - targets: [\"{sidecar_addr}\"]\n",
                path["ca.crt"], path["client.crt"], path["client.key"]
            )
        };
        let prom = start_prometheus_with(&binary, |_| {
            format!("scrape_configs:\n{}{}", job("with-token", true), job("without-token", false))
        });
        let options = |job: &str| prometheus::Options {
            version,
            scrape_pool: Some(job.into()),
            job: Some(job.into()),
            expect_metric: Some(format!("{METRIC}_count")),
            timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let report = until(&prom.url, &options("with-token"), false, Duration::from_secs(60)).await;
        assert!(!report.failed(), "Prometheus {version}: {}", human(&report));
        let report =
            until(&prom.url, &options("without-token"), true, Duration::from_secs(60)).await;
        assert!(
            report.checks.iter().any(|c| c.status == Status::Fail && c.message.contains("401")),
            "Prometheus {version}: {}",
            human(&report)
        );
    }
    // The job without the token was turned away by the sidecar, not lost on the way.
    let rendered = proxy_app.render_metrics();
    assert!(
        !rendered.contains("meshscrape_proxy_denied_total{reason=\"no_token\"} 0\n"),
        "{rendered}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
