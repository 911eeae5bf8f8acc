//! Which layer each LoRA module adapts: exact tables from every spelling a LoRA file uses to our
//! canonical layer address, generated from the checkpoint's own key tables (so a layer's
//! single-file key and its kohya name can never disagree):
//!
//! - kohya, single-file spelling: `lora_unet_` + the LDM key with `.` -> `_`
//!   (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`);
//! - kohya, diffusers spelling: `lora_unet_` + the canonical name with `.` -> `_`
//!   (`lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q`);
//! - kohya text encoders: `lora_te1_` (CLIP-L) / `lora_te2_` (bigG) + transformers' name with `_`;
//! - diffusers / PEFT: `unet.`, `text_encoder.`, `text_encoder_2.` + the canonical name.
//!
//! bigG's q/k/v are separate layers in our model (the single file's fused `in_proj` is split at
//! load), so a q, k or v LoRA adapts exactly its slice.

use std::collections::HashMap;

use crate::checkpoint::keys::clip::{self, ClipSpelling};
use crate::checkpoint::keys::{unet, Layout, Row};
use crate::checkpoint::{Component, ModelConfig};

/// A layer LoRA can adapt.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerId {
    pub component: Component,
    /// The canonical module path (`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`).
    pub path: String,
}

/// The adapted layer's weight shape: `[out, in]` (linear) or `[out, in, kh, kw]` (conv).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub layer: LayerId,
    pub weight_shape: Vec<usize>,
}

/// Module name (as a LoRA file spells it) -> target, for one model.
pub struct LoraTable {
    targets: HashMap<String, Target>,
}

impl LoraTable {
    /// Every spelling of every linear and conv layer of `cfg`'s UNet and text encoders.
    pub fn new(cfg: &ModelConfig) -> Self {
        let mut targets = HashMap::new();
        let single = unet::table(&cfg.unet, Layout::SingleFile);
        for row in layers(&single) {
            let path = strip(&row.canonical);
            let target = Target {
                layer: LayerId {
                    component: Component::Unet,
                    path: path.to_string(),
                },
                weight_shape: row.shape.clone(),
            };
            targets.insert(kohya_unet_module(row), target.clone());
            targets.insert(format!("lora_unet_{}", underscored(path)), target.clone());
            targets.insert(format!("unet.{path}"), target);
        }
        for (component, config, kohya) in [
            (Component::TextEncoder, &cfg.text_encoder, "lora_te1_"),
            (Component::TextEncoder2, &cfg.text_encoder_2, "lora_te2_"),
        ] {
            let rows = clip::table(config, ClipSpelling::Transformers);
            for row in layers(&rows) {
                let path = strip(&row.canonical);
                let target = Target {
                    layer: LayerId {
                        component,
                        path: path.to_string(),
                    },
                    weight_shape: row.shape.clone(),
                };
                targets.insert(format!("{kohya}{}", underscored(path)), target.clone());
                targets.insert(format!("{}.{path}", component.name()), target);
            }
        }
        LoraTable { targets }
    }

    pub fn get(&self, module: &str) -> Option<&Target> {
        self.targets.get(module)
    }
}

/// kohya's single-file spelling of the UNet layer `row` (of a `Layout::SingleFile` table).
pub(super) fn kohya_unet_module(row: &Row) -> String {
    format!("lora_unet_{}", underscored(strip(&row.key)))
}

/// The linear (`[out, in]`) and conv (`[out, in, k, k]`) weights of a table.
pub(super) fn layers(rows: &[Row]) -> impl Iterator<Item = &Row> {
    rows.iter().filter(|r| {
        r.canonical.ends_with(".weight")
            && matches!(r.shape.len(), 2 | 4)
            && !r.canonical.contains("embedding")
            && !r.canonical.ends_with("text_projection.weight")
    })
}

pub(super) fn strip(name: &str) -> &str {
    name.strip_suffix(".weight").unwrap_or(name)
}

fn underscored(path: &str) -> String {
    path.replace('.', "_")
}
