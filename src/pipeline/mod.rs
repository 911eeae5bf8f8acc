//! The engine: one device, one loaded checkpoint, and the pipelines that run on them, so every
//! request sees the same state. txt2img reproduces diffusers' `StableDiffusionXLPipeline`
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py>)
//! with the noise of a seeded CPU generator.

mod txt2img;

pub use txt2img::{Generated, Txt2Img};

use crate::checkpoint::{Checkpoint, Prediction, SdxlModels, WeightDtype};
use crate::device::Gpu;
use crate::error::Error;
use crate::sampling::TrainSchedule;
use crate::vae::VaeLimits;

/// Why a request cannot run; all caused by the request, none leaves state behind.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("--width {width} --height {height}: both must be positive multiples of 8")]
    Size { width: usize, height: usize },
    #[error("--cfg {0}: the guidance scale must be a finite number")]
    Guidance(f32),
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
