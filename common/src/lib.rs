//! The configuration model that meshscrape's sidecar, generator and verifier share: what a value
//! means, how it is read from YAML, how it is validated, and the errors that name what to fix.
//!
//! No I/O happens here beyond reading the one file a caller names.

pub mod app;
#[cfg(feature = "k8s")]
pub mod crd;
pub mod duration;
pub mod error;
pub mod names;
pub mod proxy;
#[cfg(feature = "k8s")]
pub mod schema;

pub use app::AppConfig;
pub use error::{ConfigError, Origin, Problem};
pub use proxy::{LogFormat, ProxyConfig, ProxyOverrides, Route, Target};
