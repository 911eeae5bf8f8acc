//! What the UNet predicts at each step, which decides how its output is read: the noise
//! (epsilon) or the velocity (v). A checkpoint's markers tell which; `--prediction` overrides.
//! The readings every stepping rule shares live here: the clean latents (and the noise) a
//! prediction points to, in the variance-exploding space of the Euler family and the
//! variance-preserving space of DPM-Solver and DDIM.

use burn::tensor::Tensor;
use serde::Serialize;

/// What the model predicts at each step (spellings and meanings: the table below).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Prediction {
    Epsilon,
    V,
}

crate::spelled! {
    Prediction, "prediction type",
    (Prediction::Epsilon, "eps", "The noise (SDXL base and most community models)"),
    (Prediction::V, "v", "The velocity (NoobAI-XL v-pred and other v-prediction fine-tunes)"),
}

impl Prediction {
    /// The clean latents `output` points to at latents `x = x0 + sigma * noise`: eps
    /// `x - sigma * out`, v `x / (sigma^2 + 1) - out * sigma / sqrt(sigma^2 + 1)`.
    pub(super) fn x0_exploding(self, output: &Tensor<4>, x: &Tensor<4>, sigma: f64) -> Tensor<4> {
        match self {
            Prediction::Epsilon => x.clone() - output.clone() * sigma,
            Prediction::V => {
                output.clone() * (-sigma / (sigma * sigma + 1.0).sqrt())
                    + x.clone() / (sigma * sigma + 1.0)
            }
        }
    }

    /// The clean latents `output` points to at latents `x = alpha * x0 + sigma * noise`:
    /// eps `(x - sigma * out) / alpha`, v `alpha * x - sigma * out`.
    pub(super) fn x0_preserving(
        self,
        output: &Tensor<4>,
        x: &Tensor<4>,
        alpha: f64,
        sigma: f64,
    ) -> Tensor<4> {
        match self {
            Prediction::Epsilon => (x.clone() - output.clone() * sigma) / alpha,
            Prediction::V => x.clone() * alpha - output.clone() * sigma,
        }
    }

    /// The noise `output` points to at latents `x = alpha * x0 + sigma * noise`: eps the
    /// output itself, v `alpha * out + sigma * x`.
    pub(super) fn eps_preserving(
        self,
        output: Tensor<4>,
        x: Tensor<4>,
        alpha: f64,
        sigma: f64,
    ) -> Tensor<4> {
        match self {
            Prediction::Epsilon => output,
            Prediction::V => output * alpha + x * sigma,
        }
    }
}
