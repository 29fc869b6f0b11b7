//! Thin entry point: parse flags, load config, render everything, then write.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use meshscrape_common::{AppConfig, ConfigError};
use meshscrape_gen::cli::{Args, Command, InjectArgs, RenderArgs};
use meshscrape_gen::inject::{Extras, inject};
use meshscrape_gen::templates::Templates;
use meshscrape_gen::{GenError, output, render};

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Some(Command::Inject(inject)) => run_inject(inject),
        None => run_render(&args.render),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshscrape-gen: {e:#}");
            match e {
                GenError::Io { .. } | GenError::Config(ConfigError::Read { .. }) => {
                    ExitCode::from(2)
                }
                _ => ExitCode::from(1),
            }
        }
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
    let rendered = render(&config, &templates)?;
    match &args.out {
        Some(dir) => {
            for path in output::write_dir(dir, &rendered)? {
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
        None => print(&output::stream(&rendered)),
    }
}

fn run_inject(args: &InjectArgs) -> Result<(), GenError> {
    let config = AppConfig::load(&args.config)?;
    let templates = Templates::load(args.templates.as_deref())?;
    let stdin = [Path::new("-").to_path_buf()];
    let inputs = if args.inputs.is_empty() { &stdin[..] } else { &args.inputs[..] };
    let mut docs = Vec::new();
    for input in inputs {
        let name = input.display().to_string();
        let io = |source| GenError::Io { path: name.clone(), source };
        let text = if input == Path::new("-") {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(io)?;
            text
        } else {
            std::fs::read_to_string(input).map_err(io)?
        };
        let parsed: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| GenError::Input {
                path: name.clone(),
                message: format!("not YAML: {}", e.without_snippet()),
            })?;
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    let extras = Extras { service_port: args.with_service_port, monitor: args.with_monitor };
    let injected = inject(&config, &templates, docs, extras)?;
    for note in &injected.notes {
        eprintln!("meshscrape-gen: {note}");
    }
    let mut out = String::new();
    for doc in &injected.documents {
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(doc)
                .map_err(|e| GenError::Input { path: "output".into(), message: e.to_string() })?,
        );
    }
    print(&out)
}

fn print(text: &str) -> Result<(), GenError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| GenError::Io { path: "stdout".into(), source })
}
