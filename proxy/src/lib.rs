//! `meshscrape-proxy`: the forwarding sidecar. A plaintext listener that the mesh excludes, an
//! exact route table, and a pooled HTTP/1 client to the app on loopback.
//!
//! `main.rs` only wires these together; everything testable lives here.

pub mod app;
pub mod body;
pub mod cli;
pub mod headers;
pub mod metrics;
pub mod rejections;
pub mod server;
pub mod stall;
pub mod upstream;

use meshscrape_common::LogFormat;
use tracing_subscriber::EnvFilter;

pub use app::App;

/// Exit code for a bad configuration (sysexits' EX_USAGE), as the sidecar contract says.
pub const EXIT_CONFIG: i32 = 64;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as text or one JSON object a line.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal; log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
