//! LoRA swaps and runtime adapters.
//!
//! - Swap latency for a full-size SDXL LoRA: a synthetic kohya file with SDXL base's real key
//!   names, rank 32 (alpha 16) on every attention (q, k, v, out) and feed-forward layer of the
//!   UNet (`target/bench-data/sdxl-lora-r32.safetensors`, written once), split into reading +
//!   validating the file (`AdapterSet::check`) and the device upload (`AdapterSet::build` minus
//!   that). Runs on any adapter: it needs the architecture, not the model's weights.
//! - Per-step overhead of runtime adapters: one UNet step (batch 2) with no LoRA and with every
//!   transformer linear adapted; the tiny model and its fixture LoRA at 256x256 on a software
//!   adapter, the synthetic full-size checkpoint with the file above at 1024x1024 on a hardware
//!   one. `SDXL_BENCH_RUNS=N` (default 3), `SDXL_BENCH_BACKEND` apply.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{FloatDType, Tensor, TensorData};
use sdxl_wgpu::checkpoint::{Checkpoint, Component};
use sdxl_wgpu::lora::{write_synthetic_lora, AdapterSet, LoraSpec, LoraTable};
use sdxl_wgpu::ModelConfig;

mod common;

const RANK: usize = 32;

fn main() -> anyhow::Result<()> {
    let (gpu, dtype, model_path) = common::model_bench()?;
    let runs = common::runs(3);
    let compute = if dtype == sdxl_wgpu::weights::WeightDtype::F16 {
        FloatDType::F16
    } else {
        FloatDType::F32
    };
    println!(
        "adapter: {} ({}), deltas in {compute:?}",
        gpu.adapter.name, gpu.adapter.api
    );

    // swap latency at full size
    let full = Checkpoint::sdxl_base_manifest()?;
    let lora = synthetic_lora(&full.config)?;
    let table = LoraTable::new(&full.config);
    let spec = LoraSpec {
        path: lora.clone(),
        unet_weight: 0.8,
        text_encoder_weight: 0.8,
    };
    let size = std::fs::metadata(&lora)?.len();
    for run in 0..runs {
        let start = Instant::now();
        let report = AdapterSet::check(&spec, &table)?;
        let read = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let (set, _) =
            AdapterSet::build(std::slice::from_ref(&spec), &table, &gpu.device, compute)?;
        gpu.sync()?;
        let build = start.elapsed().as_secs_f64();
        let layers = report.matched.get(&Component::Unet).copied().unwrap_or(0);
        println!(
            "full-size rank-{RANK} LoRA ({:.0} MB, {layers} UNet layers){}: read + validate {:.0} ms, \
             build (read + upload) {:.0} ms -> upload {:.0} ms",
            size as f64 / 1e6,
            if run == 0 { " (first run, cold page cache possible)" } else { "" },
            read * 1e3,
            build * 1e3,
            (build - read).max(0.0) * 1e3,
        );
        drop(set);
        gpu.device.memory_cleanup();
    }

    // per-step overhead
    let checkpoint = Checkpoint::open(&model_path)?;
    let (step_lora, size) = if gpu.adapter.is_software() {
        (
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/lora/style_kohya.safetensors"),
            256,
        )
    } else {
        (lora, 1024)
    };
    let models = checkpoint.load(&gpu, dtype)?;
    let table = LoraTable::new(&checkpoint.config);
    let spec = LoraSpec {
        path: step_lora,
        ..spec
    };
    let (set, _) = AdapterSet::build(&[spec], &table, &gpu.device, compute)?;
    let cfg = &checkpoint.config.unet;
    let device = &gpu.device;
    let latent = size / 8;
    let x = Tensor::<4>::from_data(
        TensorData::new(
            vec![0.1f32; 2 * cfg.in_channels * latent * latent],
            [2, cfg.in_channels, latent, latent],
        ),
        device,
    );
    let context = Tensor::<3>::from_data(
        TensorData::new(
            vec![0.01f32; 2 * 77 * cfg.context_dim],
            [2, 77, cfg.context_dim],
        ),
        device,
    );
    let pooled_dim = cfg.addition_embed_dim - 6 * cfg.addition_time_embed_dim;
    let pooled = Tensor::<2>::from_data(
        TensorData::new(vec![0.01f32; 2 * pooled_dim], [2, pooled_dim]),
        device,
    );
    let ids = [[size as f32, size as f32, 0.0, 0.0, size as f32, size as f32]; 2];
    for (name, ad) in [("no LoRA", AdapterSet::none()), ("with LoRA", set)] {
        let mut times = Vec::new();
        for _ in 0..runs + 1 {
            let start = Instant::now();
            let out = models.unet.forward(
                x.clone(),
                &[500.0, 500.0],
                context.clone(),
                pooled.clone(),
                &ids,
                ad.scope(Component::Unet),
            );
            out.into_data();
            times.push(start.elapsed().as_secs_f64());
        }
        let warm = &times[1..];
        let mean = warm.iter().sum::<f64>() / warm.len() as f64;
        println!(
            "UNet step {size}x{size} batch 2, {name} ({} adapted layers): {:.1} ms mean, first {:.1} ms",
            ad.len(),
            mean * 1e3,
            times[0] * 1e3
        );
    }
    Ok(())
}

/// Writes the synthetic full-size LoRA once and returns its path.
fn synthetic_lora(cfg: &ModelConfig) -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("sdxl-lora-r{RANK}.safetensors"));
    if !path.exists() {
        let tmp = path.with_extension("partial");
        let bytes = write_synthetic_lora(cfg, RANK, &tmp)?;
        eprintln!(
            "wrote {} ({:.0} MB) once",
            path.display(),
            bytes as f64 / 1e6
        );
        std::fs::rename(tmp, &path)?;
    }
    Ok(path)
}
