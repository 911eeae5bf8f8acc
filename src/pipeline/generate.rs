//! One run, txt2img or img2img: prompts -> conditioning; seeded noise (or the init image encoded
//! to its posterior mean and noised to the start step) -> sampling loop with classifier-free
//! guidance -> VAE decode. Reproduces diffusers' `StableDiffusionXLPipeline` and
//! `StableDiffusionXLImg2ImgPipeline` with one CPU generator per image
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.py>),
//! except that img2img starts from the posterior mean, not a sample of it (as ComfyUI does).

use std::time::Instant;

use burn::tensor::{FloatDType, Tensor, TensorData};

use super::{Engine, Event, PipelineError, Request, RunStats};
use crate::checkpoint::Component;
use crate::error::Error;
use crate::image_io;
use crate::sampling::{noise, SamplingRun, TorchRng};
use crate::text_encoder::{Conditioning, TextOptions};
use crate::tokenizer::parse_prompt;
use crate::vae::TilePlan;

/// What a run produced, f32 on the device: everything `--dump` writes.
pub struct Generated {
    /// The prompt pair's conditioning, `[negative, positive]` (shared by the batch).
    pub conditioning: Conditioning,
    /// `add_time_ids` of every image.
    pub add_time_ids: [f32; 6],
    /// The timesteps run (img2img: from its start step).
    pub timesteps: Vec<f32>,
    /// The noise level at each step run and after the last.
    pub sigmas: Vec<f32>,
    /// `[B, 4, h/8, w/8]`: the guided prediction at the first step run.
    pub noise_pred_step0: Tensor<4>,
    /// `[B, 4, h/8, w/8]`, before dividing by the VAE scaling factor.
    pub final_latents: Tensor<4>,
    /// `[B, 3, h, w]`, the VAE output before clamping (about [-1, 1]).
    pub images: Tensor<4>,
    /// How the VAE decode was tiled (`None`: untiled).
    pub vae_plan: Option<TilePlan>,
    pub stats: RunStats,
}

impl Engine {
    /// Runs `request` start to end, reporting progress to `on_event`. Nothing is kept between
    /// requests: a failed request leaves the engine as it was. Afterwards, success or not, the
    /// pooled device memory of the run's activations is released, so an idle engine holds its
    /// weights, adapters and the returned tensors only, whatever size the last request was.
    pub fn generate(
        &self,
        request: &Request,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<Generated, Error> {
        let generated = self.run(request, on_event);
        self.gpu.device.memory_cleanup();
        generated
    }

    fn run(&self, request: &Request, on_event: &mut dyn FnMut(Event)) -> Result<Generated, Error> {
        request.check()?;
        let channels = self.checkpoint.config.unet.in_channels;
        let shape = request.latent_shape(channels);
        if let Some(noise) = &request.init_noise {
            if noise.shape != shape {
                return Err(PipelineError::NoiseShape {
                    got: noise.shape.to_vec(),
                    want: shape,
                }
                .into());
            }
        }
        let mut run = SamplingRun::new(
            request.sampler,
            request.schedule,
            request.steps,
            self.prediction,
            &self.train,
        )?;
        let mut stats = RunStats::default();
        let mut peak = Peak::default();
        let clock = Instant::now();
        let options = TextOptions {
            clip_skip: request.clip_skip,
        };
        let text = self.models.text_encoders.encode_with(
            &parse_prompt(&request.prompt),
            &parse_prompt(&request.negative),
            options,
            self.adapters(),
        )?; // [negative, positive]
        self.gpu.sync()?;
        stats.encode = clock.elapsed();
        peak.sample(self);
        on_event(Event::Encoded {
            elapsed: stats.encode,
        });

        let device = &self.gpu.device;
        let b = request.batch;
        let mut rngs: Vec<TorchRng> = (0..b as u64)
            .map(|i| TorchRng::new(request.seed.wrapping_add(i)))
            .collect();
        let noise = match &request.init_noise {
            Some(n) => Tensor::from_data(TensorData::new(n.values.clone(), n.shape), device),
            None => noise(shape, &mut rngs, device),
        };
        let mut x = match &request.init {
            None => run.initial_latents(noise),
            Some(init) => {
                let clock = Instant::now();
                let image = image_io::fit(&init.image, request.width, request.height);
                let pixels = image_io::to_tensor(&image, device); // [1, 3, H, W]
                let vae_cfg = &self.checkpoint.config.vae;
                let (posterior, _) = self.models.vae.encode_tiled(
                    vae_cfg,
                    pixels,
                    request.vae_precision.dtype(),
                    request.vae_tiling,
                    &self.vae_limits(),
                )?;
                let x0 = (posterior.mean * vae_cfg.scaling_factor).repeat_dim(0, b);
                run.start_at(
                    request.steps - SamplingRun::img2img_steps(request.steps, init.strength),
                );
                let noised = run.add_noise(x0, noise);
                self.gpu.sync()?;
                stats.image_encode = clock.elapsed();
                peak.sample(self);
                on_event(Event::ImageEncoded {
                    elapsed: stats.image_encode,
                });
                noised
            }
        };

        let first = run.steps_done();
        let total = run.steps_left();
        let schedule = run.schedule();
        let timesteps = schedule.timesteps[first..].to_vec();
        let sigmas = schedule.sigmas[first..].to_vec();
        let ids = request.add_time_ids();
        let (negative, positive) = halves(&text);
        // CFG batch [uncond x B, cond x B], as diffusers concatenates it
        let context = Tensor::cat(
            vec![negative.0.repeat_dim(0, b), positive.0.repeat_dim(0, b)],
            0,
        ); // [2B, 77k, 2048]
        let pooled = Tensor::cat(
            vec![negative.1.repeat_dim(0, b), positive.1.repeat_dim(0, b)],
            0,
        ); // [2B, 1280]
        let clock = Instant::now();
        on_event(Event::Step { done: 0, total });
        let mut noise_pred_step0 = None;
        for done in 1..=total {
            let input = run.model_input(&x);
            let t = run.timestep();
            let both = Tensor::cat(vec![input.clone(), input], 0); // [2B, 4, h/8, w/8]
            let out = self.models.unet.forward(
                both,
                &vec![t; 2 * b],
                context.clone(),
                pooled.clone(),
                &vec![ids; 2 * b],
                self.adapters().scope(Component::Unet),
            );
            let [_, c, lh, lw] = out.dims();
            let uncond = out.clone().slice([0..b, 0..c, 0..lh, 0..lw]);
            let cond = out.slice([b..2 * b, 0..c, 0..lh, 0..lw]);
            let guided = uncond.clone() + (cond - uncond) * f64::from(request.cfg);
            if noise_pred_step0.is_none() {
                noise_pred_step0 = Some(guided.clone());
            }
            x = run.step(guided, x, &mut rngs);
            self.gpu.sync()?;
            peak.sample(self);
            on_event(Event::Step { done, total });
        }
        stats.denoise = clock.elapsed();
        stats.steps = total;

        on_event(Event::Decoding { images: b });
        let clock = Instant::now();
        let vae_cfg = &self.checkpoint.config.vae;
        let mut images = Vec::with_capacity(b);
        let mut vae_plan = None;
        for i in 0..b {
            let [_, c, lh, lw] = x.dims();
            let z = x.clone().slice([i..i + 1, 0..c, 0..lh, 0..lw]) / vae_cfg.scaling_factor;
            let (image, plan) = self.models.vae.decode_tiled(
                vae_cfg,
                z,
                request.vae_precision.dtype(),
                request.vae_tiling,
                &self.vae_limits(),
            )?;
            images.push(image);
            vae_plan = plan;
        }
        let images = Tensor::cat(images, 0); // [B, 3, H, W]
        self.gpu.sync()?;
        stats.decode = clock.elapsed();
        peak.sample(self);
        stats.peak_reserved_bytes = peak.0;

        Ok(Generated {
            conditioning: text,
            add_time_ids: ids,
            timesteps,
            sigmas,
            noise_pred_step0: noise_pred_step0.unwrap_or_else(|| x.zeros_like()),
            final_latents: x.cast(FloatDType::F32),
            images,
            vae_plan,
            stats,
        })
    }
}

/// `(context [1, 77k, 2048], pooled [1, 1280])` of the negative and of the positive prompt.
type Half = (Tensor<3>, Tensor<2>);

fn halves(text: &Conditioning) -> (Half, Half) {
    let [_, n, d] = text.context.dims();
    let p = text.pooled.dims()[1];
    let part = |i: usize| {
        (
            text.context.clone().slice([i..i + 1, 0..n, 0..d]),
            text.pooled.clone().slice([i..i + 1, 0..p]),
        )
    };
    (part(0), part(1))
}

/// The largest pool reservation seen.
#[derive(Default)]
struct Peak(Option<u64>);

impl Peak {
    fn sample(&mut self, engine: &Engine) {
        if let Some(bytes) = engine.gpu.reserved_bytes() {
            self.0 = Some(self.0.map_or(bytes, |p| p.max(bytes)));
        }
    }
}
