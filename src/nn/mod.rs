//! The layers the SDXL models are built from, holding weights in PyTorch's layout and named
//! like PyTorch's modules (`weight`, `bias`), so a canonical parameter name is the same string
//! in diffusers, in our key tables and in the module tree.

pub mod attention;
mod conv;
mod embedding;
mod linear;
mod norm;
mod resnet;

pub use conv::Conv2d;
pub use embedding::Embedding;
pub use linear::Linear;
pub use norm::{GroupNorm, LayerNorm};
pub use resnet::ResnetBlock;
