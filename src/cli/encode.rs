//! `sdxl-wgpu encode MODEL --prompt TEXT`: the SDXL text conditioning of a prompt pair, on its
//! own: loads only the two text encoders, prints shapes and statistics, and with `--output`
//! writes the tensors (f32, diffusers' names) to compare with another backend or with diffusers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::say;
use super::values::spelled;

use super::gpu;
use super::tensor_file::{self, HostTensor};
use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::device::{Backend, Precision};
use sdxl_wgpu::text_encoder::{check_prompt_pair, TextOptions};
use sdxl_wgpu::tokenizer::Prompt;
use sdxl_wgpu::weights::WeightDtype;

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// A single-file `.safetensors` checkpoint or a diffusers model folder.
    model: PathBuf,
    /// The prompt (A1111 syntax: `(word:1.2)`, `[word]`, `BREAK`, `<lora:name:w>`).
    #[arg(long)]
    prompt: String,
    /// The negative prompt; empty gives SDXL's all-zero negative conditioning.
    #[arg(long, default_value = "")]
    negative: String,
    /// Layers to skip beyond SDXL's default penultimate one (diffusers' `clip_skip`; A1111's
    /// "Clip skip 2" is the default here, its "Clip skip 3" is `--clip-skip 1`).
    #[arg(long, default_value_t = 0)]
    clip_skip: usize,
    /// Compute precision.
    #[arg(long, value_parser = spelled::<Precision>(), default_value_t = Precision::Auto)]
    precision: Precision,
    /// Graphics API.
    #[arg(long, value_parser = spelled::<Backend>(), default_value_t = Backend::Auto)]
    backend: Backend,
    /// Write prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds and
    /// negative_pooled_prompt_embeds here (safetensors, f32).
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn run(args: EncodeArgs) -> anyhow::Result<()> {
    let (positive, negative) = (Prompt::new(&*args.prompt), Prompt::new(&*args.negative));
    check_prompt_pair(&positive, &negative)?;
    let (positive, negative) = (positive.parsed(), negative.parsed());
    for lora in positive.loras.iter().chain(&negative.loras) {
        eprintln!(
            "warning: <lora:{}:{}:{}> removed from the prompt; LoRAs are not applied by `encode`",
            lora.name, lora.text_encoder_weight, lora.unet_weight
        );
    }

    let checkpoint = Checkpoint::open(&args.model)?;
    let gpu = gpu::open(args.backend)?;
    let dtype = gpu::weight_dtype(&gpu, args.precision);
    let f16 = dtype == WeightDtype::F16;

    let start = Instant::now();
    let encoders = checkpoint.load_text_encoders(&gpu, dtype)?;
    gpu.device.sync().context("loading the text encoders")?;
    let load_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let options = TextOptions {
        clip_skip: args.clip_skip,
    };
    let conditioning = encoders.encode(positive, negative, options)?;
    let c = &conditioning;
    let tensors = [
        HostTensor::from_device("negative_prompt_embeds", c.context.clone().slice(0..1))?,
        HostTensor::from_device("prompt_embeds", c.context.clone().slice(1..2))?,
        HostTensor::from_device(
            "negative_pooled_prompt_embeds",
            c.pooled.clone().slice(0..1),
        )?,
        HostTensor::from_device("pooled_prompt_embeds", c.pooled.clone().slice(1..2))?,
    ];
    let encode_s = start.elapsed().as_secs_f64();

    say!(
        "adapter: {} ({}), {}",
        gpu.adapter.name,
        gpu.adapter.api,
        if f16 { "f16" } else { "f32" }
    )?;
    say!("chunks: {} (77 tokens each)", conditioning.chunks)?;
    for HostTensor {
        name,
        shape,
        values,
    } in &tensors
    {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        say!(
            "{name:<30} {shape:?}  mean {mean:+.5}  std {:.5}",
            var.sqrt()
        )?;
    }
    say!("load {load_s:.2} s, encode {:.1} ms", encode_s * 1e3)?;

    if let Some(path) = &args.output {
        let metadata = HashMap::from([
            ("prompt".to_string(), args.prompt.clone()),
            ("negative_prompt".to_string(), args.negative.clone()),
            ("clip_skip".to_string(), args.clip_skip.to_string()),
        ]);
        tensor_file::write(path, &tensors, metadata)?;
        say!("wrote {}", path.display())?;
    }
    Ok(())
}
