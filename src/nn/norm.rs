//! Group and layer normalisation with PyTorch's parameter names (`weight`, `bias`).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

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
}
