//! The `sdxl-wgpu` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            // Every failure here is a bad file, argument or environment: exit 2, like clap.
            ExitCode::from(2)
        }
    }
}
