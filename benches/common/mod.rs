//! What the benchmarks share: the adapter choice and a synthetic full-size SDXL checkpoint.

#![allow(dead_code)] // each bench uses part of this

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sdxl_wgpu::device::{self, Backend, Gpu, Precision};
use sdxl_wgpu::weights::WeightDtype;

const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tiny-sdxl.safetensors"
);

/// The device, weight dtype and checkpoint of a model benchmark: `SDXL_BENCH_CHECKPOINT` if set,
/// else the full-size synthetic checkpoint on a hardware adapter and the tiny model on a software
/// one; f16 where the adapter has it unless `SDXL_BENCH_PRECISION=f32`.
pub fn model_bench() -> anyhow::Result<(Gpu, WeightDtype, PathBuf)> {
    let (gpu, warning) = device::open(backend())?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let path = match std::env::var_os("SDXL_BENCH_CHECKPOINT") {
        Some(p) => PathBuf::from(p),
        None if gpu.adapter.is_software() => PathBuf::from(TINY),
        None => synthetic_checkpoint()?,
    };
    let precision = match std::env::var("SDXL_BENCH_PRECISION").as_deref() {
        Ok("f32") => Precision::F32,
        _ => Precision::Auto,
    };
    let dtype = WeightDtype::for_precision(precision, &gpu.adapter);
    Ok((gpu, dtype, path))
}

/// The environment variable `name` as a number, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `SDXL_BENCH_RUNS`, else `default`.
pub fn runs(default: usize) -> usize {
    env_usize("SDXL_BENCH_RUNS", default).max(1)
}

/// `SDXL_BENCH_BACKEND=vulkan|metal|dx12|gl|auto` (default auto).
pub fn backend() -> Backend {
    match std::env::var("SDXL_BENCH_BACKEND").as_deref() {
        Ok("vulkan") => Backend::Vulkan,
        Ok("metal") => Backend::Metal,
        Ok("dx12") => Backend::Dx12,
        Ok("gl") => Backend::Gl,
        _ => Backend::Auto,
    }
}

/// Writes the synthetic full-size checkpoint once (the load benchmark reads it from disk) and
/// returns its path: SDXL base 1.0's tensor list with the library's generated weights.
pub fn synthetic_checkpoint() -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("sdxl-base-synthetic.safetensors");
    let (header, len) = sdxl_wgpu::checkpoint::manifest_header();
    let mut entries = serde_json::Map::new();
    for (name, info) in &header.tensors {
        entries.insert(
            name.clone(),
            serde_json::json!({"dtype": info.dtype.name(), "shape": info.shape, "data_offsets": [info.start, info.end]}),
        );
    }
    let mut json = serde_json::to_vec(&entries)?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let expected = 8 + json.len() as u64 + len as u64;
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == expected) {
        return Ok(path);
    }
    eprintln!(
        "writing {} ({:.2} GB) once...",
        path.display(),
        expected as f64 / 1e9
    );
    let mut data = vec![0u8; len];
    sdxl_wgpu::checkpoint::fill_synthetic(&header, &mut data);
    let mut out = BufWriter::with_capacity(1 << 22, File::create(&path)?);
    out.write_all(&(json.len() as u64).to_le_bytes())?;
    out.write_all(&json)?;
    out.write_all(&data)?;
    out.flush()?;
    Ok(path)
}

/// Samples this process's anonymous resident memory every few milliseconds.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    pub fn start() -> Self {
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

    pub fn stop(self) -> u64 {
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
