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

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sdxl_wgpu::checkpoint::{Checkpoint, WeightDtype};
use sdxl_wgpu::device::{self, Backend};

const MANIFEST: &str = include_str!("../tests/data/sdxl_base_1.0_single_file_keys.tsv");

fn main() -> anyhow::Result<()> {
    let path = match std::env::var_os("SDXL_BENCH_CHECKPOINT") {
        Some(p) => PathBuf::from(p),
        None => synthetic()?,
    };
    let backend = match std::env::var("SDXL_BENCH_BACKEND").as_deref() {
        Ok("vulkan") => Backend::Vulkan,
        Ok("metal") => Backend::Metal,
        Ok("dx12") => Backend::Dx12,
        Ok("gl") => Backend::Gl,
        _ => Backend::Auto,
    };
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
    let models = checkpoint.load(&gpu.device, WeightDtype::AsStored)?;
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

/// Writes the synthetic full-size checkpoint once and returns its path.
fn synthetic() -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("sdxl-base-synthetic.safetensors");

    let mut entries = Vec::new();
    let mut offset = 0usize;
    for line in MANIFEST.lines().skip(1) {
        let mut cols = line.split('\t');
        let (Some(name), Some(dtype), Some(shape)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let shape: Vec<usize> = serde_json::from_str(shape)?;
        let size = match dtype {
            "F16" | "BF16" => 2,
            "F32" | "I32" => 4,
            "I64" | "F64" => 8,
            _ => 1,
        };
        let len = size * shape.iter().product::<usize>();
        entries.push((name.to_string(), dtype.to_string(), shape, offset, len));
        offset += len;
    }
    let mut header = serde_json::Map::new();
    for (name, dtype, shape, start, len) in &entries {
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, start + len]}),
        );
    }
    let mut json = serde_json::to_vec(&header)?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let expected = 8 + json.len() as u64 + offset as u64;
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == expected) {
        return Ok(path);
    }
    eprintln!(
        "writing {} ({:.2} GB) once...",
        path.display(),
        expected as f64 / 1e9
    );
    let mut out = BufWriter::with_capacity(1 << 22, File::create(&path)?);
    out.write_all(&(json.len() as u64).to_le_bytes())?;
    out.write_all(&json)?;
    // Small finite f16 values (0.0 to 0.1), valid data for any 2-byte float dtype in the manifest.
    let pattern: Vec<u8> = (0..1 << 20)
        .flat_map(|i: u32| half::f16::from_f32((i % 1000) as f32 * 1e-4).to_le_bytes())
        .collect();
    let mut left = offset;
    while left > 0 {
        let n = left.min(pattern.len());
        out.write_all(&pattern[..n])?;
        left -= n;
    }
    out.flush()?;
    Ok(path)
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
