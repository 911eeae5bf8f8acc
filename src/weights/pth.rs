//! PyTorch's `.pth` files (`torch.save`'s zip archive: a pickled state dict in `data.pkl`, each
//! storage's bytes in `data/{key}`) read into an in-memory [`SafetensorsFile`], so every model
//! built from safetensors loads from them unchanged. The pickle is read by [`super::pickle`],
//! which runs no code. Nested dicts become dotted names (`params_ema.conv_first.weight`); values
//! that are not tensors (an `epoch` count) are left out.
//!
//! The archive layout is torch's `_save` / `_load`
//! (<https://github.com/pytorch/pytorch/blob/v2.8.0/torch/serialization.py>). The older non-zip
//! format (before torch 1.6) is refused by name.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::pickle::{self, TensorRef, Value};
use super::{Header, SafetensorsFile, TensorInfo, WeightError};
use crate::files;

/// Whether `bytes` (a file's start) look like a zip archive: `torch.save`'s format.
fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// The legacy format starts with a pickled magic number (protocol 2: `\x80\x02\x8a\x0a`).
fn is_legacy(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x80\x02\x8a\x0a")
}

/// Opens a weight file in either format users have: torch.save's zip archive (a `.pth`, read
/// into memory) or safetensors (mapped), told apart by the file's first bytes, not its name.
pub fn open_any(path: &Path) -> Result<SafetensorsFile, WeightError> {
    let io = |source| WeightError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = files::open_regular(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => WeightError::NotFound {
            path: path.to_path_buf(),
        },
        _ => io(e),
    })?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(io)?;
    if is_legacy(&magic[..n]) {
        return Err(WeightError::Pth {
            path: path.to_path_buf(),
            reason: "it is in PyTorch's legacy (pre-1.6) format, which is not read: \
                     save it again with a current torch, or convert it to .safetensors"
                .into(),
        });
    }
    if magic[..n].starts_with(b"\x80") {
        return Err(WeightError::Pth {
            path: path.to_path_buf(),
            reason: "it is a bare pickle, not the zip archive torch.save writes".into(),
        });
    }
    if is_zip(&magic[..n]) {
        read_pth(path, file)
    } else {
        SafetensorsFile::open(path)
    }
}

/// Reads the `.pth` archive open as `file` (from `path`) into memory as a safetensors file of
/// its tensors.
fn read_pth(path: &Path, file: std::fs::File) -> Result<SafetensorsFile, WeightError> {
    let bad = |reason: String| WeightError::Pth {
        path: path.to_path_buf(),
        reason,
    };
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(format!("zip: {e}")))?;
    let pkl = archive
        .file_names()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| bad("the archive has no `*/data.pkl`".into()))?
        .to_string();
    let mut member = |name: &str| -> Result<Vec<u8>, WeightError> {
        let mut entry = archive
            .by_name(name)
            .map_err(|_| bad(format!("the archive has no `{name}`")))?;
        // torch stores its members uncompressed: a compressed one could be a zip bomb
        if entry.compression() != zip::CompressionMethod::Stored {
            return Err(bad(format!(
                "`{name}` is compressed, which torch.save never does"
            )));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("`{name}`: {e}")))?;
        Ok(bytes)
    };
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let value = pickle::read(&member(&pkl)?).map_err(|e| bad(format!("data.pkl: {e}")))?;
    let mut tensors = Vec::new();
    flatten(String::new(), value, &mut tensors);
    let mut storages: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (_, t) in &tensors {
        if !storages.contains_key(&t.storage.key) {
            let bytes = member(&format!("{prefix}data/{}", t.storage.key))?;
            storages.insert(t.storage.key.clone(), bytes);
        }
    }
    in_memory(path, tensors, &storages).map_err(bad)
}

/// The tensors under `value`, named by their dotted path of dict keys.
fn flatten(prefix: String, value: Value, out: &mut Vec<(String, TensorRef)>) {
    match value {
        Value::Tensor(t) => out.push((prefix, t)),
        Value::Dict(entries) => {
            for (key, v) in entries {
                let key = match key {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(name, v, out);
            }
        }
        _ => {}
    }
}

/// The tensors gathered from their storages (any strides) into one contiguous buffer, with a
/// header describing them.
fn in_memory(
    path: &Path,
    tensors: Vec<(String, TensorRef)>,
    storages: &BTreeMap<String, Vec<u8>>,
) -> Result<SafetensorsFile, String> {
    let mut header = Header::default();
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in tensors {
        let size = t.storage.dtype.size();
        let storage = &storages[&t.storage.key];
        if storage.len() < t.storage.numel * size {
            return Err(format!(
                "the storage of `{name}` is shorter than its header says"
            ));
        }
        let start = data.len();
        for index in strided(&t.shape, &t.strides, t.offset) {
            data.extend_from_slice(&storage[index * size..(index + 1) * size]);
        }
        let info = TensorInfo {
            dtype: t.storage.dtype,
            shape: t.shape,
            start,
            end: data.len(),
        };
        if header.tensors.insert(name.clone(), info).is_some() {
            return Err(format!("`{name}` appears twice"));
        }
    }
    let mut map = memmap2::MmapMut::map_anon(data.len().max(1)).map_err(|e| e.to_string())?;
    map[..data.len()].copy_from_slice(&data);
    let map = map.make_read_only().map_err(|e| e.to_string())?;
    Ok(SafetensorsFile::in_memory(path, header, map))
}

/// The storage indices of a tensor's elements in row-major order.
fn strided<'a>(
    shape: &'a [usize],
    strides: &'a [usize],
    offset: usize,
) -> impl Iterator<Item = usize> + 'a {
    let numel: usize = shape.iter().product();
    (0..numel).map(move |mut flat| {
        let mut index = offset;
        for (&d, &s) in shape.iter().zip(strides).rev() {
            index += (flat % d) * s;
            flat /= d;
        }
        index
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_views_gather_in_row_major_order() {
        // a [2, 3] tensor stored transposed: strides (1, 2)
        let indices: Vec<usize> = strided(&[2, 3], &[1, 2], 1).collect();
        assert_eq!(indices, vec![1, 3, 5, 2, 4, 6]);
        assert_eq!(strided(&[], &[], 4).collect::<Vec<_>>(), vec![4]);
    }
}
