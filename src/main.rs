//! The `sdxl-wgpu` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // first, while no other thread exists: it sets an environment variable
    sdxl_wgpu::device::quiet_vulkan_layers();
    // a panic is a bug: say so and exit 1 (an internal failure), never 101
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal failure (a bug in sdxl-wgpu; please report it): {info}");
        std::process::exit(1);
    }));
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        // the reader of stdout went away (`| head`): nothing more to say
        Err(error) if cli::exit::broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", cli::message::message(&error));
            ExitCode::from(cli::exit::code(&error))
        }
    }
}
