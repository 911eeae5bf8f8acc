//! Loading a full-size SDXL single file onto the device: seconds, GB/s, peak host memory.
//!
//! `cargo bench --bench load` builds a synthetic 6.9 GB checkpoint from the SDXL base 1.0
//! manifest (every tensor of the real file, same names, dtypes and shapes; patterned data) in
//! `target/bench-data/` once, then opens it (headers only) and uploads every component.
//! `SDXL_BENCH_CHECKPOINT=/path/model.safetensors` measures a real file instead;
//! `SDXL_BENCH_BACKEND=vulkan|metal|dx12|gl|auto` picks the adapter.
//!
//! Host memory is the peak anonymous RSS sampled during the load (the mapped file's page cache
//! is not counted). On a software adapter (lavapipe) device buffers *are* host memory, so that
//! figure then includes the weights themselves.

use std::path::PathBuf;
use std::time::Instant;

use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::device;
use sdxl_wgpu::weights::WeightDtype;

mod common;

fn main() -> anyhow::Result<()> {
    let path = match std::env::var_os("SDXL_BENCH_CHECKPOINT") {
        Some(p) => PathBuf::from(p),
        None => common::synthetic_checkpoint()?,
    };
    let backend = common::backend();
    let bytes = std::fs::metadata(&path)?.len();

    let start = Instant::now();
    let checkpoint = Checkpoint::open(&path)?;
    checkpoint.ensure_complete()?;
    let open = start.elapsed();

    let (gpu, warning) = device::open(backend)?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    // Warm the device up so its start-up is not counted as loading.
    gpu.device.sync().map_err(|e| anyhow::anyhow!("{e:?}"))?;

    let sampler = common::RssSampler::start();
    let start = Instant::now();
    let models = checkpoint.load(&gpu, WeightDtype::AsStored)?;
    gpu.device.sync().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let load = start.elapsed();
    let peak_anon = sampler.stop();
    let usage = device::memory_in_use(&gpu.device);
    drop(models);

    println!(
        "checkpoint   {} ({:.2} GB)",
        path.display(),
        bytes as f64 / 1e9
    );
    println!(
        "adapter      {} ({}, {})",
        gpu.adapter.name, gpu.adapter.api, gpu.adapter.device_type
    );
    println!(
        "open         {:.1} ms (headers, classification, architecture, key tables)",
        open.as_secs_f64() * 1e3
    );
    println!(
        "load         {:.2} s, {:.2} GB/s",
        load.as_secs_f64(),
        bytes as f64 / load.as_secs_f64() / 1e9
    );
    println!(
        "host memory  peak anonymous RSS {} MiB during the load",
        peak_anon >> 20
    );
    if let Some((in_use, reserved)) = usage {
        println!(
            "device       {} MiB in use, {} MiB reserved",
            in_use >> 20,
            reserved >> 20
        );
    }
    Ok(())
}
