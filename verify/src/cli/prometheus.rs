//! `meshscrape-verify prometheus`: Prometheus's own view of a job's targets.

use std::time::Duration;

use super::{pairs, runtime};
use crate::error::Error;
use crate::prometheus;
use crate::promql::Version;
use crate::report::Report;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("targets").required(true).multiple(true))]
pub struct Args {
    /// Prometheus's base URL, e.g. http://127.0.0.1:9090
    #[arg(long)]
    pub url: String,
    /// The targets' scrape pool as prometheus-operator names it:
    /// serviceMonitor/NAMESPACE/NAME/ENDPOINT-INDEX (or podMonitor/…), e.g.
    /// serviceMonitor/monitoring/argo-monitor/0
    #[arg(long, value_name = "POOL", group = "targets")]
    pub scrape_pool: Option<String>,
    /// The targets' job label. prometheus-operator sets it to the Service's name for a
    /// ServiceMonitor (or the value of the Service label jobLabel names), NAMESPACE/NAME of the
    /// monitor for a PodMonitor, e.g. identity-service
    #[arg(long, group = "targets")]
    pub job: Option<String>,
    /// Further target labels that must match
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// A metric that must have series for the job; UTF-8 names (my.dotted.metric) need 3
    #[arg(long, value_name = "NAME")]
    pub expect_metric: Option<String>,
    /// The Prometheus major version whose rules build the query
    #[arg(long, value_name = "2|3", default_value = "3")]
    pub prometheus_version: Version,
}

pub fn run(args: &Args) -> Result<Report, Error> {
    let options = prometheus::Options {
        scrape_pool: args.scrape_pool.clone(),
        job: args.job.clone(),
        version: args.prometheus_version,
        labels: pairs(&args.labels, "--label")?,
        expect_metric: args.expect_metric.clone(),
        timeout: Duration::from_secs(15),
    };
    eprintln!("asking {} about its targets…", args.url);
    Ok(runtime()?.block_on(prometheus::check(&args.url, &options))?)
}
