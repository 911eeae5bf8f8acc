//! Everything that can be wrong with a checkpoint a user hands us, each with the file it is about.

use std::path::PathBuf;

/// A checkpoint that cannot be read, is not an SDXL base-type model, or does not match the
/// architecture its own tensors describe.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },

    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: directory has no model_index.json, so it is not a diffusers model folder")]
    NotADiffusersFolder { path: PathBuf },

    #[error("{path}: {reason}")]
    BadFolder { path: PathBuf, reason: String },

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

    #[error("{path}: this is {kind}, not a full checkpoint ({evidence}){hint}")]
    NotACheckpoint {
        path: PathBuf,
        kind: &'static str,
        evidence: String,
        hint: &'static str,
    },

    #[error("{path}: {family} is not supported: {reason}")]
    Unsupported {
        path: PathBuf,
        family: &'static str,
        reason: String,
    },

    #[error("{path}: not a Stable Diffusion checkpoint this engine recognises: {reason}")]
    Unknown { path: PathBuf, reason: String },

    #[error("{path}: cannot detect the {component} architecture: {reason}")]
    Architecture {
        path: PathBuf,
        component: &'static str,
        reason: String,
    },

    #[error("{path}: {count} tensors the detected architecture needs are missing, first: {first}")]
    MissingTensors {
        path: PathBuf,
        count: usize,
        first: String,
    },

    #[error(
        "{path}: {count} tensors do not have the shape the detected architecture needs, first: {first}"
    )]
    ShapeMismatch {
        path: PathBuf,
        count: usize,
        first: String,
    },

    #[error("{path}: tensor `{name}` is {dtype}, which cannot be loaded as a float weight")]
    UnsupportedWeightDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },

    #[error("cannot upload `{name}` to the device: {reason}")]
    Device { name: String, reason: String },

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
}
