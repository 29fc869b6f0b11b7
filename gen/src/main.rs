//! Thin entry point: parse flags, load config, render everything, then write.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use meshscrape_common::{AppConfig, ConfigError};
use meshscrape_gen::cli::Args;
use meshscrape_gen::templates::Templates;
use meshscrape_gen::{GenError, output, render};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshscrape-gen: {e:#}");
            match e {
                GenError::Io { .. } | GenError::Config(ConfigError::Read { .. }) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

fn run(args: &Args) -> Result<(), GenError> {
    let mut config = AppConfig::load(&args.config)?;
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
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(output::stream(&rendered).as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|source| GenError::Io { path: "stdout".into(), source })?;
        }
    }
    Ok(())
}
