//! A whole txt2img request, 30 steps (Euler, CFG 7.5, prompt + negative): seconds per image,
//! denoising it/s, the time of each phase and the pools' peak, from the engine's own `RunStats`.
//!
//! `cargo bench --bench txt2img` runs the full-size architecture (the synthetic SDXL checkpoint
//! of `benches/load.rs`, random weights) at 1024x1024 on a hardware adapter and the tiny
//! reference model at 256x256 on a software one. `SDXL_BENCH_CHECKPOINT`, `SDXL_BENCH_BACKEND`,
//! `SDXL_BENCH_PRECISION=f32`, `SDXL_BENCH_RUNS=N` (default 3; the first run, which autotunes,
//! is reported apart), `SDXL_BENCH_SIZES=768,1024`, `SDXL_BENCH_STEPS=30` and
//! `SDXL_BENCH_BATCH=1` apply.

use std::time::Instant;

use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::pipeline::{Engine, Request};
use sdxl_wgpu::sampling::Sampler;

mod common;

fn main() -> anyhow::Result<()> {
    let (gpu, dtype, path) = common::model_bench()?;
    let software = gpu.adapter.is_software();
    let runs = common::runs(3);
    let steps = common::env_usize("SDXL_BENCH_STEPS", 30);
    let batch = common::env_usize("SDXL_BENCH_BATCH", 1);
    let sizes: Vec<usize> = match std::env::var("SDXL_BENCH_SIZES") {
        Ok(s) => s.split(',').filter_map(|v| v.trim().parse().ok()).collect(),
        Err(_) if software => vec![256],
        Err(_) => vec![1024],
    };
    let start = Instant::now();
    let engine = Engine::load(gpu, Checkpoint::open(&path)?, dtype)?;
    engine.gpu().sync()?;
    println!(
        "adapter: {} ({}), {dtype:?} weights, model {} loaded in {:.1} s",
        engine.gpu().adapter.name,
        engine.gpu().adapter.api,
        path.display(),
        start.elapsed().as_secs_f64()
    );

    for size in sizes {
        let request = Request {
            prompt: "1girl, solo, long hair, looking at viewer, masterpiece, best quality".into(),
            negative: "lowres, bad anatomy, worst quality, blurry".into(),
            width: size,
            height: size,
            steps,
            cfg: 7.5,
            seed: 1,
            batch,
            sampler: Sampler::Euler,
            ..Request::default()
        };
        for run in 0..runs {
            let start = Instant::now();
            let out = engine.generate(&request, &mut |_| {})?;
            let total = start.elapsed().as_secs_f64();
            let s = out.stats;
            println!(
                "{size}x{size} batch {batch}, {steps} steps{}: {:.2} s/image ({total:.2} s), \
                 denoise {:.2} it/s ({:.3} s/step), text {:.3} s, VAE decode {:.2} s{}, peak pools {}",
                if run == 0 { " (first run: autotune)" } else { "" },
                total / batch as f64,
                s.steps_per_second(),
                s.denoise.as_secs_f64() / s.steps as f64,
                s.encode.as_secs_f64(),
                s.decode.as_secs_f64(),
                out.vae_plan
                    .map_or(String::new(), |p| format!(" (tiled {})", p.tile)),
                s.peak_reserved_bytes
                    .map_or("unknown".into(), |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)),
            );
        }
    }
    Ok(())
}
