//! The stepping rules: from the model's prediction at one step to the latents of the next, as
//! diffusers' `step` functions compute them (EulerDiscrete and EulerAncestralDiscrete with
//! `s_churn = 0`, DPMSolverMultistep `dpmsolver++` order 2 midpoint with a first-order last
//! step, DDIM with `eta = 0` and SDXL's `clip_sample = false`, `set_alpha_to_one = false`), for
//! epsilon and v prediction.
//!
//! Every rule is a linear combination of tensors with coefficients from the schedule, so the
//! coefficients are computed on the CPU in f64 and the tensors stay f32 on the device.

use burn::tensor::{Device, Tensor, TensorData};

use super::{
    schedule, Prediction, Sampler, Schedule, ScheduleError, ScheduleKind, TorchRng, TrainSchedule,
};

/// One sampling run: the schedule and the state the multistep rule carries.
pub struct SamplingRun {
    sampler: Sampler,
    prediction: Prediction,
    schedule: Schedule,
    /// `alphas_cumprod` and the train-to-inference step ratio, for DDIM.
    alphas_cumprod: Vec<f32>,
    ddim_stride: usize,
    step: usize,
    /// DPM++ 2M: the previous step's predicted clean latents.
    previous_x0: Option<Tensor<4>>,
    /// Euler a: the noise of the next steps, drawn and uploaded together (`[steps, B, C, h, w]`),
    /// and the step its first slice is for.
    step_noise: Option<(Tensor<5>, usize)>,
}

/// How much Euler a noise one upload holds: every step left of a usual run (1024x1024, batch 1:
/// 256 KiB a step), a few steps at a time for huge batches and step counts.
const STEP_NOISE_BYTES: usize = 64 << 20;

impl SamplingRun {
    pub fn new(
        sampler: Sampler,
        kind: ScheduleKind,
        steps: usize,
        prediction: Prediction,
        train: &TrainSchedule,
    ) -> Result<Self, ScheduleError> {
        Ok(SamplingRun {
            sampler,
            prediction,
            schedule: schedule(sampler, kind, steps, train)?,
            alphas_cumprod: train.alphas_cumprod.clone(),
            ddim_stride: train.alphas_cumprod.len() / steps,
            step: 0,
            previous_x0: None,
            step_noise: None,
        })
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Steps a run of `steps` steps takes when it starts from an image at `strength` (img2img):
    /// diffusers' `int(steps * strength)`. 0 means the image would be returned unchanged.
    pub fn img2img_steps(steps: usize, strength: f64) -> usize {
        ((steps as f64 * strength) as usize).min(steps)
    }

    /// img2img: start at `step` instead of 0 (diffusers' `set_begin_index`); the multistep
    /// state starts empty there, as diffusers' does.
    pub fn start_at(&mut self, step: usize) {
        self.step = step.min(self.schedule.timesteps.len());
        self.previous_x0 = None;
        self.step_noise = None;
    }

    /// The first latents from unit-variance noise.
    pub fn initial_latents(&self, noise: Tensor<4>) -> Tensor<4> {
        noise * self.schedule.init_noise_sigma
    }

    /// Clean latents `x0` noised to the current step's level, as the scheduler's `add_noise`
    /// does: `x0 + sigma * noise` for the Euler samplers, `alpha * x0 + alpha * sigma * noise`
    /// (alpha = 1 / sqrt(sigma^2 + 1)) in the variance-preserving space of DPM++ and DDIM.
    pub fn add_noise(&self, x0: Tensor<4>, noise: Tensor<4>) -> Tensor<4> {
        let sigma = f64::from(self.schedule.sigmas[self.step]);
        match self.sampler {
            Sampler::Euler | Sampler::EulerAncestral => x0 + noise * sigma,
            Sampler::DpmPp2m => {
                let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
                x0 * alpha + noise * (alpha * sigma)
            }
            Sampler::Ddim => {
                let t = self.schedule.timesteps[self.step] as usize;
                let alpha = f64::from(self.alphas_cumprod[t]);
                x0 * alpha.sqrt() + noise * (1.0 - alpha).sqrt()
            }
        }
    }

    /// Steps left to take.
    pub fn steps_left(&self) -> usize {
        self.schedule.timesteps.len() - self.step
    }

    /// The UNet's timestep at the current step.
    pub fn timestep(&self) -> f32 {
        self.schedule.timesteps[self.step]
    }

    /// The UNet's input at the current step: Euler-type samplers divide by `sqrt(sigma^2 + 1)`.
    pub fn model_input(&self, x: &Tensor<4>) -> Tensor<4> {
        match self.sampler {
            Sampler::Euler | Sampler::EulerAncestral => {
                let sigma = f64::from(self.schedule.sigmas[self.step]);
                x.clone() / (sigma * sigma + 1.0).sqrt()
            }
            Sampler::DpmPp2m | Sampler::Ddim => x.clone(),
        }
    }

    /// Latents of the next step from the (guided) prediction `output` at latents `x`
    /// (`[B, ...]`). Euler a draws its noise for batch item i from `rngs[i]`, after the
    /// initial noise, as diffusers does with one generator per image; the noise of the steps
    /// ahead is drawn and uploaded at once (see [`SamplingRun::step_noise`]).
    pub fn step(&mut self, output: Tensor<4>, x: Tensor<4>, rngs: &mut [TorchRng]) -> Tensor<4> {
        let i = self.step;
        let sigmas = &self.schedule.sigmas;
        let (sigma, next) = (f64::from(sigmas[i]), f64::from(sigmas[i + 1]));
        let next_x = match self.sampler {
            Sampler::Euler | Sampler::EulerAncestral => {
                let x0 = self.euler_x0(&output, &x, sigma);
                let derivative = (x.clone() - x0) / sigma;
                if self.sampler == Sampler::Euler {
                    x + derivative * (next - sigma)
                } else {
                    let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
                    let down = (next * next - up * up).sqrt();
                    let noise = self.step_noise(x.dims(), rngs, &x.device());
                    x + derivative * (down - sigma) + noise * up
                }
            }
            Sampler::DpmPp2m => self.dpm_step(output, x, i),
            Sampler::Ddim => self.ddim_step(output, x, i),
        };
        self.step += 1;
        next_x
    }

    /// The clean latents the (guided) prediction `output` at latents `x` points to at the
    /// current step, before [`SamplingRun::step`]: what a live preview shows.
    pub fn predicted_x0(&self, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        let i = self.step;
        let sigma = f64::from(self.schedule.sigmas[i]);
        match self.sampler {
            Sampler::Euler | Sampler::EulerAncestral => self.euler_x0(output, x, sigma),
            Sampler::DpmPp2m => {
                let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
                match self.prediction {
                    Prediction::Epsilon => (x.clone() - output.clone() * (sigma * alpha)) / alpha,
                    Prediction::V => x.clone() * alpha - output.clone() * (sigma * alpha),
                }
            }
            Sampler::Ddim => {
                let t = self.schedule.timesteps[i] as usize;
                let alpha = f64::from(self.alphas_cumprod[t]);
                let (a, b) = (alpha.sqrt(), (1.0 - alpha).sqrt());
                match self.prediction {
                    Prediction::Epsilon => (x.clone() - output.clone() * b) / a,
                    Prediction::V => x.clone() * a - output.clone() * b,
                }
            }
        }
    }

    /// Euler's predicted clean latents.
    fn euler_x0(&self, output: &Tensor<4>, x: &Tensor<4>, sigma: f64) -> Tensor<4> {
        match self.prediction {
            Prediction::Epsilon => x.clone() - output.clone() * sigma,
            Prediction::V => {
                output.clone() * (-sigma / (sigma * sigma + 1.0).sqrt())
                    + x.clone() / (sigma * sigma + 1.0)
            }
        }
    }

    /// Euler a's noise for the current step. When the last upload holds none for it, draws the
    /// noise of as many steps ahead as fit [`STEP_NOISE_BYTES`] (step by step, item i from
    /// `rngs[i]`: the order diffusers draws in) and uploads it in one transfer.
    fn step_noise(
        &mut self,
        shape: [usize; 4],
        rngs: &mut [TorchRng],
        device: &Device,
    ) -> Tensor<4> {
        let [b, c, h, w] = shape;
        let (noise, first) = match self.step_noise.take() {
            Some((noise, first)) if (first..first + noise.dims()[0]).contains(&self.step) => {
                (noise, first)
            }
            _ => {
                let per_step = b * c * h * w;
                let steps = (STEP_NOISE_BYTES / (per_step * 4))
                    .min(self.steps_left())
                    .max(1);
                let mut values = Vec::with_capacity(steps * per_step);
                for _ in 0..steps {
                    values.extend(draw(b, rngs, c * h * w));
                }
                let data = TensorData::new(values, [steps, b, c, h, w]);
                (Tensor::from_data(data, device), self.step)
            }
        };
        let k = self.step - first;
        let this_step = noise.clone().slice([k..k + 1, 0..b, 0..c, 0..h, 0..w]); // [1, B, C, h, w]
        self.step_noise = Some((noise, first));
        this_step.reshape([b, c, h, w])
    }

    fn dpm_step(&mut self, output: Tensor<4>, x: Tensor<4>, i: usize) -> Tensor<4> {
        let sigmas = &self.schedule.sigmas;
        // (alpha, sigma) of the variance-preserving process at a Karras-style sigma
        let vp = |s: f32| {
            let alpha = 1.0 / (f64::from(s) * f64::from(s) + 1.0).sqrt();
            (alpha, f64::from(s) * alpha)
        };
        let lambda = |(alpha, sigma): (f64, f64)| alpha.ln() - sigma.ln();
        let (alpha_s, sigma_s) = vp(sigmas[i]);
        let (alpha_t, sigma_t) = vp(sigmas[i + 1]);
        let x0 = match self.prediction {
            Prediction::Epsilon => (x.clone() - output * sigma_s) / alpha_s,
            Prediction::V => x.clone() * alpha_s - output * sigma_s,
        };
        let h = lambda((alpha_t, sigma_t)) - lambda((alpha_s, sigma_s));
        let decay = alpha_t * ((-h).exp() - 1.0); // 0 - alpha_t when the next sigma is 0
        let last = i + 1 == self.schedule.timesteps.len();
        let next = match (&self.previous_x0, last) {
            (Some(previous), false) => {
                let (alpha_p, sigma_p) = vp(sigmas[i - 1]);
                let r0 = (lambda((alpha_s, sigma_s)) - lambda((alpha_p, sigma_p))) / h;
                let d1 = (x0.clone() - previous.clone()) / r0;
                x * (sigma_t / sigma_s) - x0.clone() * decay - d1 * (0.5 * decay)
            }
            _ => x * (sigma_t / sigma_s) - x0.clone() * decay,
        };
        self.previous_x0 = Some(x0);
        next
    }

    fn ddim_step(&self, output: Tensor<4>, x: Tensor<4>, i: usize) -> Tensor<4> {
        let t = self.schedule.timesteps[i] as usize;
        let alpha = f64::from(self.alphas_cumprod[t]);
        // before the first training step: alphas_cumprod[0] (SDXL's set_alpha_to_one = false)
        let alpha_prev = f64::from(self.alphas_cumprod[t.saturating_sub(self.ddim_stride)]);
        let (a, b) = (alpha.sqrt(), (1.0 - alpha).sqrt());
        let (x0, eps) = match self.prediction {
            Prediction::Epsilon => ((x - output.clone() * b) / a, output),
            Prediction::V => (x.clone() * a - output.clone() * b, output * a + x * b),
        };
        x0 * alpha_prev.sqrt() + eps * (1.0 - alpha_prev).sqrt()
    }
}

/// Standard normal noise of `shape` (`[B, ...]`), item i from `rngs[i]`, uploaded to `device`.
pub fn noise(shape: [usize; 4], rngs: &mut [TorchRng], device: &Device) -> Tensor<4> {
    let [b, c, h, w] = shape;
    Tensor::from_data(TensorData::new(draw(b, rngs, c * h * w), shape), device)
}

/// One `[B, ...]` draw of standard normal values on the host, `per_item` from each `rngs[i]`.
fn draw(b: usize, rngs: &mut [TorchRng], per_item: usize) -> Vec<f32> {
    assert_eq!(b, rngs.len(), "one generator per batch item");
    rngs.iter_mut().flat_map(|r| r.randn(per_item)).collect()
}
