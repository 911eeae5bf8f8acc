//! The engine: one device, one loaded checkpoint, and the pipelines that run on them (txt2img
//! and img2img, with inpainting, through one [`Engine::generate`]), so every request sees the same state.
//! txt2img reproduces diffusers' `StableDiffusionXLPipeline`
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py>)
//! with the noise of seeded CPU generators.

mod controls;
mod error;
mod events;
pub mod extras;
mod generate;
pub mod hires;
pub mod inpaint;
mod request;
pub mod upscale;

pub use crate::image_io::Fit;
pub use controls::{Cancel, Controls, Preview};
pub use error::{Error, PipelineError};
pub use events::{Event, RunStats};
pub use generate::Generated;
pub use hires::{Hires, HiresSize, HiresUpscaler, ModelUpscaler, UpscalerChoice};
pub use inpaint::{Mask, MaskedContent, Overlay};
pub use request::{
    check_settings, InitImage, Noise, Request, SizeConditioning, LATENT_CHANNELS, MAX_BATCH,
    MAX_LATENT_SHAPE, MAX_SIDE,
};

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use burn::tensor::FloatDType;

use crate::checkpoint::{Checkpoint, SdxlModels};
use crate::device::{Gpu, MadeOn};
use crate::lora::{AdapterSet, BuildReport, LoraSpec, LoraTable};
use crate::sampling::{Prediction, TrainSchedule};
use crate::upscaler::Upscaler;
use crate::vae::VaeLimits;
use crate::weights::WeightDtype;

/// The guidance rescale a checkpoint runs with by default: diffusers' recommended 0.7 (Lin et
/// al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed") for
/// zero-terminal-SNR v-prediction checkpoints, which without it give over-exposed images at
/// usual CFG; 0 (off) otherwise.
pub fn default_cfg_rescale(prediction: Prediction, zero_terminal_snr: bool) -> f32 {
    if zero_terminal_snr && prediction == Prediction::V {
        0.7
    } else {
        0.0
    }
}

/// What a load may set instead of the checkpoint's markers: its prediction type (`None`: as
/// detected) and whether its noise schedule is rescaled to zero terminal SNR (`None`: as its
/// marker says).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadOptions {
    pub prediction: Option<Prediction>,
    pub zero_terminal_snr: Option<bool>,
}

/// A loaded checkpoint on a device, and the active LoRA adapters.
pub struct Engine {
    gpu: Gpu,
    checkpoint: Checkpoint,
    models: SdxlModels,
    /// What the UNet predicts (the checkpoint's markers, or the load's options).
    prediction: Prediction,
    /// The training noise schedule: SDXL's, rescaled to zero terminal SNR when the checkpoint
    /// carries the marker or the load asks.
    train: TrainSchedule,
    /// The active LoRAs' deltas; replaced whole by [`Engine::set_loras`] (a lock, so a run
    /// holds one set from start to end, and a shared engine can swap).
    adapters: Mutex<AdapterSet>,
    /// LoRA module names -> this model's layers.
    lora_table: LoraTable,
    /// The model upscaler the last hires pass that named one used, kept warm for the next
    /// (replaced when a request names another file).
    upscaler: Mutex<Option<(PathBuf, Upscaler)>>,
}

impl Engine {
    /// [`Engine::load_with`] as the checkpoint's markers say.
    pub fn load(gpu: Gpu, checkpoint: Checkpoint, dtype: WeightDtype) -> Result<Self, Error> {
        Self::load_with(gpu, checkpoint, dtype, LoadOptions::default())
    }

    /// Uploads every component of `checkpoint` to `gpu` with `dtype` weights, and waits until
    /// the device holds them (the conv weights' channels-last copies included), so memory
    /// measured after a load is the weights' alone.
    pub fn load_with(
        gpu: Gpu,
        checkpoint: Checkpoint,
        dtype: WeightDtype,
        options: LoadOptions,
    ) -> Result<Self, Error> {
        let phase =
            crate::phase::start(format!("load {} ({dtype:?})", checkpoint.path().display()));
        let models = checkpoint.load(&gpu, dtype)?;
        gpu.sync()?;
        phase.done("");
        let prediction = options.prediction.unwrap_or(checkpoint.variant.prediction);
        let ztsnr = options
            .zero_terminal_snr
            .unwrap_or(checkpoint.variant.zero_terminal_snr);
        let train = TrainSchedule::for_checkpoint(ztsnr);
        let lora_table = LoraTable::new(&checkpoint.config);
        Ok(Engine {
            gpu,
            checkpoint,
            models,
            prediction,
            train,
            adapters: Mutex::new(AdapterSet::none()),
            lora_table,
            upscaler: Mutex::new(None),
        })
    }

    /// Makes `specs` the active LoRAs (empty: none); [`Engine::generate`] does it for its
    /// request. The new set is built whole off to the side (files read, every tensor validated
    /// against its layer, uploaded) and replaces the previous one in one step; asking for the
    /// active set again does nothing (`Ok(None)`). On error the previous set stays active.
    /// Either way, the pooled device memory of the replaced set or of the failed attempt is
    /// released.
    pub fn set_loras(&self, specs: &[LoraSpec]) -> Result<Option<BuildReport>, Error> {
        let mut adapters = self.adapters();
        if specs == adapters.specs() {
            return Ok(None);
        }
        let phase = crate::phase::start(format!("LoRA set of {} file(s)", specs.len()));
        let built = AdapterSet::build(
            specs,
            &self.lora_table,
            &self.gpu.device,
            self.compute_dtype(),
        );
        let result = match built {
            Ok((set, report)) => {
                *adapters = set; // the previous set is dropped here
                Ok(Some(report))
            }
            Err(e) => Err(e.into()),
        };
        drop(adapters);
        self.release_memory(); // waits for the set's uploads and layout copies first
        if result.is_ok() {
            phase.done("swapped in");
        }
        result
    }

    /// Makes the model upscaler at `model`'s path the loaded one (loaded in the engine's compute
    /// dtype unless it already is); [`Engine::generate`] does it for a hires pass that names
    /// one. On error the previous one stays.
    pub fn set_upscaler(&self, model: &ModelUpscaler) -> Result<(), Error> {
        let mut loaded = self.upscaler();
        if loaded.as_ref().is_some_and(|(path, _)| *path == model.path) {
            return Ok(());
        }
        let phase = crate::phase::start(format!("load upscaler {}", model.path.display()));
        let dtype = match self.compute_dtype() {
            FloatDType::F16 => WeightDtype::F16,
            _ => WeightDtype::F32,
        };
        let upscaler = Upscaler::load(&model.path, &self.gpu, dtype)?;
        *loaded = Some((model.path.clone(), upscaler));
        drop(loaded);
        self.release_memory();
        phase.done("");
        Ok(())
    }

    /// The loaded model upscaler and its file (held while the guard lives).
    pub fn upscaler(&self) -> MutexGuard<'_, Option<(PathBuf, Upscaler)>> {
        self.upscaler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The active LoRAs' deltas (held while the guard lives).
    pub fn adapters(&self) -> MutexGuard<'_, AdapterSet> {
        // a panic while it was held leaves a whole set (swaps replace it in one step)
        self.adapters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The device this engine runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The checkpoint it loaded.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Its models.
    pub fn models(&self) -> &SdxlModels {
        &self.models
    }

    /// What its UNet predicts.
    pub fn prediction(&self) -> Prediction {
        self.prediction
    }

    /// Its training noise schedule.
    pub fn train(&self) -> &TrainSchedule {
        &self.train
    }

    /// The dtype the UNet and text encoders compute in (their weights').
    pub fn compute_dtype(&self) -> FloatDType {
        self.models.unet.conv_in.weight.val().dtype().into()
    }

    /// Where this engine's images are made (their metadata's `"backend"`).
    pub fn made_on(&self) -> MadeOn {
        self.gpu.made_on(self.compute_dtype() == FloatDType::F16)
    }

    /// The guidance rescale a request without one runs with ([`default_cfg_rescale`]).
    pub fn default_cfg_rescale(&self) -> f32 {
        default_cfg_rescale(self.prediction, self.train.zero_terminal_snr)
    }

    /// Fills in what `request` leaves to the checkpoint (the guidance rescale), so the image's
    /// metadata records what ran.
    pub fn resolve(&self, request: &mut Request) {
        request
            .cfg_rescale
            .get_or_insert_with(|| self.default_cfg_rescale());
    }

    /// What an untiled VAE pass must fit in on this adapter.
    pub fn vae_limits(&self) -> VaeLimits {
        VaeLimits::for_adapter(self.gpu.adapter.max_tensor_bytes())
    }
}
