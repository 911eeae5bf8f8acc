//! The two-layer MLPs that embed the timestep and the text_time conditioning, diffusers'
//! `TimestepEmbedding`
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/models/embeddings.py>).

use burn::module::Module;

use crate::checkpoint::{CheckpointError, ComponentWeights};
use crate::nn::Linear;

#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn load(w: &mut ComponentWeights, name: &str) -> Result<Self, CheckpointError> {
        Ok(TimestepEmbedding {
            linear_1: Linear::load(w, &format!("{name}.linear_1"))?,
            linear_2: Linear::load(w, &format!("{name}.linear_2"))?,
        })
    }
}
