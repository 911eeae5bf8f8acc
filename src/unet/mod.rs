//! The SDXL UNet, with the block structure of diffusers' `UNet2DConditionModel`
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/models/unets/unet_2d_condition.py>),
//! so every parameter's canonical name is its diffusers name (`down_blocks.1.attentions.0...`).
//!
//! [`Unet::forward`] predicts the noise (or v) for a batch of latents.

mod blocks;
mod embeddings;
mod flops;
mod transformer;

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{FloatDType, Tensor, TensorData};

pub use blocks::{DownBlock, MidBlock, UpBlock};
pub use embeddings::{sinusoidal, TimestepEmbedding};
pub use transformer::{Attention, BasicTransformerBlock, CrossKv, FeedForward, Transformer2d};

use crate::nn::{Adapt, Conv2d, GroupNorm};
use crate::weights::{WeightError, Weights};

/// SDXL's UNet architecture as detected from a checkpoint's tensors (SDXL base 1.0 values in
/// the comments). Everything but the norm groups and the head width is read from shapes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UnetConfig {
    /// Latent channels in (4) and out (4).
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of each resolution level (320, 640, 1280).
    pub block_out_channels: Vec<usize>,
    /// Resnets per down level (2); up levels have one more.
    pub layers_per_block: usize,
    /// Transformer blocks in each attention of each down level (0, 2, 10); 0: no attention.
    pub transformer_depth: Vec<usize>,
    /// The same for the up levels, in up-block order, deepest level first (10, 2, 0).
    pub transformer_depth_up: Vec<usize>,
    /// Transformer blocks in the mid block's attention (10).
    pub mid_transformer_depth: usize,
    /// Width of one attention head (64): not visible in shapes; SDXL's `num_head_channels`.
    pub head_dim: usize,
    /// Width of the cross-attention context (2048 = CLIP-L 768 + bigG 1280).
    pub context_dim: usize,
    /// Width of the timestep embedding (1280).
    pub time_embed_dim: usize,
    /// Input width of the additional (text_time) embedding (2816 = pooled 1280 + 6 x 256).
    pub addition_embed_dim: usize,
    /// Sinusoidal width of each of the six `add_time_ids` (256).
    pub addition_time_embed_dim: usize,
    /// GroupNorm groups (32), a constant of the architecture.
    pub norm_groups: usize,
}

/// GroupNorm epsilon of the resnets and the output norm.
pub const RESNET_EPS: f64 = 1e-5;

impl UnetConfig {
    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Input width of down level `level`'s first resnet.
    pub fn down_in_channels(&self, level: usize) -> usize {
        self.block_out_channels[level.saturating_sub(1)]
    }

    /// Output width of up level `level` (levels counted deepest first).
    pub fn up_channels(&self, level: usize) -> usize {
        self.block_out_channels[self.levels() - 1 - level]
    }

    /// Input width of resnet `j` of up level `level`: the previous output plus the skip
    /// connection it concatenates (diffusers' `prev_output_channel` / `res_skip_channels`).
    pub fn up_resnet_in_channels(&self, level: usize, j: usize) -> usize {
        let levels = self.levels();
        let out = self.up_channels(level);
        let prev = if j > 0 {
            out
        } else if level == 0 {
            self.block_out_channels[levels - 1]
        } else {
            self.up_channels(level - 1)
        };
        let skip = if j == self.layers_per_block {
            self.block_out_channels[(levels - 1 - level).saturating_sub(1)]
        } else {
            out
        };
        prev + skip
    }

    /// Attention heads of a transformer `channels` wide.
    pub fn heads(&self, channels: usize) -> usize {
        channels / self.head_dim
    }
}

#[derive(Module, Debug)]
pub struct Unet {
    pub conv_in: Conv2d,
    pub time_embedding: TimestepEmbedding,
    pub add_embedding: TimestepEmbedding,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Unet {
    pub fn load(cfg: &UnetConfig, w: &mut Weights) -> Result<Self, WeightError> {
        Ok(Unet {
            conv_in: Conv2d::load(w, "conv_in", 1)?,
            time_embedding: TimestepEmbedding::load(w, "time_embedding")?,
            add_embedding: TimestepEmbedding::load(w, "add_embedding")?,
            down_blocks: (0..cfg.levels())
                .map(|level| DownBlock::load(cfg, w, level))
                .collect::<Result<_, _>>()?,
            mid_block: MidBlock::load(cfg, w)?,
            up_blocks: (0..cfg.levels())
                .map(|level| UpBlock::load(cfg, w, level))
                .collect::<Result<_, _>>()?,
            conv_norm_out: GroupNorm::load(w, "conv_norm_out", cfg.norm_groups, RESNET_EPS)?,
            conv_out: Conv2d::load(w, "conv_out", 1)?,
        })
    }
}

/// What stays the same at every step of a run, computed once by [`Unet::prepare`]: the
/// text_time embedding (pooled text and size ids through `add_embedding`) and every
/// cross-attention layer's keys and values over the text context, in the UNet's block order.
#[derive(Clone, Debug)]
pub struct UnetText {
    /// `add_embedding(text_time)` `[B, time_embed_dim]`.
    add: Tensor<2>,
    down: Vec<Vec<Vec<CrossKv>>>,
    mid: Vec<CrossKv>,
    up: Vec<Vec<Vec<CrossKv>>>,
}

impl Unet {
    /// One denoiser call, computed in the weights' dtype (f16 or f32), returned as f32.
    ///
    /// - `latents` `[B, 4, h, w]`, any size (odd sizes included);
    /// - `timesteps` one per batch row (may be fractional);
    /// - `context` `[B, 77 * k, context_dim]`, `pooled` `[B, pooled_dim]`;
    /// - `add_time_ids` one `(orig h, orig w, crop top, crop left, target h, target w)` per row.
    pub fn forward(
        &self,
        latents: Tensor<4>,
        timesteps: &[f32],
        context: Tensor<3>,
        pooled: Tensor<2>,
        add_time_ids: &[[f32; 6]],
        ad: Adapt,
    ) -> Tensor<4> {
        let text = self.prepare(context, pooled, add_time_ids, ad);
        self.forward_prepared(latents, timesteps, &text, ad)
    }

    /// The per-run part of [`Self::forward`]: the text's embedding and the cross-attention keys
    /// and values, for a batch of `add_time_ids.len()` rows.
    pub fn prepare(
        &self,
        context: Tensor<3>,
        pooled: Tensor<2>,
        add_time_ids: &[[f32; 6]],
        ad: Adapt,
    ) -> UnetText {
        let dtype = self.conv_in.weight.val().dtype();
        let device = context.device();
        let batch = add_time_ids.len();
        // text_time embedding (sinusoids on the CPU, in f32 like diffusers)
        let ids: Vec<f32> = add_time_ids.iter().flatten().copied().collect();
        let id_dim = (self.add_embedding.linear_1.in_features() - pooled.dims()[1]) / 6;
        let ids = TensorData::new(sinusoidal(&ids, id_dim), [batch, 6 * id_dim]);
        let ids = Tensor::<2>::from_data(ids, &device).cast(dtype); // [B, 6 * 256]
        let text_time = Tensor::cat(vec![pooled.cast(dtype), ids], 1); // [B, pooled + 6 * 256]
        let context = context.cast(dtype);
        UnetText {
            add: self.add_embedding.forward(text_time, ad),
            down: self
                .down_blocks
                .iter()
                .map(|b| b.prepare(&context, ad))
                .collect(),
            mid: self.mid_block.prepare(&context, ad),
            up: self
                .up_blocks
                .iter()
                .map(|b| b.prepare(&context, ad))
                .collect(),
        }
    }

    /// The per-step part of [`Self::forward`], with `text` from [`Self::prepare`] for the same
    /// batch and adapters.
    pub fn forward_prepared(
        &self,
        latents: Tensor<4>,
        timesteps: &[f32],
        text: &UnetText,
        ad: Adapt,
    ) -> Tensor<4> {
        let dtype = self.conv_in.weight.val().dtype();
        let device = latents.device();
        let batch = latents.dims()[0];

        // timestep embedding (sinusoids on the CPU, in f32 like diffusers)
        let t_dim = self.time_embedding.linear_1.in_features();
        let t = TensorData::new(sinusoidal(timesteps, t_dim), [batch, t_dim]);
        let t = Tensor::<2>::from_data(t, &device).cast(dtype);
        let emb = self.time_embedding.forward(t, ad) + text.add.clone();
        let emb = silu(emb); // every resnet applies silu before its projection

        let mut h = self.conv_in.forward_with(latents.cast(dtype), ad);
        let mut skips = vec![h.clone()];
        for (block, kv) in self.down_blocks.iter().zip(&text.down) {
            h = block.forward(h, &emb, kv, &mut skips, ad);
        }
        h = self.mid_block.forward(h, &emb, &text.mid, ad);
        for (block, kv) in self.up_blocks.iter().zip(&text.up) {
            h = block.forward(h, &emb, kv, &mut skips, ad);
        }
        let h = self
            .conv_out
            .forward_with(silu(self.conv_norm_out.forward(h)), ad);
        h.cast(FloatDType::F32)
    }
}
