//! DPM++ 2M, 2M SDE and 3M SDE, as diffusers' DPMSolverMultistepScheduler steps with
//! `algorithm_type` `dpmsolver++` (order 2, midpoint) and `sde-dpmsolver++` (order 2 midpoint,
//! order 3), `lower_order_final` and `final_sigmas_type = "zero"`
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_dpmsolver_multistep.py>).
//! Multistep in the variance-preserving space: each step combines the clean latents predicted
//! at the last one to three steps; the last step (to sigma 0) is first order. The SDE variants
//! draw fresh noise at every step, the last included.

use burn::tensor::Tensor;

use super::{lambda, preserving_calls, vp, Call, NoiseSource, Stepper};
use crate::sampling::{Prediction, Schedule, TrainSchedule};

struct DpmPp {
    prediction: Prediction,
    /// Stochastic (SDE) or not.
    sde: bool,
    /// Highest order used (2 or 3).
    order: usize,
    sigmas: Vec<f32>,
    calls: Vec<Call>,
    /// Clean latents predicted at the previous steps, most recent last.
    history: Vec<Tensor<4>>,
}

pub fn dpmpp_2m(
    schedule: &Schedule,
    _: &TrainSchedule,
    prediction: Prediction,
) -> Box<dyn Stepper> {
    Box::new(DpmPp::new(schedule, prediction, false, 2))
}

pub fn dpmpp_2m_sde(
    schedule: &Schedule,
    _: &TrainSchedule,
    prediction: Prediction,
) -> Box<dyn Stepper> {
    Box::new(DpmPp::new(schedule, prediction, true, 2))
}

pub fn dpmpp_3m_sde(
    schedule: &Schedule,
    _: &TrainSchedule,
    prediction: Prediction,
) -> Box<dyn Stepper> {
    Box::new(DpmPp::new(schedule, prediction, true, 3))
}

impl DpmPp {
    fn new(schedule: &Schedule, prediction: Prediction, sde: bool, order: usize) -> Self {
        DpmPp {
            prediction,
            sde,
            order,
            sigmas: schedule.sigmas.clone(),
            calls: preserving_calls(schedule),
            history: Vec::new(),
        }
    }
}

impl Stepper for DpmPp {
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
        let (alpha_s, sigma_s) = vp(self.sigmas[i]);
        let (alpha_t, sigma_t) = vp(self.sigmas[i + 1]);
        let m0 = self.prediction.x0_preserving(&output, &x, alpha_s, sigma_s);
        self.history.push(m0);
        if self.history.len() > self.order {
            self.history.remove(0);
        }
        // lower while the history fills; first order at the last step, at most second at the
        // one before when the run is short (diffusers' `lower_order_final`, `lower_order_second`)
        let n = self.calls.len();
        let order = match self.history.len() {
            _ if i + 1 == n => 1,
            k if i + 2 == n && n < 15 => k.min(2),
            k => k,
        };
        let h = lambda(self.sigmas[i + 1]) - lambda(self.sigmas[i]);
        let m = |k: usize| self.history[self.history.len() - 1 - k].clone();
        // D0, D1, D2 of the solver of this order
        let (d0, d1, d2) = match order {
            1 => (m(0), None, None),
            2 => {
                let r0 = (lambda(self.sigmas[i]) - lambda(self.sigmas[i - 1])) / h;
                (m(0), Some((m(0) - m(1)) / r0), None)
            }
            _ => {
                let r0 = (lambda(self.sigmas[i]) - lambda(self.sigmas[i - 1])) / h;
                let r1 = (lambda(self.sigmas[i - 1]) - lambda(self.sigmas[i - 2])) / h;
                let d1_0 = (m(0) - m(1)) / r0;
                let d1_1 = (m(1) - m(2)) / r1;
                let d1 = d1_0.clone() + (d1_0.clone() - d1_1.clone()) * (r0 / (r0 + r1));
                let d2 = (d1_0 - d1_1) / (r0 + r1);
                (m(0), Some(d1), Some(d2))
            }
        };
        if !self.sde {
            // dpmsolver++ midpoint (order 1 and 2)
            let decay = alpha_t * ((-h).exp() - 1.0); // -alpha_t when the next sigma is 0
            let mut next = x * (sigma_t / sigma_s) - d0 * decay;
            if let Some(d1) = d1 {
                next = next - d1 * (0.5 * decay);
            }
            return next;
        }
        let e = (-2.0 * h).exp(); // 0 when the next sigma is 0
        let mut next = x * (sigma_t / sigma_s * (-h).exp()) + d0 * (alpha_t * (1.0 - e));
        next = match (order, d1, d2) {
            (2, Some(d1), _) => next + d1 * (0.5 * alpha_t * (1.0 - e)),
            (3, Some(d1), Some(d2)) => {
                next + d1 * (alpha_t * ((1.0 - e) / (-2.0 * h) + 1.0))
                    + d2 * (alpha_t * ((1.0 - e - 2.0 * h) / (2.0 * h).powi(2) - 0.5))
            }
            _ => next,
        };
        next + noise.next() * (sigma_t * (1.0 - e).sqrt())
    }

    fn denoised(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        let (alpha, sigma) = vp(self.sigmas[i]);
        self.prediction.x0_preserving(output, x, alpha, sigma)
    }

    fn restart(&mut self) {
        self.history.clear();
    }
}
