//! SDXL's VAE with the structure of diffusers' `AutoencoderKL`
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/models/autoencoders/vae.py>).
//! Canonical names: `encoder.down_blocks.{i}.resnets.{j}...`, `encoder.mid_block.attentions.0.to_q`,
//! `quant_conv`, `post_quant_conv`, `decoder.up_blocks.{i}...`.

mod blend;
mod error;
mod plan;
mod tiled;

pub use error::VaeError;
pub use plan::{
    decode_peak_bytes, encode_peak_bytes, TilePlan, VaeLimits, VaeTiling, DEFAULT_MEMORY_BUDGET,
    TILE_LATENTS, WORKING_SET_FACTOR,
};

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{FloatDType, Tensor};

use crate::nn::attention::{attention, AttentionKernel};
use crate::nn::{Adapt, Conv2d, GroupNorm, Linear, ResnetBlock};
use crate::weights::{WeightDtype, WeightError, Weights};

/// The VAE's architecture as detected from its tensors (SDXL values in the comments).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VaeConfig {
    /// Image channels (3).
    pub in_channels: usize,
    /// Latent channels (4).
    pub latent_channels: usize,
    /// Width of each encoder level (128, 256, 512, 512); the decoder mirrors them.
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder level (2); decoder levels have one more.
    pub layers_per_block: usize,
    /// GroupNorm groups (32), a constant of the architecture.
    pub norm_groups: usize,
    /// Latents are multiplied by this after encoding (SDXL: 0.13025; not stored in files).
    pub scaling_factor: f64,
}

/// The precision the VAE computes in (`--vae-precision`): f32 by default, because SDXL's VAE
/// overflows in f16 (black or speckled images) unless it is the fp16-fix VAE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaePrecision {
    #[default]
    F32,
    F16,
}

crate::spelled! {
    VaePrecision, "VAE precision",
    (VaePrecision::F32, "f32", ""),
    (VaePrecision::F16, "f16", ""),
}

impl VaePrecision {
    pub fn dtype(self) -> FloatDType {
        match self {
            VaePrecision::F32 => FloatDType::F32,
            VaePrecision::F16 => FloatDType::F16,
        }
    }

    /// The dtype to upload the VAE's weights in so that decoding in this precision casts none
    /// of them (a decode in the other precision casts each weight as it uses it).
    pub fn weights(self) -> WeightDtype {
        match self {
            VaePrecision::F32 => WeightDtype::F32,
            VaePrecision::F16 => WeightDtype::F16,
        }
    }
}

/// SDXL's latent scaling factor (SD 1.x used 0.18215).
pub const SDXL_SCALING_FACTOR: f64 = 0.13025;
/// GroupNorm epsilon throughout the VAE.
pub const VAE_NORM_EPS: f64 = 1e-6;

impl VaeConfig {
    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Output width of decoder level `level` (levels counted from the latent side).
    pub fn decoder_channels(&self, level: usize) -> usize {
        self.block_out_channels[self.levels() - 1 - level]
    }
}

#[derive(Module, Debug)]
pub struct AutoencoderKl {
    pub encoder: Encoder,
    pub quant_conv: Conv2d,
    pub post_quant_conv: Conv2d,
    pub decoder: Decoder,
}

impl AutoencoderKl {
    pub fn load(cfg: &VaeConfig, w: &mut Weights) -> Result<Self, WeightError> {
        Ok(AutoencoderKl {
            encoder: Encoder::load(cfg, w)?,
            quant_conv: Conv2d::load(w, "quant_conv", 1)?,
            post_quant_conv: Conv2d::load(w, "post_quant_conv", 1)?,
            decoder: Decoder::load(cfg, w)?,
        })
    }

    /// Latents (unscaled: divide sampler latents by the scaling factor first) `[B, 4, h, w]` ->
    /// image `[B, 3, 8h, 8w]` in about [-1, 1], computed in `dtype`, returned as f32.
    pub fn decode(&self, z: Tensor<4>, dtype: FloatDType) -> Tensor<4> {
        let z = self.post_quant_conv.forward(z.cast(dtype));
        self.decoder.forward(z).cast(FloatDType::F32)
    }

    /// Image `[B, 3, H, W]` in [-1, 1] -> the latent distribution, computed in `dtype`.
    pub fn encode(&self, x: Tensor<4>, dtype: FloatDType) -> LatentDistribution {
        let moments = self.quant_conv.forward(self.encoder.forward(x.cast(dtype)));
        let moments = moments.cast(FloatDType::F32); // [B, 2 * latent, h, w]
        let [b, c, h, w] = moments.dims();
        let half = c / 2;
        LatentDistribution {
            mean: moments.clone().slice([0..b, 0..half, 0..h, 0..w]),
            logvar: moments
                .slice([0..b, half..c, 0..h, 0..w])
                .clamp(-30.0, 20.0),
        }
    }
}

/// diffusers' `DiagonalGaussianDistribution`: what the encoder predicts for each latent.
#[derive(Clone, Debug)]
pub struct LatentDistribution {
    /// `[B, 4, h, w]` f32: img2img starts from this (not a sample).
    pub mean: Tensor<4>,
    /// `[B, 4, h, w]` f32, clamped to [-30, 20] as diffusers does.
    pub logvar: Tensor<4>,
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<SampleBlock>,
    pub mid_block: VaeMidBlock,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Encoder {
    fn load(cfg: &VaeConfig, w: &mut Weights) -> Result<Self, WeightError> {
        Ok(Encoder {
            conv_in: Conv2d::load(w, "encoder.conv_in", 1)?,
            down_blocks: (0..cfg.levels())
                .map(|i| {
                    let sampler = (i + 1 < cfg.levels()).then_some(("downsamplers", 2));
                    let block = format!("encoder.down_blocks.{i}");
                    SampleBlock::load(cfg, w, &block, cfg.layers_per_block, sampler)
                })
                .collect::<Result<_, _>>()?,
            mid_block: VaeMidBlock::load(cfg, w, "encoder.mid_block")?,
            conv_norm_out: GroupNorm::load(
                w,
                "encoder.conv_norm_out",
                cfg.norm_groups,
                VAE_NORM_EPS,
            )?,
            conv_out: Conv2d::load(w, "encoder.conv_out", 1)?,
        })
    }

    /// `[B, 3, H, W]` -> `[B, 2 * latent, H/8, W/8]` (mean and logvar).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = self.conv_in.forward(x);
        for block in &self.down_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h, None, Adapt::NONE);
            }
            if let Some(down) = &block.sampler {
                // diffusers pads right and bottom by one, then convolves without padding
                h = down.forward_padded(h, [(0, 1), (0, 1)]);
            }
        }
        let h = self.mid_block.forward(h);
        self.conv_out.forward(silu(self.conv_norm_out.forward(h)))
    }
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: VaeMidBlock,
    pub up_blocks: Vec<SampleBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Decoder {
    fn load(cfg: &VaeConfig, w: &mut Weights) -> Result<Self, WeightError> {
        Ok(Decoder {
            conv_in: Conv2d::load(w, "decoder.conv_in", 1)?,
            mid_block: VaeMidBlock::load(cfg, w, "decoder.mid_block")?,
            up_blocks: (0..cfg.levels())
                .map(|i| {
                    let sampler = (i + 1 < cfg.levels()).then_some(("upsamplers", 1));
                    let block = format!("decoder.up_blocks.{i}");
                    SampleBlock::load(cfg, w, &block, cfg.layers_per_block + 1, sampler)
                })
                .collect::<Result<_, _>>()?,
            conv_norm_out: GroupNorm::load(
                w,
                "decoder.conv_norm_out",
                cfg.norm_groups,
                VAE_NORM_EPS,
            )?,
            conv_out: Conv2d::load(w, "decoder.conv_out", 1)?,
        })
    }

    /// `[B, latent, h, w]` (after `post_quant_conv`) -> `[B, 3, 8h, 8w]`.
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut h = self.mid_block.forward(self.conv_in.forward(z));
        for block in &self.up_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h, None, Adapt::NONE);
            }
            if let Some(up) = &block.sampler {
                let options =
                    InterpolateOptions::new(InterpolateMode::Nearest).with_scale_factor([2.0, 2.0]);
                h = up.forward(interpolate(h, options));
            }
        }
        self.conv_out.forward(silu(self.conv_norm_out.forward(h)))
    }
}

/// An encoder down level or a decoder up level: resnets, then a down- or up-sampling conv.
#[derive(Module, Debug)]
pub struct SampleBlock {
    pub resnets: Vec<ResnetBlock>,
    pub sampler: Option<Conv2d>,
}

impl SampleBlock {
    fn load(
        cfg: &VaeConfig,
        w: &mut Weights,
        name: &str,
        resnets: usize,
        sampler: Option<(&str, usize)>,
    ) -> Result<Self, WeightError> {
        Ok(SampleBlock {
            resnets: (0..resnets)
                .map(|j| {
                    ResnetBlock::load(
                        w,
                        &format!("{name}.resnets.{j}"),
                        cfg.norm_groups,
                        VAE_NORM_EPS,
                    )
                })
                .collect::<Result<_, _>>()?,
            sampler: sampler
                .map(|(kind, stride)| Conv2d::load(w, &format!("{name}.{kind}.0.conv"), stride))
                .transpose()?,
        })
    }
}

#[derive(Module, Debug)]
pub struct VaeMidBlock {
    pub resnets: Vec<ResnetBlock>,
    pub attention: VaeAttention,
}

impl VaeMidBlock {
    fn load(cfg: &VaeConfig, w: &mut Weights, name: &str) -> Result<Self, WeightError> {
        let attn = format!("{name}.attentions.0");
        Ok(VaeMidBlock {
            resnets: (0..2)
                .map(|k| {
                    ResnetBlock::load(
                        w,
                        &format!("{name}.resnets.{k}"),
                        cfg.norm_groups,
                        VAE_NORM_EPS,
                    )
                })
                .collect::<Result<_, _>>()?,
            attention: VaeAttention {
                group_norm: GroupNorm::load(
                    w,
                    &format!("{attn}.group_norm"),
                    cfg.norm_groups,
                    VAE_NORM_EPS,
                )?,
                to_q: Linear::load(w, &format!("{attn}.to_q"))?,
                to_k: Linear::load(w, &format!("{attn}.to_k"))?,
                to_v: Linear::load(w, &format!("{attn}.to_v"))?,
                to_out: Linear::load(w, &format!("{attn}.to_out.0"))?,
                kernel: w.attention_kernel(),
            },
        })
    }

    fn forward(&self, h: Tensor<4>) -> Tensor<4> {
        let h = self.resnets[0].forward(h, None, Adapt::NONE);
        let h = self.attention.forward(h);
        self.resnets[1].forward(h, None, Adapt::NONE)
    }
}

/// Single-head self-attention over the pixels of the lowest-resolution feature map.
#[derive(Module, Debug)]
pub struct VaeAttention {
    pub group_norm: GroupNorm,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    /// The device's way to run attention, chosen at load.
    #[module(skip)]
    pub kernel: AttentionKernel,
}

impl VaeAttention {
    /// One head as wide as the channels, over all pixels, residual. `[B, C, H, W]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let t = self
            .group_norm
            .forward(x.clone())
            .reshape([b, c, h * w])
            .swap_dims(1, 2); // [B, H*W, C]
        let heads = |t: Tensor<3>| t.unsqueeze_dim::<4>(1); // [B, 1, H*W, C]
        let q = heads(self.to_q.forward(t.clone()));
        let k = heads(self.to_k.forward(t.clone()));
        let v = heads(self.to_v.forward(t));
        let out = attention(q, k, v, false, self.kernel).squeeze_dim::<3>(1); // [B, H*W, C]
        let out = self
            .to_out
            .forward(out)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]); // [B, C, H, W]
        out + x
    }
}
