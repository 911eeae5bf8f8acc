//! Text to image: prompts -> conditioning, seeded noise -> sampling loop with classifier-free
//! guidance -> VAE decode.

use burn::tensor::{FloatDType, Tensor, TensorData};

use super::{Engine, PipelineError};
use crate::error::Error;
use crate::sampling::{Sampler, SamplingRun, ScheduleKind, TorchRng};
use crate::text_encoder::TextOptions;
use crate::tokenizer::parse_prompt;
use crate::vae::{TilePlan, VaePrecision, VaeTiling};

/// One txt2img request (one image).
#[derive(Clone, Debug)]
pub struct Txt2Img {
    pub prompt: String,
    pub negative: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// Classifier-free guidance scale.
    pub cfg: f32,
    pub seed: u64,
    pub sampler: Sampler,
    pub schedule: ScheduleKind,
    pub clip_skip: usize,
    pub vae_tiling: VaeTiling,
    pub vae_precision: VaePrecision,
}

/// What a run produced, f32 on the device.
pub struct Generated {
    /// `[1, 4, h/8, w/8]`, before dividing by the VAE scaling factor.
    pub final_latents: Tensor<4>,
    /// `[1, 3, h, w]`, the VAE output before clamping (about [-1, 1]).
    pub image: Tensor<4>,
    /// How the VAE pass was tiled (`None`: untiled).
    pub vae_plan: Option<TilePlan>,
}

impl Txt2Img {
    /// The checks that need no model: size and guidance (callers can run them before loading).
    pub fn check(&self) -> Result<(), PipelineError> {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 || w % 8 != 0 || h % 8 != 0 {
            return Err(PipelineError::Size {
                width: w,
                height: h,
            });
        }
        if !self.cfg.is_finite() {
            return Err(PipelineError::Guidance(self.cfg));
        }
        Ok(())
    }
}

impl Engine {
    /// Runs `request` start to end. Nothing is kept between requests.
    pub fn txt2img(&self, request: &Txt2Img) -> Result<Generated, Error> {
        request.check()?;
        let (w, h) = (request.width, request.height);
        let mut run = SamplingRun::new(
            request.sampler,
            request.schedule,
            request.steps,
            self.prediction,
            &self.train,
        )?;
        let options = TextOptions {
            clip_skip: request.clip_skip,
        };
        let text = self.models.text_encoders.encode(
            &parse_prompt(&request.prompt),
            &parse_prompt(&request.negative),
            options,
        )?; // [negative, positive]

        let device = &self.gpu.device;
        let unet = &self.models.unet;
        let latent_channels = self.checkpoint.config.unet.in_channels;
        let shape = [1, latent_channels, h / 8, w / 8];
        let mut rng = TorchRng::new(request.seed);
        let noise = rng.randn(shape.iter().product());
        let noise = Tensor::<4>::from_data(TensorData::new(noise, shape), device);
        // SDXL micro-conditioning: original size, crop top-left, target size
        let ids = [h as f32, w as f32, 0.0, 0.0, h as f32, w as f32];

        let mut x = run.initial_latents(noise);
        for _ in 0..request.steps {
            let input = run.model_input(&x);
            let t = run.timestep();
            let both = Tensor::cat(vec![input.clone(), input], 0); // [2, 4, h/8, w/8]
            let out = unet.forward(
                both,
                &[t, t],
                text.context.clone(),
                text.pooled.clone(),
                &[ids, ids],
            );
            let [_, c, lh, lw] = out.dims();
            let uncond = out.clone().slice([0..1, 0..c, 0..lh, 0..lw]);
            let cond = out.slice([1..2, 0..c, 0..lh, 0..lw]);
            let guided = uncond.clone() + (cond - uncond) * f64::from(request.cfg);
            x = run.step(guided, x, &mut rng);
        }

        let vae_cfg = &self.checkpoint.config.vae;
        let z = x.clone() / vae_cfg.scaling_factor;
        let (image, vae_plan) = self.models.vae.decode_tiled(
            vae_cfg,
            z,
            request.vae_precision.dtype(),
            request.vae_tiling,
            &self.vae_limits(),
        )?;
        Ok(Generated {
            final_latents: x.cast(FloatDType::F32),
            image,
            vae_plan,
        })
    }
}
