//! PLMS (pseudo linear multistep), as diffusers' PNDMScheduler steps with `skip_prk_steps`
//! and `set_alpha_to_one = false`
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_pndm.py>,
//! `step_plms`): the noise predictions of the last four calls combined by Adams-Bashforth
//! weights, after a warm-up that calls the model twice at the second timestep (a Heun-like
//! correction of the first step). `steps + 1` calls in all.

use burn::tensor::Tensor;

use super::{discrete_calls, Call, NoiseSource, Stepper};
use crate::sampling::{Prediction, Schedule, TrainSchedule};

struct Plms {
    prediction: Prediction,
    alphas_cumprod: Vec<f32>,
    /// diffusers' `num_train_timesteps // num_inference_steps`.
    stride: usize,
    calls: Vec<Call>,
    /// The model outputs kept (at most four, most recent last), and the latents of the first
    /// call (for the warm-up's correction).
    outputs: Vec<Tensor<4>>,
    first_sample: Option<Tensor<4>>,
    /// Calls taken since the run (or img2img) started.
    counter: usize,
}

pub fn plms(
    schedule: &Schedule,
    train: &TrainSchedule,
    prediction: Prediction,
) -> Box<dyn Stepper> {
    let t = &schedule.timesteps;
    // `T0, T1, T1, T2, ..., T_{n-1}`: the second timestep twice (one call with 1 step)
    let timesteps: Vec<f32> = match t.len() {
        1 => t.clone(),
        _ => std::iter::once(t[0])
            .chain([t[1]])
            .chain(t[1..].iter().copied())
            .collect(),
    };
    let alphas_cumprod = train.alphas_cumprod.clone();
    let calls = discrete_calls(&timesteps, &alphas_cumprod);
    Box::new(Plms {
        prediction,
        stride: alphas_cumprod.len() / t.len(),
        alphas_cumprod,
        calls,
        outputs: Vec::new(),
        first_sample: None,
        counter: 0,
    })
}

impl Plms {
    /// `alphas_cumprod` at timestep `t`; before the first, the first (`set_alpha_to_one =
    /// false`); past the last (leading spacing at 1000 steps), the last.
    fn alpha(&self, t: i64) -> f64 {
        let last = self.alphas_cumprod.len() as i64 - 1;
        f64::from(self.alphas_cumprod[t.clamp(0, last) as usize])
    }

    /// diffusers' `_get_prev_sample`: the latents at `prev` from `x` at `t` and the combined
    /// model output.
    fn prev_sample(&self, x: Tensor<4>, t: i64, prev: i64, output: Tensor<4>) -> Tensor<4> {
        let (a_t, a_prev) = (self.alpha(t), self.alpha(prev));
        let eps = self
            .prediction
            .eps_preserving(output, x.clone(), a_t.sqrt(), (1.0 - a_t).sqrt());
        let denominator = a_t * (1.0 - a_prev).sqrt() + (a_t * (1.0 - a_t) * a_prev).sqrt();
        x * (a_prev / a_t).sqrt() - eps * ((a_prev - a_t) / denominator)
    }
}

impl Stepper for Plms {
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
        let stride = self.stride as i64;
        let mut t = self.calls[i].timestep as i64;
        let mut prev = t - stride;
        if self.counter == 1 {
            // the warm-up's second call: the first step again, with the averaged output
            prev = t;
            t += stride;
        } else {
            if self.outputs.len() > 3 {
                self.outputs.remove(0);
            }
            self.outputs.push(output.clone());
        }
        let e = |k: usize| self.outputs[self.outputs.len() - 1 - k].clone();
        let (x, combined) = match (self.outputs.len(), self.counter) {
            (1, 0) => {
                self.first_sample = Some(x.clone());
                (x, output)
            }
            (1, 1) => {
                let start = self.first_sample.take().unwrap_or(x);
                (start, (output + e(0)) / 2.0)
            }
            (2, _) => (x, (e(0) * 3.0 - e(1)) / 2.0),
            (3, _) => (x, (e(0) * 23.0 - e(1) * 16.0 + e(2) * 5.0) / 12.0),
            _ => (
                x,
                (e(0) * 55.0 - e(1) * 59.0 + e(2) * 37.0 - e(3) * 9.0) / 24.0,
            ),
        };
        self.counter += 1;
        self.prev_sample(x, t, prev, combined)
    }

    fn denoised(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        let call = &self.calls[i];
        self.prediction
            .x0_preserving(output, x, call.noise_alpha, call.noise_sigma)
    }

    fn restart(&mut self) {
        self.outputs.clear();
        self.first_sample = None;
        self.counter = 0;
    }
}
