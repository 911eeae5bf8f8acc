//! UniPC, as diffusers' UniPCMultistepScheduler steps with its defaults (`solver_order = 2`,
//! `solver_type = "bh2"`, `predict_x0`, `lower_order_final`)
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_unipc_multistep.py>):
//! each step first corrects the latents the last step predicted, using the new model output
//! (UniC), then predicts the next latents from the last two clean-latent predictions (UniP).
//! Variance-preserving space, one call per step.

use burn::tensor::Tensor;

use super::{lambda, preserving_calls, vp, Call, NoiseSource, Stepper};
use crate::sampling::{Prediction, Schedule, TrainSchedule};

/// diffusers' default order.
const ORDER: usize = 2;

struct UniPc {
    prediction: Prediction,
    sigmas: Vec<f32>,
    calls: Vec<Call>,
    /// Clean latents predicted at the last steps, most recent last.
    history: Vec<Tensor<4>>,
    /// The latents the last step started from (after its correction), and its order.
    last: Option<(Tensor<4>, usize)>,
}

pub fn unipc(schedule: &Schedule, _: &TrainSchedule, prediction: Prediction) -> Box<dyn Stepper> {
    Box::new(UniPc {
        prediction,
        sigmas: schedule.sigmas.clone(),
        calls: preserving_calls(schedule),
        history: Vec::new(),
        last: None,
    })
}

/// The B(h) update's shared terms for a step from `from` to `to`: `(sigma_t / sigma_s,
/// alpha_t, h_phi_1 = expm1(-h), [b1, b2])` with bh2's `B(h) = expm1(-h)`.
fn terms(from: f32, to: f32) -> (f64, f64, f64, [f64; 2]) {
    let ((_, sigma_s), (alpha_t, sigma_t)) = (vp(from), vp(to));
    let hh = -(lambda(to) - lambda(from));
    let h_phi_1 = hh.exp_m1();
    let b_h = h_phi_1;
    let k1 = h_phi_1 / hh - 1.0;
    let k2 = k1 / hh - 0.5;
    (
        sigma_t / sigma_s,
        alpha_t,
        h_phi_1,
        [k1 / b_h, k2 * 2.0 / b_h],
    )
}

impl UniPc {
    /// UniC: the latents `x` predicted at call `i` corrected with this call's clean latents
    /// `m_t`, at the order the last step used.
    fn correct(&self, i: usize, m_t: &Tensor<4>, last: &Tensor<4>, order: usize) -> Tensor<4> {
        let (ratio, alpha_t, h_phi_1, b) = terms(self.sigmas[i - 1], self.sigmas[i]);
        let m0 = self.history[self.history.len() - 1].clone();
        let base = last.clone() * ratio - m0.clone() * (alpha_t * h_phi_1);
        let d1_t = m_t.clone() - m0.clone();
        let b_h = h_phi_1;
        if order == 1 {
            return base - d1_t * (alpha_t * b_h * 0.5);
        }
        // rho solves [[1, 1], [rk, 1]] rho = b
        let h = lambda(self.sigmas[i]) - lambda(self.sigmas[i - 1]);
        let rk = (lambda(self.sigmas[i - 2]) - lambda(self.sigmas[i - 1])) / h;
        let rho0 = (b[0] - b[1]) / (1.0 - rk);
        let rho1 = b[0] - rho0;
        let d1 = (self.history[self.history.len() - 2].clone() - m0) / rk;
        base - (d1 * rho0 + d1_t * rho1) * (alpha_t * b_h)
    }

    /// UniP: the latents of call `i + 1` from `x` at call `i`, at `order`.
    fn predict(&self, i: usize, x: Tensor<4>, order: usize) -> Tensor<4> {
        let (ratio, alpha_t, h_phi_1, _) = terms(self.sigmas[i], self.sigmas[i + 1]);
        let m0 = self.history[self.history.len() - 1].clone();
        let next = x * ratio - m0.clone() * (alpha_t * h_phi_1);
        if order == 1 {
            return next;
        }
        let h = lambda(self.sigmas[i + 1]) - lambda(self.sigmas[i]);
        let rk = (lambda(self.sigmas[i - 1]) - lambda(self.sigmas[i])) / h;
        let d1 = (self.history[self.history.len() - 2].clone() - m0) / rk;
        next - d1 * (alpha_t * h_phi_1 * 0.5) // rho_p = 0.5 at order 2
    }
}

impl Stepper for UniPc {
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
        let (alpha, sigma) = vp(self.sigmas[i]);
        let m_t = self.prediction.x0_preserving(&output, &x, alpha, sigma);
        let x = match self.last.take() {
            Some((last, order)) => self.correct(i, &m_t, &last, order),
            None => x,
        };
        self.history.push(m_t);
        if self.history.len() > ORDER {
            self.history.remove(0);
        }
        // lower while the history fills and at the last step (`lower_order_final`)
        let order = ORDER.min(self.calls.len() - i).min(self.history.len());
        self.last = Some((x.clone(), order));
        self.predict(i, x, order)
    }

    fn denoised(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        let (alpha, sigma) = vp(self.sigmas[i]);
        self.prediction.x0_preserving(output, x, alpha, sigma)
    }

    fn restart(&mut self) {
        self.history.clear();
        self.last = None;
    }
}
