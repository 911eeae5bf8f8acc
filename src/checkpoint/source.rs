//! Where each component's tensors are stored: one single file with a key prefix per component,
//! or one file per component in a diffusers folder, plus the hints the files themselves give
//! about what shapes cannot show (head width, activations, prediction type).

use std::path::{Path, PathBuf};

use super::error::CheckpointError;
use super::keys::Layout;
use super::Component;
use crate::files;
use crate::weights::{Header, SafetensorsFile};

/// The stored tensors of one component: which file, and the prefix of its keys there.
#[derive(Clone, Copy, Debug)]
pub struct ComponentFile {
    pub file: usize,
    pub prefix: &'static str,
}

/// Facts about the architecture that shapes cannot show, where the checkpoint states them.
#[derive(Clone, Debug, Default)]
pub struct Hints {
    /// Attention head width (single file: our `sdxl_wgpu.head_dim` metadata, for every
    /// component; folder: `unet/config.json`, for the UNet).
    pub head_dim: Option<usize>,
    /// Heads and activation from `text_encoder*/config.json`.
    pub text_encoder_heads: [Option<usize>; 2],
    pub text_encoder_act: [Option<String>; 2],
}

/// The files of a checkpoint, opened and header-checked.
pub struct Source {
    pub path: PathBuf,
    pub layout: Layout,
    pub files: Vec<SafetensorsFile>,
    /// Indexed by `Component as usize`; `None` when the folder lacks the component.
    pub components: [Option<ComponentFile>; 4],
    pub hints: Hints,
    /// Folder only: `model_index.json`'s `_class_name` and the scheduler config.
    pub class_name: String,
    pub scheduler: serde_json::Value,
}

/// The metadata key our fixtures (and anyone with a non-64 head width) use.
pub const HEAD_DIM_METADATA: &str = "sdxl_wgpu.head_dim";

impl Source {
    pub fn open(path: &Path) -> Result<Source, CheckpointError> {
        if !path.exists() {
            return Err(CheckpointError::NotFound {
                path: path.to_path_buf(),
            });
        }
        if path.is_dir() {
            Self::open_folder(path)
        } else {
            Ok(Self::single_file(SafetensorsFile::open(path)?))
        }
    }

    /// A single file, opened or known only by its header.
    pub fn single_file(file: SafetensorsFile) -> Source {
        let hints = Hints {
            head_dim: file
                .header()
                .metadata
                .get(HEAD_DIM_METADATA)
                .and_then(|v| v.parse().ok()),
            ..Hints::default()
        };
        Source {
            path: file.path().to_path_buf(),
            layout: Layout::SingleFile,
            components: Component::ALL.map(|c| {
                Some(ComponentFile {
                    file: 0,
                    prefix: c.single_file_prefix(),
                })
            }),
            files: vec![file],
            hints,
            class_name: String::new(),
            scheduler: serde_json::Value::Null,
        }
    }

    /// A header-only single file, for checking tables against a manifest without weights.
    pub fn from_header(path: &Path, header: Header) -> Source {
        Self::single_file(SafetensorsFile::header_only(path, header))
    }

    fn open_folder(path: &Path) -> Result<Source, CheckpointError> {
        let index_path = path.join("model_index.json");
        if !index_path.is_file() {
            return Err(CheckpointError::NotADiffusersFolder {
                path: path.to_path_buf(),
            });
        }
        let index = read_json(&index_path)?;
        let class_name = index
            .get("_class_name")
            .and_then(|c| c.as_str())
            .unwrap_or("unknown pipeline")
            .to_string();
        let (files, components) = folder_files(path)?;
        let hints = Hints::of_folder(path)?;
        let scheduler = optional_json(&path.join("scheduler").join("scheduler_config.json"))?;
        Ok(Source {
            path: path.to_path_buf(),
            layout: Layout::Diffusers,
            files,
            components,
            hints,
            class_name,
            scheduler,
        })
    }

    /// The file and key prefix of `component`, if the checkpoint has it.
    pub fn component(&self, component: Component) -> Option<(&SafetensorsFile, &'static str)> {
        let c = self.components[component as usize]?;
        Some((&self.files[c.file], c.prefix))
    }
}

/// Each component's weight file in a diffusers folder, opened; a component folder without a
/// readable file is an error that says why (sharded, `.bin`), a missing folder is left to
/// classification.
fn folder_files(
    path: &Path,
) -> Result<(Vec<SafetensorsFile>, [Option<ComponentFile>; 4]), CheckpointError> {
    let mut files = Vec::new();
    let mut components = [None; 4];
    for component in Component::ALL {
        let dir = path.join(component.name());
        let Some(file) = component
            .diffusers_files()
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
        else {
            if dir.is_dir() {
                let sharded = component
                    .diffusers_files()
                    .iter()
                    .any(|name| dir.join(format!("{name}.index.json")).is_file());
                let why = if sharded {
                    "sharded weights (*.safetensors.index.json) are not read yet; save the \
                     component unsharded or use a single-file checkpoint"
                } else {
                    "only .safetensors weights are read; convert .bin files first"
                };
                return Err(CheckpointError::BadFolder {
                    path: dir,
                    reason: format!("no {} ({why})", component.diffusers_files().join(" or ")),
                });
            }
            continue;
        };
        components[component as usize] = Some(ComponentFile {
            file: files.len(),
            prefix: "",
        });
        files.push(SafetensorsFile::open(&file)?);
    }
    Ok((files, components))
}

impl Hints {
    /// What the components' `config.json` files state.
    fn of_folder(path: &Path) -> Result<Hints, CheckpointError> {
        let config = |c: Component| optional_json(&path.join(c.name()).join("config.json"));
        let unet = config(Component::Unet)?;
        let te = [
            config(Component::TextEncoder)?,
            config(Component::TextEncoder2)?,
        ];
        Ok(Hints {
            head_dim: unet_head_dim(&unet).map_err(|reason| CheckpointError::BadFolder {
                path: path.join("unet").join("config.json"),
                reason,
            })?,
            text_encoder_heads: te.each_ref().map(|c| {
                c.get("num_attention_heads")
                    .and_then(|h| h.as_u64())
                    .map(|h| h as usize)
            }),
            text_encoder_act: te.each_ref().map(|c| {
                c.get("hidden_act")
                    .and_then(|a| a.as_str())
                    .map(str::to_string)
            }),
        })
    }
}

/// A JSON file's value, or `null` when there is no such file.
fn optional_json(path: &Path) -> Result<serde_json::Value, CheckpointError> {
    if path.is_file() {
        read_json(path)
    } else {
        Ok(serde_json::Value::Null)
    }
}

/// The largest JSON file of a diffusers folder read (theirs are a few KB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

fn read_json(path: &Path) -> Result<serde_json::Value, CheckpointError> {
    let text =
        files::read_limited(path, MAX_CONFIG_BYTES).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    serde_json::from_slice(&text).map_err(|e| CheckpointError::BadFolder {
        path: path.to_path_buf(),
        reason: format!("not valid JSON: {e}"),
    })
}

/// diffusers' UNet config names the head *count* per level `attention_head_dim` (a historical
/// misnomer) unless `num_attention_heads` is set; the head width is the deepest level's width
/// over its head count. `None`: the config does not say; a head count of 0 or one that does not
/// divide the width is an error naming the field.
fn unet_head_dim(config: &serde_json::Value) -> Result<Option<usize>, String> {
    let last = |v: &serde_json::Value| -> Option<u64> {
        match v {
            serde_json::Value::Array(a) => a.last()?.as_u64(),
            v => v.as_u64(),
        }
    };
    let named = ["num_attention_heads", "attention_head_dim"]
        .into_iter()
        .find_map(|field| Some((field, config.get(field).and_then(last)?)));
    let Some((field, heads)) = named else {
        return Ok(None);
    };
    let Some(width) = config.get("block_out_channels").and_then(last) else {
        return Ok(None);
    };
    match heads {
        0 => Err(format!(
            "{field} 0: a level has at least one attention head"
        )),
        h if width % h != 0 => Err(format!(
            "{field} {h} does not divide the deepest level's {width} channels"
        )),
        h => Ok(Some((width / h) as usize)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_width_from_diffusers_config() {
        let config = |v: serde_json::Value| unet_head_dim(&v);
        let sdxl = serde_json::json!({"attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280]});
        assert_eq!(config(sdxl), Ok(Some(64)));
        let zero = serde_json::json!({"attention_head_dim": 0, "num_attention_heads": null, "block_out_channels": [320]});
        let err = config(zero).expect_err("no heads");
        assert!(err.starts_with("attention_head_dim 0"), "{err}");
        let odd = serde_json::json!({"num_attention_heads": 7, "block_out_channels": [320]});
        assert!(config(odd).is_err());
        assert_eq!(config(serde_json::json!({})), Ok(None));
    }
}
