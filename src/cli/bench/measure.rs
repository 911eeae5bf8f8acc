//! One adapter x precision: load the checkpoint, time a LoRA swap, then two runs per size: a
//! cold one of one step, which pays shader compilation and autotune for every phase, and the
//! timed one of `--steps` steps, the steady state. Each row goes to the caller as soon as it is
//! measured.

use std::path::PathBuf;
use std::time::Instant;

use super::Row;
use sdxl_wgpu::checkpoint::{Checkpoint, ModelConfig};
use sdxl_wgpu::device::{Gpu, Precision};
use sdxl_wgpu::lora::{write_synthetic_lora, LoraSpec};
use sdxl_wgpu::phase::{self, KernelCounts};
use sdxl_wgpu::pipeline::{Engine, Generated, Request};
use sdxl_wgpu::sampling::Sampler;
use sdxl_wgpu::weights::WeightDtype;

/// The rank of the synthetic LoRA (a common rank for SDXL style LoRAs).
const LORA_RANK: usize = 32;
/// Tokens of the text context: one 77-token chunk per prompt.
const CONTEXT_TOKENS: usize = 77;

/// A synthetic LoRA for the checkpoint's architecture, in a temporary file removed on drop.
pub struct SyntheticLora {
    path: PathBuf,
}

impl SyntheticLora {
    pub fn write(config: &ModelConfig) -> std::io::Result<SyntheticLora> {
        let path = std::env::temp_dir().join(format!(
            "sdxl-wgpu-bench-lora-r{LORA_RANK}-{}.safetensors",
            std::process::id()
        ));
        let lora = SyntheticLora { path };
        write_synthetic_lora(config, LORA_RANK, &lora.path)?;
        Ok(lora)
    }
}

impl Drop for SyntheticLora {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What one adapter x precision measures.
pub struct Setup<'a> {
    pub gpu: Gpu,
    pub precision: Precision,
    pub sizes: &'a [(usize, usize)],
    pub steps: usize,
    pub lora: &'a SyntheticLora,
}

/// Measures `setup` on `checkpoint`, handing each size's row to `done` as soon as it is
/// measured; `false` when f16 was asked for and the adapter has none.
pub fn run(
    setup: &Setup,
    checkpoint: Checkpoint,
    done: &mut dyn FnMut(Row) -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    let dtype = WeightDtype::for_precision(setup.precision, &setup.gpu.adapter);
    if setup.precision == Precision::F16 && dtype != WeightDtype::F16 {
        return Ok(false);
    }
    let bytes = stored_bytes(&checkpoint);
    let start = Instant::now();
    let engine = Engine::load(setup.gpu.clone(), checkpoint, dtype)?;
    engine.gpu().sync()?;
    let load_s = start.elapsed().as_secs_f64();
    let lora_swap_s = lora_swap(&engine, setup.lora)?;
    for &(width, height) in setup.sizes {
        let request = Request {
            prompt: "1girl, solo, looking at viewer, masterpiece".into(),
            negative: "lowres, bad anatomy".into(),
            width,
            height,
            steps: setup.steps,
            cfg: 7.0,
            seed: 0,
            sampler: Sampler::Euler,
            ..Request::default()
        };
        let phase = phase::start(format!("cold run {width}x{height}, 1 step"));
        let kernels = KernelCounts::now();
        let cold_request = Request {
            steps: 1,
            ..request.clone()
        };
        let cold = engine.generate(&cold_request, &mut |_| {})?;
        let cold_kernels = KernelCounts::now()
            .zip(kernels)
            .map(|(now, b)| now.since(b));
        phase.done("");
        let phase = phase::start(format!("timed run {width}x{height}, {} steps", setup.steps));
        let warm = engine.generate(&request, &mut |_| {})?;
        phase.done("");
        let mut row = row(
            &engine,
            &request,
            [&cold, &warm],
            load_s,
            bytes,
            lora_swap_s,
        );
        row.cold_kernels_compiled = cold_kernels.map(|k| k.compiled);
        row.cold_shapes_tuned = cold_kernels.map(|k| k.tuned);
        done(row)?;
    }
    Ok(true)
}

/// Seconds to make the synthetic LoRA the active set (read, check, upload), after which the
/// engine goes back to no LoRA.
fn lora_swap(engine: &Engine, lora: &SyntheticLora) -> anyhow::Result<f64> {
    let spec = LoraSpec {
        path: lora.path.clone(),
        unet_weight: 0.8,
        text_encoder_weight: 0.8,
    };
    let start = Instant::now();
    engine.set_loras(&[spec])?;
    engine.gpu().sync()?;
    let seconds = start.elapsed().as_secs_f64();
    engine.set_loras(&[])?;
    Ok(seconds)
}

/// The bytes of every stored parameter (what loading reads).
fn stored_bytes(checkpoint: &Checkpoint) -> u64 {
    let stats = checkpoint.stats();
    let per_component = stats
        .iter()
        .flat_map(|c| c.dtypes.iter())
        .map(|(dtype, n)| (dtype.size() * n) as u64);
    per_component.sum()
}

/// The figures of one size from its cold one-step run and its timed run.
fn row(
    engine: &Engine,
    request: &Request,
    [cold, timed]: [&Generated; 2],
    load_s: f64,
    bytes: u64,
    lora_swap_s: f64,
) -> Row {
    let (a, b) = (&cold.stats, &timed.stats);
    let step_s = b.denoise.as_secs_f64() / b.steps.max(1) as f64;
    // what the cold run took beyond the steady state: compilation and autotune
    let extra = |cold: std::time::Duration, warm: f64| (cold.as_secs_f64() - warm).max(0.0);
    let flops = engine.checkpoint().config.unet.forward_flops(
        b.unet_batch,
        request.height / 8,
        request.width / 8,
        CONTEXT_TOKENS,
    );
    let run_s = (b.encode + b.denoise + b.decode).as_secs_f64();
    let peak = [a.peak_reserved_bytes, b.peak_reserved_bytes];
    let on = engine.made_on();
    Row {
        adapter: on.adapter,
        api: on.api,
        compiler: on.shaders.into(),
        tensor_cores: on.tensor_cores,
        precision: on.precision.into(),
        width: request.width,
        height: request.height,
        steps: b.steps,
        unet_batch: b.unet_batch,
        load_s,
        load_gb_per_s: bytes as f64 / 1e9 / load_s.max(1e-9),
        text_encode_s: b.encode.as_secs_f64(),
        step_s,
        step_record_s: b.record.as_secs_f64() / b.steps.max(1) as f64,
        first_text_extra_s: extra(a.encode, b.encode.as_secs_f64()),
        first_step_extra_s: extra(a.denoise, step_s),
        first_vae_extra_s: extra(a.decode, b.decode.as_secs_f64()),
        cold_kernels_compiled: None,
        cold_shapes_tuned: None,
        vae_decode_s: b.decode.as_secs_f64(),
        lora_swap_s,
        peak_memory_bytes: peak.into_iter().flatten().max().unwrap_or(0),
        images_per_minute: 60.0 * request.batch as f64 / run_s.max(1e-9),
        unet_flops_per_step: flops,
        tflops: flops / 1e12 / step_s.max(1e-9),
    }
}
