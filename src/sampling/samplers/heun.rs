//! Heun, as diffusers' HeunDiscreteScheduler steps
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_heun_discrete.py>):
//! an Euler step to the next sigma, then a second call there whose slope is averaged with the
//! first; the last step (to sigma 0) is Euler's alone. Two calls per step but the last.

use burn::tensor::Tensor;

use super::{Call, NoiseSource, Stepper};
use crate::sampling::{Prediction, Schedule, TrainSchedule};

struct Heun {
    prediction: Prediction,
    /// diffusers' interleaved sigmas: `s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0`.
    sigmas: Vec<f32>,
    calls: Vec<Call>,
    /// After a first-order call: its slope, step and starting latents.
    pending: Option<(Tensor<4>, f64, Tensor<4>)>,
}

pub fn heun(schedule: &Schedule, _: &TrainSchedule, prediction: Prediction) -> Box<dyn Stepper> {
    let (t, s) = (&schedule.timesteps, &schedule.sigmas);
    let n = t.len();
    let sigmas: Vec<f32> = std::iter::once(s[0])
        .chain(s[1..n].iter().flat_map(|&s| [s, s]))
        .chain([0.0])
        .collect();
    let timesteps = std::iter::once(t[0]).chain(t[1..].iter().flat_map(|&t| [t, t]));
    let calls = timesteps
        .zip(&sigmas)
        .map(|(t, &s)| Call::exploding(t, s))
        .collect();
    Box::new(Heun {
        prediction,
        sigmas,
        calls,
        pending: None,
    })
}

impl Stepper for Heun {
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
        match self.pending.take() {
            None => {
                let (sigma, next) = (f64::from(self.sigmas[i]), f64::from(self.sigmas[i + 1]));
                let x0 = self.prediction.x0_exploding(&output, &x, sigma);
                let derivative = (x.clone() - x0) / sigma;
                let dt = next - sigma;
                let stepped = x.clone() + derivative.clone() * dt;
                self.pending = Some((derivative, dt, x));
                stepped
            }
            Some((first, dt, start)) => {
                let sigma = f64::from(self.sigmas[i]);
                let x0 = self.prediction.x0_exploding(&output, &x, sigma);
                let derivative = ((x - x0) / sigma + first) / 2.0;
                start + derivative * dt
            }
        }
    }

    fn denoised(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        self.prediction
            .x0_exploding(output, x, f64::from(self.sigmas[i]))
    }

    fn restart(&mut self) {
        self.pending = None;
    }
}
