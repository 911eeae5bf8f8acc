//! A CLIP text transformer, with the structure of transformers' `CLIPTextModel`
//! (<https://github.com/huggingface/transformers/blob/v4.57.1/src/transformers/models/clip/modeling_clip.py>).
//! Canonical names: `text_model.embeddings.token_embedding.weight`, ...,
//! `text_model.encoder.layers.{l}.self_attn.q_proj.weight`, `text_projection.weight`.

use burn::module::Module;
use burn::tensor::{activation, Int, Tensor};

use crate::nn::attention::{attention, merge_heads, split_heads, AttentionKernel};
use crate::nn::{Adapt, Embedding, LayerNorm, Linear};
use crate::weights::{WeightError, Weights};

/// The MLP activation: CLIP-L uses quick_gelu, OpenCLIP bigG exact gelu.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum HiddenAct {
    QuickGelu,
    Gelu,
}

/// A CLIP text encoder's architecture as detected from its tensors (CLIP-L / bigG values).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClipConfig {
    /// Token vocabulary (49408 for both).
    pub vocab_size: usize,
    /// Hidden width (768 / 1280).
    pub width: usize,
    /// Transformer layers (12 / 32).
    pub layers: usize,
    /// MLP width (3072 / 5120).
    pub intermediate: usize,
    /// Attention heads (12 / 20): width / 64 in SDXL; not visible in shapes.
    pub heads: usize,
    /// Position embeddings (77).
    pub max_positions: usize,
    /// Pooled projection width (bigG: 1280); `None` for an encoder without projection.
    pub projection: Option<usize>,
    pub activation: HiddenAct,
}

/// LayerNorm epsilon of both encoders.
pub const CLIP_NORM_EPS: f64 = 1e-5;

#[derive(Module, Debug)]
pub struct ClipTextModel {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
    pub layers: Vec<ClipLayer>,
    pub final_layer_norm: LayerNorm,
    /// `text_projection.weight`, `[projection, width]`, no bias.
    pub text_projection: Option<Linear>,
}

impl ClipTextModel {
    pub fn load(cfg: &ClipConfig, w: &mut Weights) -> Result<Self, WeightError> {
        Ok(ClipTextModel {
            token_embedding: Embedding::load(w, "text_model.embeddings.token_embedding")?,
            position_embedding: Embedding::load(w, "text_model.embeddings.position_embedding")?,
            layers: (0..cfg.layers)
                .map(|l| ClipLayer::load(w, &format!("text_model.encoder.layers.{l}"), cfg))
                .collect::<Result<_, _>>()?,
            final_layer_norm: LayerNorm::load(w, "text_model.final_layer_norm", CLIP_NORM_EPS)?,
            text_projection: cfg
                .projection
                .map(|_| Linear::load(w, "text_projection"))
                .transpose()?,
        })
    }

    /// Runs the embeddings and the first `layers` layers on `ids` `[B, S]` and returns every
    /// hidden state on the way, as transformers' `output_hidden_states` does: index 0 is the
    /// embedding output, index `l` the output of layer `l`. Layers past `layers` never run.
    pub fn hidden_states(&self, ids: Tensor<2, Int>, layers: usize, ad: Adapt) -> Vec<Tensor<3>> {
        let [_, seq] = ids.dims();
        let positions = self.position_embedding.weight.val().slice(0..seq); // [S, C]
        let mut x = self.token_embedding.forward(ids) + positions.unsqueeze::<3>(); // [B, S, C]
        let mut states = Vec::with_capacity(layers + 1);
        states.push(x.clone());
        for layer in &self.layers[..layers.min(self.layers.len())] {
            x = layer.forward(x, ad);
            states.push(x.clone());
        }
        states
    }

    /// The pooled embedding: `final_layer_norm(last)` at each row's end token, through
    /// `text_projection` when the model has one. `last` `[B, S, C]`, `eos` `[B]` -> `[B, P]`.
    pub fn pooled(&self, last: Tensor<3>, eos: &[usize]) -> Tensor<2> {
        let [batch, seq, width] = last.dims();
        let device = last.device();
        let rows: Vec<i64> = eos
            .iter()
            .enumerate()
            .map(|(b, &p)| (b * seq + p) as i64)
            .collect();
        let rows =
            Tensor::<1, Int>::from_data(burn::tensor::TensorData::new(rows, [batch]), &device);
        let normed = self
            .final_layer_norm
            .forward(last)
            .reshape([batch * seq, width]); // [B*S, C]
        let picked = normed.select(0, rows); // [B, C]
        match &self.text_projection {
            Some(projection) => projection.forward(picked),
            None => picked,
        }
    }
}

#[derive(Module, Debug)]
pub struct ClipLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: ClipAttention,
    pub layer_norm2: LayerNorm,
    pub mlp: ClipMlp,
}

impl ClipLayer {
    pub fn load(w: &mut Weights, name: &str, cfg: &ClipConfig) -> Result<Self, WeightError> {
        let attn = format!("{name}.self_attn");
        Ok(ClipLayer {
            layer_norm1: LayerNorm::load(w, &format!("{name}.layer_norm1"), CLIP_NORM_EPS)?,
            self_attn: ClipAttention {
                q_proj: Linear::load(w, &format!("{attn}.q_proj"))?,
                k_proj: Linear::load(w, &format!("{attn}.k_proj"))?,
                v_proj: Linear::load(w, &format!("{attn}.v_proj"))?,
                out_proj: Linear::load(w, &format!("{attn}.out_proj"))?,
                heads: cfg.heads,
                kernel: w.attention_kernel(),
            },
            layer_norm2: LayerNorm::load(w, &format!("{name}.layer_norm2"), CLIP_NORM_EPS)?,
            mlp: ClipMlp {
                fc1: Linear::load(w, &format!("{name}.mlp.fc1"))?,
                fc2: Linear::load(w, &format!("{name}.mlp.fc2"))?,
                quick_gelu: cfg.activation == HiddenAct::QuickGelu,
            },
        })
    }

    /// Pre-norm residual block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
    pub fn forward(&self, x: Tensor<3>, ad: Adapt) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), ad);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x), ad)
    }
}

#[derive(Module, Debug)]
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub heads: usize,
    /// The device's way to run attention, chosen at load.
    #[module(skip)]
    pub kernel: AttentionKernel,
}

impl ClipAttention {
    /// Causal multi-head self-attention, `[B, S, C]` -> `[B, S, C]`.
    pub fn forward(&self, x: Tensor<3>, ad: Adapt) -> Tensor<3> {
        let q = split_heads(self.q_proj.forward_with(x.clone(), ad), self.heads); // [B, heads, S, hd]
        let k = split_heads(self.k_proj.forward_with(x.clone(), ad), self.heads);
        let v = split_heads(self.v_proj.forward_with(x, ad), self.heads);
        let out = attention(q, k, v, true, self.kernel); // [B, heads, S, hd]
        self.out_proj.forward_with(merge_heads(out), ad) // [B, S, C]
    }
}

#[derive(Module, Debug)]
pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
    /// CLIP-L: `x * sigmoid(1.702 x)`; bigG: exact (erf) gelu.
    pub quick_gelu: bool,
}

impl ClipMlp {
    pub fn forward(&self, x: Tensor<3>, ad: Adapt) -> Tensor<3> {
        let h = self.fc1.forward_with(x, ad);
        let h = if self.quick_gelu {
            h.clone() * activation::sigmoid(h * 1.702)
        } else {
            activation::gelu(h)
        };
        self.fc2.forward_with(h, ad)
    }
}
