//! One run, txt2img or img2img: prompts -> conditioning; seeded noise (or the init image encoded
//! to its posterior mean and noised to the start step) -> sampling loop with classifier-free
//! guidance -> (a hires fix's second pass, see [`super::hires`]) -> VAE decode. Reproduces
//! diffusers' `StableDiffusionXLPipeline` and `StableDiffusionXLImg2ImgPipeline` with one CPU
//! generator per image
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.py>),
//! except that img2img starts from the posterior mean, not a sample of it (as ComfyUI does).
//! Inpainting blends the original back after every call ([`super::inpaint`]).

use std::time::Instant;

use burn::tensor::{FloatDType, Tensor, TensorData};
use image::RgbImage;

use super::hires::{crop, upscale_latents, Hires, HiresTarget, Method};
use super::inpaint::{start_image, Blend, Overlay};
use super::upscale::upscale_to;
use super::{Controls, Engine, Error, Event, InitImage, PipelineError, Request, RunStats};
use crate::checkpoint::Component;
use crate::device::DeviceError;
use crate::image_io::resample::pil_resize;
use crate::image_io::{self, mask, ImageError};
use crate::lora::AdapterSet;
use crate::phase;
use crate::sampling::{noise, SamplingRun, TorchRng};
use crate::text_encoder::{Conditioning, TextOptions};
use crate::tokenizer::PromptPart;
use crate::vae::TilePlan;

/// What a run produced, f32 on the device: everything `--dump` writes.
pub struct Generated {
    /// The prompt pair's conditioning, `[negative, positive]` (shared by the batch).
    pub conditioning: Conditioning,
    /// `add_time_ids` of every image.
    pub add_time_ids: [f32; 6],
    /// The UNet's timestep at each model call run (img2img: from its start step).
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
    /// Inpainting: the init image's pixels that [`Generated::pictures`] pastes back.
    pub overlay: Option<Overlay>,
    pub stats: RunStats,
}

impl Generated {
    /// The images as 8-bit pictures (rounded), an inpainting run's with the init image's
    /// pixels pasted back where the mask keeps them (A1111's overlay).
    pub fn pictures(&self) -> Result<Vec<RgbImage>, ImageError> {
        let pictures = image_io::to_rgb(self.images.clone())?;
        Ok(match &self.overlay {
            Some(overlay) => pictures.iter().map(|p| overlay.apply(p)).collect(),
            None => pictures,
        })
    }
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
        self.generate_with(
            request,
            Controls {
                cancel: None,
                on_event,
                preview: None,
                keep_memory: false,
            },
        )
    }

    /// [`Engine::generate`] with a stop signal, checked before each stage and each step (a
    /// cancelled run stops within one step with [`PipelineError::Cancelled`] and releases its
    /// memory like any other), an optional live preview, and the choice to keep the pooled
    /// memory warm for the next run.
    pub fn generate_with(&self, request: &Request, controls: Controls) -> Result<Generated, Error> {
        let keep = controls.keep_memory;
        request.check()?;
        self.set_loras(&request.loras)?;
        if let Some(model) = request.hires.as_ref().and_then(|h| h.upscaler.model()) {
            self.set_upscaler(model)?;
        }
        let generated = self.run(request, controls);
        if generated.is_err() || !keep {
            self.release_memory();
        }
        generated
    }

    /// Releases the device memory pooled for activations (the weights and adapters stay), once
    /// the device has finished the work queued on it (a failed or cancelled run may leave
    /// steps in flight).
    pub fn release_memory(&self) {
        let _ = self.gpu.sync(); // a device failure was reported by the run that caused it
        self.gpu.device.memory_cleanup();
    }

    fn run(&self, request: &Request, controls: Controls) -> Result<Generated, Error> {
        let sampling = SamplingRun::new(
            request.sampler,
            request.schedule,
            request.steps,
            self.prediction,
            &self.train,
        )?;
        let adapters = self.adapters(); // one set from start to end
        let second = request.hires.as_ref().map(|h| (h, request.hires_pass(h)));
        let mut run = Run {
            engine: self,
            adapters: &adapters,
            request,
            rngs: seeded_rngs(request),
            sampling,
            stats: RunStats::default(),
            controls,
            blend: None,
            overlay: None,
        };
        let total = match &request.init {
            Some(init) => SamplingRun::img2img_steps(request.steps, init.strength),
            None => request.steps,
        };
        run.check_cancel(0, total)?;
        let text = run.encode()?; // [negative, positive]
        run.check_cancel(0, total)?;
        let x = run.initial_latents()?;
        let first = run.sampling.steps_done();
        let (timesteps, sigmas) = (
            run.sampling.timesteps(),
            run.sampling.schedule().sigmas[first..].to_vec(),
        );
        let (x, noise_pred_step0) = run.denoise(&text, x)?;
        let x = match &second {
            Some((hires, second)) => run.hires_pass(&text, x, hires, second)?,
            None => x,
        };
        run.ensure_finite(&x, "final latents")?;
        run.check_cancel(run.stats.steps, run.stats.steps)?;
        let (images, vae_plan) = run.decode(&x)?;
        run.ensure_finite(&images, "decoded images")?;
        Ok(Generated {
            conditioning: text,
            add_time_ids: request.add_time_ids(),
            timesteps,
            sigmas,
            noise_pred_step0,
            final_latents: x.cast(FloatDType::F32),
            images,
            vae_plan,
            overlay: run.overlay,
            stats: run.stats,
        })
    }
}

/// One run as it moves through its stages: the request, the sampler's state, one CPU
/// generator per image, and the figures gathered at each stage's end.
struct Run<'a, 'c> {
    engine: &'a Engine,
    /// The request's LoRAs, active for the whole run.
    adapters: &'a AdapterSet,
    request: &'a Request,
    sampling: SamplingRun,
    rngs: Vec<TorchRng>,
    stats: RunStats,
    controls: Controls<'c>,
    /// Inpainting: the blend after each call, and the pixels pasted back after the decode.
    blend: Option<Blend>,
    overlay: Option<Overlay>,
}

impl<'a> Run<'a, '_> {
    /// A stage's end: waits for the device (surfacing its failure) and samples its memory.
    fn boundary(&mut self) -> Result<(), Error> {
        let gpu = &self.engine.gpu;
        gpu.sync()?;
        if let Some(bytes) = gpu.reserved_bytes() {
            let peak = &mut self.stats.peak_reserved_bytes;
            *peak = Some(peak.map_or(bytes, |p| p.max(bytes)));
        }
        Ok(())
    }

    /// [`PipelineError::Cancelled`] once the caller has asked the run to stop.
    fn check_cancel(&self, done: usize, total: usize) -> Result<(), Error> {
        if self.controls.cancelled() {
            return Err(PipelineError::Cancelled { done, total }.into());
        }
        Ok(())
    }

    /// An error naming the likely cause when `t` holds NaN or infinite values (one value read
    /// back, after the loop).
    fn ensure_finite(&self, t: &Tensor<4>, what: &'static str) -> Result<(), Error> {
        let finite = t
            .clone()
            .is_finite()
            .all()
            .try_into_scalar::<bool>()
            .map_err(|e| DeviceError::Execution(format!("{e:?}")))?;
        if finite {
            return Ok(());
        }
        let weighted = [&self.request.prompt, &self.request.negative]
            .iter()
            .flat_map(|p| &p.parsed().parts)
            .any(|part| matches!(part, PromptPart::Text { weight, .. } if *weight != 1.0));
        let mut causes = Vec::new();
        if weighted {
            causes.push("a prompt weight (lower it)");
        }
        if !self.adapters.is_empty() {
            causes.push("a LoRA (lower its weight, or run without it)");
        }
        causes.push(
            "the checkpoint (try --precision f32; `inspect --scan` lists tensors holding NaN/Inf)",
        );
        Err(PipelineError::NonFinite {
            what,
            cause: causes.join(", or "),
        }
        .into())
    }

    /// Both prompts' conditioning, with the text encoders' LoRA deltas.
    fn encode(&mut self) -> Result<Conditioning, Error> {
        let phase = phase::start("text encode");
        let clock = Instant::now();
        let engine = self.engine;
        let options = TextOptions {
            clip_skip: self.request.clip_skip,
        };
        let text = engine.models.text_encoders.encode_with(
            self.request.prompt.parsed(),
            self.request.negative.parsed(),
            options,
            self.adapters.text(),
        )?;
        self.boundary()?;
        self.stats.encode = clock.elapsed();
        phase.done("");
        (self.controls.on_event)(Event::Encoded {
            elapsed: self.stats.encode,
        });
        Ok(text)
    }

    /// txt2img: the noise scaled to the first sigma; img2img: the image encoded and noised to
    /// its start step. The noise is the request's, or drawn from the seeds.
    fn initial_latents(&mut self) -> Result<Tensor<4>, Error> {
        let request = self.request;
        let device = &self.engine.gpu.device;
        let noise = match &request.init_noise {
            Some(n) => Tensor::from_data(TensorData::new(n.values.clone(), n.shape), device),
            None => noise(request.latent_shape(), &mut self.rngs, device),
        };
        match &request.init {
            None => Ok(self.sampling.initial_latents(noise)),
            Some(init) => self.noised_image(init, noise),
        }
    }

    /// img2img's start: the image fitted to the size, encoded to its posterior mean, scaled, and
    /// noised to the step `strength` leaves. Inpainting keeps what it blends and pastes back,
    /// and at strength 1 starts from pure noise, as diffusers' inpainting does.
    fn noised_image(&mut self, init: &InitImage, noise: Tensor<4>) -> Result<Tensor<4>, Error> {
        let phase = phase::start("VAE encode (init image)");
        let clock = Instant::now();
        let request = self.request;
        let image = init.fit.apply(&init.image, request.width, request.height);
        let noised = match &init.mask {
            None => {
                let x0 = self.encode_image(&image)?.repeat_dim(0, request.batch);
                self.noised(x0, noise, init.strength)
            }
            Some(m) => {
                let prepared = m.prepared(request.width, request.height, init.fit);
                let start = start_image(image.clone(), &prepared, m.content);
                let x0 = self.encode_image(&start)?.repeat_dim(0, request.batch);
                let device = &self.engine.gpu.device;
                let blend = Blend::new(x0, noise.clone(), &prepared, device);
                let x0 = blend.start(m.content);
                self.blend = Some(blend);
                self.overlay = Some(Overlay {
                    original: image,
                    mask: mask::overlay_mask(&prepared),
                });
                match init.strength >= 1.0 {
                    true => self.sampling.initial_latents(noise),
                    false => self.noised(x0, noise, init.strength),
                }
            }
        };
        self.boundary()?;
        self.stats.image_encode = clock.elapsed();
        phase.done("");
        (self.controls.on_event)(Event::ImageEncoded {
            elapsed: self.stats.image_encode,
        });
        Ok(noised)
    }

    /// The hires fix's second pass: the first pass's latents `x` upscaled to `second`'s size,
    /// noised to the step the strength leaves with fresh noise from each image's seed (the
    /// ancestral noise continues that generator), and denoised as `second` asks.
    fn hires_pass(
        &mut self,
        text: &Conditioning,
        x: Tensor<4>,
        hires: &Hires,
        second: &'a Request,
    ) -> Result<Tensor<4>, Error> {
        let engine = self.engine;
        let target = hires.target(self.request.width, self.request.height);
        let phase = phase::start(format!(
            "hires upscale to {}x{} ({})",
            target.width,
            target.height,
            hires.upscaler.a1111_name()
        ));
        let upscaled = match hires.upscaler.method() {
            Method::Latent(mode) => upscale_latents(x, &target, mode),
            Method::Pixel(filter) => {
                let resize = |image: &RgbImage, w, h| Ok(pil_resize(image, w, h, filter));
                crop(self.pixel_upscale(&x, &target, resize)?, &target)
            }
            Method::Model(_) => {
                let loaded = engine.upscaler();
                let (_, model) = loaded.as_ref().expect("set by generate_with");
                let gpu = &engine.gpu;
                let resize = |image: &RgbImage, w, h| Ok(upscale_to(model, image, w, h, gpu)?);
                crop(self.pixel_upscale(&x, &target, resize)?, &target)
            }
        };
        phase.done("");
        self.request = second;
        self.sampling = SamplingRun::new(
            second.sampler,
            second.schedule,
            second.steps,
            engine.prediction,
            &engine.train,
        )?;
        self.rngs = seeded_rngs(second);
        let noise = noise(second.latent_shape(), &mut self.rngs, &engine.gpu.device);
        let noised = self.noised(upscaled, noise, hires.strength);
        let first_steps = self.stats.steps;
        let (x, _) = self.denoise(text, noised)?;
        self.stats.steps += first_steps;
        Ok(x)
    }

    /// `x0` noised with `noise` to the step `strength` leaves of the request's schedule, where
    /// sampling then starts (img2img's start, and a hires pass's).
    fn noised(&mut self, x0: Tensor<4>, noise: Tensor<4>, strength: f64) -> Tensor<4> {
        let steps = self.request.steps;
        self.sampling
            .start_at(steps - SamplingRun::img2img_steps(steps, strength));
        self.sampling.add_noise(x0, noise)
    }

    /// A pixel upscaler's way to `target.upscaled`: the latents decoded to 8-bit images as
    /// A1111 makes them between its passes, each resized by `resize` (Pillow's filter, or a
    /// model upscaler then Lanczos) and encoded again to its posterior mean (as the engine's
    /// img2img starts; A1111 samples the posterior).
    fn pixel_upscale(
        &mut self,
        x: &Tensor<4>,
        target: &HiresTarget,
        resize: impl Fn(&RgbImage, u32, u32) -> Result<RgbImage, Error>,
    ) -> Result<Tensor<4>, Error> {
        let (images, _) = self.decode(x)?; // [B, 3, h, w]
        let [rows, cols] = target.upscaled;
        let mut latents = Vec::with_capacity(self.request.batch);
        for image in image_io::to_rgb_truncated(images)? {
            let resized = resize(&image, 8 * cols as u32, 8 * rows as u32)?;
            latents.push(self.encode_image(&resized)?);
        }
        Ok(Tensor::cat(latents, 0)) // [B, 4, rows, cols]
    }

    /// `image` encoded by the VAE to its posterior mean, times the scaling factor:
    /// `[1, 4, H/8, W/8]`.
    fn encode_image(&self, image: &RgbImage) -> Result<Tensor<4>, Error> {
        let (engine, request) = (self.engine, self.request);
        let pixels = image_io::to_tensor(image, &engine.gpu.device); // [1, 3, H, W]
        let vae_cfg = &engine.checkpoint.config.vae;
        let (posterior, _) = engine.models.vae.encode_tiled(
            vae_cfg,
            pixels,
            request.vae_precision.dtype(),
            request.vae_tiling,
            &engine.vae_limits(),
        )?;
        Ok(posterior.mean * vae_cfg.scaling_factor)
    }

    /// The sampling loop with classifier-free guidance: the final latents and the guided
    /// prediction at the first step run. At CFG <= 1 the UNet sees the prompt alone, one pass
    /// per step (diffusers' `do_classifier_free_guidance = guidance_scale > 1`).
    fn denoise(
        &mut self,
        text: &Conditioning,
        mut x: Tensor<4>,
    ) -> Result<(Tensor<4>, Tensor<4>), Error> {
        let (engine, request) = (self.engine, self.request);
        let b = request.batch;
        let guided = request.cfg > 1.0;
        let rescale = request
            .cfg_rescale
            .unwrap_or_else(|| engine.default_cfg_rescale());
        let halves = if guided { 2 } else { 1 };
        let ids = request.add_time_ids();
        let (context, pooled) = unet_conditioning(text, b, guided);
        let unet = &engine.models.unet;
        let adapters = self.adapters;
        let adapt = adapters.scope(Component::Unet);
        let phase = phase::start("UNet conditioning (text-time embedding, cross-attention keys)");
        let text = unet.prepare(context, pooled, &vec![ids; halves * b], adapt); // once per run
        self.engine.gpu.sync()?;
        phase.done("");
        let total = self.sampling.steps_left();
        let phase = phase::start(format!("denoise {total} steps (UNet batch {})", halves * b));
        let mut steps = phase::steps();
        let clock = Instant::now();
        (self.controls.on_event)(Event::Step { done: 0, total });
        let mut noise_pred_step0 = None;
        for done in 1..=total {
            self.check_cancel(done - 1, total)?;
            let recording = Instant::now();
            let input = self.sampling.model_input(&x);
            let t = self.sampling.timestep();
            let batch = if guided {
                Tensor::cat(vec![input.clone(), input], 0) // [2B, 4, h/8, w/8]
            } else {
                input
            };
            let out = unet.forward_prepared(batch, &vec![t; halves * b], &text, adapt);
            let prediction = if guided {
                guide(out, b, request.cfg, rescale)
            } else {
                out
            };
            if noise_pred_step0.is_none() {
                noise_pred_step0 = Some(prediction.clone());
            }
            let preview = self
                .controls
                .previews(done, total)
                .then(|| self.sampling.predicted_x0(&prediction, &x));
            x = self.sampling.step(prediction, x, &mut self.rngs);
            if let Some(blend) = &self.blend {
                x = blend.apply(x, &self.sampling);
            }
            // submitted, not waited for: the CPU records the next step while the device runs
            // this one (the one wait is at the loop's end)
            self.engine.gpu.flush()?;
            self.stats.record += recording.elapsed();
            steps.step(done, total);
            (self.controls.on_event)(Event::Step { done, total });
            if let (Some(x0), Some(p)) = (preview, self.controls.preview.as_mut()) {
                (p.show)(done, x0);
            }
        }
        self.boundary()?;
        let elapsed = clock.elapsed();
        self.stats.denoise += elapsed; // both passes of a hires fix
        phase.done(format!(
            "{:.3} s per step",
            elapsed.as_secs_f64() / total.max(1) as f64
        ));
        self.stats.steps = total;
        self.stats.unet_batch = halves * b;
        let step0 = noise_pred_step0.unwrap_or_else(|| x.zeros_like());
        Ok((x, step0))
    }

    /// The VAE decode of every image of the batch, one at a time: `[B, 3, H, W]` and the tiling
    /// used.
    fn decode(&mut self, x: &Tensor<4>) -> Result<(Tensor<4>, Option<TilePlan>), Error> {
        let (engine, request) = (self.engine, self.request);
        let b = request.batch;
        (self.controls.on_event)(Event::Decoding { images: b });
        let phase = phase::start(format!("VAE decode ({b} image(s))"));
        let clock = Instant::now();
        let vae_cfg = &engine.checkpoint.config.vae;
        let mut images = Vec::with_capacity(b);
        let mut vae_plan = None;
        for i in 0..b {
            let [_, c, lh, lw] = x.dims();
            let z = x.clone().slice([i..i + 1, 0..c, 0..lh, 0..lw]) / vae_cfg.scaling_factor;
            let (image, plan) = engine.models.vae.decode_tiled(
                vae_cfg,
                z,
                request.vae_precision.dtype(),
                request.vae_tiling,
                &engine.vae_limits(),
            )?;
            images.push(image);
            vae_plan = plan;
        }
        let images = Tensor::cat(images, 0); // [B, 3, H, W]
        self.boundary()?;
        self.stats.decode = clock.elapsed();
        phase.done(match &vae_plan {
            Some(plan) => format!("tiles of {} latent pixels", plan.tile),
            None => "untiled".into(),
        });
        Ok((images, vae_plan))
    }
}

/// One CPU generator per image of `request`, image i's seeded with `seed + i`.
fn seeded_rngs(request: &Request) -> Vec<TorchRng> {
    (0..request.batch as u64)
        .map(|i| TorchRng::new(request.seed.wrapping_add(i)))
        .collect()
}

/// Classifier-free guidance of the UNet's output `[uncond x B, cond x B]` at scale `cfg`, with
/// the guided prediction's per-image standard deviation rescaled toward the prompt's by
/// `rescale` (diffusers' `rescale_noise_cfg`: unbiased std over all but the batch dimension).
fn guide(out: Tensor<4>, b: usize, cfg: f32, rescale: f32) -> Tensor<4> {
    let [_, c, h, w] = out.dims();
    let uncond = out.clone().slice([0..b, 0..c, 0..h, 0..w]);
    let cond = out.slice([b..2 * b, 0..c, 0..h, 0..w]);
    let guided = uncond.clone() + (cond.clone() - uncond) * f64::from(cfg);
    if rescale <= 0.0 {
        return guided;
    }
    let std = |t: &Tensor<4>| {
        let flat = t.clone().reshape([b, c * h * w]); // [B, C*h*w]
        let mean = flat.clone().mean_dim(1);
        let var = (flat - mean).powi_scalar(2).sum_dim(1) / (c * h * w - 1).max(1) as f64;
        var.sqrt().reshape([b, 1, 1, 1]) // [B, 1, 1, 1]
    };
    let rescaled = guided.clone() * (std(&cond) / std(&guided));
    rescaled * f64::from(rescale) + guided * f64::from(1.0 - rescale)
}

/// The UNet's text conditioning for a batch of `b`: with guidance `[uncond x B, cond x B]` as
/// diffusers concatenates it, else the prompt's alone: `(context [2B or B, 77k, 2048], pooled
/// [2B or B, 1280])`.
fn unet_conditioning(text: &Conditioning, b: usize, guided: bool) -> (Tensor<3>, Tensor<2>) {
    let rows: &[usize] = if guided { &[0, 1] } else { &[1] }; // of [negative, positive]
    (
        repeat_rows(&text.context, rows, b),
        repeat_rows(&text.pooled, rows, b),
    )
}

/// `t`'s rows `rows`, each repeated `b` times, in order along dim 0.
fn repeat_rows<const D: usize>(t: &Tensor<D>, rows: &[usize], b: usize) -> Tensor<D> {
    let parts = rows
        .iter()
        .map(|&i| t.clone().narrow(0, i, 1).repeat_dim(0, b));
    Tensor::cat(parts.collect(), 0)
}
