//! A real Prometheus scrapes a demo app through the sidecar, with the generated configuration;
//! then the app dies and comes back. Needs the `prometheus` binary (Debian package, installed by
//! scripts/setup-debian); without it the test says so and returns.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshscrape_common::{AppConfig, ProxyConfig, ProxyOverrides};
use meshscrape_gen::objects::Object;
use meshscrape_gen::templates::Templates;
use meshscrape_verify::{endpoint, prometheus, report::Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const METRIC: &str = "com_hybris_yprofile_identity_web_rest_HealthEndpoint_isAlive";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The seed's identity-service: Dropwizard summaries at /prometheus, /ready and /alive.
async fn demo_app(listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let path = String::from_utf8_lossy(&head).split(' ').nth(1).unwrap_or("").to_string();
                let body = match path.split('?').next().unwrap_or("") {
                    "/prometheus" => format!(
                        "# HELP {METRIC} Generated from Dropwizard metric import\n# TYPE {METRIC} summary\n{METRIC}{{quantile=\"0.5\",}} 1.353475E-4\n{METRIC}{{quantile=\"0.99\",}} 4.1210555000000096E-4\n{METRIC}_count 50598.0\n"
                    ),
                    "/ready" | "/alive" => "ok\n".to_string(),
                    _ => String::new(),
                };
                let status = if body.is_empty() { "404 Not Found" } else { "200 OK" };
                let resp = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    })
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts Prometheus with the scrape job prometheus-operator derives from `monitor`'s endpoint:
/// same job name, path, scheme and honor_labels; the interval is shortened to 1s for the test.
fn start_prometheus(job: &str, path: &str, honor_labels: bool, target: SocketAddr) -> Prometheus {
    let dir = std::env::temp_dir().join(format!("meshscrape-e2e-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: \"{job}\"\n    metrics_path: \"{path}\"\n    scheme: http\n    honor_labels: {honor_labels}\n    static_configs:\n      - targets: [\"{target}\"]\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    Prometheus { child, dir, url: format!("http://127.0.0.1:{port}") }
}

/// Polls the verifier's prometheus check until `want_failed` matches, for at most `limit`.
async fn until(url: &str, options: &prometheus::Options, want_failed: bool, limit: Duration) -> meshscrape_verify::report::Report {
    let started = Instant::now();
    loop {
        let report = prometheus::check(url, options).await;
        let settled = report.checks.iter().all(|c| c.status != Status::Warn || c.name != "health");
        if (report.failed() == want_failed && settled) || started.elapsed() > limit {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_app_through_the_generated_sidecar_and_sees_it_recover() {
    if Command::new("prometheus").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no prometheus binary (apt-get install prometheus, or run scripts/setup-debian as root)");
        return;
    }
    // The example, rendered: the sidecar runs exactly the ConfigMap's configuration, on test ports.
    let config = AppConfig::load(&root().join("examples/identity-service.yaml")).unwrap();
    let rendered = meshscrape_gen::render(&config, &Templates::load(None).unwrap()).unwrap();
    let cm = rendered.iter().find_map(|r| match &r.object {
        Object::ConfigMap(cm) => Some(cm.data.clone().unwrap()["sidecar.yaml"].clone()),
        _ => None,
    });
    let Some(Object::ServiceMonitor(monitor)) = rendered.iter().map(|r| r.object.clone()).find(|o| matches!(o, Object::ServiceMonitor(_))) else {
        panic!("no ServiceMonitor")
    };
    let app_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = app_listener.local_addr().unwrap();
    let mut app = demo_app(app_listener).await;
    let overrides = ProxyOverrides { listen: Some("127.0.0.1:0".into()), upstream: Some(format!("http://{app_addr}")), ..Default::default() };
    let proxy_config = ProxyConfig::from_yaml(Path::new("sidecar.yaml"), &cm.unwrap(), &overrides).unwrap();
    let listener = TcpListener::bind(proxy_config.listen).await.unwrap();
    let sidecar_addr = listener.local_addr().unwrap();
    let proxy_app = Arc::new(meshscrape_proxy::App::new(&proxy_config));
    let served = proxy_app.clone();
    tokio::spawn(async move { meshscrape_proxy::server::serve(listener, served, &proxy_config, std::future::pending()).await });

    let endpoint_spec = &monitor.spec.endpoints[0];
    let job = format!("serviceMonitor/{}/{}/0", monitor.metadata.namespace.clone().unwrap(), monitor.metadata.name.clone().unwrap());
    let path = endpoint_spec.path.clone().unwrap();
    let prom = start_prometheus(&job, &path, endpoint_spec.honor_labels.unwrap_or(false), sidecar_addr);
    let options = prometheus::Options { job: job.clone(), expect_metric: Some(format!("{METRIC}_count")), timeout: Duration::from_secs(5), ..Default::default() };

    // 1. Prometheus reports the target up and has the seed's metric.
    let report = until(&prom.url, &options, false, Duration::from_secs(60)).await;
    assert!(!report.failed(), "{}", report.render(meshscrape_verify::report::Format::Human, false));
    assert!(report.checks.iter().any(|c| c.name == "metric" && c.status == Status::Pass));

    // 2. The endpoint check through the sidecar, with the seed's probe routes.
    let eo = endpoint::Options { probes: vec!["/readiness".into(), "/liveness".into()], ..Default::default() };
    let report = endpoint::check(&format!("http://{sidecar_addr}{path}"), &eo).await;
    assert!(!report.failed(), "{}", report.render(meshscrape_verify::report::Format::Human, false));

    // 3. The app dies: 502 through the sidecar, readiness fails, Prometheus marks the target down.
    app.abort();
    let _ = (&mut app).await;
    let report = endpoint::check(&format!("http://{sidecar_addr}{path}"), &eo).await;
    let failed: Vec<String> = report.checks.iter().filter(|c| c.status == Status::Fail).map(|c| c.message.clone()).collect();
    assert!(failed.iter().any(|m| m.starts_with("502")), "{failed:?}");
    let report = until(&prom.url, &options, true, Duration::from_secs(30)).await;
    assert!(report.checks.iter().any(|c| c.name == "health" && c.status == Status::Fail && c.message.contains("down")), "{}", report.render(meshscrape_verify::report::Format::Human, false));

    // 4. The app comes back on the same port; everything recovers without restarting the sidecar.
    let _app = demo_app(TcpListener::bind(app_addr).await.unwrap()).await;
    let report = until(&prom.url, &options, false, Duration::from_secs(30)).await;
    assert!(!report.failed(), "{}", report.render(meshscrape_verify::report::Format::Human, false));
    assert!(proxy_app.render_metrics().contains("meshscrape_proxy_requests_total{route=\"/prometheus\",status=\"502\"}"));
}
