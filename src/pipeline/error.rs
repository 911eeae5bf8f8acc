//! Why a run fails: [`PipelineError`] for what the request itself gets wrong, and [`Error`], the
//! crate's error, which wraps every subsystem's for callers that touch several (the CLI, a
//! server). It sits here, at the top of the library, so every subsystem's error points one way.

use super::hires::MAX_HIRES_SCALE;
use super::{MAX_BATCH, MAX_SIDE};
use crate::checkpoint::CheckpointError;
use crate::device::DeviceError;
use crate::field::{Described, Field, FieldNames, Quantities};
use crate::image_io::mask::MAX_MASK_BLUR;
use crate::image_io::ImageError;
use crate::lora::LoraError;
use crate::sampling::ScheduleError;
use crate::text_encoder::TextError;
use crate::upscaler::UpscalerError;
use crate::vae::VaeError;

/// Why a request cannot run; all caused by the request, none leaves state behind. A message
/// names the [`Field`]s it is about; [`Described::describe`] spells them as a front-end does.
#[derive(Debug)]
pub enum PipelineError {
    Size {
        width: usize,
        height: usize,
    },
    Guidance(f32),
    CfgRescale(f32),
    Batch(usize),
    Strength(f64),
    NoSteps {
        steps: usize,
        strength: f64,
    },
    HiresWithInit,
    HiresScale(f64),
    HiresSize {
        enlarged: [usize; 2],
        width: usize,
        height: usize,
    },
    HiresStrength(f64),
    HiresNoSteps {
        steps: usize,
        strength: f64,
    },
    EmptyImage,
    MaskBlur(u32),
    MaskEmpty,
    NoiseShape {
        got: Vec<usize>,
        want: [usize; 4],
    },
    NoiseValues,
    NonFinite {
        what: &'static str,
        cause: String,
    },
    Cancelled {
        done: usize,
        total: usize,
    },
}

impl Described for PipelineError {
    fn describe(&self, names: &dyn FieldNames) -> String {
        let n = |f| names.spell(f);
        match self {
            Self::Size { width, height } => format!(
                "{} {width} {} {height}: both must be multiples of 8 between 8 and {MAX_SIDE}",
                n(Field::Width),
                n(Field::Height)
            ),
            Self::Guidance(cfg) => format!(
                "{} {cfg}: the guidance scale must be a finite number, 0 or more",
                n(Field::Cfg)
            ),
            Self::CfgRescale(phi) => format!(
                "{} {phi}: the guidance rescale must be between 0 and 1",
                n(Field::CfgRescale)
            ),
            Self::Batch(batch) => format!(
                "{} {batch}: between 1 and {MAX_BATCH} images per request",
                n(Field::Batch)
            ),
            Self::Strength(s) => format!(
                "{} {s}: must be in (0, 1] (1 = ignore the image's content)",
                n(Field::Strength)
            ),
            Self::NoSteps { steps, strength } => format!(
                "{} {steps} with {} {strength} runs int({steps} x {strength}) = 0 steps; raise \
                 either",
                n(Field::Steps),
                n(Field::Strength)
            ),
            Self::HiresWithInit => format!(
                "{}: the hires pass is for txt2img, not with an init image",
                n(Field::HiresScale)
            ),
            Self::HiresScale(scale) => format!(
                "{} {scale}: must be a finite number over 0, at most {MAX_HIRES_SCALE}",
                n(Field::HiresScale)
            ),
            Self::HiresSize {
                enlarged: [x, y],
                width,
                height,
            } => format!(
                "the hires pass ({}) enlarges the image to {x}x{y} and runs at {width}x{height}: \
                 every side must be between 8 and {MAX_SIDE}",
                n(Field::HiresScale)
            ),
            Self::HiresStrength(s) => format!("{} {s}: must be in (0, 1]", n(Field::HiresDenoise)),
            Self::HiresNoSteps { steps, strength } => format!(
                "{} {steps} with {} {strength} runs int({steps} x {strength}) = 0 steps; raise \
                 either",
                n(Field::HiresSteps),
                n(Field::HiresDenoise)
            ),
            Self::EmptyImage => "the init image is empty (0 pixels)".into(),
            Self::MaskBlur(blur) => format!(
                "{} {blur}: at most {MAX_MASK_BLUR} pixels",
                n(Field::MaskBlur)
            ),
            Self::MaskEmpty => format!(
                "the {} marks nothing to repaint (white repaints, black keeps; is it \
                 inverted?)",
                n(Field::Mask)
            ),
            Self::NoiseShape { got, want } => format!(
                "{} has shape {got:?}; this request needs {want:?} ([batch, 4, height/8, \
                 width/8])",
                n(Field::InitNoise)
            ),
            Self::NoiseValues => format!("{} holds a non-finite value", n(Field::InitNoise)),
            Self::NonFinite { what, cause } => format!(
                "the {what} hold NaN or infinite values, so no image is written; likely cause: \
                 {cause}"
            ),
            Self::Cancelled { done, total } => format!("cancelled after {done} of {total} steps"),
        }
    }
}

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(&Quantities))
    }
}

impl std::error::Error for PipelineError {}

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
    #[error(transparent)]
    Upscaler(#[from] UpscalerError),
}

impl Described for Error {
    /// Errors about the request's fields spelled by `names`; every other error as it displays.
    fn describe(&self, names: &dyn FieldNames) -> String {
        match self {
            Error::Pipeline(e) => e.describe(names),
            Error::Schedule(e) => e.describe(names),
            Error::Device(e) => e.describe(names),
            Error::Text(e) => e.describe(names),
            other => other.to_string(),
        }
    }
}
