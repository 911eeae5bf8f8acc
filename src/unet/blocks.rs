//! The UNet's down, mid and up blocks: resnets, optional spatial transformers, and the
//! strided-conv down / nearest-upsample-conv up samplers.
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/models/unets/unet_2d_blocks.py>)

use burn::module::Module;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use super::{Transformer2d, UnetConfig, RESNET_EPS};
use crate::checkpoint::{CheckpointError, ComponentWeights};
use crate::lora::Adapt;
use crate::nn::{Conv2d, ResnetBlock};

#[derive(Module, Debug)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock>,
    /// Empty for a level without attention (DownBlock2D).
    pub attentions: Vec<Transformer2d>,
    /// `downsamplers.0.conv`, absent on the deepest level.
    pub downsampler: Option<Conv2d>,
}

impl DownBlock {
    pub fn load(
        cfg: &UnetConfig,
        w: &mut ComponentWeights,
        level: usize,
    ) -> Result<Self, CheckpointError> {
        let name = format!("down_blocks.{level}");
        let (depth, width) = (cfg.transformer_depth[level], cfg.block_out_channels[level]);
        let (resnets, attentions) =
            level_layers(cfg, w, &name, cfg.layers_per_block, depth, width)?;
        Ok(DownBlock {
            resnets,
            attentions,
            downsampler: (level + 1 < cfg.levels())
                .then(|| Conv2d::load(w, &format!("{name}.downsamplers.0.conv"), 2))
                .transpose()?,
        })
    }

    /// Resnets (each followed by its transformer where the level has them), then the strided
    /// conv; every output is pushed to `skips` for the up path.
    pub fn forward(
        &self,
        mut h: Tensor<4>,
        emb: &Tensor<2>,
        context: &Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
        ad: Adapt,
    ) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(h, Some(emb), ad);
            if let Some(attn) = self.attentions.get(j) {
                h = attn.forward(h, context, ad);
            }
            skips.push(h.clone());
        }
        if let Some(down) = &self.downsampler {
            h = down.forward_with(h, ad);
            skips.push(h.clone());
        }
        h
    }
}

/// The `count` resnets of a level `name` and, where `depth` > 0, one transformer after each.
fn level_layers(
    cfg: &UnetConfig,
    w: &mut ComponentWeights,
    name: &str,
    count: usize,
    depth: usize,
    width: usize,
) -> Result<(Vec<ResnetBlock>, Vec<Transformer2d>), CheckpointError> {
    let resnets = (0..count)
        .map(|j| {
            let resnet = format!("{name}.resnets.{j}");
            ResnetBlock::load(w, &resnet, cfg.norm_groups, RESNET_EPS)
        })
        .collect::<Result<_, _>>()?;
    let attentions = (0..if depth > 0 { count } else { 0 })
        .map(|j| {
            let attn = format!("{name}.attentions.{j}");
            Transformer2d::load(w, &attn, depth, cfg.norm_groups, cfg.heads(width))
        })
        .collect::<Result<_, _>>()?;
    Ok((resnets, attentions))
}

#[derive(Module, Debug)]
pub struct MidBlock {
    /// Two resnets around the attention.
    pub resnets: Vec<ResnetBlock>,
    pub attention: Transformer2d,
}

impl MidBlock {
    pub fn load(cfg: &UnetConfig, w: &mut ComponentWeights) -> Result<Self, CheckpointError> {
        let width = cfg.block_out_channels[cfg.levels() - 1];
        Ok(MidBlock {
            resnets: (0..2)
                .map(|k| {
                    let resnet = format!("mid_block.resnets.{k}");
                    ResnetBlock::load(w, &resnet, cfg.norm_groups, RESNET_EPS)
                })
                .collect::<Result<_, _>>()?,
            attention: Transformer2d::load(
                w,
                "mid_block.attentions.0",
                cfg.mid_transformer_depth,
                cfg.norm_groups,
                cfg.heads(width),
            )?,
        })
    }

    pub fn forward(
        &self,
        h: Tensor<4>,
        emb: &Tensor<2>,
        context: &Tensor<3>,
        ad: Adapt,
    ) -> Tensor<4> {
        let h = self.resnets[0].forward(h, Some(emb), ad);
        let h = self.attention.forward(h, context, ad);
        self.resnets[1].forward(h, Some(emb), ad)
    }
}

#[derive(Module, Debug)]
pub struct UpBlock {
    pub resnets: Vec<ResnetBlock>,
    pub attentions: Vec<Transformer2d>,
    /// `upsamplers.0.conv`, absent on the last (full-resolution) level.
    pub upsampler: Option<Conv2d>,
}

impl UpBlock {
    pub fn load(
        cfg: &UnetConfig,
        w: &mut ComponentWeights,
        level: usize,
    ) -> Result<Self, CheckpointError> {
        let name = format!("up_blocks.{level}");
        let (depth, width) = (cfg.transformer_depth_up[level], cfg.up_channels(level));
        let count = cfg.layers_per_block + 1;
        let (resnets, attentions) = level_layers(cfg, w, &name, count, depth, width)?;
        Ok(UpBlock {
            resnets,
            attentions,
            upsampler: (level + 1 < cfg.levels())
                .then(|| Conv2d::load(w, &format!("{name}.upsamplers.0.conv"), 1))
                .transpose()?,
        })
    }

    /// Each resnet reads `h` concatenated with the latest skip; the upsampler doubles the size,
    /// or matches the next skip's size when the latent size is not a multiple of the total
    /// downsampling (diffusers' `upsample_size`).
    pub fn forward(
        &self,
        mut h: Tensor<4>,
        emb: &Tensor<2>,
        context: &Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
        ad: Adapt,
    ) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip per up resnet");
            h = resnet.forward(Tensor::cat(vec![h, skip], 1), Some(emb), ad); // [B, C + C_skip, H, W] in
            if let Some(attn) = self.attentions.get(j) {
                h = attn.forward(h, context, ad);
            }
        }
        if let Some(up) = &self.upsampler {
            let [_, _, height, width] = h.dims();
            let size = skips
                .last()
                .map(|s| [s.dims()[2], s.dims()[3]])
                .unwrap_or([height * 2, width * 2]);
            let options = InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size);
            h = up.forward_with(interpolate(h, options), ad);
        }
        h
    }
}
