//! Euler and Euler a (ancestral), as diffusers' EulerDiscreteScheduler (`s_churn = 0`) and
//! EulerAncestralDiscreteScheduler step
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_euler_discrete.py>,
//! `scheduling_euler_ancestral_discrete.py`): one call per step, in the variance-exploding
//! space.

use burn::tensor::Tensor;

use super::{exploding_calls, Call, NoiseSource, Stepper};
use crate::sampling::{Prediction, Schedule, TrainSchedule};

/// Euler's and Euler a's state: the schedule's sigmas and one call per step.
struct Euler {
    ancestral: bool,
    prediction: Prediction,
    sigmas: Vec<f32>,
    calls: Vec<Call>,
}

pub fn euler(schedule: &Schedule, _: &TrainSchedule, prediction: Prediction) -> Box<dyn Stepper> {
    Box::new(Euler::new(schedule, prediction, false))
}

pub fn euler_ancestral(
    schedule: &Schedule,
    _: &TrainSchedule,
    prediction: Prediction,
) -> Box<dyn Stepper> {
    Box::new(Euler::new(schedule, prediction, true))
}

impl Euler {
    fn new(schedule: &Schedule, prediction: Prediction, ancestral: bool) -> Self {
        Euler {
            ancestral,
            prediction,
            sigmas: schedule.sigmas.clone(),
            calls: exploding_calls(schedule),
        }
    }
}

impl Stepper for Euler {
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
        let (sigma, next) = (f64::from(self.sigmas[i]), f64::from(self.sigmas[i + 1]));
        let x0 = self.prediction.x0_exploding(&output, &x, sigma);
        let derivative = (x.clone() - x0) / sigma;
        if !self.ancestral {
            return x + derivative * (next - sigma);
        }
        let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
        let down = (next * next - up * up).sqrt();
        x + derivative * (down - sigma) + noise.next() * up
    }

    fn denoised(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        self.prediction
            .x0_exploding(output, x, f64::from(self.sigmas[i]))
    }

    fn restart(&mut self) {}
}
