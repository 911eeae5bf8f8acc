//! A lookup table of learned vectors, `[count, width]`.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::checkpoint::{CheckpointError, ComponentWeights};

#[derive(Module, Debug)]
pub struct Embedding {
    /// `[count, width]`
    pub weight: Param<Tensor<2>>,
}

impl Embedding {
    pub fn load(w: &mut ComponentWeights, name: &str) -> Result<Self, CheckpointError> {
        Ok(Embedding {
            weight: w.param(&format!("{name}.weight"))?,
        })
    }
}
