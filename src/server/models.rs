//! The checkpoints a server can run: `--model` and every single file (`*.safetensors`) or
//! diffusers folder (`model_index.json`) in `--models-dir`, named as A1111 names them
//! (title `"name.safetensors [hash10]"` once the hash is known), and which one is selected.

use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::model_hash;
use crate::sampling::Prediction;

/// One checkpoint on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointEntry {
    pub path: PathBuf,
    /// The file or folder name (`animagine.safetensors`).
    pub file_name: String,
    /// The name without extension (A1111's `model_name`).
    pub model_name: String,
    /// The file's sha256 (hex), once computed (loading a model computes it).
    pub sha256: Option<String>,
    /// What the checkpoint's header says it predicts (`None`: unreadable; loading says why).
    pub prediction: Option<Prediction>,
}

impl CheckpointEntry {
    pub fn new(path: &Path) -> Self {
        let file_name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let model_name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        CheckpointEntry {
            path: path.to_path_buf(),
            file_name,
            model_name,
            sha256: None,
            // the header only: milliseconds per file
            prediction: Checkpoint::open(path).ok().map(|c| c.variant.prediction),
        }
    }

    /// A1111's short hash: the first 10 hex digits of the sha256.
    pub fn hash(&self) -> Option<&str> {
        self.sha256.as_deref().map(|s| &s[..s.len().min(10)])
    }

    /// A1111's title: `name.safetensors [hash]`, or the name alone before the hash is known.
    pub fn title(&self) -> String {
        match self.hash() {
            Some(hash) => format!("{} [{hash}]", self.file_name),
            None => self.file_name.clone(),
        }
    }

    /// Whether a client's `sd_model_checkpoint` names this entry: its title, file name, model
    /// name or hash (A1111's checkpoint aliases).
    pub fn answers_to(&self, name: &str) -> bool {
        let name = name.trim();
        name == self.title()
            || name == self.file_name
            || name == self.model_name
            || self.hash() == Some(name)
            || self.sha256.as_deref() == Some(name)
            || strip_hash(name) == self.file_name
    }
}

/// `"a.safetensors [0123456789]"` -> `"a.safetensors"`.
fn strip_hash(title: &str) -> &str {
    match title.rsplit_once(" [") {
        Some((name, hash)) if hash.ends_with(']') => name,
        _ => title,
    }
}

/// The checkpoints known, the selected one first among equals.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    pub entries: Vec<CheckpointEntry>,
    /// The checkpoint new jobs run on unless they override it.
    pub selected: Option<PathBuf>,
    /// The checkpoint on the device now (`None` before the first load, after an unload or a
    /// failed load).
    pub loaded: Option<PathBuf>,
}

impl Catalogue {
    /// `model` (if any) and the checkpoints in `dir` (if any), sorted by name; the selected one
    /// is `model`, else the first.
    pub fn scan(model: Option<&Path>, dir: Option<&Path>) -> std::io::Result<Self> {
        let mut entries: Vec<CheckpointEntry> = Vec::new();
        if let Some(dir) = dir {
            for item in std::fs::read_dir(dir)? {
                let path = item?.path();
                let is_file = path.is_file()
                    && path
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
                let is_folder = path.join("model_index.json").is_file();
                if is_file || is_folder {
                    entries.push(CheckpointEntry::new(&path));
                }
            }
        }
        entries.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        if let Some(model) = model {
            if !entries.iter().any(|e| same_file(&e.path, model)) {
                entries.insert(0, CheckpointEntry::new(model));
            }
        }
        let selected = match model {
            Some(model) => Some(model.to_path_buf()),
            None => entries.first().map(|e| e.path.clone()),
        };
        let paths: Vec<&Path> = entries.iter().map(|e| e.path.as_path()).collect();
        let hashes = model_hash::cached_model_sha256s(&paths);
        for (entry, sha256) in entries.iter_mut().zip(hashes) {
            entry.sha256 = sha256;
        }
        Ok(Catalogue {
            entries,
            selected,
            loaded: None,
        })
    }

    /// The entry a client's name refers to.
    pub fn find(&self, name: &str) -> Option<&CheckpointEntry> {
        self.entries.iter().find(|e| e.answers_to(name))
    }

    pub fn entry(&self, path: &Path) -> Option<&CheckpointEntry> {
        self.entries.iter().find(|e| same_file(&e.path, path))
    }

    /// Records the sha256 known once `path` loaded.
    pub fn learn_hash(&mut self, path: &Path) {
        let sha256 = model_hash::cached_model_sha256s(&[path]).pop().flatten();
        if let Some(entry) = self.entries.iter_mut().find(|e| same_file(&e.path, path)) {
            entry.sha256 = sha256.or(entry.sha256.take());
        }
    }

    /// The selected checkpoint's title (`sd_model_checkpoint`), empty when there is none.
    pub fn selected_title(&self) -> String {
        self.selected
            .as_deref()
            .and_then(|p| self.entry(p))
            .map(CheckpointEntry::title)
            .unwrap_or_default()
    }

    /// Re-reads the folder, keeping the selection and what is known of each entry.
    pub fn refresh(&mut self, model: Option<&Path>, dir: Option<&Path>) -> std::io::Result<()> {
        let mut fresh = Catalogue::scan(model, dir)?;
        for entry in &mut fresh.entries {
            if let Some(known) = self.entry(&entry.path) {
                entry.sha256 = entry.sha256.clone().or(known.sha256.clone());
            }
        }
        fresh.selected = self.selected.clone().or(fresh.selected);
        fresh.loaded = self.loaded.clone();
        *self = fresh;
        Ok(())
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a1111_clients_use() {
        let mut e = CheckpointEntry::new(Path::new("/m/anime-xl.safetensors"));
        assert_eq!(e.title(), "anime-xl.safetensors");
        e.sha256 = Some(format!("0123456789{}", "a".repeat(54)));
        assert_eq!(e.title(), "anime-xl.safetensors [0123456789]");
        for name in [
            "anime-xl.safetensors [0123456789]",
            "anime-xl.safetensors",
            "anime-xl",
            "0123456789",
            "anime-xl.safetensors [ffffffffff]",
        ] {
            assert!(e.answers_to(name), "{name}");
        }
        assert!(!e.answers_to("other"));
    }
}
