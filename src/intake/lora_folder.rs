//! A folder of LoRA files, as prompt tags name them and A1111's `GET /sdapi/v1/loras` lists
//! them (name, alias, path, training metadata): `<lora:NAME:W>` finds the file whose stem is
//! NAME, else the one whose `ss_output_name` is NAME (A1111's lookup). The one resolver of tag
//! names, for the command line's `--lora-dir` and a server's LoRA folder alike.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::IntakeError;
use crate::lora::{check_weights, LoraSpec, LoraTag};
use crate::weights::SafetensorsFile;

/// One LoRA file.
#[derive(Clone, Debug)]
pub struct LoraEntry {
    /// The file's stem.
    pub name: String,
    /// `ss_output_name` from its training metadata, else the name.
    pub alias: String,
    pub path: PathBuf,
    /// The safetensors `__metadata__`, values that hold JSON objects or lists parsed (as A1111
    /// does).
    pub metadata: Map<String, Value>,
}

/// The LoRA files of one folder (none without a folder). Their headers are read once, when a
/// listing or an alias first needs them ([`LoraFolder::scan`] reads them at once).
#[derive(Debug, Default)]
pub struct LoraFolder {
    dir: Option<PathBuf>,
    entries: OnceLock<Vec<LoraEntry>>,
}

impl LoraFolder {
    /// The folder `dir`, nothing read yet.
    pub fn new(dir: Option<&Path>) -> Self {
        LoraFolder {
            dir: dir.map(Path::to_path_buf),
            entries: OnceLock::new(),
        }
    }

    /// The folder with the headers of its `*.safetensors` read now (not the tensors).
    pub fn scan(dir: Option<&Path>) -> Self {
        let folder = Self::new(dir);
        folder.entries();
        folder
    }

    /// The readable safetensors files of the folder, by name; a file that is not one is left
    /// out.
    pub fn entries(&self) -> &[LoraEntry] {
        self.entries.get_or_init(|| {
            let Some(Ok(items)) = self.dir.as_ref().map(std::fs::read_dir) else {
                return Vec::new();
            };
            let mut entries: Vec<LoraEntry> = items
                .filter_map(|item| item.ok().map(|i| i.path()))
                .filter(|p| p.is_file() && is_safetensors(p))
                .filter_map(|path| entry(&path))
                .collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            entries
        })
    }

    /// The file a tag's NAME refers to: `NAME.safetensors` in the folder first, then the file
    /// whose alias is NAME. A NAME with folders in it is refused (a tag never reaches outside
    /// the folder).
    pub fn find(&self, name: &str) -> Result<PathBuf, IntakeError> {
        let mut parts = Path::new(name).components();
        let plain = matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        );
        if !plain {
            return Err(IntakeError::LoraName { name: name.into() });
        }
        let stem = name.strip_suffix(".safetensors").unwrap_or(name);
        if let Some(dir) = &self.dir {
            let file = dir.join(format!("{stem}.safetensors"));
            if file.is_file() {
                return Ok(file);
            }
        }
        self.entries()
            .iter()
            .find(|e| e.alias == name)
            .map(|e| e.path.clone())
            .ok_or_else(|| IntakeError::LoraNotFound {
                name: name.into(),
                file: format!("{stem}.safetensors"),
            })
    }

    /// A prompt's tags as files of this folder, in order; an unknown name, a LoRA named twice
    /// or a weight past the bound is an error.
    pub fn resolve(&self, tags: &[LoraTag]) -> Result<Vec<LoraSpec>, IntakeError> {
        let mut specs: Vec<LoraSpec> = Vec::with_capacity(tags.len());
        for tag in tags {
            let spec = tag.spec(self.find(&tag.name)?);
            if specs.iter().any(|s| s.path == spec.path) {
                return Err(IntakeError::LoraTwice {
                    name: tag.name.clone(),
                });
            }
            check_weights(&spec)?;
            specs.push(spec);
        }
        Ok(specs)
    }
}

fn is_safetensors(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

fn entry(path: &Path) -> Option<LoraEntry> {
    let file = SafetensorsFile::open(path).ok()?;
    let name = path.file_stem()?.to_string_lossy().into_owned();
    let metadata: Map<String, Value> = file
        .header()
        .metadata
        .iter()
        .map(|(k, v)| {
            let parsed = if v.starts_with('{') || v.starts_with('[') {
                serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()))
            } else {
                Value::String(v.clone())
            };
            (k.clone(), parsed)
        })
        .collect();
    let alias = metadata
        .get("ss_output_name")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .unwrap_or(&name)
        .to_string();
    Some(LoraEntry {
        name,
        alias,
        path: path.to_path_buf(),
        metadata,
    })
}
