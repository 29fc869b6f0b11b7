//! Start-up reads top to bottom: flags → app config and templates → certificate → bind → serve
//! → SIGTERM → drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use meshscrape_common::AppConfig;
use meshscrape_gen::templates::Templates;
use meshscrape_webhook::{Tls, Webhook, serve};
use tokio::signal::unix::{SignalKind, signal};

/// Injects the meshscrape sidecar into pod templates annotated `meshscrape.io/inject: "true"`
/// (POST /inject) or in namespaces labelled `meshscrape.io/inject=enabled` (POST
/// /inject-namespace), with the same code as `meshscrape-gen inject`. Fails open: a review it
/// cannot handle is allowed unchanged, with the reason as a warning.
///
/// Pod annotations choose the sidecar's settings: meshscrape.io/port, meshscrape.io/routes
/// (PUBLIC=TARGET entries separated by spaces) and meshscrape.io/native ("true"/"false").
///
/// Exit codes: 0 after a clean drain on SIGTERM, 64 on a bad configuration or certificate, 1 on
/// any other failure.
#[derive(Debug, Parser)]
#[command(name = "meshscrape-webhook", version, max_term_width = 100)]
struct Args {
    /// The application config meshscrape-gen reads (the sidecar's image, port, routes, limits)
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Templates to render the sidecar from instead of the built-in ones
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Address to listen on (TLS)
    #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR")]
    listen: String,
    /// The serving certificate, PEM (reread when it changes)
    #[arg(long, value_name = "FILE")]
    tls_cert_file: PathBuf,
    /// Its private key, PEM
    #[arg(long, value_name = "FILE")]
    tls_key_file: PathBuf,
    /// The webhook's own namespace, never injected into [default: $POD_NAMESPACE, else
    /// meshscrape-system]
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// The webhook's Service name, for renewing its own certificate when the CA's key (ca.key)
    /// is beside the certificate file
    #[arg(long, default_value = "meshscrape-webhook", value_name = "NAME")]
    service_name: String,
    /// How long open requests may finish after SIGTERM, in seconds
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    shutdown_grace: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::INFO)
        });
    {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter))
            .init();
    }
    let bad = |e: String| {
        eprintln!("meshscrape-webhook: bad configuration: {e}");
        ExitCode::from(64)
    };
    let config = match AppConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => return bad(format!("{e:#}")),
    };
    let templates = match Templates::load(args.templates.as_deref()) {
        Ok(t) => t,
        Err(e) => return bad(e.to_string()),
    };
    let namespace = args
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "meshscrape-system".into());
    let renewal =
        meshscrape_webhook::Renewal::beside(&args.tls_cert_file, &args.service_name, &namespace);
    let tls = match Tls::load(args.tls_cert_file.clone(), args.tls_key_file.clone(), renewal) {
        Ok(t) => Arc::new(t),
        Err(e) => return bad(e),
    };
    let listen: std::net::SocketAddr = match args.listen.parse() {
        Ok(a) => a,
        Err(_) => return bad(format!("--listen `{}` is not IP:PORT", args.listen)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshscrape-webhook: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let webhook = Arc::new(Webhook::new(config, templates, namespace));
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot watch SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(listen = %listener.local_addr().map_or(listen, |a| a), "serving");
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        serve(listener, webhook, tls, shutdown, Duration::from_secs(args.shutdown_grace)).await;
        tracing::info!("drained; exiting");
        ExitCode::SUCCESS
    })
}
