//! Everything that can be wrong with a weight file or with uploading its tensors, each with the
//! file or tensor it is about.

use std::path::PathBuf;

/// A safetensors file that cannot be read, or a parameter that cannot be loaded from it.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },

    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: file is {len} bytes, too short for a safetensors file (8-byte header length first)")]
    TooShort { path: PathBuf, len: u64 },

    #[error(
        "{path}: header length {header_len} is larger than the file ({file_len} bytes): not a safetensors file, or truncated"
    )]
    HeaderTooLong {
        path: PathBuf,
        header_len: u64,
        file_len: u64,
    },

    #[error("{path}: header length {header_len} is over the format's {max}-byte limit: not a safetensors file")]
    HeaderTooLarge {
        path: PathBuf,
        header_len: u64,
        max: u64,
    },

    #[error("{path}: the header names `{name}` twice, which the format forbids")]
    DuplicateName { path: PathBuf, name: String },

    #[error("{path}: header is not valid safetensors JSON: {reason}")]
    InvalidHeader { path: PathBuf, reason: String },

    #[error("{path}: tensor `{name}` has unknown dtype `{dtype}`")]
    UnknownDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },

    #[error("{path}: tensor `{name}` has data offsets {start}..{end}, which run backwards")]
    InvalidOffsets {
        path: PathBuf,
        name: String,
        start: u64,
        end: u64,
    },

    #[error(
        "{path}: tensor `{name}` is {dtype} {shape:?}, which needs {expected} bytes, but its offsets span {actual} bytes"
    )]
    SizeMismatch {
        path: PathBuf,
        name: String,
        dtype: String,
        shape: Vec<usize>,
        expected: u64,
        actual: u64,
    },

    #[error(
        "{path}: tensor `{name}` ends at byte {end} of the data section, which holds only {data_len} bytes: the file is truncated (or its header is wrong)"
    )]
    Truncated {
        path: PathBuf,
        name: String,
        end: u64,
        data_len: u64,
    },

    #[error("{path}: tensors `{first}` and `{second}` overlap in the data section")]
    Overlap {
        path: PathBuf,
        first: String,
        second: String,
    },

    #[error("{path}: tensor `{name}` is {dtype}, which cannot be loaded as a float weight")]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },

    #[error(
        "`{name}` needs {} MiB as {dtype}, more than the {} MiB one buffer of {adapter} can hold; \
         load it in f16 (--precision f16 / auto) or use a GPU with larger buffers",
        bytes >> 20,
        max >> 20
    )]
    TooLargeForAdapter {
        name: String,
        dtype: String,
        bytes: u64,
        max: u64,
        adapter: String,
    },

    #[error("{path}: not a readable PyTorch file: {reason}")]
    Pth { path: PathBuf, reason: String },

    /// The model asked for a parameter the source does not hold in that form: a disagreement
    /// between a model's constructor and the key tables, not a user error.
    #[error("{source_name}: {reason}")]
    Model { source_name: String, reason: String },
}
