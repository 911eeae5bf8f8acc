//! `sdxl-wgpu generate --model MODEL --prompt TEXT`: txt2img on one loaded engine; batch image i
//! uses seed + i. Noise comes from PyTorch's CPU generator, so a seed gives diffusers' (and
//! ComfyUI's CPU-noise) initial latents on every backend.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::{gpu, images};
use sdxl_wgpu::checkpoint::{Checkpoint, Prediction, WeightDtype};
use sdxl_wgpu::device::{Backend, Precision};
use sdxl_wgpu::pipeline::{Engine, Txt2Img};
use sdxl_wgpu::sampling::{Sampler, ScheduleKind};
use sdxl_wgpu::vae::{VaePrecision, VaeTiling};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A single-file `.safetensors` checkpoint or a diffusers model folder.
    #[arg(long)]
    model: PathBuf,
    /// The prompt (A1111 syntax: `(word:1.2)`, `[word]`, `BREAK`).
    #[arg(long)]
    prompt: String,
    /// The negative prompt; empty gives SDXL's all-zero negative conditioning.
    #[arg(long, default_value = "")]
    negative: String,
    #[arg(long, default_value_t = 1024)]
    width: usize,
    #[arg(long, default_value_t = 1024)]
    height: usize,
    #[arg(long, default_value_t = 28)]
    steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 6.0)]
    cfg: f32,
    /// Seed of the first image (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, value_enum, default_value_t = Sampler::Euler)]
    sampler: Sampler,
    #[arg(long, value_enum, default_value_t = ScheduleKind::Default)]
    schedule: ScheduleKind,
    /// Images to generate, seeds seed, seed+1, ...
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Output image (png, jpg or webp by extension); batch item i > 0 gets `-i`.
    #[arg(long, default_value = "output.png")]
    output: PathBuf,
    /// Layers to skip beyond SDXL's penultimate one (diffusers' clip_skip).
    #[arg(long, default_value_t = 0)]
    clip_skip: usize,
    /// Override the detected prediction type.
    #[arg(long, value_enum)]
    prediction: Option<Prediction>,
    #[arg(long, value_enum, default_value_t = Precision::Auto)]
    precision: Precision,
    #[arg(long, value_enum, default_value_t = VaeTiling::Auto)]
    vae_tiling: VaeTiling,
    #[arg(long, value_enum, default_value_t = VaePrecision::F32)]
    vae_precision: VaePrecision,
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if args.batch == 0 {
        anyhow::bail!("--batch 0: at least one image");
    }
    let seed = args.seed.unwrap_or_else(random_seed);
    let request = |i: usize| Txt2Img {
        prompt: args.prompt.clone(),
        negative: args.negative.clone(),
        width: args.width,
        height: args.height,
        steps: args.steps,
        cfg: args.cfg,
        seed: seed + i as u64,
        sampler: args.sampler,
        schedule: args.schedule,
        clip_skip: args.clip_skip,
        vae_tiling: args.vae_tiling,
        vae_precision: args.vae_precision,
    };
    request(0).check()?; // before the (slow) load
    let checkpoint = Checkpoint::open(&args.model)?;
    let gpu = gpu::open(args.backend)?;
    let dtype = gpu::weight_dtype(&gpu, args.precision);
    let f16 = dtype == WeightDtype::F16;
    let start = Instant::now();
    let mut engine = Engine::load(gpu, checkpoint, dtype)?;
    if let Some(prediction) = args.prediction {
        engine.prediction = prediction;
    }
    println!(
        "{} on {} ({}), {}, loaded in {:.1} s",
        engine.checkpoint.variant,
        engine.gpu.adapter.name,
        engine.gpu.adapter.api,
        if f16 { "f16" } else { "f32" },
        start.elapsed().as_secs_f64()
    );

    for i in 0..args.batch {
        let request = request(i);
        let start = Instant::now();
        let out = engine.txt2img(&request)?;
        let path = images::numbered(&args.output, i);
        images::save(out.image, &path)?;
        println!(
            "seed {}: {}x{}, {} steps {:?} {:?}, cfg {} -> {} ({:.1} s)",
            request.seed,
            request.width,
            request.height,
            request.steps,
            request.sampler,
            request.schedule,
            request.cfg,
            path.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// A seed in A1111's range [0, 2^32) from the clock.
fn random_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // splitmix64 of the clock, so consecutive runs do not get neighbouring seeds
    let mut z = (nanos as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) & 0xffff_ffff
}
