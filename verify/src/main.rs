//! Thin entry point: parse flags, run one subcommand, print the report, exit 0/1/2.

use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use meshscrape_verify::cli::{Args, Command, pairs};
use meshscrape_verify::report::{Format, Report};
use meshscrape_verify::{endpoint, manifests, prometheus};

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
            let timeout = duration(timeout)?;
            eprintln!("scraping {url} (timeout {}s)…", timeout.as_secs_f64());
            let options = endpoint::Options { timeout, max_bytes: *max_bytes, probes: probe.clone() };
            Ok(runtime.block_on(endpoint::check(url, &options)))
        }
        Command::Prometheus { url, job, labels, expect_metric } => {
            eprintln!("asking {url} about job {job}…");
            let options = prometheus::Options { job: job.clone(), labels: pairs(labels, "--label")?, expect_metric: expect_metric.clone(), timeout: Duration::from_secs(15) };
            Ok(runtime.block_on(prometheus::check(url, &options)))
        }
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    meshscrape_common::names::prometheus_duration(text).map(Duration::from_millis).map_err(|e| format!("--timeout: {e}"))
}
