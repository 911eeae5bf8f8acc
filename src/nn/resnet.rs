//! The residual block shared by the UNet (with a timestep projection) and the VAE (without).
//! Reproduces diffusers' `ResnetBlock2D`:
//! <https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/models/resnet.py>

use burn::module::Module;
use burn::tensor::{activation::silu, Tensor};

use super::{Adapt, Conv2d, GroupNorm, Linear};
use crate::weights::{WeightError, Weights};

#[derive(Module, Debug)]
pub struct ResnetBlock {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    /// UNet only: projects the timestep embedding onto the channels.
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    /// Present where input and output widths differ.
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    pub fn load(w: &mut Weights, name: &str, groups: usize, eps: f64) -> Result<Self, WeightError> {
        let time = format!("{name}.time_emb_proj");
        let shortcut = format!("{name}.conv_shortcut");
        Ok(ResnetBlock {
            norm1: GroupNorm::load(w, &format!("{name}.norm1"), groups, eps)?,
            conv1: Conv2d::load(w, &format!("{name}.conv1"), 1)?,
            time_emb_proj: w
                .has(&format!("{time}.weight"))
                .then(|| Linear::load(w, &time))
                .transpose()?,
            norm2: GroupNorm::load(w, &format!("{name}.norm2"), groups, eps)?,
            conv2: Conv2d::load(w, &format!("{name}.conv2"), 1)?,
            conv_shortcut: w
                .has(&format!("{shortcut}.weight"))
                .then(|| Conv2d::load(w, &shortcut, 1))
                .transpose()?,
        })
    }
}

impl ResnetBlock {
    /// `x` `[B, in, H, W]`; `emb` the UNet's `silu(timestep embedding)` `[B, E]` (VAE: `None`).
    pub fn forward(&self, x: Tensor<4>, emb: Option<&Tensor<2>>, ad: Adapt) -> Tensor<4> {
        let mut h = self
            .conv1
            .forward_with(silu(self.norm1.forward(x.clone())), ad);
        if let (Some(proj), Some(emb)) = (&self.time_emb_proj, emb) {
            h = h + proj
                .forward_with(emb.clone(), ad)
                .unsqueeze_dims::<4>(&[2, 3]); // [B, out, 1, 1]
        }
        let h = self.conv2.forward_with(silu(self.norm2.forward(h)), ad);
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward_with(x, ad),
            None => x,
        };
        shortcut + h
    }
}
