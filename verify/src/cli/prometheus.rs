//! `meshscrape-verify prometheus`: Prometheus's own view of a job's targets.

use std::time::Duration;

use super::{pairs, runtime};
use crate::error::Error;
use crate::prometheus;
use crate::report::Report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Prometheus's base URL, e.g. http://127.0.0.1:9090
    #[arg(long)]
    pub url: String,
    /// The job label of the targets, e.g. serviceMonitor/monitoring/argo-monitor/0
    #[arg(long)]
    pub job: String,
    /// Further target labels that must match
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// A metric that must have series for the job
    #[arg(long, value_name = "NAME")]
    pub expect_metric: Option<String>,
}

pub fn run(args: &Args) -> Result<Report, Error> {
    eprintln!("asking {} about job {}…", args.url, args.job);
    let options = prometheus::Options {
        job: args.job.clone(),
        labels: pairs(&args.labels, "--label")?,
        expect_metric: args.expect_metric.clone(),
        timeout: Duration::from_secs(15),
    };
    Ok(runtime()?.block_on(prometheus::check(&args.url, &options)))
}
