//! Thin entry point: parse flags, run the command, print why it failed and exit 0, 1 or 2.

use std::process::ExitCode;

use clap::Parser;
use meshscrape_gen::cli::{Args, run};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshscrape-gen: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}
