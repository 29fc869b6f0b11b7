//! `meshscrape-gen`: turns one application config into every Kubernetes object the scrape needs,
//! for every namespace, from minijinja templates; each object is parsed back into its typed form
//! before anything is written.

pub mod admission;
pub mod cli;
mod context;
pub mod inject;
pub mod objects;
pub mod output;
pub mod render;
pub mod templates;
pub mod webhook;

pub use render::{Rendered, render};

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The application config is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] meshscrape_common::ConfigError),
    /// A template could not be loaded or rendered.
    #[error("template {template}: {message}")]
    Template { template: String, message: String },
    /// A rendered object is not valid for its kind.
    #[error("template {template} rendered an invalid {kind} {name}: {message}")]
    Object { template: String, kind: String, name: String, message: String },
    /// Reading input or writing output failed.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// Input given to `inject` is not YAML.
    #[error("{path}: {message}")]
    Input { path: String, message: String },
}

impl GenError {
    /// The process exit code: 2 when a file could not be read or written (the tool could not
    /// run), 1 when the config, a template or the input is wrong.
    pub fn exit_code(&self) -> u8 {
        match self {
            GenError::Io { .. } | GenError::Config(meshscrape_common::ConfigError::Read { .. }) => {
                2
            }
            _ => 1,
        }
    }
}
