//! The configuration model that meshscrape's sidecar, generator and verifier share: what a value
//! means, how it is read from YAML, how it is validated, and the errors that name what to fix.
//!
//! No I/O happens here beyond reading the one file a caller names. The sidecar's part (`proxy`,
//! `duration`, `error`) is always built; the rest is behind features, so that the sidecar's
//! binary holds only what it runs:
//! - `app`: the application config the generator renders from, Kubernetes name rules, and how
//!   prometheus-operator names a monitor's scrape pool and job;
//! - `k8s`: typed prometheus-operator objects and the CRD structural-schema validator.
//!
//! `x509` reads a certificate's validity period, for the sidecar's and the webhook's TLS.

#[cfg(feature = "app")]
pub mod app;
#[cfg(feature = "k8s")]
pub mod crd;
pub mod duration;
pub mod error;
#[cfg(feature = "app")]
pub mod names;
#[cfg(feature = "app")]
pub mod operator;
pub mod proxy;
#[cfg(feature = "k8s")]
pub mod schema;
pub mod x509;

#[cfg(feature = "app")]
pub use app::AppConfig;
pub use error::{ConfigError, Origin, Problem};
pub use proxy::{Auth, Cidr, LogFormat, ProxyConfig, ProxyOverrides, Route, Target, Tls};
