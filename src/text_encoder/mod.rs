//! SDXL's two text encoders: CLIP ViT-L/14's text tower (`text_encoder`) and OpenCLIP
//! ViT-bigG/14's (`text_encoder_2`, with the pooled projection), both with the module names of
//! transformers' `CLIPTextModel` / `CLIPTextModelWithProjection`, and the conditioning SDXL's
//! UNet reads from them.

mod clip;
mod conditioning;
mod error;
mod limits;

pub use clip::{ClipAttention, ClipConfig, ClipLayer, ClipMlp, ClipTextModel, HiddenAct};
pub use conditioning::{Conditioning, TextAdapters, TextEncoders, TextOptions};
pub use error::TextError;
pub use limits::{
    check_prompt_pair, check_prompt_size, check_prompts, MAX_CHUNKS, MAX_PROMPT_BYTES,
    MAX_PROMPT_WEIGHT,
};
