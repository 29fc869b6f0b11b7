//! A real Prometheus scrapes a demo app through the sidecar, with the generated configuration;
//! then the app dies and comes back. Needs the `prometheus` binary (Debian package, installed by
//! scripts/setup-debian); without it the test says so and returns.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use meshscrape_common::{ProxyConfig, ProxyOverrides};
use meshscrape_e2e::{Example, METRIC, ScrapeJob, human, prometheus_yml, until};
use meshscrape_verify::{endpoint, prometheus, report::Status};
use tokio::net::TcpListener;

/// The demo app (`src/bin/demo-app.rs`, the seed's identity-service as monitoring sees it) on
/// `addr`; killed when dropped.
struct DemoApp(Child);

impl DemoApp {
    async fn start(addr: SocketAddr) -> DemoApp {
        // Owned at once, so every way out of here kills and reaps it.
        let app = DemoApp(
            Command::new(env!("CARGO_BIN_EXE_demo-app"))
                .arg(addr.to_string())
                .stderr(Stdio::null())
                .spawn()
                .expect("start demo-app"),
        );
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return app;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("demo-app did not listen on {addr}");
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts Prometheus with one scrape job (see `meshscrape_e2e::prometheus_yml`).
fn start_prometheus(job: &ScrapeJob) -> Prometheus {
    let dir = std::env::temp_dir().join(format!("meshscrape-e2e-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prometheus.yml"), prometheus_yml(std::slice::from_ref(job))).unwrap();
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

#[tokio::test]
async fn prometheus_scrapes_the_app_through_the_generated_sidecar_and_sees_it_recover() {
    if Command::new("prometheus").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED: no prometheus binary (apt-get install prometheus, or run \
                scripts/setup-debian as root)"
        );
        return;
    }
    // The example, rendered: the sidecar runs exactly the ConfigMap's configuration, on test ports.
    let example = Example::render_fast();
    let app_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let app = DemoApp::start(app_addr).await;
    let overrides = ProxyOverrides {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some(format!("http://{app_addr}")),
        ..Default::default()
    };
    let proxy_config =
        ProxyConfig::from_yaml(Path::new("sidecar.yaml"), &example.sidecar_yaml, &overrides)
            .unwrap();
    let listener = TcpListener::bind(proxy_config.listen).await.unwrap();
    let sidecar_addr = listener.local_addr().unwrap();
    let proxy_app = Arc::new(meshscrape_proxy::App::new(&proxy_config));
    let served = proxy_app.clone();
    tokio::spawn(async move {
        meshscrape_proxy::server::serve(listener, served, &proxy_config, std::future::pending())
            .await
    });

    let mut job = example.job();
    job.target = sidecar_addr.to_string();
    let path = job.path.clone();
    let prom = start_prometheus(&job);
    let options = prometheus::Options {
        job: job.name.clone(),
        expect_metric: Some(format!("{METRIC}_count")),
        timeout: Duration::from_secs(5),
        ..Default::default()
    };

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
    let _app = DemoApp::start(app_addr).await;
    let report = until(&prom.url, &options, false, Duration::from_secs(30)).await;
    assert!(!report.failed(), "{}", human(&report));
    assert!(
        proxy_app
            .render_metrics()
            .contains("meshscrape_proxy_requests_total{route=\"/prometheus\",status=\"502\"}")
    );
}
