//! Thin entry point: parse flags, run one subcommand, print the report, exit 0/1/2.

use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use meshscrape_verify::cli::{Args, Command, pairs};
use meshscrape_verify::report::{Format, Report};
use meshscrape_verify::{cluster, endpoint, manifests, prometheus};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            let colour = args.output == Format::Human && std::io::stdout().is_terminal();
            print!("{}", report.render(args.output, colour));
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("meshscrape-verify: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    match &args.command {
        Command::Manifests { paths, prometheus_selector } => {
            let options = manifests::Options { prometheus_selector: pairs(prometheus_selector, "--prometheus-selector")? };
            let objects = manifests::load(paths, || {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).map(|_| s)
            })?;
            Ok(manifests::check(&objects, &options))
        }
        Command::Endpoint { url, probe, timeout, max_bytes } => {
            let timeout = duration("--timeout", timeout)?;
            eprintln!("scraping {url} (timeout {}s)…", timeout.as_secs_f64());
            let options = endpoint::Options { timeout, max_bytes: *max_bytes, probes: probe.clone() };
            Ok(runtime.block_on(endpoint::check(url, &options)))
        }
        Command::Prometheus { url, job, labels, expect_metric } => {
            eprintln!("asking {url} about job {job}…");
            let options = prometheus::Options { job: job.clone(), labels: pairs(labels, "--label")?, expect_metric: expect_metric.clone(), timeout: Duration::from_secs(15) };
            Ok(runtime.block_on(prometheus::check(url, &options)))
        }
        Command::Cluster { namespace, service, port, context, request_timeout, prometheus, expect_metric, no_port_forward, probe, timeout } => {
            let prometheus = match prometheus {
                Some(p) => match p.split_once('/') {
                    Some((ns, svc)) if !ns.is_empty() && !svc.is_empty() => Some((ns.to_string(), svc.to_string())),
                    _ => return Err(format!("--prometheus {p}: expected NAMESPACE/SERVICE, e.g. monitoring/prometheus-operated")),
                },
                None => None,
            };
            let options = cluster::Options {
                namespace: namespace.clone(),
                service: service.clone(),
                port: port.clone(),
                prometheus,
                port_forward: !no_port_forward,
                endpoint: endpoint::Options { timeout: duration("--timeout", timeout)?, max_bytes: 64 << 20, probes: probe.clone() },
                expect_metric: expect_metric.clone(),
                progress: true,
            };
            let request_timeout = duration("--request-timeout", request_timeout)?;
            runtime.block_on(async {
                let client = kube_client(context.as_deref(), request_timeout).await?;
                cluster::check(&client, &options, Arc::new(cluster::PortForward(client.clone()))).await
            })
        }
    }
}

/// A client from the kubeconfig context given, else as kubectl would: KUBECONFIG, ~/.kube/config,
/// or the in-cluster service account. Connecting and every answer are bounded by `timeout`.
async fn kube_client(context: Option<&str>, timeout: Duration) -> Result<kube::Client, String> {
    let mut config = match context {
        Some(ctx) => {
            let options = kube::config::KubeConfigOptions { context: Some(ctx.to_string()), ..Default::default() };
            kube::Config::from_kubeconfig(&options).await.map_err(|e| format!("kubeconfig context {ctx}: {}", meshscrape_common::error::chain(&e)))?
        }
        None => kube::Config::infer().await.map_err(|e| format!("no cluster to talk to ({e}); set KUBECONFIG or pass --context"))?,
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    kube::Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {}", meshscrape_common::error::chain(&e)))
}

fn duration(flag: &str, text: &str) -> Result<Duration, String> {
    meshscrape_common::names::prometheus_duration(text).map(Duration::from_millis).map_err(|e| format!("{flag} {text}: {e}"))
}
