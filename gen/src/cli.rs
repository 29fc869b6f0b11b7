//! The command line: the flags, and what each command does with them. Rendering is the default
//! command; `inject` is the one subcommand.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use meshscrape_common::AppConfig;

use crate::inject::{Extras, inject, read_inputs};
use crate::render::{render_each, write_unchecked};
use crate::templates::Templates;
use crate::{GenError, output};

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
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(
    after_help = "Examples:\n  meshscrape-gen --config examples/identity-service.yaml | kubectl apply -f -\n  \
meshscrape-gen --config app.yaml --namespace tools --namespace staging --out manifests/\n  \
meshscrape-gen inject --config app.yaml deployment.yaml | kubectl apply -f -"
)]
pub struct Args {
    #[command(flatten)]
    pub render: RenderArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add the sidecar to existing workload YAML (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod), like istioctl kube-inject
    ///
    /// Reads the files (or stdin), adds the meshscrape-proxy container, its ConfigMap volume and the
    /// Istio exclusion to every workload, keeps everything else as it was, and prints the result
    /// followed by the sidecar's ConfigMap. Other documents pass through untouched (noted on
    /// stderr). Injecting twice changes nothing.
    Inject(InjectArgs),
    /// Render the admission webhook: ServiceAccount, its config, its serving certificate (a CA of
    /// its own), Deployment, Service and MutatingWebhookConfiguration
    ///
    /// Pod templates annotated meshscrape.io/inject: "true", or in namespaces labelled
    /// meshscrape.io/inject=enabled, then get the sidecar when they are applied, through the
    /// same code as `inject`. It fails open (failurePolicy: Ignore) and skips kube-system and its
    /// own namespace. Render again before the certificate expires (the Secret's
    /// meshscrape.io/not-after) and apply: the webhook rereads it without a restart. The
    /// sidecar's ConfigMap, which injected pods mount, is rendered for each --app-namespace.
    Webhook(WebhookArgs),
}

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Application config (YAML) the webhook injects with
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The namespace the webhook runs in
    #[arg(long, default_value = "meshscrape-system", value_name = "NS")]
    pub namespace: String,
    /// The webhook's image (build it with scripts/build-webhook-image)
    #[arg(long, default_value = "meshscrape-webhook:0.1.0", value_name = "IMAGE")]
    pub image: String,
    /// Replicas of the webhook
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub replicas: u32,
    /// Days the serving certificate is valid
    #[arg(long, default_value_t = 365, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub valid_days: u32,
    /// What the API server does when the webhook cannot be reached: Ignore admits the object
    /// without the sidecar (fail open, as Linkerd's and the OpenTelemetry operator's injectors
    /// do); Fail refuses it
    #[arg(long, default_value = "Ignore", value_name = "POLICY", value_parser = ["Ignore", "Fail"])]
    pub failure_policy: String,
    /// Let cert-manager issue and renew the serving certificate (a self-signed Issuer is
    /// rendered too, unless --issuer names one) instead of making it here
    #[arg(long)]
    pub cert_manager: bool,
    /// With --cert-manager: the issuer to use, as Issuer/NAME or ClusterIssuer/NAME
    #[arg(long, value_name = "KIND/NAME", requires = "cert_manager")]
    pub issuer: Option<String>,
    /// Also render the sidecar's ConfigMap into this namespace, which injected pods mount; repeat
    /// for more [default: the config's namespaces]
    #[arg(long = "app-namespace", value_name = "NS")]
    pub app_namespaces: Vec<String>,
    /// Folder of *.yaml.j2 files that replace the embedded templates of the same name
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InjectArgs {
    /// Application config (YAML) giving the sidecar's settings and the app's port
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Workload YAML files; - or none reads stdin
    #[arg(value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Also add the named metrics port to input Services that select an injected workload
    #[arg(long)]
    pub with_service_port: bool,
    /// Also emit the ServiceMonitor or PodMonitor from the config
    #[arg(long)]
    pub with_monitor: bool,
    /// Folder of *.yaml.j2 files that replace the embedded templates of the same name
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// Application config (YAML); see examples/identity-service.yaml
    #[arg(long, value_name = "FILE", required = true)]
    pub config: Option<PathBuf>,
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

/// Runs the command `args` names: manifests or injected workloads on stdout (or files under
/// `--out`), notes on stderr.
pub fn run(args: &Args) -> Result<(), GenError> {
    match &args.command {
        Some(Command::Inject(inject)) => run_inject(inject),
        Some(Command::Webhook(webhook)) => run_webhook(webhook),
        None => run_render(&args.render),
    }
}

fn run_render(args: &RenderArgs) -> Result<(), GenError> {
    // clap makes --config required when no subcommand is given.
    let Some(config) = &args.config else { return Ok(()) };
    let mut config = AppConfig::load(config)?;
    if !args.namespaces.is_empty() {
        config = config.with_namespaces(args.namespaces.clone())?;
    }
    let templates = Templates::load(args.templates.as_deref())?;
    match &args.out {
        Some(dir) => {
            // Each object is written (under a temporary name) as soon as it is checked.
            let mut staged = output::Staged::new(dir);
            render_each(&config, &templates, |r| staged.add(&r))?;
            let written = staged.commit()?;
            let mut err = std::io::BufWriter::new(std::io::stderr().lock());
            for path in &written {
                let _ = writeln!(err, "wrote {}", path.display());
            }
            Ok(())
        }
        None => {
            // Two passes keep memory flat and stdout all-or-nothing: every object is checked
            // before the first byte goes out (a pipe into kubectl apply must not get half a
            // set), then rendered again and written as it renders.
            render_each(&config, &templates, |_| Ok(()))?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
            write_unchecked(&config, &templates, &mut out)?;
            out.flush().map_err(|source| GenError::Io { path: "stdout".into(), source })
        }
    }
}

fn run_webhook(args: &WebhookArgs) -> Result<(), GenError> {
    let config_text = std::fs::read_to_string(&args.config)
        .map_err(|source| GenError::Io { path: args.config.display().to_string(), source })?;
    // Validated here as the webhook will validate it at start-up.
    let config = AppConfig::from_yaml(&args.config, &config_text)?;
    meshscrape_common::names::dns1123_label(&args.namespace)
        .map_err(|message| GenError::Input { path: "--namespace".into(), message })?;
    let templates = Templates::load(args.templates.as_deref())?;
    let issuer = match &args.issuer {
        None => None,
        Some(text) => match text.split_once('/') {
            Some((kind @ ("Issuer" | "ClusterIssuer"), name))
                if meshscrape_common::names::dns1123_subdomain(name).is_ok() =>
            {
                Some((kind.to_string(), name.to_string()))
            }
            _ => {
                return Err(GenError::Input {
                    path: "--issuer".into(),
                    message: format!(
                        "`{text}` is not Issuer/NAME or ClusterIssuer/NAME, such as \
                         ClusterIssuer/internal-ca"
                    ),
                });
            }
        },
    };
    let options = crate::webhook::Options {
        failure_policy: args.failure_policy.clone(),
        cert_manager: args.cert_manager.then_some(crate::webhook::CertManager { issuer }),
        namespace: args.namespace.clone(),
        name: "meshscrape-webhook".into(),
        image: args.image.clone(),
        replicas: args.replicas,
        config_text,
        valid_days: args.valid_days,
    };
    let cert = match options.cert_manager {
        Some(_) => None,
        None => Some(crate::webhook::certificate(&options)?),
    };
    let mut rendered = crate::webhook::render(&templates, &options, cert.as_ref())?;
    // The sidecar's ConfigMap in every namespace whose pods may be injected.
    let config = if args.app_namespaces.is_empty() {
        config
    } else {
        config.with_namespaces(args.app_namespaces.clone())?
    };
    for ns in &config.namespaces {
        rendered.push(crate::render::render_one(&config, &templates, "configmap.yaml.j2", ns)?);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    write!(out, "{}", output::stream(&rendered))
        .and_then(|()| out.flush())
        .map_err(|source| GenError::Io { path: "stdout".into(), source })?;
    match &cert {
        Some(cert) => eprintln!(
            "meshscrape-gen: the webhook's certificate is valid until {}; render and apply again \
             before then",
            cert.not_after
        ),
        None => {
            eprintln!("meshscrape-gen: cert-manager issues and renews the webhook's certificate")
        }
    }
    Ok(())
}

fn run_inject(args: &InjectArgs) -> Result<(), GenError> {
    let config = AppConfig::load(&args.config)?;
    let templates = Templates::load(args.templates.as_deref())?;
    let stdin = [Path::new("-").to_path_buf()];
    let inputs = if args.inputs.is_empty() { &stdin[..] } else { &args.inputs[..] };
    let docs = read_inputs(inputs, || {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    })?;
    let extras = Extras { service_port: args.with_service_port, monitor: args.with_monitor };
    let injected = inject(&config, &templates, docs, extras)?;
    for note in &injected.notes {
        eprintln!("meshscrape-gen: {note}");
    }
    print(&injected.to_yaml()?)
}

fn print(text: &str) -> Result<(), GenError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| GenError::Io { path: "stdout".into(), source })
}
