//! The UNet's down, mid and up blocks: resnets, optional spatial transformers, and the
//! strided-conv down / nearest-upsample-conv up samplers.
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/models/unets/unet_2d_blocks.py>)

use burn::module::Module;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use super::{CrossKv, Transformer2d, UnetConfig, RESNET_EPS};
use crate::nn::{Adapt, Conv2d, ResnetBlock};
use crate::weights::{WeightError, Weights};

#[derive(Module, Debug)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock>,
    /// Empty for a level without attention (DownBlock2D).
    pub attentions: Vec<Transformer2d>,
    /// `downsamplers.0.conv`, absent on the deepest level.
    pub downsampler: Option<Conv2d>,
}

impl DownBlock {
    pub fn load(cfg: &UnetConfig, w: &mut Weights, level: usize) -> Result<Self, WeightError> {
        let (depth, width) = (cfg.transformer_depth[level], cfg.block_out_channels[level]);
        let sampler = (level + 1 < cfg.levels()).then_some(("downsamplers", 2));
        let (resnets, attentions, downsampler) = level_layers(
            cfg,
            w,
            &format!("down_blocks.{level}"),
            [cfg.layers_per_block, depth, width],
            sampler,
        )?;
        Ok(DownBlock {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// Each transformer's cross-attention keys and values over `context`.
    pub fn prepare(&self, context: &Tensor<3>, ad: Adapt) -> Vec<Vec<CrossKv>> {
        prepare(&self.attentions, context, ad)
    }

    /// Resnets (each followed by its transformer where the level has them, reading `text` from
    /// [`Self::prepare`]), then the strided conv; every output is pushed to `skips` for the up
    /// path.
    pub fn forward(
        &self,
        mut h: Tensor<4>,
        emb: &Tensor<2>,
        text: &[Vec<CrossKv>],
        skips: &mut Vec<Tensor<4>>,
        ad: Adapt,
    ) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(h, Some(emb), ad);
            if let Some(attn) = self.attentions.get(j) {
                h = attn.forward(h, &text[j], ad);
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

fn prepare(attentions: &[Transformer2d], context: &Tensor<3>, ad: Adapt) -> Vec<Vec<CrossKv>> {
    attentions.iter().map(|a| a.prepare(context, ad)).collect()
}

/// A level's layers: `(resnets, attentions, sampler)`.
type LevelLayers = (Vec<ResnetBlock>, Vec<Transformer2d>, Option<Conv2d>);

/// The `count` resnets of the level `name`, one transformer of `depth` blocks after each where
/// `depth` > 0, and its `{name}.{kind}.0.conv` sampler (with `stride`) where it has one.
fn level_layers(
    cfg: &UnetConfig,
    w: &mut Weights,
    name: &str,
    [count, depth, width]: [usize; 3],
    sampler: Option<(&str, usize)>,
) -> Result<LevelLayers, WeightError> {
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
    let sampler = sampler
        .map(|(kind, stride)| Conv2d::load(w, &format!("{name}.{kind}.0.conv"), stride))
        .transpose()?;
    Ok((resnets, attentions, sampler))
}

#[derive(Module, Debug)]
pub struct MidBlock {
    /// Two resnets around the attention.
    pub resnets: Vec<ResnetBlock>,
    pub attention: Transformer2d,
}

impl MidBlock {
    pub fn load(cfg: &UnetConfig, w: &mut Weights) -> Result<Self, WeightError> {
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

    /// The transformer's cross-attention keys and values over `context`.
    pub fn prepare(&self, context: &Tensor<3>, ad: Adapt) -> Vec<CrossKv> {
        self.attention.prepare(context, ad)
    }

    pub fn forward(&self, h: Tensor<4>, emb: &Tensor<2>, text: &[CrossKv], ad: Adapt) -> Tensor<4> {
        let h = self.resnets[0].forward(h, Some(emb), ad);
        let h = self.attention.forward(h, text, ad);
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
    pub fn load(cfg: &UnetConfig, w: &mut Weights, level: usize) -> Result<Self, WeightError> {
        let (depth, width) = (cfg.transformer_depth_up[level], cfg.up_channels(level));
        let sampler = (level + 1 < cfg.levels()).then_some(("upsamplers", 1));
        let (resnets, attentions, upsampler) = level_layers(
            cfg,
            w,
            &format!("up_blocks.{level}"),
            [cfg.layers_per_block + 1, depth, width],
            sampler,
        )?;
        Ok(UpBlock {
            resnets,
            attentions,
            upsampler,
        })
    }

    /// Each transformer's cross-attention keys and values over `context`.
    pub fn prepare(&self, context: &Tensor<3>, ad: Adapt) -> Vec<Vec<CrossKv>> {
        prepare(&self.attentions, context, ad)
    }

    /// Each resnet reads `h` concatenated with the latest skip (then its transformer, reading
    /// `text` from [`Self::prepare`]); the upsampler doubles the size, or matches the next skip's
    /// size when the latent size is not a multiple of the total downsampling (diffusers'
    /// `upsample_size`).
    pub fn forward(
        &self,
        mut h: Tensor<4>,
        emb: &Tensor<2>,
        text: &[Vec<CrossKv>],
        skips: &mut Vec<Tensor<4>>,
        ad: Adapt,
    ) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip per up resnet");
            h = resnet.forward(Tensor::cat(vec![h, skip], 1), Some(emb), ad); // [B, C + C_skip, H, W] in
            if let Some(attn) = self.attentions.get(j) {
                h = attn.forward(h, &text[j], ad);
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
