//! `meshscrape-verify endpoint`: one scrape as Prometheus makes it, and the probes.

use super::{duration, runtime};
use crate::endpoint;
use crate::error::Error;
use crate::promql::Version;
use crate::report::Report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// e.g. http://127.0.0.1:9090/prometheus (after kubectl port-forward)
    pub url: String,
    /// Also require these paths on the same host to answer 200, e.g. --probe /readiness
    #[arg(long, value_name = "PATH")]
    pub probe: Vec<String>,
    /// The scrape timeout to send and enforce
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: String,
    /// The largest body to accept
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    pub max_bytes: usize,
    /// The Prometheus major version whose rules judge the scrape: its Accept header, its
    /// Content-Type rule (3 fails a blank one) and its parser (3 reads quoted UTF-8 names)
    #[arg(long, value_name = "2|3", default_value = "3")]
    pub prometheus_version: Version,
    /// The monitor's fallbackScrapeProtocol, if it sets one: Prometheus 3 then parses a body
    /// with a blank or unsupported Content-Type as this protocol instead of failing the scrape
    #[arg(long, value_name = "PROTOCOL", value_parser = clap::builder::PossibleValuesParser::new(meshscrape_common::operator::SCRAPE_PROTOCOLS))]
    pub fallback_scrape_protocol: Option<String>,
    /// Ask for protobuf first, as Prometheus 3 does when the monitor scrapes native histograms;
    /// a protobuf answer is decoded and its native histograms counted
    #[arg(long)]
    pub protobuf: bool,
}

pub fn run(args: &Args) -> Result<Report, Error> {
    let timeout = duration("--timeout", &args.timeout)?;
    eprintln!("scraping {} (timeout {}s)…", args.url, timeout.as_secs_f64());
    let options = endpoint::Options {
        timeout,
        max_bytes: args.max_bytes,
        probes: args.probe.clone(),
        version: args.prometheus_version,
        fallback_protocol: args.fallback_scrape_protocol.clone(),
        protobuf: args.protobuf,
    };
    Ok(runtime()?.block_on(endpoint::check(&args.url, &options)))
}
