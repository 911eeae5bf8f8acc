//! The two-layer MLPs that embed the timestep and the text_time conditioning, diffusers'
//! `TimestepEmbedding`
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/models/embeddings.py>).

use burn::module::Module;
use burn::tensor::{activation::silu, Tensor};

use crate::nn::{Adapt, Linear};
use crate::weights::{WeightError, Weights};

#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn load(w: &mut Weights, name: &str) -> Result<Self, WeightError> {
        Ok(TimestepEmbedding {
            linear_1: Linear::load(w, &format!("{name}.linear_1"))?,
            linear_2: Linear::load(w, &format!("{name}.linear_2"))?,
        })
    }
}

impl TimestepEmbedding {
    /// `linear_2(silu(linear_1(x)))`, `[B, in]` -> `[B, out]`.
    pub fn forward(&self, x: Tensor<2>, ad: Adapt) -> Tensor<2> {
        self.linear_2
            .forward_with(silu(self.linear_1.forward_with(x, ad)), ad)
    }
}

/// diffusers' `get_timestep_embedding` with SDXL's settings (`flip_sin_to_cos=True`,
/// `downscale_freq_shift=0`): for each value, `[cos(v * f_i), sin(v * f_i)]` with
/// `f_i = exp(-ln(10000) * i / (dim / 2))`, computed in f32 like PyTorch. Row-major `[n, dim]`.
pub fn sinusoidal(values: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f32.ln()) * i as f32 / half as f32).exp())
        .collect();
    let mut out = Vec::with_capacity(values.len() * dim);
    for &v in values {
        out.extend(freqs.iter().map(|f| (v * f).cos()));
        out.extend(freqs.iter().map(|f| (v * f).sin()));
    }
    out
}
