//! The text encoders' spellings: transformers' CLIP names (canonical; diffusers folders, and
//! CLIP-L in single files under `conditioner.embedders.0.transformer.`) and open_clip's names
//! (bigG in single files under `conditioner.embedders.1.model.`), where q/k/v are fused into one
//! `in_proj` and `text_projection` is stored transposed, as diffusers'
//! `convert_open_clip_checkpoint` reads them.

use super::{Probe, Rows};
use crate::text_encoder::{ClipConfig, HiddenAct};
use crate::weights::Transform;

/// How a text encoder's keys are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipSpelling {
    /// transformers' `CLIPTextModel(WithProjection)` names.
    Transformers,
    /// open_clip's `model.transformer.resblocks...` names.
    OpenClip,
}

/// Per-layer leaves in open_clip's spelling (other than the fused attention input).
const LAYER_OPEN_CLIP: &[(&str, &str)] = &[
    ("self_attn.out_proj", "attn.out_proj"),
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
];

struct Keys {
    token_embedding: &'static str,
    position_embedding: &'static str,
    final_layer_norm: &'static str,
    text_projection: &'static str,
}

const TRANSFORMERS: Keys = Keys {
    token_embedding: "text_model.embeddings.token_embedding.weight",
    position_embedding: "text_model.embeddings.position_embedding.weight",
    final_layer_norm: "text_model.final_layer_norm",
    text_projection: "text_projection.weight",
};

const OPEN_CLIP: Keys = Keys {
    token_embedding: "token_embedding.weight",
    position_embedding: "positional_embedding",
    final_layer_norm: "ln_final",
    text_projection: "text_projection",
};

impl ClipSpelling {
    fn keys(self) -> &'static Keys {
        match self {
            ClipSpelling::Transformers => &TRANSFORMERS,
            ClipSpelling::OpenClip => &OPEN_CLIP,
        }
    }

    fn layer(self, l: usize) -> String {
        match self {
            ClipSpelling::Transformers => format!("text_model.encoder.layers.{l}"),
            ClipSpelling::OpenClip => format!("transformer.resblocks.{l}"),
        }
    }

    fn leaf(self, name: &'static str) -> &'static str {
        match self {
            ClipSpelling::Transformers => name,
            ClipSpelling::OpenClip => super::spelled(LAYER_OPEN_CLIP, name),
        }
    }
}

/// Detects a CLIP text encoder from its tensors. Heads (width / `head_dim`) and the activation
/// are not visible in shapes: they come from the encoder's role or a diffusers config.
pub fn detect(
    probe: &Probe,
    spelling: ClipSpelling,
    heads: impl FnOnce(usize) -> usize,
    activation: HiddenAct,
) -> Result<ClipConfig, String> {
    let keys = spelling.keys();
    let vocab_size = probe.dim(keys.token_embedding, 0)?;
    let width = probe.dim(keys.token_embedding, 1)?;
    let norm = |l: usize| {
        format!(
            "{}.{}.weight",
            spelling.layer(l),
            spelling.leaf("layer_norm1")
        )
    };
    let layers = probe.count(norm);
    if layers == 0 {
        probe.dim(&norm(0), 0)?; // names the missing first layer
    }
    let fc1 = format!("{}.{}.weight", spelling.layer(0), spelling.leaf("mlp.fc1"));
    let projection = match (spelling, probe.has(keys.text_projection)) {
        (_, false) => None,
        (ClipSpelling::Transformers, true) => Some(probe.dim(keys.text_projection, 0)?),
        (ClipSpelling::OpenClip, true) => Some(probe.dim(keys.text_projection, 1)?),
    };
    Ok(ClipConfig {
        vocab_size,
        width,
        layers,
        intermediate: probe.dim(&fc1, 0)?,
        heads: heads(width),
        max_positions: probe.dim(keys.position_embedding, 0)?,
        projection,
        activation,
    })
}

/// Every parameter of a CLIP text encoder with its key in `spelling`.
pub fn table(cfg: &ClipConfig, spelling: ClipSpelling) -> Vec<super::Row> {
    let keys = spelling.keys();
    let w = cfg.width;
    let mut rows = Rows::default();
    let plain = Transform::None;
    rows.param(
        TRANSFORMERS.token_embedding.into(),
        keys.token_embedding.into(),
        vec![cfg.vocab_size, w],
        plain,
    );
    rows.param(
        TRANSFORMERS.position_embedding.into(),
        keys.position_embedding.into(),
        vec![cfg.max_positions, w],
        plain,
    );

    for l in 0..cfg.layers {
        let (c, f) = (ClipSpelling::Transformers.layer(l), spelling.layer(l));
        let at = |leaf: &'static str| {
            (
                format!("{c}.{leaf}"),
                format!("{f}.{}", spelling.leaf(leaf)),
            )
        };
        for (index, proj) in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]
            .into_iter()
            .enumerate()
        {
            match spelling {
                ClipSpelling::Transformers => {
                    let (cn, fname) = at(proj);
                    rows.linear(&cn, &fname, w, w, true);
                }
                ClipSpelling::OpenClip => {
                    let split = Transform::SplitRows { index, parts: 3 };
                    let fused = format!("{f}.attn.in_proj");
                    rows.param(
                        format!("{c}.{proj}.weight"),
                        format!("{fused}_weight"),
                        vec![w, w],
                        split,
                    );
                    rows.param(
                        format!("{c}.{proj}.bias"),
                        format!("{fused}_bias"),
                        vec![w],
                        split,
                    );
                }
            }
        }
        let (cn, fname) = at("self_attn.out_proj");
        rows.linear(&cn, &fname, w, w, true);
        let (cn, fname) = at("layer_norm1");
        rows.norm(&cn, &fname, w);
        let (cn, fname) = at("mlp.fc1");
        rows.linear(&cn, &fname, cfg.intermediate, w, true);
        let (cn, fname) = at("mlp.fc2");
        rows.linear(&cn, &fname, w, cfg.intermediate, true);
        let (cn, fname) = at("layer_norm2");
        rows.norm(&cn, &fname, w);
    }
    rows.norm(TRANSFORMERS.final_layer_norm, keys.final_layer_norm, w);
    if let Some(projection) = cfg.projection {
        let transform = match spelling {
            ClipSpelling::Transformers => Transform::None,
            ClipSpelling::OpenClip => Transform::Transpose,
        };
        rows.param(
            TRANSFORMERS.text_projection.into(),
            keys.text_projection.into(),
            vec![projection, w],
            transform,
        );
    }
    rows.0
}
