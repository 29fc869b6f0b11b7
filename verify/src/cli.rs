//! The command line: one subcommand per kind of check.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::report::{Format, Report};
use crate::{cluster, endpoint, manifests, prometheus};

/// Proves, link by link, that Prometheus can scrape an app through meshscrape-proxy.
///
/// Exit codes: 0 every check passed, 1 a check failed, 2 the tool itself could not run.
#[derive(Debug, Parser)]
#[command(name = "meshscrape-verify", version, max_term_width = 100)]
pub struct Args {
    /// Output: a checklist for people, JSON, or JUnit XML for CI
    #[arg(long, value_enum, default_value = "human", global = true)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests offline: monitor → Prometheus selection → Service → port → container →
    /// sidecar route → Istio exclusion → NetworkPolicy, and the operator's validation rules
    Manifests {
        /// YAML files, folders (searched for *.yaml, *.yml) or - for stdin
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Labels the Prometheus object's monitor selector requires, when its YAML is not given
        #[arg(long, value_name = "K=V")]
        prometheus_selector: Vec<String>,
    },
    /// Scrape a URL as Prometheus does and check status, content type and the exposition
    Endpoint {
        /// e.g. http://127.0.0.1:9090/prometheus (after kubectl port-forward)
        url: String,
        /// Also require these paths on the same host to answer 200, e.g. --probe /readiness
        #[arg(long, value_name = "PATH")]
        probe: Vec<String>,
        /// The scrape timeout to send and enforce
        #[arg(long, default_value = "10s", value_name = "DURATION")]
        timeout: String,
        /// The largest body to accept
        #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
        max_bytes: usize,
    },
    /// Ask Prometheus about the job's targets: health, last error, scrape duration, a metric
    Prometheus {
        /// Prometheus's base URL, e.g. http://127.0.0.1:9090
        #[arg(long)]
        url: String,
        /// The job label of the targets, e.g. serviceMonitor/monitoring/argo-monitor/0
        #[arg(long)]
        job: String,
        /// Further target labels that must match
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
        /// A metric that must have series for the job
        #[arg(long, value_name = "NAME")]
        expect_metric: Option<String>,
    },
    /// Check a live cluster, read-only: the Service, the ServiceMonitor or PodMonitor and the
    /// Prometheus object selecting it (all the `manifests` links), its EndpointSlices and pods, then
    /// a scrape through a port-forward to a ready pod, and optionally Prometheus's view through another
    Cluster {
        /// The app's namespace
        #[arg(long, short = 'n')]
        namespace: String,
        /// The app's Service, e.g. identity-service
        #[arg(long)]
        service: String,
        /// The Service's metrics port name [default: the one the selecting ServiceMonitor names]
        #[arg(long, value_name = "NAME")]
        port: Option<String>,
        /// The kubeconfig context [default: the current one; KUBECONFIG and in-cluster config work]
        #[arg(long)]
        context: Option<String>,
        /// How long to wait for the API server to connect and to answer each request
        #[arg(long, default_value = "30s", value_name = "DURATION")]
        request_timeout: String,
        /// Also ask Prometheus about the monitor's job, through a port-forward to this Service,
        /// e.g. monitoring/prometheus-operated
        #[arg(long, value_name = "NAMESPACE/SERVICE")]
        prometheus: Option<String>,
        /// With --prometheus: a metric that must have series for the job
        #[arg(long, value_name = "NAME")]
        expect_metric: Option<String>,
        /// Do not scrape through a port-forward (it needs create on pods/portforward)
        #[arg(long)]
        no_port_forward: bool,
        /// Also require these sidecar paths to answer 200, e.g. --probe /readiness
        #[arg(long, value_name = "PATH")]
        probe: Vec<String>,
        /// The scrape timeout to send and enforce
        #[arg(long, default_value = "10s", value_name = "DURATION")]
        timeout: String,
    },
}

/// Splits `K=V` arguments.
pub fn pairs(values: &[String], flag: &str) -> Result<Vec<(String, String)>, String> {
    values
        .iter()
        .map(|v| {
            v.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{flag} `{v}` is not K=V"))
        })
        .collect()
}

/// Runs the subcommand `args` names, as the binary does (its own runtime, progress on stderr):
/// the report, or why the tool could not run (exit 2).
pub fn run(args: &Args) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match &args.command {
        Command::Manifests { paths, prometheus_selector } => {
            let options = manifests::Options {
                prometheus_selector: pairs(prometheus_selector, "--prometheus-selector")?,
            };
            let objects = manifests::load(paths, || {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).map(|_| s)
            })?;
            Ok(manifests::check(&objects, &options))
        }
        Command::Endpoint { url, probe, timeout, max_bytes } => {
            let timeout = duration("--timeout", timeout)?;
            eprintln!("scraping {url} (timeout {}s)…", timeout.as_secs_f64());
            let options =
                endpoint::Options { timeout, max_bytes: *max_bytes, probes: probe.clone() };
            Ok(runtime.block_on(endpoint::check(url, &options)))
        }
        Command::Prometheus { url, job, labels, expect_metric } => {
            eprintln!("asking {url} about job {job}…");
            let options = prometheus::Options {
                job: job.clone(),
                labels: pairs(labels, "--label")?,
                expect_metric: expect_metric.clone(),
                timeout: Duration::from_secs(15),
            };
            Ok(runtime.block_on(prometheus::check(url, &options)))
        }
        Command::Cluster {
            namespace,
            service,
            port,
            context,
            request_timeout,
            prometheus,
            expect_metric,
            no_port_forward,
            probe,
            timeout,
        } => {
            let prometheus = match prometheus {
                Some(p) => match p.split_once('/') {
                    Some((ns, svc)) if !ns.is_empty() && !svc.is_empty() => {
                        Some((ns.to_string(), svc.to_string()))
                    }
                    _ => {
                        return Err(format!(
                            "--prometheus {p}: expected NAMESPACE/SERVICE, e.g. monitoring/prometheus-operated"
                        ));
                    }
                },
                None => None,
            };
            let options = cluster::Options {
                namespace: namespace.clone(),
                service: service.clone(),
                port: port.clone(),
                prometheus,
                port_forward: !no_port_forward,
                endpoint: endpoint::Options {
                    timeout: duration("--timeout", timeout)?,
                    max_bytes: 64 << 20,
                    probes: probe.clone(),
                },
                expect_metric: expect_metric.clone(),
                progress: true,
            };
            let request_timeout = duration("--request-timeout", request_timeout)?;
            runtime.block_on(async {
                let client = kube_client(context.as_deref(), request_timeout).await?;
                cluster::check(&client, &options, Arc::new(cluster::PortForward(client.clone())))
                    .await
            })
        }
    }
}

/// A client from the kubeconfig context given, else as kubectl would: KUBECONFIG, ~/.kube/config,
/// or the in-cluster service account. Connecting and every answer are bounded by `timeout`.
async fn kube_client(context: Option<&str>, timeout: Duration) -> Result<kube::Client, String> {
    let mut config = match context {
        Some(ctx) => {
            let options = kube::config::KubeConfigOptions {
                context: Some(ctx.to_string()),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&options).await.map_err(|e| {
                format!("kubeconfig context {ctx}: {}", meshscrape_common::error::chain(&e))
            })?
        }
        None => kube::Config::infer().await.map_err(|e| {
            format!("no cluster to talk to ({e}); set KUBECONFIG or pass --context")
        })?,
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    kube::Client::try_from(config).map_err(|e| {
        format!("cannot build a Kubernetes client: {}", meshscrape_common::error::chain(&e))
    })
}

fn duration(flag: &str, text: &str) -> Result<Duration, String> {
    meshscrape_common::duration::parse(text).map_err(|e| format!("{flag} {text}: {e}"))
}
