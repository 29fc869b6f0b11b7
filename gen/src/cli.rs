//! The command line.

use std::path::PathBuf;

use clap::Parser;

/// Renders the Kubernetes objects that let Prometheus scrape an app behind Istio STRICT mTLS
/// through the meshscrape-proxy sidecar: Deployment (app + sidecar), Service, the sidecar's
/// ConfigMap, a ServiceMonitor or PodMonitor, and the Istio and NetworkPolicy objects, for
/// every namespace the app runs in.
///
/// Every object is checked against its Kubernetes 1.33 type before anything is written; a bad
/// config prints the file, field and line and what would be valid, and nothing on stdout.
///
/// Exit codes: 0 rendered, 1 invalid config or template, 2 bad usage or unreadable files.
#[derive(Debug, Parser)]
#[command(name = "meshscrape-gen", version, max_term_width = 100)]
#[command(after_help = "Examples:\n  meshscrape-gen --config examples/identity-service.yaml | kubectl apply -f -\n  \
meshscrape-gen --config app.yaml --namespace tools --namespace staging --out manifests/")]
pub struct Args {
    /// Application config (YAML); see examples/identity-service.yaml
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Render for this namespace instead of the config's list; repeat for more
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Write one folder per namespace (a file per object and a kustomization.yaml) instead of stdout
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Folder of *.yaml.j2 files that replace the embedded templates of the same name
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}
