//! `sdxl-wgpu inspect PATH`: what a checkpoint is (LoRA files: see `inspect_lora.rs`; upscaler
//! models: their network, scale and channels), from its headers alone (well under a second
//! on a 7 GB file); `--scan` reads every tensor for NaN/Inf, `--load` uploads it to the GPU.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::say;
use super::values::spelled;
use serde::Serialize;

use sdxl_wgpu::checkpoint::{
    Checkpoint, Component, ComponentStats, Layout, LoadReport, ModelConfig, NonFinite, Variant,
};
use sdxl_wgpu::device::{self, Backend};
use sdxl_wgpu::pipeline::default_cfg_rescale;
use sdxl_wgpu::policy::PolicyName;
use sdxl_wgpu::upscaler::UpscalerInfo;
use sdxl_wgpu::weights::WeightDtype;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A single-file `.safetensors` checkpoint, a diffusers model folder, a LoRA file, or an
    /// upscaler model (`.pth` or `.safetensors`).
    path: PathBuf,
    /// LoRA files: the checkpoint to check it against (a compatibility verdict).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Read every tensor and list those holding NaN or infinite values.
    #[arg(long)]
    scan: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also upload every component to the GPU and report the time and device memory it took.
    #[arg(long)]
    load: bool,
    /// Graphics API for --load.
    #[arg(long, value_parser = spelled::<Backend>(), default_value_t = Backend::Auto)]
    backend: Backend,
}

#[derive(Serialize)]
struct Inspection<'a> {
    path: PathBuf,
    layout: Layout,
    files: Vec<PathBuf>,
    verdict: String,
    variant: Variant,
    /// How `generate` runs it by default: schedule, guidance rescale, quality policy.
    sampling: Sampling,
    metadata: BTreeMap<String, String>,
    config: &'a ModelConfig,
    components: Vec<ComponentStats>,
    report: &'a LoadReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    non_finite: Option<Vec<NonFinite>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load: Option<LoadFigures>,
}

#[derive(Serialize)]
struct Sampling {
    schedule: &'static str,
    cfg_rescale: f32,
    policy: PolicyName,
    policy_reason: &'static str,
}

impl Sampling {
    fn of(variant: &Variant) -> Self {
        let (policy, policy_reason) = PolicyName::for_model(variant.prediction);
        let ztsnr = variant.zero_terminal_snr;
        Sampling {
            schedule: if ztsnr {
                "zero terminal SNR (rescaled betas, trailing timesteps)"
            } else {
                "SDXL (scaled linear betas, leading timesteps)"
            },
            cfg_rescale: default_cfg_rescale(variant.prediction, ztsnr),
            policy,
            policy_reason,
        }
    }
}

#[derive(Serialize)]
struct LoadFigures {
    adapter: String,
    seconds: f64,
    bytes: u64,
    device_bytes_in_use: Option<u64>,
    device_bytes_reserved: Option<u64>,
}

/// What an upscaler file holds: every `.pth` is read as one (a checkpoint never is one), a
/// `.safetensors` when its keys are an upscaler's.
fn upscaler(path: &std::path::Path) -> anyhow::Result<Option<UpscalerInfo>> {
    if path.extension().is_some_and(|e| e == "pth") {
        return Ok(Some(sdxl_wgpu::upscaler::inspect(path)?));
    }
    if path.is_dir() {
        return Ok(None);
    }
    Ok(sdxl_wgpu::upscaler::inspect(path).ok())
}

fn show_upscaler(path: &std::path::Path, info: &UpscalerInfo, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        let value =
            serde_json::json!({"path": path, "upscaler": info, "describe": info.describe()});
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        writeln!(out, "{}: upscaler model", path.display())?;
        writeln!(out, "  architecture: {}", info.describe())?;
        writeln!(out, "  scale: {}x", info.scale)?;
        writeln!(
            out,
            "  channels: {} in, {} out",
            info.in_channels, info.out_channels
        )?;
    }
    Ok(())
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    if super::inspect_lora::is_lora(&args.path) {
        return super::inspect_lora::run(&args.path, args.model.as_deref(), args.json);
    }
    if let Some(info) = upscaler(&args.path)? {
        return show_upscaler(&args.path, &info, args.json);
    }
    if args.model.is_some() {
        anyhow::bail!("--model is for inspecting a LoRA file against a checkpoint");
    }
    let checkpoint = Checkpoint::open(&args.path)?;
    let stats = checkpoint.stats();
    let non_finite = args.scan.then(|| checkpoint.scan_non_finite());
    let load = if args.load && checkpoint.ensure_complete().is_ok() {
        Some(load_all(&checkpoint, args.backend)?)
    } else {
        None
    };
    let inspection = Inspection {
        path: args.path.clone(),
        layout: checkpoint.layout(),
        files: checkpoint.files(),
        verdict: checkpoint.variant.to_string(),
        variant: checkpoint.variant,
        sampling: Sampling::of(&checkpoint.variant),
        metadata: checkpoint
            .metadata()
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("modelspec.")
                    || k.starts_with("ss_base_model")
                    || k.starts_with("sdxl_wgpu.")
            })
            .collect(),
        config: &checkpoint.config,
        components: stats,
        report: checkpoint.report(),
        non_finite,
        load,
    };
    if args.json {
        say!("{}", serde_json::to_string_pretty(&inspection)?)?;
    } else {
        print_text(&inspection)?;
    }
    checkpoint.ensure_complete()?;
    Ok(())
}

fn load_all(checkpoint: &Checkpoint, backend: Backend) -> anyhow::Result<LoadFigures> {
    let gpu = super::gpu::open(backend)?;
    let start = Instant::now();
    let models = checkpoint.load(&gpu, WeightDtype::AsStored)?;
    gpu.device
        .sync()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("device failed while loading")?;
    let seconds = start.elapsed().as_secs_f64();
    let usage = device::memory_in_use(&gpu.device);
    drop(models);
    Ok(LoadFigures {
        adapter: format!("{} ({})", gpu.adapter.name, gpu.adapter.api),
        seconds,
        bytes: checkpoint
            .files()
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum(),
        device_bytes_in_use: usage.map(|u| u.0),
        device_bytes_reserved: usage.map(|u| u.1),
    })
}

fn millions(n: usize) -> String {
    format!("{:.2} M", n as f64 / 1e6)
}

fn joined(values: &[usize]) -> String {
    values
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("/")
}

fn print_text(i: &Inspection) -> std::io::Result<()> {
    print_header(i)?;
    say!()?;
    for s in &i.components {
        print_component(s, i.config)?;
    }
    say!()?;
    print_report(i.report)?;
    if let Some(found) = &i.non_finite {
        if found.is_empty() {
            say!("  scan       every float tensor is finite")?;
        }
        for t in found {
            say!("  scan       {}: {} NaN, {} Inf", t.key, t.nan, t.inf)?;
        }
    }
    if let Some(l) = &i.load {
        say!(
            "  load       {:.2} s onto {} ({:.2} GB/s), device memory in use {} MiB, reserved {} MiB",
            l.seconds,
            l.adapter,
            l.bytes as f64 / l.seconds / 1e9,
            l.device_bytes_in_use.unwrap_or(0) >> 20,
            l.device_bytes_reserved.unwrap_or(0) >> 20
        )?;
    }
    Ok(())
}

/// Path, layout, verdict, how sampling runs it, and metadata.
fn print_header(i: &Inspection) -> std::io::Result<()> {
    say!("{}", i.path.display())?;
    let layout = match i.layout {
        Layout::SingleFile => "single file (SGM/LDM keys)",
        Layout::Diffusers => "diffusers folder",
    };
    say!("  layout     {layout}")?;
    say!("  verdict    {}", i.verdict)?;
    let s = &i.sampling;
    say!("  schedule   {}", s.schedule)?;
    if s.cfg_rescale > 0.0 {
        say!("  cfg rescale {} by default (--cfg-rescale)", s.cfg_rescale)?;
    }
    say!(
        "  policy     {} ({}; --policy overrides)",
        s.policy,
        s.policy_reason
    )?;
    for (k, v) in &i.metadata {
        say!("  metadata   {k} = {v}")?;
    }
    Ok(())
}

/// One component: parameters per dtype and its detected architecture.
fn print_component(s: &ComponentStats, config: &ModelConfig) -> std::io::Result<()> {
    let dtypes: Vec<String> = s
        .dtypes
        .iter()
        .map(|(d, n)| format!("{d} {}", millions(*n)))
        .collect();
    say!(
        "  {:<28} {:>10} parameters ({})",
        s.component.describe(),
        millions(s.parameters),
        dtypes.join(", ")
    )?;
    let (u, v) = (&config.unet, &config.vae);
    let detail = match s.component {
        Component::Unet => format!(
            "levels {}, {} resnets per level, transformer depth {} (mid {}, up {}), heads {} wide, \
             context {}, time embedding {}, text_time input {} ({} pooled + 6 x {}), channels in/out {}/{}",
            joined(&u.block_out_channels), u.layers_per_block, joined(&u.transformer_depth),
            u.mid_transformer_depth, joined(&u.transformer_depth_up), u.head_dim, u.context_dim,
            u.time_embed_dim, u.addition_embed_dim, u.addition_embed_dim - 6 * u.addition_time_embed_dim,
            u.addition_time_embed_dim, u.in_channels, u.out_channels
        ),
        Component::TextEncoder | Component::TextEncoder2 => {
            let c = match s.component {
                Component::TextEncoder => &config.text_encoder,
                _ => &config.text_encoder_2,
            };
            format!(
                "width {}, {} layers, {} heads, MLP {}, vocabulary {}, {} positions, {:?}{}",
                c.width, c.layers, c.heads, c.intermediate, c.vocab_size, c.max_positions, c.activation,
                c.projection.map(|p| format!(", projection {p}")).unwrap_or_default()
            )
        }
        Component::Vae => format!(
            "levels {}, {} resnets per level, latent channels {}, scaling factor {}",
            joined(&v.block_out_channels), v.layers_per_block, v.latent_channels, v.scaling_factor
        ),
    };
    say!("      {detail}")?;
    Ok(())
}

/// What loading does with each tensor: counts, then the first few of each problem.
fn print_report(r: &LoadReport) -> std::io::Result<()> {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &r.transformed {
        *kinds.entry(t.transform.name()).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    say!(
        "  tensors    {} applied ({} transformed{}{}), {} ignored, {} unused, {} missing, {} mismatched",
        r.applied,
        r.transformed.len(),
        if kinds.is_empty() { "" } else { ": " },
        kinds.join(", "),
        r.ignored.len(),
        r.unused.len(),
        r.missing.len(),
        r.mismatched.len()
    )?;
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &r.ignored {
        *reasons.entry(t.reason).or_default() += 1;
    }
    for (reason, n) in reasons {
        say!("    ignored  {n} x {reason}")?;
    }
    for key in r.unused.iter().take(10) {
        say!("    unused   {key}")?;
    }
    for m in r.missing.iter().take(10) {
        say!(
            "    missing  {} ({} {})",
            m.key,
            m.component.name(),
            m.canonical
        )?;
    }
    for m in r.mismatched.iter().take(10) {
        say!(
            "    mismatch {} is {} {:?}, expected {:?}",
            m.key,
            m.dtype,
            m.found,
            m.expected
        )?;
    }
    Ok(())
}
