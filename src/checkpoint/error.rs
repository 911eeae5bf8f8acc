//! Everything that can be wrong with a checkpoint a user hands us, each with the file it is about.

use std::path::PathBuf;

use crate::weights::WeightError;

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

    /// A weight file that cannot be read (its header, offsets, dtypes), or a tensor that cannot
    /// be uploaded.
    #[error(transparent)]
    Weights(#[from] WeightError),

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
}
