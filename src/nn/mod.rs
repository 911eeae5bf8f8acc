//! The layers the SDXL models are built from, holding weights in PyTorch's layout and named
//! like PyTorch's modules (`weight`, `bias`), so a canonical parameter name is the same string
//! in diffusers, in our key tables and in the module tree. Linear and convolution layers also
//! apply the runtime LoRA deltas an [`Adapt`] view holds for them.

pub mod attention;
mod conv;
mod embedding;
pub mod interpolate;
mod linear;
mod low_rank;
mod norm;
pub mod pixel_shuffle;
mod resnet;

pub use conv::{channels_last, Conv2d};
pub use embedding::Embedding;
pub use linear::Linear;
pub use low_rank::{Adapt, LayerDeltas, LowRankDelta};
pub use norm::{GroupNorm, LayerNorm};
pub use resnet::ResnetBlock;
