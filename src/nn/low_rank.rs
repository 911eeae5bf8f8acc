//! The runtime half of LoRA: low-rank deltas added to a layer's output, never merged into its
//! weights. [`Linear`](super::Linear) and [`Conv2d`](super::Conv2d) look their deltas up by
//! their canonical path in the [`Adapt`] view passed down each forward call. Reading LoRA files
//! and building the deltas is `lora/`'s job, above the checkpoint.
//!
//! A layer's output gains `sum_i up_i(down_i(x))`, the scale `weight * alpha / rank` folded into
//! `up`, as kohya and PEFT define it.

use std::collections::HashMap;

use burn::tensor::Tensor;

/// One LoRA's delta on one layer, on the device in the models' compute dtype. Linear layers:
/// `down [rank, in]`, `up [out, rank]`; convolutions: `down [rank, in, kh, kw]` (run with the
/// layer's stride and padding), `up [out, rank, 1, 1]`. `up` has the scale folded in.
#[derive(Clone, Debug)]
pub enum LowRankDelta {
    Linear { down: Tensor<2>, up: Tensor<2> },
    Conv { down: Tensor<4>, up: Tensor<4> },
}

/// One model's adapted layers: canonical layer path -> the deltas of every active LoRA, in the
/// order the LoRAs were given.
pub type LayerDeltas = HashMap<String, Vec<LowRankDelta>>;

/// What a forward pass of one model consults: the deltas of its layers (or none). Passed down
/// the forward calls; layers look themselves up by their canonical path.
#[derive(Clone, Copy, Debug, Default)]
pub struct Adapt<'a> {
    layers: Option<&'a LayerDeltas>,
}

impl<'a> Adapt<'a> {
    /// No adapters (the VAE, or no LoRA).
    pub const NONE: Adapt<'static> = Adapt { layers: None };

    /// A view of one model's deltas.
    pub fn new(layers: Option<&'a LayerDeltas>) -> Self {
        Adapt { layers }
    }

    /// The deltas on the layer at `path` (empty when it is not adapted).
    pub fn deltas(&self, path: &str) -> &'a [LowRankDelta] {
        self.layers
            .and_then(|l| l.get(path))
            .map_or(&[], Vec::as_slice)
    }
}
