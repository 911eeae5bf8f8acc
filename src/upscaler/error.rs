//! Why an upscaler file cannot be used, or an upscale cannot run.

use std::path::PathBuf;

use crate::weights::WeightError;

#[derive(Debug, thiserror::Error)]
pub enum UpscalerError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error("{path}: not an upscaler model: it looks like {what}")]
    NotAnUpscaler { path: PathBuf, what: String },
    #[error("{path}: an upscaler file whose layout is not understood: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("{path}: an upscaler must take and give RGB (3 channels); this one takes {inputs} and gives {outputs}")]
    Channels {
        path: PathBuf,
        inputs: usize,
        outputs: usize,
    },
    #[error("an image of {width}x{height} is too small to upscale (each side at least {min})")]
    TooSmall { width: u32, height: u32, min: u32 },
    #[error("an upscaled image of {width}x{height} is larger than the {max}-pixel side allowed")]
    TooLarge { width: u64, height: u64, max: u64 },
    #[error("even a {tile}x{tile} tile needs a {} MiB activation, more than the adapter's {} MiB buffer", need >> 20, max >> 20)]
    TileTooLarge { tile: usize, need: u64, max: u64 },
    #[error("`{name}` upscales latents; an image needs a pixel or model upscaler")]
    LatentOnly { name: String },
    #[error("reading an upscaled tile back from the device failed: {0}")]
    Device(String),
}
