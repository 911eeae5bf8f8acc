//! The spatial transformer of SDXL's cross-attention blocks: diffusers' `Transformer2DModel`
//! with linear projections and its `BasicTransformerBlock`s
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/models/attention.py>).

use burn::module::Module;
use burn::tensor::{activation::gelu, Tensor};

use crate::nn::attention::{attention, merge_heads, split_heads, AttentionKernel};
use crate::nn::{Adapt, GroupNorm, LayerNorm, Linear};
use crate::weights::{WeightError, Weights};

/// GroupNorm epsilon in front of `proj_in`.
pub const TRANSFORMER_NORM_EPS: f64 = 1e-6;
/// LayerNorm epsilon inside the transformer blocks.
pub const BLOCK_NORM_EPS: f64 = 1e-5;

#[derive(Module, Debug)]
pub struct Transformer2d {
    pub norm: GroupNorm,
    pub proj_in: Linear,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Linear,
}

impl Transformer2d {
    pub fn load(
        w: &mut Weights,
        name: &str,
        depth: usize,
        groups: usize,
        heads: usize,
    ) -> Result<Self, WeightError> {
        Ok(Transformer2d {
            norm: GroupNorm::load(w, &format!("{name}.norm"), groups, TRANSFORMER_NORM_EPS)?,
            proj_in: Linear::load(w, &format!("{name}.proj_in"))?,
            transformer_blocks: (0..depth)
                .map(|k| {
                    BasicTransformerBlock::load(w, &format!("{name}.transformer_blocks.{k}"), heads)
                })
                .collect::<Result<_, _>>()?,
            proj_out: Linear::load(w, &format!("{name}.proj_out"))?,
        })
    }

    /// Each block's cross-attention keys and values over `context` `[B, M, context_dim]`.
    pub fn prepare(&self, context: &Tensor<3>, ad: Adapt) -> Vec<CrossKv> {
        let blocks = self.transformer_blocks.iter();
        blocks.map(|b| b.attn2.keys_values(context, ad)).collect()
    }

    /// `x` `[B, C, H, W]` with `text` from [`Self::prepare`] (one entry per block) ->
    /// `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>, text: &[CrossKv], ad: Adapt) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let tokens = self
            .norm
            .forward(x.clone())
            .reshape([b, c, h * w])
            .swap_dims(1, 2); // [B, H*W, C]
        let mut t = self.proj_in.forward_with(tokens, ad);
        debug_assert_eq!(text.len(), self.transformer_blocks.len());
        for (block, kv) in self.transformer_blocks.iter().zip(text) {
            t = block.forward(t, kv, ad);
        }
        let t = self.proj_out.forward_with(t, ad); // [B, H*W, C]
        let t = t.swap_dims(1, 2).reshape([b, c, h, w]); // [B, C, H, W]
        t + x
    }
}

#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    /// Self-attention.
    pub attn1: Attention,
    pub norm2: LayerNorm,
    /// Cross-attention over the text context.
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn load(w: &mut Weights, name: &str, heads: usize) -> Result<Self, WeightError> {
        let norm =
            |w: &mut Weights, n: &str| LayerNorm::load(w, &format!("{name}.{n}"), BLOCK_NORM_EPS);
        Ok(BasicTransformerBlock {
            norm1: norm(w, "norm1")?,
            attn1: Attention::load(w, &format!("{name}.attn1"), heads)?,
            norm2: norm(w, "norm2")?,
            attn2: Attention::load(w, &format!("{name}.attn2"), heads)?,
            norm3: norm(w, "norm3")?,
            ff: FeedForward::load(w, &format!("{name}.ff"))?,
        })
    }

    /// Self-attention, cross-attention over the text (`text`: its keys and values), GEGLU
    /// feed-forward, each pre-normed and residual. `x` `[B, N, C]`.
    pub fn forward(&self, x: Tensor<3>, text: &CrossKv, ad: Adapt) -> Tensor<3> {
        let n1 = self.norm1.forward(x.clone());
        let x = self.attn1.forward(n1.clone(), &n1, ad) + x;
        let x = self
            .attn2
            .forward_kv(self.norm2.forward(x.clone()), text, ad)
            + x;
        self.ff.forward(self.norm3.forward(x.clone()), ad) + x
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// `to_out.0` in diffusers (index 1 is a dropout).
    pub to_out: Linear,
    pub heads: usize,
    /// The device's way to run attention, chosen at load.
    #[module(skip)]
    pub kernel: AttentionKernel,
}

impl Attention {
    pub fn load(w: &mut Weights, name: &str, heads: usize) -> Result<Self, WeightError> {
        Ok(Attention {
            to_q: Linear::load(w, &format!("{name}.to_q"))?,
            to_k: Linear::load(w, &format!("{name}.to_k"))?,
            to_v: Linear::load(w, &format!("{name}.to_v"))?,
            to_out: Linear::load(w, &format!("{name}.to_out.0"))?,
            heads,
            kernel: w.attention_kernel(),
        })
    }

    /// Queries from `x` `[B, N, C]`, keys and values from `context` `[B, M, C']`.
    pub fn forward(&self, x: Tensor<3>, context: &Tensor<3>, ad: Adapt) -> Tensor<3> {
        let kv = self.keys_values(context, ad);
        self.forward_kv(x, &kv, ad)
    }

    /// The keys and values of `context` `[B, M, C']`, for [`Self::forward_kv`].
    pub fn keys_values(&self, context: &Tensor<3>, ad: Adapt) -> CrossKv {
        CrossKv {
            k: split_heads(self.to_k.forward_with(context.clone(), ad), self.heads), // [B, heads, M, d]
            v: split_heads(self.to_v.forward_with(context.clone(), ad), self.heads),
        }
    }

    /// Queries from `x` `[B, N, C]` against keys and values computed before.
    pub fn forward_kv(&self, x: Tensor<3>, kv: &CrossKv, ad: Adapt) -> Tensor<3> {
        let q = split_heads(self.to_q.forward_with(x, ad), self.heads); // [B, heads, N, d]
        let out = attention(q, kv.k.clone(), kv.v.clone(), false, self.kernel);
        self.to_out.forward_with(merge_heads(out), ad) // [B, N, C]
    }
}

/// One cross-attention layer's keys and values over the text context, `[B, heads, M, d]` each.
/// The context is the same at every step of a run, so the sampling loop computes them once.
#[derive(Clone, Debug)]
pub struct CrossKv {
    pub k: Tensor<4>,
    pub v: Tensor<4>,
}

/// GEGLU feed-forward: `net.0.proj` doubles into value and gate, `net.2` projects back.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `net.0.proj`: `[2 * inner, width]`.
    pub geglu: Linear,
    /// `net.2`: `[width, inner]`.
    pub out: Linear,
}

impl FeedForward {
    pub fn load(w: &mut Weights, name: &str) -> Result<Self, WeightError> {
        Ok(FeedForward {
            geglu: Linear::load(w, &format!("{name}.net.0.proj"))?,
            out: Linear::load(w, &format!("{name}.net.2"))?,
        })
    }

    /// `out(value * gelu(gate))` where `[value, gate]` = `geglu(x)` split in halves.
    pub fn forward(&self, x: Tensor<3>, ad: Adapt) -> Tensor<3> {
        let [b, n, _] = x.dims();
        let projected = self.geglu.forward_with(x, ad); // [B, N, 2 * inner]
        let inner = projected.dims()[2] / 2;
        let value = projected.clone().slice([0..b, 0..n, 0..inner]);
        let gate = projected.slice([0..b, 0..n, inner..2 * inner]);
        self.out.forward_with(value * gelu(gate), ad)
    }
}
