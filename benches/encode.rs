//! Encoding a positive + negative prompt pair with SDXL's two text encoders: ms per pair.
//!
//! `cargo bench --bench encode` runs the full-size architecture (the synthetic SDXL checkpoint
//! of `benches/load.rs`, written once to `target/bench-data/`) on a hardware adapter, and the
//! tiny reference model on a software one (lavapipe would take minutes per full-size pair).
//! `SDXL_BENCH_CHECKPOINT=/path` measures that checkpoint; `SDXL_BENCH_BACKEND` picks the
//! adapter; `SDXL_BENCH_PRECISION=f32` computes in f32; `SDXL_BENCH_RUNS` sets the timed pairs
//! (default 10).
//!
//! Reported: tokenization alone (CPU), then one-chunk (short) and two-chunk (150-token) pairs
//! after two warm-up pairs (autotune, shader compiles), each timed to the result on the host.

use std::time::Instant;

use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::text_encoder::{TextEncoders, TextOptions};
use sdxl_wgpu::tokenizer::{chunk_prompt, parse_prompt, ClipTokenizer, Flavor};

mod common;

const SHORT: &str = "masterpiece, best quality, 1girl, solo, (long hair:1.2), smile, outdoors";
const NEGATIVE: &str = "lowres, bad anatomy, bad hands, worst quality, blurry";

fn main() -> anyhow::Result<()> {
    let (gpu, dtype, path) = common::model_bench()?;

    let long = format!("{SHORT}, {}", "detailed background, ".repeat(24));
    let tokenizer = ClipTokenizer::shared();
    let n = 1000;
    let start = Instant::now();
    for _ in 0..n {
        let parsed = parse_prompt(&long);
        std::hint::black_box(chunk_prompt(tokenizer, &parsed, Flavor::ClipL));
    }
    let tokenize_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);

    let checkpoint = Checkpoint::open(&path)?;
    let encoders = checkpoint.load_text_encoders(&gpu, dtype)?;
    println!(
        "adapter: {} ({}), {dtype:?} weights, model {}",
        gpu.adapter.name,
        gpu.adapter.api,
        path.display()
    );
    println!(
        "text encoders: CLIP-L {} layers x {}, bigG {} layers x {}",
        checkpoint.config.text_encoder.layers,
        checkpoint.config.text_encoder.width,
        checkpoint.config.text_encoder_2.layers,
        checkpoint.config.text_encoder_2.width
    );
    println!("tokenize + chunk a 150-token prompt: {tokenize_us:.1} µs");
    for (label, prompt) in [("1 chunk ", SHORT), ("2 chunks", long.as_str())] {
        let (mean, min) = time_pair(&encoders, prompt, NEGATIVE)?;
        println!("encode pair, {label}: {mean:.2} ms mean, {min:.2} ms min");
    }
    Ok(())
}

/// Mean and minimum ms per encoded pair over the timed runs.
fn time_pair(encoders: &TextEncoders, prompt: &str, negative: &str) -> anyhow::Result<(f64, f64)> {
    let (positive, negative) = (parse_prompt(prompt), parse_prompt(negative));
    let run = || -> anyhow::Result<f64> {
        let start = Instant::now();
        let c = encoders.encode(&positive, &negative, TextOptions::default())?;
        let context = c
            .context
            .try_into_data()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let pooled = c
            .pooled
            .try_into_data()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        std::hint::black_box((context, pooled));
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let runs = common::runs(10);
    for _ in 0..runs.min(2) {
        run()?;
    }
    let times = (0..runs)
        .map(|_| run())
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((mean, min))
}
