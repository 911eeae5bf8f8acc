//! LCM (latent consistency), as diffusers' LCMScheduler steps
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_lcm.py>):
//! for LCM, Lightning and Hyper-SD LoRAs and distilled checkpoints. Each step maps the latents
//! straight to clean latents through the consistency boundary condition, then (all but the
//! last step) noises them afresh to the next timestep, drawing new noise.

use burn::tensor::Tensor;

use super::{discrete_calls, Call, NoiseSource, Stepper};
use crate::sampling::{Prediction, Schedule, TrainSchedule};

/// diffusers' `timestep_scaling`.
const TIMESTEP_SCALING: f64 = 10.0;
/// diffusers' `sigma_data` of the boundary condition.
const SIGMA_DATA: f64 = 0.5;

struct Lcm {
    prediction: Prediction,
    alphas_cumprod: Vec<f32>,
    calls: Vec<Call>,
}

pub fn lcm(schedule: &Schedule, train: &TrainSchedule, prediction: Prediction) -> Box<dyn Stepper> {
    let alphas_cumprod = train.alphas_cumprod.clone();
    let calls = discrete_calls(&schedule.timesteps, &alphas_cumprod);
    Box::new(Lcm {
        prediction,
        alphas_cumprod,
        calls,
    })
}

impl Lcm {
    /// The consistency model's clean latents at call `i`: `c_out * x0 + c_skip * x`.
    fn consistent(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        let call = &self.calls[i];
        let x0 = self
            .prediction
            .x0_preserving(output, x, call.noise_alpha, call.noise_sigma);
        let scaled = f64::from(call.timestep) * TIMESTEP_SCALING;
        let c_skip = SIGMA_DATA.powi(2) / (scaled * scaled + SIGMA_DATA.powi(2));
        let c_out = scaled / (scaled * scaled + SIGMA_DATA.powi(2)).sqrt();
        x0 * c_out + x.clone() * c_skip
    }
}

impl Stepper for Lcm {
    fn calls(&self) -> &[Call] {
        &self.calls
    }

    fn step(
        &mut self,
        i: usize,
        output: Tensor<4>,
        x: Tensor<4>,
        noise: &mut dyn NoiseSource,
    ) -> Tensor<4> {
        let denoised = self.consistent(i, &output, &x);
        match self.calls.get(i + 1) {
            Some(next) => {
                let alpha = f64::from(self.alphas_cumprod[next.timestep as usize]);
                denoised * alpha.sqrt() + noise.next() * (1.0 - alpha).sqrt()
            }
            None => denoised,
        }
    }

    fn denoised(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        self.consistent(i, output, x)
    }

    fn restart(&mut self) {}
}
