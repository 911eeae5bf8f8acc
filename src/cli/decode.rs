//! `sdxl-wgpu decode MODEL --latents FILE.safetensors --output IMAGE.png`: latents to an image
//! with the checkpoint's VAE (loaded alone), tiled where the adapter needs it. For latents saved
//! by another tool or backend (diffusers' latents, `--dump`'s `final_latents`).

use std::path::PathBuf;

use super::say;
use super::{gpu, tensor_file};
use std::time::Instant;

use anyhow::bail;
use burn::tensor::{Tensor, TensorData};
use clap::Args;

use super::values::spelled;

use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::device::Backend;
use sdxl_wgpu::image_io;
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
    /// Output image (.png, .jpg, .jpeg, .webp); batch item i > 0 is written with `-i` before the
    /// extension.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, value_parser = spelled::<VaeTiling>(), default_value_t = VaeTiling::Auto)]
    vae_tiling: VaeTiling,
    #[arg(long, value_parser = spelled::<VaePrecision>(), default_value_t = VaePrecision::F32)]
    vae_precision: VaePrecision,
    #[arg(long, value_parser = spelled::<Backend>(), default_value_t = Backend::Auto)]
    backend: Backend,
}

pub fn run(args: DecodeArgs) -> anyhow::Result<()> {
    image_io::OutputFormat::of(&args.output)?;
    let (shape, mut values) = tensor_file::read_4d(
        &args.latents,
        args.name.as_deref(),
        &["final_latents", "latents"],
    )?;
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
    let vae = checkpoint.load_vae(&gpu, args.vae_precision)?;
    let z: Tensor<4> = Tensor::from_data(TensorData::new(values, shape), &gpu.device);
    let limits = VaeLimits::for_adapter(gpu.adapter.max_tensor_bytes());
    let start = Instant::now();
    let (image, plan) =
        vae.decode_tiled(cfg, z, args.vae_precision.dtype(), args.vae_tiling, &limits)?;
    let [b, _, h, w] = image.dims();
    say!(
        "decoded {b} x {w}x{h} in {:.2} s ({}, {:?})",
        start.elapsed().as_secs_f64(),
        match plan {
            Some(p) => format!("tiled: {}-latent tiles, {} overlap", p.tile, p.overlap),
            None => "untiled".to_string(),
        },
        args.vae_precision
    )?;
    for (i, rgb) in image_io::to_rgb(image)?.iter().enumerate() {
        let path = image_io::numbered(&args.output, i);
        image_io::save(rgb, &path, None)?;
        say!("wrote {}", path.display())?;
    }
    Ok(())
}
