//! A folder of model upscaler files (`--upscalers-dir`), as A1111 lists them (`GET
//! /sdapi/v1/upscalers`: by file stem) and as a hires upscaler's name finds them: the one
//! resolver of those names, for the command line and a server alike. A name is a built-in
//! upscaler's (ours, `latent-bicubic`, or A1111's, `Latent (bicubic)`), else a file's stem in
//! the folder, else (on the command line) a path to a model file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::IntakeError;
use crate::pipeline::{HiresUpscaler, ModelUpscaler, UpscalerChoice};
use crate::upscaler::EXTENSIONS;

/// One model upscaler file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpscalerEntry {
    /// The file's stem: the name A1111 lists.
    pub name: String,
    pub path: PathBuf,
}

/// The model upscaler files of one folder (none without a folder), listed when first needed.
#[derive(Debug, Default)]
pub struct UpscalerFolder {
    dir: Option<PathBuf>,
    entries: OnceLock<Vec<UpscalerEntry>>,
}

impl UpscalerFolder {
    pub fn new(dir: Option<&Path>) -> Self {
        UpscalerFolder {
            dir: dir.map(Path::to_path_buf),
            entries: OnceLock::new(),
        }
    }

    /// The folder's `.pth` and `.safetensors` files, by name (not read: a broken one is an
    /// error when a request uses it).
    pub fn entries(&self) -> &[UpscalerEntry] {
        self.entries.get_or_init(|| {
            let Some(Ok(items)) = self.dir.as_ref().map(std::fs::read_dir) else {
                return Vec::new();
            };
            let mut entries: Vec<UpscalerEntry> =
                items.filter_map(|item| entry(&item.ok()?.path())).collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            entries
        })
    }

    /// The upscaler `name` means; `paths`: a path to a model file is accepted too (the
    /// command line's, never a client's).
    pub fn resolve(&self, name: &str, paths: bool) -> Result<UpscalerChoice, IntakeError> {
        if let Some(builtin) = name
            .parse::<HiresUpscaler>()
            .ok()
            .or_else(|| HiresUpscaler::from_a1111(name))
        {
            return Ok(builtin.into());
        }
        let found = self.entries().iter().find(|e| e.name == name).cloned();
        let from_path = || paths.then(|| entry(Path::new(name))).flatten();
        match found.or_else(from_path) {
            Some(e) => Ok(UpscalerChoice::Model(ModelUpscaler {
                name: e.name,
                path: e.path,
            })),
            None => Err(IntakeError::UpscalerNotFound {
                name: name.to_string(),
                known: HiresUpscaler::all()
                    .map(|u| u.to_string())
                    .chain(self.entries().iter().map(|e| e.name.clone()))
                    .collect(),
            }),
        }
    }
}

/// `path` as an upscaler entry, if it is a regular file with an upscaler's extension.
fn entry(path: &Path) -> Option<UpscalerEntry> {
    let ext = path.extension()?.to_str()?;
    if !EXTENSIONS.contains(&ext) || !path.is_file() {
        return None;
    }
    Some(UpscalerEntry {
        name: path.file_stem()?.to_str()?.to_string(),
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_builtins_then_the_folders_models_then_paths() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/upscalers");
        let folder = UpscalerFolder::new(Some(Path::new(dir)));
        let builtin = |u: HiresUpscaler| Some(UpscalerChoice::from(u));
        assert_eq!(
            folder.resolve("latent-bicubic", false).ok(),
            builtin(HiresUpscaler::LatentBicubic)
        );
        assert_eq!(
            folder.resolve("Latent (bicubic)", false).ok(),
            builtin(HiresUpscaler::LatentBicubic)
        );
        assert_eq!(
            folder.resolve("Lanczos", false).ok(),
            builtin(HiresUpscaler::Lanczos)
        );
        let model = folder.resolve("compact_x4", false).expect("a model");
        assert_eq!(
            model.model().map(|m| m.path.ends_with("compact_x4.pth")),
            Some(true)
        );
        let path = format!("{dir}/rrdb_new_x4.pth");
        assert!(UpscalerFolder::new(None).resolve(&path, true).is_ok());
        let err = UpscalerFolder::new(None)
            .resolve(&path, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no built-in upscaler"), "{err}");
        let err = folder
            .resolve("4x-UltraSharp", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("latent-bicubic") && err.contains("rrdb_old_x4"),
            "{err}"
        );
    }
}
