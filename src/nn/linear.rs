//! A fully connected layer with its weight kept as PyTorch stores it, `[out, in]`, so loading
//! never transposes on the CPU.

use burn::module::{Module, Param};
use burn::tensor::{module, Tensor};

use crate::checkpoint::{CheckpointError, ComponentWeights};

#[derive(Module, Debug)]
pub struct Linear {
    /// `[out, in]`
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    /// Loads `{name}.weight` and, where the checkpoint's architecture has one, `{name}.bias`.
    pub fn load(w: &mut ComponentWeights, name: &str) -> Result<Self, CheckpointError> {
        let bias_name = format!("{name}.bias");
        Ok(Linear {
            weight: w.param(&format!("{name}.weight"))?,
            bias: w.has(&bias_name).then(|| w.param(&bias_name)).transpose()?,
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

    pub fn in_features(&self) -> usize {
        self.weight.lazy_shape()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.lazy_shape()[0]
    }
}
