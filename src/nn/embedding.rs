//! A lookup table of learned vectors, `[count, width]`.

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor};

use crate::weights::{WeightError, Weights};

#[derive(Module, Debug)]
pub struct Embedding {
    /// `[count, width]`
    pub weight: Param<Tensor<2>>,
}

impl Embedding {
    pub fn load(w: &mut Weights, name: &str) -> Result<Self, WeightError> {
        Ok(Embedding {
            weight: w.param(&format!("{name}.weight"))?,
        })
    }

    /// Rows for `ids` `[B, S]` -> `[B, S, width]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = ids.dims();
        let width = self.weight.lazy_shape()[1];
        let rows = self.weight.val().select(0, ids.reshape([batch * seq])); // [B*S, width]
        rows.reshape([batch, seq, width]) // [B, S, width]
    }
}
