//! clap commands. The library does the work; this module parses flags and prints.

mod bench;
mod cache;
mod decode;
mod devices;
mod doctor;
mod encode;
pub mod exit;
mod generate;
mod gpu;
mod inspect;
mod inspect_lora;
mod job;
pub mod message;
#[cfg(feature = "nats")]
mod nats;
mod progress;
mod request_flags;
mod selftest;
mod serve;
mod tensor_file;
mod tokenize;
mod upscale;
mod values;

use std::io::Write as _;
use std::sync::OnceLock;

use clap::{Parser, Subcommand};
use sdxl_wgpu::device::ShaderCompiler;
use sdxl_wgpu::phase::{self, LineKind};

use values::spelled;

/// `println!` that returns the write's error instead of panicking: a closed stdout
/// (`sdxl-wgpu tokenize ... | head -c1`) ends the command through `main`, not a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use say;

#[derive(Parser, Debug)]
#[command(
    name = "sdxl-wgpu",
    version,
    about = "Stable Diffusion XL on wgpu (Vulkan, Metal, DX12)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

/// What every command takes (before or after its name).
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// No progress bars and no phase lines (what each long phase took) on stderr.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Also show each kernel compiled and each autotune winner (cubecl's loggers).
    #[arg(long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// The compiler a Vulkan adapter's kernels go through: auto (SPIR-V with tensor cores on a
    /// GPU that has them, WGSL on software adapters), wgsl, spirv.
    #[arg(long, global = true, value_parser = spelled::<ShaderCompiler>(), default_value_t = ShaderCompiler::Auto)]
    pub shader_compiler: ShaderCompiler,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// The options every command took.
pub fn global() -> &'static Global {
    GLOBAL.get_or_init(|| Global {
        quiet: false,
        verbose: false,
        shader_compiler: ShaderCompiler::Auto,
    })
}

/// Phase lines go to stderr, whether or not it is a terminal; step lines only where no progress
/// bar shows the steps instead. A closed stderr loses them silently.
fn show_phases(global: &Global) {
    if global.quiet {
        return;
    }
    phase::set_verbose(global.verbose);
    phase::set_sink(Some(Box::new(|kind, text| {
        if kind == LineKind::Step && progress::bars_shown(false) {
            return;
        }
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    })));
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe a checkpoint (layout, variant, architecture, load report) or a LoRA file.
    Inspect(inspect::InspectArgs),
    /// List the GPU adapters wgpu sees and which one --backend picks.
    Devices(devices::DevicesArgs),
    /// Time backends, precisions and sizes side by side (load, text encode, UNet step, VAE,
    /// LoRA swap, memory, TFLOP/s).
    Bench(bench::BenchArgs),
    /// Check the device, the quality policy and, optionally, a checkpoint and LoRA files.
    Doctor(doctor::DoctorArgs),
    /// Encode a prompt pair with the checkpoint's text encoders (SDXL context + pooled).
    Encode(encode::EncodeArgs),
    /// Show how a prompt is parsed and tokenized (weights, BREAK, LoRA tags, chunks).
    Tokenize(tokenize::TokenizeArgs),
    /// Decode latents (a safetensors file) to PNG with the checkpoint's VAE.
    Decode(decode::DecodeArgs),
    /// Upscale an image (or a folder of them) with an ESRGAN-family model upscaler.
    Upscale(upscale::UpscaleArgs),
    /// Generate images: txt2img, img2img (--init-image), many requests (--jobs).
    Generate(Box<generate::GenerateArgs>),
    /// Serve AUTOMATIC1111's HTTP API (/sdapi/v1) and a jobs API (/v1/jobs) from one loaded model.
    Serve(Box<serve::ServeArgs>),
    /// Serve one model's jobs from NATS JetStream, behind `serve --nats` API nodes.
    #[cfg(feature = "nats")]
    Worker(Box<nats::WorkerArgs>),
    /// Show or clear the caches kept between runs (compiled kernels, autotune results,
    /// self-test verdicts).
    #[command(subcommand)]
    Cache(cache::CacheCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    show_phases(&cli.global);
    let _ = GLOBAL.set(cli.global);
    match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Devices(args) => devices::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Encode(args) => encode::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Decode(args) => decode::run(args),
        Command::Generate(args) => generate::run(*args),
        Command::Upscale(args) => upscale::run(args),
        Command::Serve(args) => serve::run(*args),
        #[cfg(feature = "nats")]
        Command::Worker(args) => nats::run(*args),
        Command::Cache(command) => cache::run(command),
    }
}
