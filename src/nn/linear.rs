//! A fully connected layer with its weight kept as PyTorch stores it, `[out, in]`, so loading
//! never transposes on the CPU.

use burn::module::{Module, Param};
use burn::tensor::{module, Tensor};

use super::{Adapt, LowRankDelta};

use crate::weights::{WeightError, Weights};

#[derive(Module, Debug)]
pub struct Linear {
    /// `[out, in]`
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    /// The canonical path within its model, where runtime LoRA deltas are looked up.
    pub path: String,
}

impl Linear {
    /// Loads `{name}.weight` and, where the checkpoint's architecture has one, `{name}.bias`.
    pub fn load(w: &mut Weights, name: &str) -> Result<Self, WeightError> {
        let bias_name = format!("{name}.bias");
        Ok(Linear {
            weight: w.param(&format!("{name}.weight"))?,
            bias: w.has(&bias_name).then(|| w.param(&bias_name)).transpose()?,
            path: name.to_string(),
        })
    }

    /// `x @ weight^T + bias` over the last axis: `[..., in]` -> `[..., out]`, computed in `x`'s
    /// dtype (the parameters are cast when they differ: a no-op in the usual case).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        // [out, in] -> [in, out]: a strided view, the matmul reads it in place
        let weight = self.weight.val().cast(dtype).transpose();
        module::linear(x, weight, self.bias.as_ref().map(|b| b.val().cast(dtype)))
    }

    /// [`Linear::forward`] plus the low-rank deltas `ad` holds for this layer:
    /// `y + sum_i up_i(down_i(x))` (scales are folded into `up`).
    pub fn forward_with<const D: usize>(&self, x: Tensor<D>, ad: Adapt) -> Tensor<D> {
        let deltas = ad.deltas(&self.path);
        if deltas.is_empty() {
            return self.forward(x);
        }
        let dtype = x.dtype();
        let mut y = self.forward(x.clone());
        for delta in deltas {
            if let LowRankDelta::Linear { down, up } = delta {
                // [..., in] -> [..., rank] -> [..., out]
                let low = module::linear(x.clone(), down.clone().cast(dtype).transpose(), None);
                y = y + module::linear(low, up.clone().cast(dtype).transpose(), None);
            }
        }
        y
    }

    pub fn in_features(&self) -> usize {
        self.weight.lazy_shape()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.lazy_shape()[0]
    }
}
