//! The command line. Every flag has a key of the same meaning in the `--config` YAML file; flags win.

use std::path::PathBuf;

use clap::Parser;
use meshscrape_common::ProxyOverrides;

/// Lets Prometheus scrape an app behind Istio STRICT mTLS: listens on a plaintext port that the
/// mesh excludes and forwards exact paths to the app on loopback.
///
/// With no routes, the seed's map applies: / and /prometheus to /prometheus, /readiness to
/// /ready, /liveness to /alive, on http://127.0.0.1:8080, listening on 0.0.0.0:9090.
/// Only GET and HEAD are forwarded. /-/healthy, /-/ready and /-/metrics are the sidecar's own.
///
/// SIGHUP, or a change of the --config file or of a token or certificate file it names (a
/// ConfigMap or Secret update included), reloads the configuration: validated whole, refused
/// whole if invalid (the old one keeps serving).
///
/// Exit codes: 0 after a clean drain on SIGTERM, 64 on a bad configuration, 1 on any other failure.
#[derive(Debug, Parser)]
#[command(name = "meshscrape-proxy", version, max_term_width = 100)]
#[command(
    after_help = "Example:\n  meshscrape-proxy --upstream http://127.0.0.1:8080 --route /metrics=/actuator/prometheus\n\n\
Durations are written as Prometheus writes them: 250ms, 5s, 1m30s.\n\
Logs go to stderr; RUST_LOG sets levels per target, e.g. RUST_LOG=warn or\n\
RUST_LOG=info,meshscrape_proxy::server=debug."
)]
pub struct Args {
    /// YAML file with the same keys as these flags (the ConfigMap that meshscrape-gen renders)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [key: listen] [default: 0.0.0.0:9090]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The app's loopback URL that path-only targets go to [key: upstream] [default: http://127.0.0.1:8080]
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Exact public path and where it goes: PUBLIC=/path or PUBLIC=http://127.0.0.1:PORT/path;
    /// several targets separated by | are fetched together and merged into one scrape
    /// (PUBLIC=/metrics|http://127.0.0.1:9100/metrics); repeat for more routes; replaces the
    /// file's routes [key: routes]
    #[arg(long = "route", value_name = "PUBLIC=TARGET")]
    pub routes: Vec<String>,
    /// Deadline for connecting to the app [key: timeouts.connect] [default: 1s]
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Deadline for a client to send its request head; also the keep-alive idle limit, and the
    /// time a client has to take one of the sidecar's own answers
    /// [key: timeouts.requestHead] [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub request_head_timeout: Option<String>,
    /// Deadline for the whole forwarded response, from the app and to a client that must keep
    /// reading, shortened to end before Prometheus's scrape timeout
    /// [key: timeouts.upstream] [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub upstream_timeout: Option<String>,
    /// How long in-flight responses may finish after SIGTERM [key: timeouts.shutdownGrace] [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Forwarded requests at once; more get 503. With --max-connections, sized to fit the 15Mi memory limit gen writes [key: limits.maxInFlight] [default: 16]
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u64>,
    /// Open client connections at once; at the limit a new client takes the slot of the one that has waited longest for a request head [key: limits.maxConnections] [default: 128]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u64>,
    /// Largest request head in bytes; larger gets 431 [key: limits.maxRequestHeadBytes] [default: 8192]
    #[arg(long, value_name = "BYTES")]
    pub max_request_head_bytes: Option<u64>,
    /// Largest body of one target of a merged route, in bytes; a larger one is left out of the
    /// scrape, or cuts it once streaming [key: limits.maxPartBytes] [default: 67108864 (64 MiB)]
    #[arg(long, value_name = "BYTES")]
    pub max_part_bytes: Option<u64>,
    /// Log format on stderr: text or json [key: logFormat] [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Also forward this request header to the app; repeat for more. Only Accept,
    /// Accept-Encoding, User-Agent and X-Prometheus-Scrape-Timeout-Seconds are forwarded
    /// otherwise, so no client can hand the app an identity header (X-Forwarded-For,
    /// X-Forwarded-Client-Cert, ...) it would trust on loopback [key: forwardHeaders]
    #[arg(long = "forward-header", value_name = "NAME")]
    pub forward_headers: Vec<String>,
    /// Require `Authorization: Bearer <token>` on routes and /-/metrics, the token read from this
    /// file (reread when it changes) [key: auth.bearerTokenFile]
    #[arg(long, value_name = "FILE", help_heading = "Access (off by default)")]
    pub bearer_token_file: Option<String>,
    /// Answer routes and /-/metrics only to clients in this address block, such as 10.0.0.0/8;
    /// repeat for more; replaces the file's list [key: auth.allowedClients]
    #[arg(long = "allow-client", value_name = "CIDR", help_heading = "Access (off by default)")]
    pub allowed_clients: Vec<String>,
    /// Serve TLS with this PEM certificate chain (reread when it changes) [key: tls.certFile]
    #[arg(long, value_name = "FILE", help_heading = "Access (off by default)")]
    pub tls_cert_file: Option<String>,
    /// The certificate's PEM private key [key: tls.keyFile]
    #[arg(long, value_name = "FILE", help_heading = "Access (off by default)")]
    pub tls_key_file: Option<String>,
    /// Require client certificates signed by a CA in this PEM file (mutual TLS)
    /// [key: tls.clientCAFile]
    #[arg(long, value_name = "FILE", help_heading = "Access (off by default)")]
    pub tls_client_ca_file: Option<String>,
}

impl Args {
    pub fn overrides(&self) -> ProxyOverrides {
        ProxyOverrides {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            routes: self.routes.clone(),
            connect_timeout: self.connect_timeout.clone(),
            request_head_timeout: self.request_head_timeout.clone(),
            upstream_timeout: self.upstream_timeout.clone(),
            shutdown_grace: self.shutdown_grace.clone(),
            max_in_flight: self.max_in_flight,
            max_connections: self.max_connections,
            max_request_head_bytes: self.max_request_head_bytes,
            max_part_bytes: self.max_part_bytes,
            log_format: self.log_format.clone(),
            forward_headers: self.forward_headers.clone(),
            bearer_token_file: self.bearer_token_file.clone(),
            allowed_clients: self.allowed_clients.clone(),
            tls_cert_file: self.tls_cert_file.clone(),
            tls_key_file: self.tls_key_file.clone(),
            tls_client_ca_file: self.tls_client_ca_file.clone(),
        }
    }
}
