//! A memory-mapped `.safetensors` file whose header has been checked against the file.
//!
//! We parse the header ourselves (with serde_json) instead of through the `safetensors` crate so
//! that every way a file can be broken gets its own typed error naming the file and the tensor:
//! a user with a half-downloaded 7 GB checkpoint needs "truncated", not "invalid offset".
//! Only the header is read; tensor bytes are paged in from the map when a tensor is loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde::Deserialize;

use super::{Dtype, WeightError};
use crate::files;

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

/// The largest header read: the reference implementation's cap (`MAX_HEADER_SIZE`, 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// The header's top-level entries in file order, each name as often as the file gives it (a
/// JSON map would keep the last of a repeated name silently; the format forbids repeats).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl Header {
    /// Parses the JSON header and checks it against a data section of `data_len` bytes.
    pub fn parse(json: &[u8], data_len: u64, path: &Path) -> Result<Header, WeightError> {
        let invalid = |reason: String| WeightError::InvalidHeader {
            path: path.to_path_buf(),
            reason,
        };
        let Entries(raw) = serde_json::from_slice(json).map_err(|e| invalid(e.to_string()))?;
        let mut header = Header::default();
        let mut metadata_seen = false;
        for (name, value) in raw {
            if name == "__metadata__" {
                if std::mem::replace(&mut metadata_seen, true) {
                    return Err(WeightError::DuplicateName {
                        path: path.to_path_buf(),
                        name,
                    });
                }
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
            let info = entry.check(&name, data_len, path)?;
            if header.tensors.contains_key(&name) {
                return Err(WeightError::DuplicateName {
                    path: path.to_path_buf(),
                    name,
                });
            }
            header.tensors.insert(name, info);
        }
        header.check_overlaps(path)?;
        Ok(header)
    }

    /// No two tensors share bytes of the data section.
    fn check_overlaps(&self, path: &Path) -> Result<(), WeightError> {
        let mut spans: Vec<(&String, &TensorInfo)> = self
            .tensors
            .iter()
            .filter(|(_, t)| t.end > t.start)
            .collect();
        spans.sort_by_key(|(_, t)| t.start);
        for pair in spans.windows(2) {
            if pair[0].1.end > pair[1].1.start {
                return Err(WeightError::Overlap {
                    path: path.to_path_buf(),
                    first: pair[0].0.clone(),
                    second: pair[1].0.clone(),
                });
            }
        }
        Ok(())
    }
}

impl RawEntry {
    /// The tensor `name` describes, if its dtype is known and its offsets run forwards, span
    /// exactly its shape's bytes and end inside a data section of `data_len` bytes.
    fn check(self, name: &str, data_len: u64, path: &Path) -> Result<TensorInfo, WeightError> {
        let name = name.to_string();
        let dtype = Dtype::parse(&self.dtype).ok_or_else(|| WeightError::UnknownDtype {
            path: path.to_path_buf(),
            name: name.clone(),
            dtype: self.dtype.clone(),
        })?;
        let (start, end) = self.data_offsets;
        if start > end {
            return Err(WeightError::InvalidOffsets {
                path: path.to_path_buf(),
                name,
                start,
                end,
            });
        }
        let expected = self
            .shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
        if expected != Some(end - start) {
            return Err(WeightError::SizeMismatch {
                path: path.to_path_buf(),
                name,
                dtype: dtype.name().to_string(),
                shape: self.shape,
                expected: expected.unwrap_or(u64::MAX),
                actual: end - start,
            });
        }
        if end > data_len {
            return Err(WeightError::Truncated {
                path: path.to_path_buf(),
                name,
                end,
                data_len,
            });
        }
        Ok(TensorInfo {
            dtype,
            shape: self.shape,
            start: start as usize,
            end: end as usize,
        })
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
    pub fn open(path: &Path) -> Result<SafetensorsFile, WeightError> {
        let io = |source| WeightError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = files::open_regular(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => WeightError::NotFound {
                path: path.to_path_buf(),
            },
            _ => io(e),
        })?;
        let file_len = file.metadata().map_err(io)?.len();
        if file_len < 8 {
            return Err(WeightError::TooShort {
                path: path.to_path_buf(),
                len: file_len,
            });
        }
        // SAFETY: the map is read-only. Another process truncating the file while we hold the
        // map would make reads fault; that is the documented contract of every mmap reader.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::from_map(path, map)
    }

    /// A file whose bytes this program carries (the self-test's model), named `name` in
    /// messages: copied once into memory of its own, then read as [`SafetensorsFile::open`]
    /// reads a file.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<SafetensorsFile, WeightError> {
        let path = Path::new(name);
        let io = |source| WeightError::Io {
            path: path.to_path_buf(),
            source,
        };
        if bytes.len() < 8 {
            return Err(WeightError::TooShort {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
            });
        }
        let mut map = memmap2::MmapMut::map_anon(bytes.len()).map_err(io)?;
        map.copy_from_slice(bytes);
        Self::from_map(path, map.make_read_only().map_err(io)?)
    }

    /// The file mapped at `map`, its header checked and parsed (at least 8 bytes long).
    fn from_map(path: &Path, map: Mmap) -> Result<SafetensorsFile, WeightError> {
        let file_len = map.len() as u64;
        let header_len = u64::from_le_bytes(map[..8].try_into().expect("8 bytes"));
        if header_len > MAX_HEADER_BYTES {
            return Err(WeightError::HeaderTooLarge {
                path: path.to_path_buf(),
                header_len,
                max: MAX_HEADER_BYTES,
            });
        }
        if header_len > file_len - 8 {
            return Err(WeightError::HeaderTooLong {
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

    /// A file that exists only in memory: `data` holds the tensors' bytes at the header's
    /// offsets (a synthetic checkpoint; nothing on disk).
    pub fn in_memory(path: &Path, header: Header, data: Mmap) -> SafetensorsFile {
        SafetensorsFile {
            path: path.to_path_buf(),
            map: Some(Arc::new(data)),
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
