//! A CLIP text transformer, with the structure of transformers' `CLIPTextModel`
//! (<https://github.com/huggingface/transformers/blob/v4.57.1/src/transformers/models/clip/modeling_clip.py>).
//! Canonical names: `text_model.embeddings.token_embedding.weight`, ...,
//! `text_model.encoder.layers.{l}.self_attn.q_proj.weight`, `text_projection.weight`.

use burn::module::Module;

use crate::checkpoint::{CheckpointError, ComponentWeights};
use crate::nn::{Embedding, LayerNorm, Linear};

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
    pub fn load(cfg: &ClipConfig, w: &mut ComponentWeights) -> Result<Self, CheckpointError> {
        Ok(ClipTextModel {
            token_embedding: Embedding::load(w, "text_model.embeddings.token_embedding")?,
            position_embedding: Embedding::load(w, "text_model.embeddings.position_embedding")?,
            layers: (0..cfg.layers)
                .map(|l| ClipLayer::load(w, &format!("text_model.encoder.layers.{l}"), cfg.heads))
                .collect::<Result<_, _>>()?,
            final_layer_norm: LayerNorm::load(w, "text_model.final_layer_norm", CLIP_NORM_EPS)?,
            text_projection: cfg
                .projection
                .map(|_| Linear::load(w, "text_projection"))
                .transpose()?,
        })
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
    pub fn load(
        w: &mut ComponentWeights,
        name: &str,
        heads: usize,
    ) -> Result<Self, CheckpointError> {
        let attn = format!("{name}.self_attn");
        Ok(ClipLayer {
            layer_norm1: LayerNorm::load(w, &format!("{name}.layer_norm1"), CLIP_NORM_EPS)?,
            self_attn: ClipAttention {
                q_proj: Linear::load(w, &format!("{attn}.q_proj"))?,
                k_proj: Linear::load(w, &format!("{attn}.k_proj"))?,
                v_proj: Linear::load(w, &format!("{attn}.v_proj"))?,
                out_proj: Linear::load(w, &format!("{attn}.out_proj"))?,
                heads,
            },
            layer_norm2: LayerNorm::load(w, &format!("{name}.layer_norm2"), CLIP_NORM_EPS)?,
            mlp: ClipMlp {
                fc1: Linear::load(w, &format!("{name}.mlp.fc1"))?,
                fc2: Linear::load(w, &format!("{name}.mlp.fc2"))?,
            },
        })
    }
}

#[derive(Module, Debug)]
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub heads: usize,
}

#[derive(Module, Debug)]
pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
}
