//! Thin entry point: parse flags, run one subcommand, print the report, exit 0/1/2.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use meshscrape_verify::cli::{Args, run};
use meshscrape_verify::report::Format;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            let colour = args.output == Format::Human && std::io::stdout().is_terminal();
            print!("{}", report.render(args.output, colour));
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("meshscrape-verify: {e}");
            ExitCode::from(2)
        }
    }
}
