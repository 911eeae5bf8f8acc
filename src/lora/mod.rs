//! LoRA files as runtime adapters: the file formats (`file.rs`), the exact tables from their
//! module names to our layers (`keys.rs`), and the validated set of low-rank deltas built from a
//! list of files (`adapter.rs`); synthetic files for benchmarks (`synthetic.rs`). The layers apply the deltas at run time (`nn/low_rank.rs`); base
//! weights are never modified: a set is built whole off to the side and replaces the previous
//! one in one step (see `docs/ARCHITECTURE.md`).

mod adapter;
mod file;
mod keys;
mod synthetic;

pub use crate::tokenizer::{LoraSpec, LoraTag};
pub use adapter::{check_weights, AdapterSet, BuildReport, FileReport, MAX_LORA_WEIGHT};
pub use file::{LoraFile, LoraFormat, LoraModule, StoredTensor};
pub use keys::{LayerId, LoraTable, Target};
pub use synthetic::write_synthetic_lora;

use std::path::PathBuf;

use crate::weights::WeightError;

/// Why a LoRA cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("LoRA {0}")]
    File(Box<WeightError>),
    #[error("LoRA {path}: no LoRA tensors (no `.lora_down`/`.lora_up`, `.lora_A`/`.lora_B` pairs); not a LoRA file")]
    Empty { path: PathBuf },
    #[error("LoRA {path}: `{key}` {reason}")]
    Tensor {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error(
        "LoRA {path}: modules `{first}` and `{second}` both adapt the layer {layer} (one layer \
         spelled two ways); a file adapts each layer once"
    )]
    Collision {
        path: PathBuf,
        layer: String,
        first: String,
        second: String,
    },
    #[error("LoRA {path}: module `{module}`: {reason}")]
    Shape {
        path: PathBuf,
        module: String,
        reason: String,
    },
    #[error("LoRA {path}: none of its {modules} modules matches a layer of this SDXL model (e.g. `{example}`){hint}")]
    NoMatch {
        path: PathBuf,
        modules: usize,
        example: String,
        hint: &'static str,
    },
    #[error(
        "LoRA weight {weight} for {path}: must be a number from -{max} to {max} (0.5 to 1 is \
         usual)"
    )]
    Weight {
        path: PathBuf,
        weight: f32,
        max: f32,
    },
    #[error(
        "LoRA {path}: module `{module}` times its scale reaches {value}, past what {dtype} holds \
         ({max}); lower its weight or compute in f32"
    )]
    Overflow {
        path: PathBuf,
        module: String,
        value: f32,
        dtype: &'static str,
        max: f32,
    },
}
