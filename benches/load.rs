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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    let sampler = RssSampler::start();
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

/// Samples this process's anonymous resident memory every few milliseconds.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_anon(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssSampler { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed).max(rss_anon())
    }
}

/// `RssAnon` from /proc/self/status, in bytes (0 where unavailable).
fn rss_anon() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
