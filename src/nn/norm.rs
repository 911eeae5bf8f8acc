//! Group and layer normalisation with PyTorch's parameter names (`weight`, `bias`). Statistics
//! are computed in f32 whatever the activations' dtype, and the scale and shift are uploaded in
//! f32 at load, so no call casts them.

use burn::module::{Module, Param};
use burn::tensor::{module, FloatDType, Tensor};

use crate::weights::{WeightError, Weights};

#[derive(Module, Debug)]
pub struct GroupNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    pub fn load(w: &mut Weights, name: &str, groups: usize, eps: f64) -> Result<Self, WeightError> {
        Ok(GroupNorm {
            weight: w.param_f32(&format!("{name}.weight"))?,
            bias: w.param_f32(&format!("{name}.bias"))?,
            groups,
            eps,
        })
    }

    /// Normalises each group of channels of `[B, C, H, W]` over its channels and pixels, with
    /// the statistics in f32; returns `x`'s dtype.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let dtype = x.dtype();
        let [b, c, h, w] = x.dims();
        let f32 = FloatDType::F32;
        let grouped = x
            .cast(f32)
            .reshape([b, self.groups, (c / self.groups) * h * w]); // [B, G, C/G*H*W]
        let mean = grouped.clone().mean_dim(2); // [B, G, 1]
        let centered = grouped - mean;
        let var = centered.clone().square().mean_dim(2); // [B, G, 1]
        let normed = centered / (var + self.eps).sqrt();
        let normed = normed.reshape([b, c, h, w]); // [B, C, H, W]
        let gamma = self.weight.val().reshape([1, c, 1, 1]);
        let beta = self.bias.val().reshape([1, c, 1, 1]);
        (normed * gamma + beta).cast(dtype)
    }
}

#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(w: &mut Weights, name: &str, eps: f64) -> Result<Self, WeightError> {
        Ok(LayerNorm {
            weight: w.param_f32(&format!("{name}.weight"))?,
            bias: w.param_f32(&format!("{name}.bias"))?,
            eps,
        })
    }

    /// Normalises over the last axis in f32 and returns `x`'s dtype.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let f32 = FloatDType::F32;
        let y = module::layer_norm(
            x.cast(f32),
            self.weight.val(),
            Some(self.bias.val()),
            self.eps,
        );
        y.cast(dtype)
    }
}
