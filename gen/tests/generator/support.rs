//! Shared helpers: load configs, render, validate against CRD schemas.

use std::path::{Path, PathBuf};

use meshscrape_common::AppConfig;
use meshscrape_gen::templates::Templates;
use meshscrape_gen::{Rendered, render};
use serde_json::Value;

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn example() -> PathBuf {
    root().join("examples/identity-service.yaml")
}

/// The example with `edit` applied to its text.
pub(crate) fn config_with(edit: impl FnOnce(String) -> String) -> AppConfig {
    let text = edit(std::fs::read_to_string(example()).unwrap());
    AppConfig::from_yaml(Path::new("edited.yaml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn render_config(config: &AppConfig) -> Vec<Rendered> {
    render(config, &Templates::load(None).unwrap()).unwrap_or_else(|e| panic!("{e}"))
}

/// The CRDs copied from prometheus-operator 0.93.0 and Istio into schemas/.
pub(crate) fn crds() -> Vec<Value> {
    let mut out = Vec::new();
    for f in [
        "monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.coreos.com_podmonitors.yaml",
        "security.istio.io_crds.yaml",
    ] {
        let text = std::fs::read_to_string(root().join("schemas").join(f)).unwrap();
        out.extend(serde_saphyr::from_multiple::<Value>(&text).unwrap());
    }
    out
}

pub(crate) fn value(r: &Rendered) -> Value {
    serde_saphyr::from_str(&r.text).unwrap()
}
