//! DDIM with `eta = 0` and SDXL's `clip_sample = false`, `set_alpha_to_one = false`, as
//! diffusers' DDIMScheduler steps
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_ddim.py>):
//! deterministic, in the variance-preserving space, on `alphas_cumprod` at integer timesteps.

use burn::tensor::Tensor;

use super::{discrete_calls, Call, NoiseSource, Stepper};
use crate::sampling::{Prediction, Schedule, TrainSchedule};

struct Ddim {
    prediction: Prediction,
    alphas_cumprod: Vec<f32>,
    /// diffusers' `num_train_timesteps // num_inference_steps`, whatever the spacing.
    stride: usize,
    calls: Vec<Call>,
}

pub fn ddim(
    schedule: &Schedule,
    train: &TrainSchedule,
    prediction: Prediction,
) -> Box<dyn Stepper> {
    let alphas_cumprod = train.alphas_cumprod.clone();
    let calls = discrete_calls(&schedule.timesteps, &alphas_cumprod);
    Box::new(Ddim {
        prediction,
        stride: alphas_cumprod.len() / schedule.timesteps.len(),
        alphas_cumprod,
        calls,
    })
}

impl Ddim {
    /// `(sqrt(alpha), sqrt(1 - alpha))` at call `i`.
    fn coefficients(&self, i: usize) -> (f64, f64) {
        (self.calls[i].noise_alpha, self.calls[i].noise_sigma)
    }
}

impl Stepper for Ddim {
    fn calls(&self) -> &[Call] {
        &self.calls
    }

    fn step(
        &mut self,
        i: usize,
        output: Tensor<4>,
        x: Tensor<4>,
        _: &mut dyn NoiseSource,
    ) -> Tensor<4> {
        let t = (self.calls[i].timestep as usize).min(self.alphas_cumprod.len() - 1);
        // before the first training step: alphas_cumprod[0] (SDXL's set_alpha_to_one = false)
        let alpha_prev = f64::from(self.alphas_cumprod[t.saturating_sub(self.stride)]);
        let (a, b) = self.coefficients(i);
        let x0 = self.prediction.x0_preserving(&output, &x, a, b);
        let eps = self.prediction.eps_preserving(output, x, a, b);
        x0 * alpha_prev.sqrt() + eps * (1.0 - alpha_prev).sqrt()
    }

    fn denoised(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        let (a, b) = self.coefficients(i);
        self.prediction.x0_preserving(output, x, a, b)
    }

    fn restart(&mut self) {}
}
