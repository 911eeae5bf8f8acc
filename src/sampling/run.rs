//! One sampling run: the schedule, the sampler's stepping rule and the model calls it makes,
//! and the fresh noise stochastic samplers draw. The pipeline drives it call by call:
//! [`SamplingRun::model_input`] and [`SamplingRun::timestep`] for the UNet, then
//! [`SamplingRun::step`] with its (guided) output.

use burn::tensor::{Device, Tensor, TensorData};

use super::samplers::{NoiseSource, Stepper};
use super::TrainSchedule;
use super::{schedule, Prediction, Sampler, Schedule, ScheduleError, ScheduleKind, TorchRng};

/// One sampling run.
pub struct SamplingRun {
    schedule: Schedule,
    stepper: Box<dyn Stepper>,
    /// Model calls per step (where img2img's first call is).
    order: usize,
    /// Calls taken so far.
    call: usize,
    /// The noise of the draws ahead, drawn and uploaded together (`[draws, B, C, h, w]`), and
    /// the draw its first slice is for.
    ahead: Option<(Tensor<5>, usize)>,
    /// Draws taken so far.
    draws: usize,
}

/// How much step noise one upload holds: every draw left of a usual run (1024x1024, batch 1:
/// 256 KiB a draw), a few at a time for huge batches and step counts.
const STEP_NOISE_BYTES: usize = 64 << 20;

impl SamplingRun {
    pub fn new(
        sampler: Sampler,
        kind: ScheduleKind,
        steps: usize,
        prediction: Prediction,
        train: &TrainSchedule,
    ) -> Result<Self, ScheduleError> {
        let schedule = schedule(sampler, kind, steps, train)?;
        let spec = sampler.spec();
        Ok(SamplingRun {
            stepper: (spec.stepper)(&schedule, train, prediction),
            schedule,
            order: spec.order,
            call: 0,
            ahead: None,
            draws: 0,
        })
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The UNet's timestep at every call of the run, from the first one taken.
    pub fn timesteps(&self) -> Vec<f32> {
        self.stepper.calls()[self.call..]
            .iter()
            .map(|c| c.timestep)
            .collect()
    }

    /// Steps taken so far (img2img starts part-way); a step whose first call is taken counts
    /// (PLMS's extra warm-up call does not).
    pub fn steps_done(&self) -> usize {
        self.call
            .div_ceil(self.order)
            .min(self.schedule.timesteps.len())
    }

    /// Steps a run of `steps` steps takes when it starts from an image at `strength` (img2img):
    /// diffusers' `int(steps * strength)`. 0 means the image would be returned unchanged.
    pub fn img2img_steps(steps: usize, strength: f64) -> usize {
        ((steps as f64 * strength) as usize).min(steps)
    }

    /// img2img: start at step `step` instead of 0 (diffusers' `set_begin_index(step *
    /// order)`); the multistep state starts empty there, as diffusers' does.
    pub fn start_at(&mut self, step: usize) {
        self.call = (step * self.order).min(self.stepper.calls().len());
        self.stepper.restart();
        self.ahead = None;
    }

    /// The first latents from unit-variance noise.
    pub fn initial_latents(&self, noise: Tensor<4>) -> Tensor<4> {
        noise * self.schedule.init_noise_sigma
    }

    /// Clean latents `x0` noised to the current call's level, as the scheduler's `add_noise`
    /// does: `x0 + sigma * noise` for the Euler family, `alpha * x0 + sigma * noise` in the
    /// variance-preserving space of DPM++ and DDIM.
    pub fn add_noise(&self, x0: Tensor<4>, noise: Tensor<4>) -> Tensor<4> {
        let call = &self.stepper.calls()[self.call];
        x0 * call.noise_alpha + noise * call.noise_sigma
    }

    /// Model calls left to make.
    pub fn steps_left(&self) -> usize {
        self.stepper.calls().len() - self.call
    }

    /// The UNet's timestep at the current call.
    pub fn timestep(&self) -> f32 {
        self.stepper.calls()[self.call].timestep
    }

    /// The UNet's input at the current call: the Euler family divides by `sqrt(sigma^2 + 1)`.
    pub fn model_input(&self, x: &Tensor<4>) -> Tensor<4> {
        let scale = self.stepper.calls()[self.call].input_scale;
        if scale == 1.0 {
            x.clone()
        } else {
            x.clone() * scale
        }
    }

    /// Latents after the current call from its (guided) prediction `output` at latents `x`
    /// (`[B, ...]`). Stochastic samplers draw their noise for batch item i from `rngs[i]`,
    /// after the initial noise, as diffusers does with one generator per image; the draws ahead
    /// are made and uploaded at once (see [`Draws`]).
    pub fn step(&mut self, output: Tensor<4>, x: Tensor<4>, rngs: &mut [TorchRng]) -> Tensor<4> {
        let left = self.steps_left();
        let mut draws = Draws {
            ahead: &mut self.ahead,
            next: &mut self.draws,
            left,
            rngs,
            shape: x.dims(),
            device: x.device(),
        };
        let next = self.stepper.step(self.call, output, x, &mut draws);
        self.call += 1;
        next
    }

    /// The clean latents the (guided) prediction `output` at latents `x` points to at the
    /// current call, before [`SamplingRun::step`]: what a live preview shows.
    pub fn predicted_x0(&self, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        self.stepper.denoised(self.call, output, x)
    }
}

/// The step noise of a run. When the last upload holds no slice for the next draw, draws as
/// many ahead as fit [`STEP_NOISE_BYTES`] (at most one per call left; draw by draw, item i
/// from `rngs[i]`: the order diffusers draws in) and uploads them in one transfer; each draw
/// is a slice of it (a view, no kernel).
struct Draws<'a> {
    ahead: &'a mut Option<(Tensor<5>, usize)>,
    next: &'a mut usize,
    left: usize,
    rngs: &'a mut [TorchRng],
    shape: [usize; 4],
    device: Device,
}

impl NoiseSource for Draws<'_> {
    fn next(&mut self) -> Tensor<4> {
        let [b, c, h, w] = self.shape;
        let draw = *self.next;
        let (noise, first) = match self.ahead.take() {
            Some((noise, first)) if (first..first + noise.dims()[0]).contains(&draw) => {
                (noise, first)
            }
            _ => {
                let per_draw = b * c * h * w;
                let count = (STEP_NOISE_BYTES / (per_draw * 4)).min(self.left).max(1);
                let mut values = Vec::with_capacity(count * per_draw);
                for _ in 0..count {
                    values.extend(draw_host(b, self.rngs, c * h * w));
                }
                let data = TensorData::new(values, [count, b, c, h, w]);
                (Tensor::from_data(data, &self.device), draw)
            }
        };
        let k = draw - first;
        let this = noise.clone().slice([k..k + 1, 0..b, 0..c, 0..h, 0..w]); // [1, B, C, h, w]
        *self.ahead = Some((noise, first));
        *self.next += 1;
        this.reshape([b, c, h, w])
    }
}

/// Standard normal noise of `shape` (`[B, ...]`), item i from `rngs[i]`, uploaded to `device`.
pub fn noise(shape: [usize; 4], rngs: &mut [TorchRng], device: &Device) -> Tensor<4> {
    let [b, c, h, w] = shape;
    Tensor::from_data(
        TensorData::new(draw_host(b, rngs, c * h * w), shape),
        device,
    )
}

/// One `[B, ...]` draw of standard normal values on the host, `per_item` from each `rngs[i]`.
fn draw_host(b: usize, rngs: &mut [TorchRng], per_item: usize) -> Vec<f32> {
    assert_eq!(b, rngs.len(), "one generator per batch item");
    rngs.iter_mut().flat_map(|r| r.randn(per_item)).collect()
}
