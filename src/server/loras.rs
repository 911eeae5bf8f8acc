//! The LoRA files of `--lora-dir`, as A1111's `GET /sdapi/v1/loras` lists them (name, alias,
//! path, training metadata) and as prompt tags name them: `<lora:NAME:W>` finds the file
//! whose stem is NAME, else the one whose `ss_output_name` is NAME.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

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

/// The LoRAs found in the folder at the last scan.
#[derive(Clone, Debug, Default)]
pub struct LoraIndex {
    pub entries: Vec<LoraEntry>,
}

impl LoraIndex {
    /// Reads the headers of `dir/*.safetensors` (not the tensors); a file that is not a
    /// readable safetensors file is left out.
    pub fn scan(dir: Option<&Path>) -> Self {
        let Some(dir) = dir else {
            return LoraIndex::default();
        };
        let Ok(items) = std::fs::read_dir(dir) else {
            return LoraIndex::default();
        };
        let mut entries: Vec<LoraEntry> = items
            .filter_map(|item| item.ok().map(|i| i.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
            })
            .filter_map(|path| entry(&path))
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        LoraIndex { entries }
    }

    /// The file a prompt tag's NAME refers to: a stem first, then an alias.
    pub fn find(&self, name: &str) -> Option<&LoraEntry> {
        let stem = name.strip_suffix(".safetensors").unwrap_or(name);
        self.entries
            .iter()
            .find(|e| e.name == stem)
            .or_else(|| self.entries.iter().find(|e| e.alias == name))
    }
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
