//! End-to-end tests of meshscrape live in `tests/`; this library holds what they share.
//!
//! - Tier 2 (`tests/e2e/prometheus.rs`): the sidecar in-process, configured from the ConfigMap that
//!   `meshscrape-gen` renders, a demo app, and a real Prometheus process scraping through it.
//! - Tier 3 (`tests/e2e/containers.rs`): the same as a pod of containers (testcontainers) behind a
//!   STRICT mTLS gate, inside the generated Deployment's resource limits, with Prometheus in a
//!   container of its own.
//!
//! Both tiers scrape the demo app `src/bin/demo-app.rs`: a process in tier 2, an image in tier 3.

pub mod docker;
pub mod pod;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use meshscrape_common::AppConfig;
use meshscrape_common::crd::ServiceMonitor;
use meshscrape_common::operator::{self, MonitorKind};
use meshscrape_gen::objects::Object;
use meshscrape_gen::templates::Templates;
use meshscrape_verify::prometheus;
use meshscrape_verify::report::{Report, Status};

/// The seed's metric: a Dropwizard summary the identity-service exports.
pub const METRIC: &str = "com_hybris_yprofile_identity_web_rest_HealthEndpoint_isAlive";

/// Where `scripts/fetch-prometheus3` puts Prometheus 3.5: `MESHSCRAPE_PROMETHEUS3` if set, else
/// its default folder under the home directory.
pub fn prometheus3_binary() -> PathBuf {
    std::env::var_os("MESHSCRAPE_PROMETHEUS3").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(&std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/meshscrape/prometheus3/prometheus")
    })
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What `meshscrape-gen` renders for `examples/identity-service.yaml`, the parts the tests run.
pub struct Example {
    /// The ConfigMap's `sidecar.yaml`, verbatim.
    pub sidecar_yaml: String,
    pub deployment: Deployment,
    pub service: Service,
    pub monitor: ServiceMonitor,
}

impl Example {
    /// The example as it is (a 30 s scrape interval).
    pub fn render() -> Example {
        Example::render_with(|_| {})
    }

    /// The example with the monitor's interval at 2 s and its scrape timeout at 1 s, so a test
    /// waits seconds for Prometheus instead of minutes. Everything else is as in the example, and
    /// the Prometheus jobs are derived from the monitor rendered with these values.
    pub fn render_fast() -> Example {
        Example::render_with(|c| {
            c.monitor.interval = "2s".into();
            c.monitor.scrape_timeout = Some("1s".into());
        })
    }

    /// `render_fast`, with the sidecar rendered as a native sidecar (an init container with
    /// `restartPolicy: Always`).
    pub fn render_native() -> Example {
        Example::render_with(|c| {
            c.monitor.interval = "2s".into();
            c.monitor.scrape_timeout = Some("1s".into());
            c.sidecar.native = true;
        })
    }

    /// The sidecar's container spec, in containers or, native, in initContainers.
    pub fn sidecar_container(&self) -> &k8s_openapi::api::core::v1::Container {
        let spec = self.deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let spec = spec.expect("a pod spec");
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == "meshscrape-proxy")
            .expect("a meshscrape-proxy container")
    }

    fn render_with(change: impl FnOnce(&mut AppConfig)) -> Example {
        let mut config = AppConfig::load(&root().join("examples/identity-service.yaml"))
            .expect("the example loads");
        change(&mut config);
        let rendered = meshscrape_gen::render(&config, &Templates::load(None).expect("templates"))
            .expect("the example renders");
        let (mut sidecar_yaml, mut deployment, mut service, mut monitor) = (None, None, None, None);
        for r in rendered {
            match r.object {
                Object::ConfigMap(cm) => {
                    sidecar_yaml = cm.data.and_then(|mut d| d.remove("sidecar.yaml"))
                }
                Object::Deployment(d) => deployment = Some(*d),
                // The first namespace's; every namespace's Service has the same name and labels.
                Object::Service(svc) if service.is_none() => service = Some(*svc),
                Object::ServiceMonitor(m) => monitor = Some(*m),
                _ => {}
            }
        }
        Example {
            sidecar_yaml: sidecar_yaml.expect("a ConfigMap with sidecar.yaml"),
            deployment: deployment.expect("a Deployment"),
            service: service.expect("a Service"),
            monitor: monitor.expect("a ServiceMonitor"),
        }
    }

    /// The scrape job prometheus-operator derives from the monitor's first endpoint: the scrape
    /// pool as its name, and the `job` label it relabels the targets with.
    pub fn job(&self) -> ScrapeJob {
        let endpoint = &self.monitor.spec.endpoints[0];
        let (ns, name) = (
            self.monitor.metadata.namespace.as_deref().unwrap_or("default"),
            self.monitor.metadata.name.as_deref().unwrap_or_default(),
        );
        let service_labels = self.service.metadata.labels.clone().unwrap_or_default();
        let job_label_value = self
            .monitor
            .spec
            .job_label
            .as_ref()
            .and_then(|l| service_labels.get(l))
            .map(String::as_str);
        let service_name = self.service.metadata.name.as_deref().unwrap_or_default();
        ScrapeJob {
            name: operator::scrape_pool(MonitorKind::ServiceMonitor, ns, name, 0),
            job: operator::job(
                MonitorKind::ServiceMonitor,
                ns,
                name,
                service_name,
                job_label_value,
            ),
            path: endpoint.path.clone().unwrap_or_else(|| "/metrics".into()),
            scheme: endpoint.scheme.clone().unwrap_or_else(|| "http".into()),
            honor_labels: endpoint.honor_labels.unwrap_or(false),
            interval: endpoint.interval.clone().unwrap_or_else(|| "30s".into()),
            // The operator leaves it to Prometheus's default, 10s, but never above the interval.
            timeout: endpoint.scrape_timeout.clone().unwrap_or_else(|| "10s".into()),
            target: String::new(),
        }
    }
}

/// One Prometheus scrape job with a static target.
#[derive(Clone, Debug)]
pub struct ScrapeJob {
    /// The job's name: the scrape pool.
    pub name: String,
    /// The `job` label its targets get by relabeling.
    pub job: String,
    pub path: String,
    pub scheme: String,
    pub honor_labels: bool,
    pub interval: String,
    pub timeout: String,
    /// host:port
    pub target: String,
}

impl ScrapeJob {
    /// The verifier's Prometheus check of this job's targets, as `version` answers it, expecting
    /// `metric` among the series it stored.
    pub fn expecting(
        &self,
        metric: &str,
        version: meshscrape_verify::promql::Version,
    ) -> prometheus::Options {
        prometheus::Options {
            version,
            scrape_pool: Some(self.name.clone()),
            job: Some(self.job.clone()),
            expect_metric: Some(metric.to_string()),
            timeout: Duration::from_secs(5),
            ..Default::default()
        }
    }
}

/// A prometheus.yml with the jobs as prometheus-operator writes them for a monitor's endpoint
/// (the scrape pool as job name, path, scheme, honor_labels, interval, timeout, and the
/// relabeling that sets `job`), with static targets in place of Kubernetes service discovery.
pub fn prometheus_yml(jobs: &[ScrapeJob]) -> String {
    let mut out = String::from("scrape_configs:\n");
    for j in jobs {
        out += &format!(
            "  - job_name: \"{}\"\n    metrics_path: \"{}\"\n    scheme: {}\n    honor_labels: {}\n    \
             scrape_interval: {}\n    scrape_timeout: {}\n    static_configs:\n      - targets: \
             [\"{}\"]\n    relabel_configs:\n      - target_label: job\n        replacement: \
             \"{}\"\n",
            j.name, j.path, j.scheme, j.honor_labels, j.interval, j.timeout, j.target, j.job
        );
    }
    out
}

/// Polls the verifier's prometheus check until its verdict is `want_failed` and settled (Prometheus
/// has the target and has scraped it: its health is up or down, not unknown), for at most
/// `limit`; returns the last report either way.
pub async fn until(
    url: &str,
    options: &prometheus::Options,
    want_failed: bool,
    limit: Duration,
) -> Report {
    let started = Instant::now();
    loop {
        // Not answering yet counts as unsettled.
        let report = prometheus::check(url, options).await.unwrap_or_else(|e| {
            let mut r = Report::default();
            r.push(meshscrape_verify::report::Check::fail("Prometheus API", e.to_string(), "wait"));
            r
        });
        let settled = report.checks.iter().any(|c| c.name == "health" && c.status != Status::Warn);
        if (report.failed() == want_failed && settled) || started.elapsed() > limit {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `meshscrape-verify ARGS` as the binary runs it: the same argument parsing and subcommand code
/// (`cli::run`, which starts its own runtime, so on a blocking thread). Returns the exit code and
/// the report as printed.
pub async fn verify_cli(args: &[&str]) -> (u8, String) {
    use clap::Parser as _;
    let argv: Vec<String> = std::iter::once("meshscrape-verify")
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect();
    tokio::task::spawn_blocking(move || {
        let args = meshscrape_verify::cli::Args::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("meshscrape-verify arguments: {e}"));
        match meshscrape_verify::cli::run(&args) {
            Ok(report) => (report.exit_code(), report.render(args.output, false)),
            Err(e) => (2, e.to_string()),
        }
    })
    .await
    .expect("the verifier ran")
}

/// A report as the verifier prints it, for assertion messages.
pub fn human(report: &Report) -> String {
    report.render(meshscrape_verify::report::Format::Human, false)
}
