//! `meshscrape-verify cluster`: the chain as a live cluster holds it, read-only.

use std::sync::Arc;
use std::time::Duration;

use super::{duration, runtime};
use crate::error::Error;
use crate::promql::Version;
use crate::report::Report;
use crate::{cluster, endpoint};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app's namespace
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// The app's Service, e.g. identity-service
    #[arg(long)]
    pub service: String,
    /// The Service's metrics port name [default: the one the selecting ServiceMonitor names]
    #[arg(long, value_name = "NAME")]
    pub port: Option<String>,
    /// The kubeconfig context [default: the current one; KUBECONFIG and in-cluster config work]
    #[arg(long)]
    pub context: Option<String>,
    /// How long to wait for the API server to connect and to answer each request
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub request_timeout: String,
    /// Also ask Prometheus about the monitor's job, through a port-forward to this Service,
    /// e.g. monitoring/prometheus-operated
    #[arg(long, value_name = "NAMESPACE/SERVICE")]
    pub prometheus: Option<String>,
    /// With --prometheus: a metric that must have series for the job
    #[arg(long, value_name = "NAME")]
    pub expect_metric: Option<String>,
    /// Do not scrape through a port-forward (it needs create on pods/portforward)
    #[arg(long)]
    pub no_port_forward: bool,
    /// Also require these sidecar paths to answer 200, e.g. --probe /readiness
    #[arg(long, value_name = "PATH")]
    pub probe: Vec<String>,
    /// Istio's root namespace (meshConfig.rootNamespace): its selector-less policies apply
    /// mesh-wide, and ambient ignores its portLevelMtls
    #[arg(long, default_value = "istio-system", value_name = "NAMESPACE")]
    pub istio_root_namespace: String,
    /// The Prometheus major version whose rules judge the scrape and build the query
    #[arg(long, value_name = "2|3", default_value = "3")]
    pub prometheus_version: Version,
    /// The scrape timeout to send and enforce
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: String,
}

pub fn run(args: &Args) -> Result<Report, Error> {
    let prometheus = match &args.prometheus {
        Some(p) => match p.split_once('/') {
            Some((ns, svc)) if !ns.is_empty() && !svc.is_empty() => {
                Some((ns.to_string(), svc.to_string()))
            }
            _ => {
                return Err(Error::flag(
                    "--prometheus",
                    p,
                    "expected NAMESPACE/SERVICE, e.g. monitoring/prometheus-operated",
                ));
            }
        },
        None => None,
    };
    let options = cluster::Options {
        namespace: args.namespace.clone(),
        service: args.service.clone(),
        port: args.port.clone(),
        prometheus,
        port_forward: !args.no_port_forward,
        endpoint: endpoint::Options {
            timeout: duration("--timeout", &args.timeout)?,
            max_bytes: 64 << 20,
            probes: args.probe.clone(),
            version: args.prometheus_version,
            // These two are taken from the selecting monitor when the scrape is made.
            fallback_protocol: None,
            protobuf: false,
            // The cluster check scrapes through a port-forward; a sidecar that requires
            // credentials is checked with `endpoint` and the monitor's Secrets.
            bearer_token: None,
            tls: None,
        },
        expect_metric: args.expect_metric.clone(),
        prometheus_version: args.prometheus_version,
        istio_root_namespace: args.istio_root_namespace.clone(),
        progress: true,
    };
    let request_timeout = duration("--request-timeout", &args.request_timeout)?;
    runtime()?.block_on(async {
        let client = kube_client(args.context.as_deref(), request_timeout).await?;
        cluster::check(&client, &options, Arc::new(cluster::PortForward(client.clone()))).await
    })
}

/// A client from the kubeconfig context given, else as kubectl would: KUBECONFIG, ~/.kube/config,
/// or the in-cluster service account. Connecting and every answer are bounded by `timeout`.
async fn kube_client(context: Option<&str>, timeout: Duration) -> Result<kube::Client, Error> {
    let mut config = match context {
        Some(ctx) => {
            let options = kube::config::KubeConfigOptions {
                context: Some(ctx.to_string()),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&options).await.map_err(|e| {
                Error::Kubeconfig(format!(
                    "kubeconfig context {ctx}: {}",
                    meshscrape_common::error::chain(&e)
                ))
            })?
        }
        None => kube::Config::infer().await.map_err(|e| {
            Error::Kubeconfig(format!(
                "no cluster to talk to ({e}); set KUBECONFIG or pass --context"
            ))
        })?,
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    kube::Client::try_from(config).map_err(|e| {
        Error::Kubeconfig(format!(
            "cannot build a Kubernetes client: {}",
            meshscrape_common::error::chain(&e)
        ))
    })
}
