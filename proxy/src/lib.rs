//! `meshscrape-proxy`: the forwarding sidecar. A plaintext listener that the mesh excludes, an
//! exact route table, and a pooled HTTP/1 client to the app on loopback.
//!
//! `main.rs` only wires these together; everything testable lives here.

pub mod access;
pub mod app;
pub mod body;
pub mod cli;
pub mod connections;
pub mod headers;
pub mod memory;
pub mod merge;
pub mod metrics;
pub mod rejections;
pub mod reload;
pub mod server;
pub mod stall;
pub mod upstream;

use meshscrape_common::LogFormat;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

pub use app::App;

/// Exit code for a bad configuration (sysexits' EX_USAGE), as the sidecar contract says.
pub const EXIT_CONFIG: i32 = 64;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as text or one JSON object a line.
///
/// `RUST_LOG` takes levels and targets (`info`, `warn,meshscrape_proxy=debug`), not
/// `EnvFilter`'s span and field filters: those need the regex engine, which would add about
/// 10% to the sidecar's binary and image for a feature a sidecar's logs do not need.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    // Colour only for a person at a terminal; log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => tracing_subscriber::registry().with(layer.with_filter(filter)).init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json().flatten_event(true).with_filter(filter))
            .init(),
    }
}
