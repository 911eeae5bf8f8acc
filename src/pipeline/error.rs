//! Why a run fails: [`PipelineError`] for what the request itself gets wrong, and [`Error`], the
//! crate's error, which wraps every subsystem's for callers that touch several (the CLI, a
//! server). It sits here, at the top of the library, so every subsystem's error points one way.

use super::{MAX_BATCH, MAX_SIDE};
use crate::checkpoint::CheckpointError;
use crate::device::DeviceError;
use crate::image_io::ImageError;
use crate::lora::LoraError;
use crate::sampling::ScheduleError;
use crate::text_encoder::TextError;
use crate::vae::VaeError;

/// Why a request cannot run; all caused by the request, none leaves state behind.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("--width {width} --height {height}: both must be multiples of 8 between 8 and {max}", max = MAX_SIDE)]
    Size { width: usize, height: usize },
    #[error("--cfg {0}: the guidance scale must be a finite number, 0 or more")]
    Guidance(f32),
    #[error("--cfg-rescale {0}: the guidance rescale must be between 0 and 1")]
    CfgRescale(f32),
    #[error("--batch {0}: between 1 and {max} images per request", max = MAX_BATCH)]
    Batch(usize),
    #[error("--strength {0}: must be in (0, 1] (1 = ignore the image's content)")]
    Strength(f64),
    #[error("--steps {steps} with --strength {strength} runs int({steps} x {strength}) = 0 steps; raise either")]
    NoSteps { steps: usize, strength: f64 },
    #[error("the init image is empty (0 pixels)")]
    EmptyImage,
    #[error("--init-noise has shape {got:?}; this request needs {want:?} ([batch, 4, height/8, width/8])")]
    NoiseShape { got: Vec<usize>, want: [usize; 4] },
    #[error("--init-noise holds a non-finite value")]
    NoiseValues,
    #[error(
        "the {what} hold NaN or infinite values, so no image is written; likely cause: {cause}"
    )]
    NonFinite { what: &'static str, cause: String },
    #[error("cancelled after {done} of {total} steps")]
    Cancelled { done: usize, total: usize },
}

/// The crate's error: one typed error per subsystem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    Vae(#[from] VaeError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Lora(#[from] LoraError),
}
