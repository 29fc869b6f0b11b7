//! The minijinja templates: embedded at build time, each overridable by a file of the same name
//! in `--templates DIR`. Undefined variables are errors, so a typo cannot render an empty field.

use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};

use meshscrape_common::error::chain;

use crate::GenError;

/// Every template, by file name, with its embedded text.
pub const EMBEDDED: [(&str, &str); 15] = [
    ("configmap.yaml.j2", include_str!("../../templates/configmap.yaml.j2")),
    ("deployment.yaml.j2", include_str!("../../templates/deployment.yaml.j2")),
    ("service.yaml.j2", include_str!("../../templates/service.yaml.j2")),
    ("peerauthentication.yaml.j2", include_str!("../../templates/peerauthentication.yaml.j2")),
    ("networkpolicy.yaml.j2", include_str!("../../templates/networkpolicy.yaml.j2")),
    ("servicemonitor.yaml.j2", include_str!("../../templates/servicemonitor.yaml.j2")),
    ("podmonitor.yaml.j2", include_str!("../../templates/podmonitor.yaml.j2")),
    // `meshscrape-gen webhook`: the admission webhook and what it needs.
    (
        "webhook-serviceaccount.yaml.j2",
        include_str!("../../templates/webhook-serviceaccount.yaml.j2"),
    ),
    ("webhook-configmap.yaml.j2", include_str!("../../templates/webhook-configmap.yaml.j2")),
    ("webhook-secret.yaml.j2", include_str!("../../templates/webhook-secret.yaml.j2")),
    ("webhook-deployment.yaml.j2", include_str!("../../templates/webhook-deployment.yaml.j2")),
    ("webhook-service.yaml.j2", include_str!("../../templates/webhook-service.yaml.j2")),
    ("webhook-issuer.yaml.j2", include_str!("../../templates/webhook-issuer.yaml.j2")),
    ("webhook-certificate.yaml.j2", include_str!("../../templates/webhook-certificate.yaml.j2")),
    (
        "webhook-mutatingwebhookconfiguration.yaml.j2",
        include_str!("../../templates/webhook-mutatingwebhookconfiguration.yaml.j2"),
    ),
];

/// A loaded template set.
pub struct Templates {
    env: Environment<'static>,
    /// Where each template came from, for messages and the `# Source:` line.
    sources: Vec<(String, String)>,
}

impl Templates {
    /// The embedded templates, with any file of the same name in `dir` taking its place.
    pub fn load(dir: Option<&Path>) -> Result<Self, GenError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Quoting is explicit in the templates (`| tojson`, which YAML reads as a flow scalar);
        // automatic escaping would also quote the ConfigMap's block text.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        if let Some(dir) = dir
            && !dir.is_dir()
        {
            return Err(GenError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "--templates must name a folder of *.yaml.j2 files",
                ),
            });
        }
        let mut sources = Vec::new();
        for (name, embedded) in EMBEDDED {
            let over: Option<PathBuf> = dir.map(|d| d.join(name)).filter(|p| p.is_file());
            let (text, source) = match over {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|source| GenError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
                    (text, path.display().to_string())
                }
                None => (embedded.to_string(), format!("templates/{name}")),
            };
            env.add_template_owned(name.to_string(), text)
                .map_err(|e| GenError::Template { template: source.clone(), message: chain(&e) })?;
            sources.push((name.to_string(), source));
        }
        Ok(Templates { env, sources })
    }

    /// Where `name` was loaded from.
    pub fn source(&self, name: &str) -> String {
        self.sources
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| name.to_string(), |(_, s)| s.clone())
    }

    /// Renders one template with `ctx`.
    pub fn render(&self, name: &str, ctx: &minijinja::Value) -> Result<String, GenError> {
        let fail = |e: minijinja::Error| GenError::Template {
            template: self.source(name),
            message: chain(&e),
        };
        let template = self.env.get_template(name).map_err(fail)?;
        let mut text = template.render(ctx).map_err(fail)?;
        // minijinja drops the template's final newline; every YAML document ends with one.
        text.push('\n');
        Ok(text)
    }
}
