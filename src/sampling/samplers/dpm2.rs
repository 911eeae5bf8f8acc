//! DPM2 and DPM2 a (ancestral), as diffusers' KDPM2DiscreteScheduler and
//! KDPM2AncestralDiscreteScheduler step
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_k_dpm_2_discrete.py>,
//! `scheduling_k_dpm_2_ancestral_discrete.py`): an Euler step to the log-midpoint sigma, a
//! second call there, and the whole step taken with the midpoint's slope; the last step (to
//! sigma 0) is Euler's alone. DPM2 a steps to the ancestral "down" sigma and adds noise of the
//! "up" sigma after each second call.
//!
//! The midpoints are computed as diffusers computes them, in f32 (`exp(lerp(log a, log b,
//! 0.5))`).

use burn::tensor::Tensor;

use super::{Call, NoiseSource, Stepper};
use crate::sampling::schedule::sigma_to_t;
use crate::sampling::{Prediction, Schedule, TrainSchedule};

struct Dpm2 {
    prediction: Prediction,
    /// Per step j (`n + 1` values, the last at sigma 0): its sigma, the sigma its first-order
    /// call steps to, the sigma the whole step ends at, and (ancestral) the noise it adds.
    sigmas: Vec<f32>,
    midpoints: Vec<f32>,
    ends: Vec<f32>,
    ups: Vec<f32>,
    ancestral: bool,
    calls: Vec<Call>,
    /// After a first-order call: the latents it started from.
    pending: Option<Tensor<4>>,
}

/// `torch.lerp(log a, log b, 0.5).exp()` in f32 (torch's formula for weights >= 0.5:
/// `end - (end - start) * (1 - weight)`, which is NaN when both ends are infinite).
fn log_midpoint(a: f32, b: f32) -> f32 {
    let (start, end) = (a.ln(), b.ln());
    (end - (end - start) * 0.5).exp()
}

pub fn dpm2(
    schedule: &Schedule,
    train: &TrainSchedule,
    prediction: Prediction,
) -> Box<dyn Stepper> {
    let s = &schedule.sigmas; // n + 1, the last 0
    let n = schedule.timesteps.len();
    // midpoint j between sigma j-1 and sigma j (`sigmas.roll(1)`); the first is unused
    let midpoints: Vec<f32> = (0..=n)
        .map(|j| log_midpoint(s[j], s[(j + n) % (n + 1)]))
        .collect();
    // step j's first-order call goes to midpoint j + 1 (the last step's is 0)
    let to = midpoints[1..].to_vec();
    let calls = interleaved_calls(schedule, train, &to);
    Box::new(Dpm2 {
        prediction,
        sigmas: s.clone(),
        midpoints: to,
        ends: s[1..].iter().copied().chain([0.0]).collect(),
        ups: vec![0.0; n + 1],
        ancestral: false,
        calls,
        pending: None,
    })
}

pub fn dpm2_ancestral(
    schedule: &Schedule,
    train: &TrainSchedule,
    prediction: Prediction,
) -> Box<dyn Stepper> {
    let s = &schedule.sigmas; // n + 1, the last 0
    let n = schedule.timesteps.len();
    let next = |j: usize| if j < n { s[j + 1] } else { 0.0 };
    let ups: Vec<f32> = (0..=n)
        .map(|j| (next(j).powi(2) * (s[j].powi(2) - next(j).powi(2)) / s[j].powi(2)).sqrt())
        .collect();
    let downs: Vec<f32> = (0..=n)
        .map(|j| {
            if j == n {
                0.0
            } else {
                (next(j).powi(2) - ups[j].powi(2)).sqrt()
            }
        })
        .collect();
    // midpoint j between sigma j and its down sigma; the last two are 0
    let midpoints: Vec<f32> = (0..=n)
        .map(|j| {
            if j + 2 > n {
                0.0
            } else {
                log_midpoint(s[j], downs[j])
            }
        })
        .collect();
    let calls = interleaved_calls(schedule, train, &midpoints[..n]);
    Box::new(Dpm2 {
        prediction,
        sigmas: s.clone(),
        midpoints,
        ends: downs,
        ups,
        ancestral: true,
        calls,
        pending: None,
    })
}

/// `t0, tm0, t1, tm1, ..., t_{n-1}`: step j's call at its sigma, then (all but the last step)
/// a call at `midpoints[j]`.
fn interleaved_calls(schedule: &Schedule, train: &TrainSchedule, midpoints: &[f32]) -> Vec<Call> {
    let log_table: Vec<f64> = train.sigmas().iter().map(|&s| f64::from(s.ln())).collect();
    let n = schedule.timesteps.len();
    let mut calls = Vec::with_capacity(2 * n - 1);
    let steps = schedule
        .timesteps
        .iter()
        .zip(&schedule.sigmas)
        .zip(midpoints);
    for (j, ((&t, &sigma), &midpoint)) in steps.enumerate() {
        calls.push(Call::exploding(t, sigma));
        if j + 1 < n {
            let t = sigma_to_t(f64::from(midpoint), &log_table) as f32;
            calls.push(Call::exploding(t, midpoint));
        }
    }
    calls
}

impl Stepper for Dpm2 {
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
        let j = i / 2; // the step this call belongs to
        let sigma = f64::from(self.sigmas[j]);
        let midpoint = f64::from(self.midpoints[j]);
        match self.pending.take() {
            None => {
                let x0 = self.prediction.x0_exploding(&output, &x, sigma);
                let derivative = (x.clone() - x0) / sigma;
                self.pending = Some(x.clone());
                x + derivative * (midpoint - sigma)
            }
            Some(start) => {
                let x0 = self.prediction.x0_exploding(&output, &x, midpoint);
                let derivative = (x - x0) / midpoint;
                let next = start + derivative * (f64::from(self.ends[j]) - sigma);
                if self.ancestral {
                    next + noise.next() * f64::from(self.ups[j])
                } else {
                    next
                }
            }
        }
    }

    fn denoised(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        let j = i / 2;
        let sigma = if i % 2 == 0 {
            self.sigmas[j]
        } else {
            self.midpoints[j]
        };
        self.prediction.x0_exploding(output, x, f64::from(sigma))
    }

    fn restart(&mut self) {
        self.pending = None;
    }
}
