//! Reading a LoRA file: its safetensors header (validated like a checkpoint's), its format, and
//! its tensors grouped into modules (one adapted layer each: down, up, optional alpha), by an
//! exact table of key suffixes.

use std::collections::BTreeMap;
use std::path::Path;

use super::LoraError;
use crate::weights::{Dtype, SafetensorsFile, TensorInfo};

/// How a file names its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraFormat {
    /// kohya sd-scripts: `lora_unet_*` / `lora_te1_*` / `lora_te2_*` with `.lora_down.weight`,
    /// `.lora_up.weight`, `.alpha`.
    Kohya,
    /// diffusers / PEFT: `unet.*`, `text_encoder.*`, `text_encoder_2.*` with `.lora_A.weight`,
    /// `.lora_B.weight`.
    Peft,
    /// diffusers' older attention-processor spelling: `.lora.down.weight`, `.lora.up.weight`.
    DiffusersOld,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Down,
    Up,
    Alpha,
}

/// Every key suffix a LoRA tensor can have, with its role and format.
const SUFFIXES: [(&str, Role, Option<LoraFormat>); 7] = [
    (".lora_down.weight", Role::Down, Some(LoraFormat::Kohya)),
    (".lora_up.weight", Role::Up, Some(LoraFormat::Kohya)),
    (".lora_A.weight", Role::Down, Some(LoraFormat::Peft)),
    (".lora_B.weight", Role::Up, Some(LoraFormat::Peft)),
    (
        ".lora.down.weight",
        Role::Down,
        Some(LoraFormat::DiffusersOld),
    ),
    (".lora.up.weight", Role::Up, Some(LoraFormat::DiffusersOld)),
    (".alpha", Role::Alpha, None),
];

/// A stored tensor of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTensor {
    pub key: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

/// One adapted layer as the file stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraModule {
    /// The module's name in the file (the key without its suffix).
    pub name: String,
    pub format: LoraFormat,
    /// `[rank, in]` or `[rank, in, kh, kw]` (LoCon).
    pub down: StoredTensor,
    /// `[out, rank]` or `[out, rank, 1, 1]`.
    pub up: StoredTensor,
    pub alpha: Option<StoredTensor>,
}

impl LoraModule {
    pub fn rank(&self) -> usize {
        self.down.shape.first().copied().unwrap_or(0)
    }
}

/// A LoRA file, header read, tensors grouped; the data stays in the memory map until asked for.
pub struct LoraFile {
    file: SafetensorsFile,
    pub modules: Vec<LoraModule>,
    /// Keys with no known suffix, or modules missing their down or up half.
    pub unrecognised: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

impl LoraFile {
    pub fn open(path: &Path) -> Result<LoraFile, LoraError> {
        let file = SafetensorsFile::open(path).map_err(|e| LoraError::File(Box::new(e)))?;
        let header = file.header();
        let stored = |key: &str, info: &TensorInfo| StoredTensor {
            key: key.to_string(),
            dtype: info.dtype,
            shape: info.shape.clone(),
        };
        // name -> (format, down, up, alpha)
        type Parts = (
            Option<LoraFormat>,
            Option<StoredTensor>,
            Option<StoredTensor>,
            Option<StoredTensor>,
        );
        let mut grouped: BTreeMap<String, Parts> = BTreeMap::new();
        let mut unrecognised = Vec::new();
        for (key, info) in &header.tensors {
            let Some((name, role, format)) = SUFFIXES.iter().find_map(|&(suffix, role, format)| {
                key.strip_suffix(suffix).map(|name| (name, role, format))
            }) else {
                unrecognised.push(key.clone());
                continue;
            };
            let entry = grouped.entry(name.to_string()).or_default();
            if format.is_some() {
                entry.0 = format;
            }
            let slot = match role {
                Role::Down => &mut entry.1,
                Role::Up => &mut entry.2,
                Role::Alpha => &mut entry.3,
            };
            *slot = Some(stored(key, info));
        }
        let mut modules = Vec::new();
        for (name, parts) in grouped {
            match parts {
                (Some(format), Some(down), Some(up), alpha) => modules.push(LoraModule {
                    name,
                    format,
                    down,
                    up,
                    alpha,
                }),
                (_, down, up, alpha) => {
                    unrecognised.extend([down, up, alpha].into_iter().flatten().map(|t| t.key));
                }
            }
        }
        unrecognised.sort();
        Ok(LoraFile {
            metadata: header.metadata.clone(),
            file,
            modules,
            unrecognised,
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The formats the modules use (normally one).
    pub fn formats(&self) -> Vec<LoraFormat> {
        let mut formats: Vec<LoraFormat> = self.modules.iter().map(|m| m.format).collect();
        formats.sort();
        formats.dedup();
        formats
    }

    /// A tensor's values as f32 (any float dtype); non-finite values are an error.
    pub fn values(&self, tensor: &StoredTensor) -> Result<Vec<f32>, LoraError> {
        let bad = |reason: String| LoraError::Tensor {
            path: self.path().to_path_buf(),
            key: tensor.key.clone(),
            reason,
        };
        let info = self
            .file
            .header()
            .tensors
            .get(&tensor.key)
            .ok_or_else(|| bad("missing from the file".into()))?;
        let bytes = self
            .file
            .bytes(info)
            .ok_or_else(|| bad("its data is outside the file".into()))?;
        let values = info.dtype.to_f32(bytes).ok_or_else(|| {
            bad(format!(
                "{} values; LoRA tensors must be floats",
                info.dtype.name()
            ))
        })?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad("holds NaN or infinite values".into()));
        }
        Ok(values)
    }
}
