//! Why the verifier could not run (exit 2), and why a request it made failed. A failed *check* is
//! not an error: it is a line of the report.

use std::path::PathBuf;

/// The tool could not run: the input could not be read or the cluster could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder named on the command line could not be read.
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// Standard input could not be read.
    #[error("stdin: {0}")]
    Stdin(std::io::Error),
    /// `-` was given more than once.
    #[error("stdin (-) can be given once")]
    StdinTwice,
    /// An input is past the bounds the parser keeps against hostile input.
    #[error(
        "{path}: larger than meshscrape-verify reads (over 200,000 documents, 50 million YAML \
         nodes or 512 MiB of text); split it, or give only the namespaces that matter"
    )]
    TooLarge { path: String },
    /// An input is not YAML.
    #[error("{path}: not YAML: {message}")]
    NotYaml { path: String, message: String },
    /// A flag's value is not what the flag takes; `message` says what would be.
    #[error("{flag} {value}: {message}")]
    Flag { flag: &'static str, value: String, message: String },
    /// A credential file given on the command line (token, CA, client certificate) is unusable;
    /// the message names the flag, the file and why.
    #[error("{0}")]
    Credentials(String),
    /// No cluster to talk to: no kubeconfig, context or in-cluster service account.
    #[error("{0}")]
    Kubeconfig(String),
    /// The API server could not be asked at all (unreachable, timed out, or an error other than
    /// a refusal of one kind, which is a warning in the report instead).
    #[error("{action}: {message}")]
    Api { action: String, message: String },
    /// Prometheus's targets API could not be read (exit 2: nothing was checked).
    #[error("cannot ask Prometheus: {0}")]
    Prometheus(#[from] crate::prometheus::ApiError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl Error {
    /// A flag whose value is wrong.
    pub(crate) fn flag(flag: &'static str, value: &str, message: impl Into<String>) -> Self {
        Error::Flag { flag, value: value.to_string(), message: message.into() }
    }
}

/// Why an HTTP GET got no usable answer; each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL does not parse.
    #[error("`{0}` is not a URL")]
    NotUrl(String),
    /// An https URL without the CA to check the server's certificate against.
    #[error(
        "`{0}` uses https; give the CA that signed the sidecar's certificate (--ca-file), as the \
         monitor's tlsConfig.ca does"
    )]
    Https(String),
    /// Another scheme, or none.
    #[error("`{0}` is not an http:// URL")]
    NotHttp(String),
    /// The connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The peer answered something that is not HTTP/1.
    #[error("the server did not answer HTTP/1 (TLS on a plaintext port?): {0}")]
    NotHttp1(String),
    /// The exchange failed otherwise.
    #[error("{0}")]
    Exchange(String),
    /// The body ended early or broke.
    #[error("the body broke off: {0}")]
    BodyBroke(String),
    /// The body is over the cap.
    #[error("the body is larger than {0} bytes; stopped reading")]
    TooLarge(usize),
    /// The gzip body decodes past the cap.
    #[error("the body decodes to more than {0} bytes; stopped reading")]
    DecodesTooLarge(usize),
    /// The gzip body is broken.
    #[error("the gzip body does not decode: {0}")]
    Gzip(std::io::Error),
    /// No complete answer within the deadline.
    #[error("no complete answer within {0}s")]
    Timeout(f64),
}
