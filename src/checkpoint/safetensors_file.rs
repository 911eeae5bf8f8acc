//! A memory-mapped `.safetensors` file whose header has been checked against the file.
//!
//! We parse the header ourselves (with serde_json) instead of through the `safetensors` crate so
//! that every way a file can be broken gets its own typed error naming the file and the tensor:
//! a user with a half-downloaded 7 GB checkpoint needs "truncated", not "invalid offset".
//! Only the header is read; tensor bytes are paged in from the map when a tensor is loaded.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde::Deserialize;

use super::error::CheckpointError;

/// The element types of the safetensors format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

/// The format's spelling of each dtype and its size in bytes.
const DTYPES: &[(&str, Dtype, usize)] = &[
    ("BOOL", Dtype::Bool, 1),
    ("U8", Dtype::U8, 1),
    ("I8", Dtype::I8, 1),
    ("F8_E5M2", Dtype::F8E5M2, 1),
    ("F8_E4M3", Dtype::F8E4M3, 1),
    ("I16", Dtype::I16, 2),
    ("U16", Dtype::U16, 2),
    ("F16", Dtype::F16, 2),
    ("BF16", Dtype::BF16, 2),
    ("I32", Dtype::I32, 4),
    ("U32", Dtype::U32, 4),
    ("F32", Dtype::F32, 4),
    ("F64", Dtype::F64, 8),
    ("I64", Dtype::I64, 8),
    ("U64", Dtype::U64, 8),
];

impl Dtype {
    pub fn parse(name: &str) -> Option<Dtype> {
        DTYPES
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, d, _)| *d)
    }

    pub fn name(self) -> &'static str {
        DTYPES
            .iter()
            .find(|(_, d, _)| *d == self)
            .map_or("?", |(n, _, _)| n)
    }

    pub fn size(self) -> usize {
        DTYPES
            .iter()
            .find(|(_, d, _)| *d == self)
            .map_or(0, |(_, _, s)| *s)
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64 | Dtype::F8E4M3 | Dtype::F8E5M2
        )
    }

    /// Little-endian values of this dtype as f32: f32, f16 and bf16; `None` for the others.
    pub fn to_f32(self, bytes: &[u8]) -> Option<Vec<f32>> {
        Some(match self {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => return None,
        })
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor as the header describes it; offsets are relative to the data section.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub start: usize,
    pub end: usize,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed and validated header: every tensor, and the free-form `__metadata__` strings.
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

impl Header {
    /// Parses the JSON header and checks it against a data section of `data_len` bytes.
    pub fn parse(json: &[u8], data_len: u64, path: &Path) -> Result<Header, CheckpointError> {
        let invalid = |reason: String| CheckpointError::InvalidHeader {
            path: path.to_path_buf(),
            reason,
        };
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(json).map_err(|e| invalid(e.to_string()))?;

        let mut header = Header::default();
        for (name, value) in raw {
            if name == "__metadata__" {
                // Strings by the format; some tools write other JSON values: keep them as text.
                let serde_json::Value::Object(map) = value else {
                    return Err(invalid("__metadata__ is not an object".into()));
                };
                header.metadata = map
                    .into_iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect();
                continue;
            }
            let entry: RawEntry = serde_json::from_value(value)
                .map_err(|e| invalid(format!("tensor `{name}`: {e}")))?;
            let dtype =
                Dtype::parse(&entry.dtype).ok_or_else(|| CheckpointError::UnknownDtype {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    dtype: entry.dtype.clone(),
                })?;
            let (start, end) = entry.data_offsets;
            if start > end {
                return Err(CheckpointError::InvalidOffsets {
                    path: path.to_path_buf(),
                    name,
                    start,
                    end,
                });
            }
            let expected = entry
                .shape
                .iter()
                .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
            if expected != Some(end - start) {
                return Err(CheckpointError::SizeMismatch {
                    path: path.to_path_buf(),
                    name,
                    dtype: dtype.name().to_string(),
                    shape: entry.shape,
                    expected: expected.unwrap_or(u64::MAX),
                    actual: end - start,
                });
            }
            if end > data_len {
                return Err(CheckpointError::Truncated {
                    path: path.to_path_buf(),
                    name,
                    end,
                    data_len,
                });
            }
            header.tensors.insert(
                name,
                TensorInfo {
                    dtype,
                    shape: entry.shape,
                    start: start as usize,
                    end: end as usize,
                },
            );
        }

        let mut spans: Vec<(&String, &TensorInfo)> = header
            .tensors
            .iter()
            .filter(|(_, t)| t.end > t.start)
            .collect();
        spans.sort_by_key(|(_, t)| t.start);
        for pair in spans.windows(2) {
            if pair[0].1.end > pair[1].1.start {
                return Err(CheckpointError::Overlap {
                    path: path.to_path_buf(),
                    first: pair[0].0.clone(),
                    second: pair[1].0.clone(),
                });
            }
        }
        Ok(header)
    }
}

/// An open, validated safetensors file (or only its header, for tests that have no data).
pub struct SafetensorsFile {
    path: PathBuf,
    map: Option<Arc<Mmap>>,
    data_start: usize,
    header: Header,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<SafetensorsFile, CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CheckpointError::NotFound {
                path: path.to_path_buf(),
            },
            _ => io(e),
        })?;
        let file_len = file.metadata().map_err(io)?.len();
        if file_len < 8 {
            return Err(CheckpointError::TooShort {
                path: path.to_path_buf(),
                len: file_len,
            });
        }
        // SAFETY: the map is read-only. Another process truncating the file while we hold the
        // map would make reads fault; that is the documented contract of every mmap reader.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header_len = u64::from_le_bytes(map[..8].try_into().expect("8 bytes"));
        if header_len > file_len - 8 {
            return Err(CheckpointError::HeaderTooLong {
                path: path.to_path_buf(),
                header_len,
                file_len,
            });
        }
        let data_start = 8 + header_len as usize;
        let header = Header::parse(&map[8..data_start], file_len - data_start as u64, path)?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            map: Some(Arc::new(map)),
            data_start,
            header,
        })
    }

    /// A file known only by its header (a manifest): architecture and key tables work on it,
    /// loading does not.
    pub fn header_only(path: &Path, header: Header) -> SafetensorsFile {
        SafetensorsFile {
            path: path.to_path_buf(),
            map: None,
            data_start: 0,
            header,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The raw little-endian bytes of a tensor the header describes; `None` for a header-only file.
    pub fn bytes(&self, info: &TensorInfo) -> Option<&[u8]> {
        let map = self.map.as_ref()?;
        map.get(self.data_start + info.start..self.data_start + info.end)
    }

    /// The same bytes as a shared buffer that keeps the map alive: uploads read straight from
    /// the mapped file, without a copy on the heap.
    pub fn shared_bytes(&self, info: &TensorInfo) -> Option<bytes::Bytes> {
        let range = self.data_start + info.start..self.data_start + info.end;
        let map = self.map.as_ref()?;
        map.get(range.clone())?;
        Some(bytes::Bytes::from_owner(MappedRange {
            map: map.clone(),
            range,
        }))
    }
}

/// A byte range of a shared map, owned by a `bytes::Bytes`.
struct MappedRange {
    map: Arc<Mmap>,
    range: std::ops::Range<usize>,
}

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}
