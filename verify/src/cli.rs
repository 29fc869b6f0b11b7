//! The command line: one module per subcommand, each with its own `Args` and `run`, as
//! cargo-deny does; here only the global flags, the dispatch and what the modules share.

pub mod cluster;
pub mod endpoint;
pub mod manifests;
pub mod prometheus;

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::report::{Format, Report};

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
    Manifests(manifests::Args),
    /// Scrape a URL as Prometheus does and check status, content type and the exposition
    Endpoint(endpoint::Args),
    /// Ask Prometheus about the job's targets: health, last error, scrape duration, a metric
    Prometheus(prometheus::Args),
    /// Check a live cluster, read-only: the Service, the ServiceMonitor or PodMonitor and the
    /// Prometheus object selecting it (all the `manifests` links), its EndpointSlices and pods, then
    /// a scrape through a port-forward to a ready pod, and optionally Prometheus's view through another
    Cluster(cluster::Args),
}

/// Splits `K=V` arguments.
pub fn pairs(values: &[String], flag: &'static str) -> Result<Vec<(String, String)>, Error> {
    values
        .iter()
        .map(|v| {
            v.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| {
                Error::flag(flag, v, "expected K=V, e.g. release=kube-prometheus-stack")
            })
        })
        .collect()
}

/// Runs the subcommand `args` names, as the binary does (its own runtime, progress on stderr):
/// the report, or why the tool could not run (exit 2).
pub fn run(args: &Args) -> Result<Report, Error> {
    match &args.command {
        Command::Manifests(a) => manifests::run(a),
        Command::Endpoint(a) => endpoint::run(a),
        Command::Prometheus(a) => prometheus::run(a),
        Command::Cluster(a) => cluster::run(a),
    }
}

/// A runtime on this thread: every subcommand waits on one thing at a time.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Runtime)
}

/// A duration flag, in the one grammar meshscrape uses (Prometheus's).
fn duration(flag: &'static str, text: &str) -> Result<Duration, Error> {
    meshscrape_common::duration::parse(text).map_err(|e| Error::flag(flag, text, e))
}
