//! The engine: one device, one loaded checkpoint, and the pipelines that run on them (txt2img
//! and img2img through one [`Engine::generate`]), so every request sees the same state.
//! txt2img reproduces diffusers' `StableDiffusionXLPipeline`
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py>)
//! with the noise of seeded CPU generators.

mod events;
mod generate;
mod request;

pub use events::{Event, RunStats};
pub use generate::Generated;
pub use request::{InitImage, Noise, Request, SizeConditioning, MAX_BATCH, MAX_SIDE};

use crate::checkpoint::{Checkpoint, Prediction, SdxlModels, WeightDtype};
use crate::device::Gpu;
use crate::error::Error;
use crate::sampling::TrainSchedule;
use crate::vae::VaeLimits;

/// Why a request cannot run; all caused by the request, none leaves state behind.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("--width {width} --height {height}: both must be multiples of 8 between 8 and {max}", max = MAX_SIDE)]
    Size { width: usize, height: usize },
    #[error("--cfg {0}: the guidance scale must be a finite number, 0 or more")]
    Guidance(f32),
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
}

/// A loaded checkpoint on a device.
pub struct Engine {
    pub gpu: Gpu,
    pub checkpoint: Checkpoint,
    pub models: SdxlModels,
    /// What the UNet predicts (detected from the checkpoint's markers).
    pub prediction: Prediction,
    /// The training noise schedule (SDXL's).
    pub train: TrainSchedule,
}

impl Engine {
    /// Uploads every component of `checkpoint` to `gpu` with `dtype` weights.
    pub fn load(gpu: Gpu, checkpoint: Checkpoint, dtype: WeightDtype) -> Result<Self, Error> {
        let models = checkpoint.load(&gpu, dtype)?;
        let prediction = checkpoint.variant.prediction;
        Ok(Engine {
            gpu,
            checkpoint,
            models,
            prediction,
            train: TrainSchedule::sdxl(),
        })
    }

    /// What an untiled VAE pass must fit in on this adapter.
    pub fn vae_limits(&self) -> VaeLimits {
        VaeLimits::for_adapter(self.gpu.adapter.max_tensor_bytes())
    }
}
