//! `sdxl-wgpu bench`: backends side by side on one machine, in one run. For each adapter x
//! precision x size: model load, text encode, the UNet step with CFG (steady state), what the
//! first run of each phase (text, UNet, VAE) costs beyond it (shader compilation and autotune,
//! with the kernels compiled and shapes tuned), VAE decode, a rank-32 LoRA swap, peak device
//! memory, images per minute and achieved TFLOP/s (from the detected architecture's FLOP
//! count). The table's header prints at once and each row as soon as it is measured (`--json`
//! is rewritten with the rows so far), `--compare` gives ratios against an earlier run,
//! `--plot` a bar chart of step times.

mod measure;
mod plot;
mod table;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::say;
use super::values::spelled;
use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::device::{self, Backend, Precision};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The checkpoint to time (a single file or a diffusers folder).
    #[arg(
        long,
        required_unless_present = "synthetic",
        conflicts_with = "synthetic"
    )]
    model: Option<PathBuf>,
    /// SDXL base 1.0's full-size architecture with generated weights held in memory (~7 GB of
    /// RAM, no file): real speed and memory, noise images.
    #[arg(long)]
    synthetic: bool,
    /// Graphics APIs to compare: `all` (each with an adapter), or a comma-separated list of
    /// auto, vulkan, metal, dx12, gl.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Precisions to compare, comma-separated (f16 is skipped on an adapter without it).
    #[arg(long, value_delimiter = ',', value_parser = spelled::<Precision>(), default_value = "auto")]
    precision: Vec<Precision>,
    /// Image sizes, comma-separated `WIDTHxHEIGHT` (multiples of 8).
    #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "1024x1024")]
    size: Vec<(usize, usize)>,
    /// Denoising steps of the timed run (each size first runs one cold step, which pays
    /// compilation and autotune).
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print each figure as a ratio to the matching row of an earlier `--json` file.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Draw the step time of each row as a bar chart into this SVG file (with `--compare`, the
    /// earlier run's bars beside them).
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// One adapter x precision x size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub adapter: String,
    pub api: String,
    /// The shading language kernels were compiled to (`WGSL`, `SPIR-V`, `MSL`).
    pub compiler: String,
    /// Cooperative-matrix (tensor-core) kernels were available.
    #[serde(default)]
    pub tensor_cores: bool,
    pub precision: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// The UNet's batch per step (2: classifier-free guidance).
    pub unet_batch: usize,
    pub load_s: f64,
    pub load_gb_per_s: f64,
    pub text_encode_s: f64,
    /// One UNet step with CFG, steady state (the second run).
    pub step_s: f64,
    /// Host time to record one step (building and submitting its kernels; the device runs the
    /// previous step meanwhile).
    pub step_record_s: f64,
    /// What the cold run's text encode, UNet step and VAE decode took beyond the steady
    /// state's: shader compilation and autotune.
    #[serde(default)]
    pub first_text_extra_s: f64,
    pub first_step_extra_s: f64,
    #[serde(default)]
    pub first_vae_extra_s: f64,
    /// Kernels compiled and shapes autotuned during the cold run (absent where not counted).
    #[serde(default)]
    pub cold_kernels_compiled: Option<u64>,
    #[serde(default)]
    pub cold_shapes_tuned: Option<u64>,
    pub vae_decode_s: f64,
    /// Reading, checking and uploading a synthetic rank-32 LoRA on every attention and
    /// feed-forward layer of the UNet.
    pub lora_swap_s: f64,
    /// The most the device's pools held during the runs (0 where the device does not say).
    pub peak_memory_bytes: u64,
    pub images_per_minute: f64,
    pub unet_flops_per_step: f64,
    pub tflops: f64,
}

impl Row {
    /// This row's counterpart in an earlier run: the same API, precision and size, on the same
    /// adapter and compiler if there is one.
    pub fn earlier<'a>(&self, earlier: &'a [Row]) -> Option<&'a Row> {
        let same = |o: &&Row| {
            o.api == self.api
                && o.precision == self.precision
                && (o.width, o.height) == (self.width, self.height)
        };
        let compiler =
            |o: &&Row| o.compiler == self.compiler && o.tensor_cores == self.tensor_cores;
        let adapter = |o: &&Row| o.adapter == self.adapter;
        let candidates = || earlier.iter().filter(same);
        candidates()
            .find(|o| adapter(o) && compiler(o))
            .or_else(|| candidates().find(adapter))
            .or_else(|| candidates().find(compiler))
            .or_else(|| candidates().next())
    }
}

/// What `--json` writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub sdxl_wgpu: String,
    pub model: String,
    pub rows: Vec<Row>,
}

/// `1024x768` -> (1024, 768).
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}`: expected WIDTHxHEIGHT, e.g. 1024x1024"))?;
    let side = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|v| *v >= 8 && v % 8 == 0 && *v <= sdxl_wgpu::pipeline::MAX_SIDE)
            .ok_or_else(|| format!("`{s}`: sides must be multiples of 8 from 8 to 8192"))
    };
    Ok((side(w)?, side(h)?))
}

/// The APIs `--backend` names.
fn backends(spec: &str) -> anyhow::Result<Vec<Backend>> {
    if spec == "all" {
        let all = [Backend::Vulkan, Backend::Metal, Backend::Dx12, Backend::Gl];
        let found: Vec<Backend> = all
            .into_iter()
            .filter(|b| !device::adapters(*b).is_empty())
            .collect();
        if found.is_empty() {
            bail!(device::DeviceError::NoAdapter);
        }
        return Ok(found);
    }
    let mut list = Vec::new();
    for name in spec.split(',') {
        let backend: Backend = name.trim().parse()?;
        if !list.contains(&backend) {
            list.push(backend);
        }
    }
    Ok(list)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.steps == 0 || args.steps > 1000 {
        bail!("--steps must be 1 to 1000");
    }
    let earlier = args.compare.as_deref().map(read_results).transpose()?;
    let backends = backends(&args.backend)?;
    let model = match &args.model {
        Some(path) => path.display().to_string(),
        None => "synthetic SDXL base 1.0".into(),
    };
    // the architecture, for the LoRA (and a bad --model fails before any device opens)
    let config = match &args.model {
        Some(path) => Checkpoint::open(path)?.config,
        None => Checkpoint::sdxl_base_manifest()?.config,
    };
    let lora = measure::SyntheticLora::write(&config)?;
    table::header()?;
    let mut results = Results {
        sdxl_wgpu: env!("CARGO_PKG_VERSION").into(),
        model,
        rows: Vec::new(),
    };
    for backend in backends {
        let gpu = super::gpu::open(backend)?;
        for &precision in &args.precision {
            let setup = measure::Setup {
                gpu: gpu.clone(),
                precision,
                sizes: &args.size,
                steps: args.steps,
                lora: &lora,
            };
            let mut done = |row: Row| {
                table::row(&row)?;
                results.rows.push(row);
                match &args.json {
                    Some(path) => write_results(path, &results),
                    None => Ok(()),
                }
            };
            if !measure::run(&setup, open(&args)?, &mut done)? {
                eprintln!(
                    "warning: {} has no f16 shaders: --precision f16 skipped",
                    gpu.adapter.name
                );
            }
        }
    }
    let rows = &results.rows;
    if let Some(earlier) = &earlier {
        table::compare(rows, &earlier.rows)?;
    }
    if let Some(path) = &args.plot {
        plot::write(path, rows, earlier.as_ref().map(|e| e.rows.as_slice()))
            .with_context(|| format!("drawing {}", path.display()))?;
        say!("step times drawn in {}", path.display())?;
    }
    if let Some(path) = &args.json {
        say!("results written to {}", path.display())?;
    }
    Ok(())
}

/// Rewrites `path` with the rows so far (a whole JSON document after every row).
fn write_results(path: &Path, results: &Results) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The checkpoint to time, opened afresh (each load owns its checkpoint).
fn open(args: &BenchArgs) -> anyhow::Result<Checkpoint> {
    Ok(match &args.model {
        Some(path) => Checkpoint::open(path)?,
        None => Checkpoint::sdxl_base_synthetic()?,
    })
}

/// An earlier run's `--json` file (read whole, at most 16 MiB).
fn read_results(path: &Path) -> anyhow::Result<Results> {
    let bytes = sdxl_wgpu::files::read_limited(path, 16 << 20)
        .with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a `bench --json` file", path.display()))
}
