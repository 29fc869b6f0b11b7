//! `meshscrape-verify endpoint`: one scrape as Prometheus makes it, and the probes.

use std::path::PathBuf;

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
    /// Send the token in this file as `Authorization: Bearer`, as the monitor's `authorization`
    /// makes Prometheus do (the sidecar's auth.bearerTokenFile)
    #[arg(long, value_name = "FILE", help_heading = "When the sidecar requires credentials")]
    pub bearer_token_file: Option<PathBuf>,
    /// For an https URL: the CA that signed the sidecar's certificate (the monitor's
    /// tlsConfig.ca)
    #[arg(long, value_name = "FILE", help_heading = "When the sidecar requires credentials")]
    pub ca_file: Option<PathBuf>,
    /// A client certificate to present, for a sidecar that requires one (tls.clientCAFile);
    /// with --key-file
    #[arg(
        long,
        value_name = "FILE",
        requires = "key_file",
        help_heading = "When the sidecar requires credentials"
    )]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key
    #[arg(
        long,
        value_name = "FILE",
        requires = "cert_file",
        help_heading = "When the sidecar requires credentials"
    )]
    pub key_file: Option<PathBuf>,
    /// The name the sidecar's certificate must carry when it is not the URL's host (the
    /// monitor's tlsConfig.serverName)
    #[arg(long, value_name = "NAME", help_heading = "When the sidecar requires credentials")]
    pub server_name: Option<String>,
}

pub fn run(args: &Args) -> Result<Report, Error> {
    let timeout = duration("--timeout", &args.timeout)?;
    eprintln!("scraping {} (timeout {}s)…", args.url, timeout.as_secs_f64());
    let bearer_token = match &args.bearer_token_file {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Error::Credentials(format!("--bearer-token-file {}: {e}", file.display()))
            })?;
            Some(text.trim().to_string())
        }
        None => None,
    };
    let tls = match &args.ca_file {
        Some(ca) => {
            let cert = args.cert_file.as_deref().zip(args.key_file.as_deref());
            Some(
                crate::tls::client(ca, cert, args.server_name.as_deref())
                    .map_err(Error::Credentials)?,
            )
        }
        None => None,
    };
    let options = endpoint::Options {
        timeout,
        max_bytes: args.max_bytes,
        probes: args.probe.clone(),
        version: args.prometheus_version,
        fallback_protocol: args.fallback_scrape_protocol.clone(),
        protobuf: args.protobuf,
        bearer_token,
        tls,
    };
    Ok(runtime()?.block_on(endpoint::check(&args.url, &options)))
}
