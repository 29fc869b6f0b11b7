//! `meshscrape-verify manifests`: the offline chain over YAML files, folders or stdin.

use std::io::Read as _;

use super::pairs;
use crate::error::Error;
use crate::manifests;
use crate::report::Report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// YAML files, folders (searched for *.yaml, *.yml) or - for stdin
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// Labels the Prometheus object's monitor selector requires, when its YAML is not given
    #[arg(long, value_name = "K=V")]
    pub prometheus_selector: Vec<String>,
    /// Istio's root namespace (meshConfig.rootNamespace): its selector-less policies apply
    /// mesh-wide, and ambient ignores its portLevelMtls
    #[arg(long, default_value = "istio-system", value_name = "NAMESPACE")]
    pub istio_root_namespace: String,
}

pub fn run(args: &Args) -> Result<Report, Error> {
    let options = manifests::Options {
        prometheus_selector: pairs(&args.prometheus_selector, "--prometheus-selector")?,
        istio_root_namespace: args.istio_root_namespace.clone(),
    };
    let objects = manifests::load(&args.paths, || {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    })?;
    Ok(manifests::check(&objects, &options))
}
