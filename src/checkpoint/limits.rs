//! What a detected architecture must satisfy before any table is generated or anything is
//! built: the widths every layer divides (norm groups, attention heads), the tables the
//! tokenizer indexes (77 positions, 49,408 ids), the latent and image channels the pipeline
//! assumes, and bounds on the counts read from the file, so no later step can panic on the
//! device or generate a table as large as the file's counts multiplied together.

use super::{Component, ModelConfig};
use crate::text_encoder::ClipConfig;
use crate::tokenizer::{EOS, SEQUENCE_LEN};
use crate::unet::UnetConfig;
use crate::vae::VaeConfig;

/// Resolution levels of the UNet or the VAE (SDXL: 3 and 4).
pub const MAX_LEVELS: usize = 6;
/// Resnets per level (SDXL: 2 in the UNet's down path and the VAE's encoder).
pub const MAX_LAYERS_PER_BLOCK: usize = 8;
/// Transformer blocks in one attention (SDXL: up to 10).
pub const MAX_TRANSFORMER_DEPTH: usize = 32;
/// Layers of a text encoder (bigG: 32).
pub const MAX_TEXT_LAYERS: usize = 64;
/// Latent channels of SDXL's UNet and VAE, and the image's channels.
const LATENT_CHANNELS: usize = 4;
const IMAGE_CHANNELS: usize = 3;

/// A failed check: the component it is about and why.
pub type Failure = (Component, String);

/// Every check on `config`, whose UNet attention heads are `head_dim` wide.
pub fn check(config: &ModelConfig, head_dim: usize) -> Result<(), Failure> {
    let text = [
        (Component::TextEncoder, &config.text_encoder),
        (Component::TextEncoder2, &config.text_encoder_2),
    ];
    for (component, clip) in text {
        check_text_encoder(clip).map_err(|reason| (component, reason))?;
    }
    check_unet(&config.unet, head_dim).map_err(|reason| (Component::Unet, reason))?;
    let context = config.text_encoder.width + config.text_encoder_2.width;
    if config.unet.context_dim != context {
        return Err((
            Component::Unet,
            format!(
                "cross-attention takes a {}-wide context, but the text encoders give {} + {} = {context}",
                config.unet.context_dim, config.text_encoder.width, config.text_encoder_2.width
            ),
        ));
    }
    check_vae(&config.vae).map_err(|reason| (Component::Vae, reason))
}

/// Head width checked before detection uses it: 0 would divide by zero.
pub fn check_head_dim(head_dim: usize) -> Result<(), Failure> {
    if head_dim == 0 {
        return Err((
            Component::Unet,
            "the attention head width is 0 (the file's `sdxl_wgpu.head_dim` metadata or \
             unet/config.json)"
                .into(),
        ));
    }
    Ok(())
}

fn check_text_encoder(c: &ClipConfig) -> Result<(), String> {
    if c.width == 0 || c.intermediate == 0 || c.projection == Some(0) {
        return Err(format!(
            "a zero-sized layer (width {}, MLP {}, projection {:?})",
            c.width, c.intermediate, c.projection
        ));
    }
    if c.heads == 0 || c.width % c.heads != 0 {
        return Err(format!(
            "width {} does not split into {} attention heads",
            c.width, c.heads
        ));
    }
    if c.layers > MAX_TEXT_LAYERS {
        return Err(format!(
            "{} layers, more than the {MAX_TEXT_LAYERS} this engine accepts",
            c.layers
        ));
    }
    if c.max_positions < SEQUENCE_LEN {
        return Err(format!(
            "{} position embeddings, fewer than the {SEQUENCE_LEN} tokens the tokenizer gives",
            c.max_positions
        ));
    }
    let vocabulary = EOS as usize + 1;
    if c.vocab_size < vocabulary {
        return Err(format!(
            "a vocabulary of {} tokens, fewer than CLIP's {vocabulary} that prompts are tokenized into",
            c.vocab_size
        ));
    }
    Ok(())
}

fn check_unet(u: &UnetConfig, head_dim: usize) -> Result<(), String> {
    check_counts(u.levels(), u.layers_per_block)?;
    if u.time_embed_dim == 0 {
        return Err("a zero-wide timestep embedding".into());
    }
    let depths = u.transformer_depth.iter().chain(&u.transformer_depth_up);
    if let Some(depth) = depths
        .chain([&u.mid_transformer_depth])
        .find(|&&d| d > MAX_TRANSFORMER_DEPTH)
    {
        return Err(format!(
            "a transformer of {depth} blocks, more than the {MAX_TRANSFORMER_DEPTH} this engine accepts"
        ));
    }
    for &width in &u.block_out_channels {
        check_groups(width, u.norm_groups)?;
        if width % head_dim != 0 {
            return Err(format!(
                "level width {width} is not a multiple of the head width {head_dim}"
            ));
        }
    }
    if (u.in_channels, u.out_channels) != (LATENT_CHANNELS, LATENT_CHANNELS) {
        return Err(format!(
            "it takes {} and gives {} latent channels; SDXL's take and give {LATENT_CHANNELS}",
            u.in_channels, u.out_channels
        ));
    }
    if u.addition_time_embed_dim % 2 != 0 {
        return Err(format!(
            "each time id is embedded {} wide, which is not even (cosines and sines)",
            u.addition_time_embed_dim
        ));
    }
    Ok(())
}

fn check_vae(v: &VaeConfig) -> Result<(), String> {
    check_counts(v.levels(), v.layers_per_block)?;
    for &width in &v.block_out_channels {
        check_groups(width, v.norm_groups)?;
    }
    if (v.in_channels, v.latent_channels) != (IMAGE_CHANNELS, LATENT_CHANNELS) {
        return Err(format!(
            "it maps {}-channel images to {} latent channels; SDXL's maps RGB to {LATENT_CHANNELS}",
            v.in_channels, v.latent_channels
        ));
    }
    Ok(())
}

fn check_counts(levels: usize, layers: usize) -> Result<(), String> {
    if levels == 0 || levels > MAX_LEVELS {
        return Err(format!(
            "{levels} resolution levels; this engine accepts 1 to {MAX_LEVELS}"
        ));
    }
    if layers == 0 || layers > MAX_LAYERS_PER_BLOCK {
        return Err(format!(
            "{layers} resnets per level; this engine accepts 1 to {MAX_LAYERS_PER_BLOCK}"
        ));
    }
    Ok(())
}

fn check_groups(width: usize, groups: usize) -> Result<(), String> {
    if width == 0 || width % groups != 0 {
        return Err(format!(
            "width {width} does not split into the {groups} normalisation groups"
        ));
    }
    Ok(())
}
