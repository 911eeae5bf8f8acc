//! `sdxl-wgpu decode MODEL --latents FILE.safetensors --output IMAGE.png`: latents to an image
//! with the checkpoint's VAE (loaded alone), tiled where the adapter needs it. For latents saved
//! by another tool or backend (diffusers' latents, `--dump`'s `final_latents`).

use std::path::{Path, PathBuf};

use super::{gpu, images};
use std::time::Instant;

use anyhow::{bail, Context};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use safetensors::{Dtype, SafeTensors};

use sdxl_wgpu::checkpoint::{Checkpoint, WeightDtype};
use sdxl_wgpu::device::Backend;
use sdxl_wgpu::vae::{VaeLimits, VaePrecision, VaeTiling};

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// A single-file `.safetensors` checkpoint or a diffusers model folder.
    model: PathBuf,
    /// A safetensors file holding the latents, `[B, 4, h, w]` or `[4, h, w]`, f32/f16/bf16.
    #[arg(long)]
    latents: PathBuf,
    /// The tensor to read; default: `final_latents`, `latents`, or the file's only tensor.
    #[arg(long)]
    name: Option<String>,
    /// The latents are already divided by the VAE scaling factor (diffusers' `vae.decode`
    /// input); by default they are sampler output and get divided here.
    #[arg(long)]
    unscaled: bool,
    /// Output PNG; batch item i > 0 is written with `-i` before the extension.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value_t = VaeTiling::Auto)]
    vae_tiling: VaeTiling,
    #[arg(long, value_enum, default_value_t = VaePrecision::F32)]
    vae_precision: VaePrecision,
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
}

pub fn run(args: DecodeArgs) -> anyhow::Result<()> {
    let (shape, mut values) = read_latents(&args.latents, args.name.as_deref())?;
    let checkpoint = Checkpoint::open(&args.model)?;
    let cfg = &checkpoint.config.vae;
    if shape[1] != cfg.latent_channels {
        bail!(
            "{}: latents have {} channels, this VAE takes {}",
            args.latents.display(),
            shape[1],
            cfg.latent_channels
        );
    }
    if !args.unscaled {
        let scale = cfg.scaling_factor as f32;
        values.iter_mut().for_each(|v| *v /= scale);
    }
    let gpu = gpu::open(args.backend)?;
    let vae = checkpoint.load_vae(&gpu, WeightDtype::AsStored)?;
    let z: Tensor<4> = Tensor::from_data(TensorData::new(values, shape), &gpu.device);
    let limits = VaeLimits::for_adapter(gpu.adapter.max_tensor_bytes());
    let start = Instant::now();
    let (image, plan) =
        vae.decode_tiled(cfg, z, args.vae_precision.dtype(), args.vae_tiling, &limits)?;
    let [b, _, h, w] = image.dims();
    println!(
        "decoded {b} x {w}x{h} in {:.2} s ({}, {:?})",
        start.elapsed().as_secs_f64(),
        match plan {
            Some(p) => format!("tiled: {}-latent tiles, {} overlap", p.tile, p.overlap),
            None => "untiled".to_string(),
        },
        args.vae_precision
    );
    for path in images::save(image, &args.output)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The latents tensor as `[B, C, h, w]` and f32 values.
fn read_latents(path: &Path, name: Option<&str>) -> anyhow::Result<([usize; 4], Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let names = file.names();
    let name = match name {
        Some(n) => n.to_string(),
        None => ["final_latents", "latents"]
            .into_iter()
            .find(|n| names.iter().any(|m| m == n))
            .map(str::to_string)
            .or_else(|| (names.len() == 1).then(|| names[0].to_string()))
            .with_context(|| {
                format!(
                    "{}: name the latents with --name (tensors: {names:?})",
                    path.display()
                )
            })?,
    };
    let t = file
        .tensor(&name)
        .with_context(|| format!("{}: no tensor `{name}`", path.display()))?;
    let shape: [usize; 4] = match *t.shape() {
        [b, c, h, w] => [b, c, h, w],
        [c, h, w] => [1, c, h, w],
        ref s => bail!(
            "{}: `{name}` has shape {s:?}, not [B, 4, h, w]",
            path.display()
        ),
    };
    let data = t.data();
    let values: Vec<f32> = match t.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => bail!(
            "{}: `{name}` is {other:?}; latents must be f32, f16 or bf16",
            path.display()
        ),
    };
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        bail!(
            "{}: `{name}` holds a non-finite value ({bad})",
            path.display()
        );
    }
    Ok((shape, values))
}
