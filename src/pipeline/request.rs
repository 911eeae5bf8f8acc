//! What one generation asks for, and the checks that need no model, so callers (the CLI, a jobs
//! file, a server) can refuse a bad request before loading anything.

use image::RgbImage;

use super::hires::{Hires, HiresSize, MAX_HIRES_SCALE};
use super::inpaint::Mask;
use super::{Error, PipelineError};
use crate::image_io::mask::MAX_MASK_BLUR;
use crate::image_io::Fit;
use crate::lora::{check_weights, LoraSpec};
use crate::policy::Settings;
use crate::sampling::{schedule, Sampler, SamplingRun, ScheduleError, ScheduleKind, TrainSchedule};
use crate::text_encoder::check_prompt_pair;
use crate::tokenizer::Prompt;
use crate::vae::{VaePrecision, VaeTiling};

/// Largest width or height accepted (SDXL is trained around 1024; 8192 is far past any use).
pub const MAX_SIDE: usize = 8192;
/// Largest batch accepted in one request.
pub const MAX_BATCH: usize = 64;
/// Latent channels of SDXL's UNet and VAE: the only UNet input a checkpoint may have to be
/// accepted as SDXL base-type (see `checkpoint/detect.rs`).
pub const LATENT_CHANNELS: usize = 4;
/// The largest latents a request (or `decode`) handles: `[batch, 4, height/8, width/8]`.
pub const MAX_LATENT_SHAPE: [usize; 4] = [MAX_BATCH, LATENT_CHANNELS, MAX_SIDE / 8, MAX_SIDE / 8];

/// One request: `batch` images of the same prompt, image i with seed `seed + i` (wrapping).
#[derive(Clone, Debug)]
pub struct Request {
    /// Parsed once, when it is set (its LoRA tags are resolved into `loras` by the front-end).
    pub prompt: Prompt,
    /// Empty: SDXL's all-zero negative conditioning.
    pub negative: Prompt,
    pub width: usize,
    pub height: usize,
    /// Steps of the whole schedule (img2img runs `steps x strength` of them).
    pub steps: usize,
    /// Classifier-free guidance scale.
    pub cfg: f32,
    /// Guidance rescale (diffusers' `guidance_rescale`, A1111's "CFG Rescale phi"), in [0, 1]:
    /// the guided prediction's standard deviation pulled back toward the prompt's alone by this
    /// much. `None`: the checkpoint's default ([`crate::pipeline::Engine::default_cfg_rescale`]).
    pub cfg_rescale: Option<f32>,
    pub seed: u64,
    pub batch: usize,
    pub sampler: Sampler,
    pub schedule: ScheduleKind,
    /// Layers skipped beyond the penultimate one (diffusers' `clip_skip`).
    pub clip_skip: usize,
    pub size_conditioning: SizeConditioning,
    /// img2img: the image to start from.
    pub init: Option<InitImage>,
    /// Replaces the drawn initial noise: txt2img before scaling by the initial sigma, img2img
    /// the noise added to the encoded image.
    pub init_noise: Option<Noise>,
    pub vae_tiling: VaeTiling,
    pub vae_precision: VaePrecision,
    /// txt2img: a second pass at a larger size (A1111's hires fix), or none.
    pub hires: Option<Hires>,
    /// The LoRAs the run applies (files resolved): [`crate::pipeline::Engine::generate`] makes
    /// them the active set. Those the prompt's tags name come last, in the tags' order (the
    /// infotext adds a tag for each of the others).
    pub loras: Vec<LoraSpec>,
}

/// SDXL's micro-conditioning (`add_time_ids`): the original size the image claims and the
/// crop's top-left corner. Defaults: original = target size, crop (0, 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeConditioning {
    pub original_width: Option<usize>,
    pub original_height: Option<usize>,
    pub crop_top: usize,
    pub crop_left: usize,
}

/// img2img's start: an RGB image of any size (brought to the target size as `fit` says), how
/// much of the schedule to run on it, in (0, 1], and for inpainting the part to repaint (fitted
/// the same way).
#[derive(Clone, Debug)]
pub struct InitImage {
    pub image: RgbImage,
    pub strength: f64,
    pub mask: Option<Mask>,
    pub fit: Fit,
}

/// A noise tensor given by the user, `[B, C, h, w]` f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Noise {
    pub shape: [usize; 4],
    pub values: Vec<f32>,
}

impl Default for Request {
    /// An empty prompt at the `high` preset's values: 1024x1024, 30 Euler steps, CFG 7.5, seed 0.
    fn default() -> Self {
        Request {
            prompt: Prompt::default(),
            negative: Prompt::default(),
            width: 1024,
            height: 1024,
            steps: 30,
            cfg: 7.5,
            cfg_rescale: None,
            seed: 0,
            batch: 1,
            sampler: Sampler::Euler,
            schedule: ScheduleKind::Default,
            clip_skip: 0,
            size_conditioning: SizeConditioning::default(),
            init: None,
            init_noise: None,
            hires: None,
            vae_tiling: VaeTiling::Auto,
            vae_precision: VaePrecision::F32,
            loras: Vec::new(),
        }
    }
}

/// Whether the size, guidance and steps a user asked for can run at all: a value that fails is
/// malformed and an error, whatever the quality policy would make of it; the policy only moves
/// values that are valid but poor. [`crate::intake::plan`] runs it before the policy.
pub fn check_settings(asked: &Settings) -> Result<(), Error> {
    check_size_and_guidance(asked.width, asked.height, asked.cfg)?;
    let max = TrainSchedule::sdxl().alphas_cumprod.len();
    if asked.steps == 0 || asked.steps > max {
        return Err(ScheduleError::Steps {
            steps: asked.steps,
            max,
        }
        .into());
    }
    Ok(())
}

/// Multiples of 8 between 8 and [`MAX_SIDE`]; guidance finite and 0 or more.
fn check_size_and_guidance(width: usize, height: usize, cfg: f32) -> Result<(), PipelineError> {
    let side_ok = |s: usize| s > 0 && s % 8 == 0 && s <= MAX_SIDE;
    if !side_ok(width) || !side_ok(height) {
        return Err(PipelineError::Size { width, height });
    }
    if !cfg.is_finite() || cfg < 0.0 {
        return Err(PipelineError::Guidance(cfg));
    }
    Ok(())
}

impl Request {
    /// `(original h, original w, crop top, crop left, target h, target w)`, diffusers' order.
    pub fn add_time_ids(&self) -> [f32; 6] {
        let s = &self.size_conditioning;
        let (h, w) = (self.height, self.width);
        [
            s.original_height.unwrap_or(h) as f32,
            s.original_width.unwrap_or(w) as f32,
            s.crop_top as f32,
            s.crop_left as f32,
            h as f32,
            w as f32,
        ]
    }

    /// The latents' shape, `[batch, 4, height/8, width/8]`.
    pub fn latent_shape(&self) -> [usize; 4] {
        [self.batch, LATENT_CHANNELS, self.height / 8, self.width / 8]
    }

    /// The checks that need no model: size, guidance, batch, the prompts (size, weights,
    /// chunks), the schedule (steps, sampler and schedule on SDXL's training schedule), strength,
    /// the steps img2img leaves, the injected noise's shape and values. The engine runs these
    /// checks itself too.
    pub fn check(&self) -> Result<(), Error> {
        self.check_request()?;
        for lora in &self.loras {
            check_weights(lora)?;
        }
        check_prompt_pair(&self.prompt, &self.negative)?;
        schedule(
            self.sampler,
            self.schedule,
            self.steps,
            &TrainSchedule::sdxl(),
        )?;
        if let Some(hires) = &self.hires {
            self.check_hires(hires)?;
        }
        Ok(())
    }

    /// How much the run changes what it starts from: img2img's strength, or a hires pass's
    /// (A1111's one `denoising_strength` for both).
    pub fn denoising_strength(&self) -> Option<f64> {
        let init = self.init.as_ref().map(|i| i.strength);
        init.or(self.hires.as_ref().map(|h| h.strength))
    }

    /// The second pass of a hires fix: this request at the hires size and steps, its size
    /// conditioning that size's own (original = target, no crop), started from the upscaled
    /// latents.
    pub fn hires_pass(&self, hires: &Hires) -> Request {
        let target = hires.target(self.width, self.height);
        Request {
            width: target.width,
            height: target.height,
            steps: hires.steps_of(self.steps),
            size_conditioning: SizeConditioning::default(),
            init: None,
            init_noise: None,
            hires: None,
            ..self.clone()
        }
    }

    /// A hires pass's own values, and the second pass as a request.
    fn check_hires(&self, hires: &Hires) -> Result<(), Error> {
        if self.init.is_some() {
            return Err(PipelineError::HiresWithInit.into());
        }
        if let HiresSize::Scale(scale) = hires.size {
            if !(scale.is_finite() && scale > 0.0 && scale <= MAX_HIRES_SCALE) {
                return Err(PipelineError::HiresScale(scale).into());
            }
        }
        let second = self.hires_pass(hires);
        let (width, height) = (second.width, second.height);
        // the latents are enlarged to `upscale_to` before any crop: that size is bounded too
        let [to_x, to_y] = hires.upscale_to(self.width, self.height);
        let side_ok = |s: usize| s > 0 && s <= MAX_SIDE;
        if ![width, height, to_x, to_y].into_iter().all(side_ok) {
            return Err(PipelineError::HiresSize {
                enlarged: [to_x, to_y],
                width,
                height,
            }
            .into());
        }
        if !(hires.strength > 0.0 && hires.strength <= 1.0) {
            return Err(PipelineError::HiresStrength(hires.strength).into());
        }
        if SamplingRun::img2img_steps(second.steps, hires.strength) == 0 {
            return Err(PipelineError::HiresNoSteps {
                steps: second.steps,
                strength: hires.strength,
            }
            .into());
        }
        schedule(
            second.sampler,
            second.schedule,
            second.steps,
            &TrainSchedule::sdxl(),
        )?;
        Ok(())
    }

    /// A mask with pixels, a blur within [`MAX_MASK_BLUR`], and something to repaint (an
    /// all-black mask, after inverting, would return the init image). A look at the pixels, not
    /// the blur and fit, which the run does once.
    fn check_mask(&self, mask: &Mask) -> Result<(), PipelineError> {
        if mask.image.width() == 0 || mask.image.height() == 0 {
            return Err(PipelineError::EmptyImage);
        }
        if let Some(&blur) = mask.blur.iter().find(|&&b| b > MAX_MASK_BLUR) {
            return Err(PipelineError::MaskBlur(blur));
        }
        if !mask.repaints_anything() {
            return Err(PipelineError::MaskEmpty);
        }
        Ok(())
    }

    fn check_request(&self) -> Result<(), PipelineError> {
        check_size_and_guidance(self.width, self.height, self.cfg)?;
        if let Some(phi) = self.cfg_rescale {
            if !(0.0..=1.0).contains(&phi) {
                return Err(PipelineError::CfgRescale(phi));
            }
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(PipelineError::Batch(self.batch));
        }
        if let Some(init) = &self.init {
            if !(init.strength > 0.0 && init.strength <= 1.0) {
                return Err(PipelineError::Strength(init.strength));
            }
            if SamplingRun::img2img_steps(self.steps, init.strength) == 0 && self.steps > 0 {
                return Err(PipelineError::NoSteps {
                    steps: self.steps,
                    strength: init.strength,
                });
            }
            if init.image.width() == 0 || init.image.height() == 0 {
                return Err(PipelineError::EmptyImage);
            }
            if let Some(mask) = &init.mask {
                self.check_mask(mask)?;
            }
        }
        if let Some(noise) = &self.init_noise {
            let want = self.latent_shape();
            if noise.shape != want || noise.values.len() != want.iter().product::<usize>() {
                return Err(PipelineError::NoiseShape {
                    got: noise.shape.to_vec(),
                    want,
                });
            }
            if noise.values.iter().any(|v| !v.is_finite()) {
                return Err(PipelineError::NoiseValues);
            }
        }
        Ok(())
    }
}
