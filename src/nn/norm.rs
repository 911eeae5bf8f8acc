//! Group and layer normalisation with PyTorch's parameter names (`weight`, `bias`). Statistics
//! are computed in f32 whatever the activations' dtype.

use burn::module::{Module, Param};
use burn::tensor::{module, FloatDType, Tensor};

use crate::checkpoint::{CheckpointError, ComponentWeights};

#[derive(Module, Debug)]
pub struct GroupNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    pub fn load(
        w: &mut ComponentWeights,
        name: &str,
        groups: usize,
        eps: f64,
    ) -> Result<Self, CheckpointError> {
        Ok(GroupNorm {
            weight: w.param(&format!("{name}.weight"))?,
            bias: w.param(&format!("{name}.bias"))?,
            groups,
            eps,
        })
    }
}

#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(w: &mut ComponentWeights, name: &str, eps: f64) -> Result<Self, CheckpointError> {
        Ok(LayerNorm {
            weight: w.param(&format!("{name}.weight"))?,
            bias: w.param(&format!("{name}.bias"))?,
            eps,
        })
    }

    /// Normalises over the last axis in f32 and returns `x`'s dtype.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let f32 = FloatDType::F32;
        let y = module::layer_norm(
            x.cast(f32),
            self.weight.val().cast(f32),
            Some(self.bias.val().cast(f32)),
            self.eps,
        );
        y.cast(dtype)
    }
}
