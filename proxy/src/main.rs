//! Start-up reads top to bottom: flags → config → logging → bind → serve (and reload on SIGHUP or
//! a changed file) → SIGTERM → drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use meshscrape_common::{ProxyConfig, ProxyOverrides};
use meshscrape_proxy::reload::{self, Reloader};
use meshscrape_proxy::{App, EXIT_CONFIG, cli::Args, init_logging, server};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let config = match ProxyConfig::load(args.config.as_deref(), &args.overrides()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("meshscrape-proxy: bad configuration: {e:#}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    init_logging(config.log_format);
    // Reads the token and certificate files the configuration names: a file that cannot be used
    // is a configuration error like any other.
    let app = match App::new(&config) {
        Ok(app) => Arc::new(app),
        Err(e) => {
            tracing::error!("bad configuration: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };

    // One thread: the sidecar runs under a 0.1 CPU limit next to one app, and a single-threaded
    // runtime keeps memory flat and latency predictable there.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let reload = (args.config.clone(), args.overrides());
    match runtime.block_on(run(config, app, reload)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: ProxyConfig,
    app: Arc<App>,
    (file, overrides): (Option<PathBuf>, ProxyOverrides),
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let routes: Vec<String> = config.routes.iter().map(|r| r.to_flag(config.upstream)).collect();
    tracing::info!(listen = %listener.local_addr()?, upstream = %config.upstream, ?routes, "serving");
    meshscrape_proxy::memory::warn_if_too_small(&config.limits);

    // SIGHUP, or a change of the file, reloads the configuration (see `reload`).
    let reloader = Reloader::new(app.clone(), file, overrides);
    tokio::spawn(reload::watch(reloader, reload::POLL, sighup));
    let shutdown = async {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM received"),
            _ = sigint.recv() => tracing::info!("SIGINT received"),
        }
    };
    match server::serve(listener, app, &config, shutdown).await {
        server::Drain::Complete => tracing::info!("drained; exiting"),
        server::Drain::Cut(n) => {
            tracing::warn!(open = n, "grace period over; cut the remaining connections")
        }
    }
    Ok(())
}
