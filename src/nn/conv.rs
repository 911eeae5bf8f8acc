//! A 2-D convolution with PyTorch's weight shape `[out, in, kh, kw]`, its memory laid out
//! channels-last at load (see [`channels_last`]).

use burn::module::{Module, Param};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{module, Tensor};

use super::{Adapt, LowRankDelta};
use crate::weights::{WeightError, Weights};

#[derive(Module, Debug)]
pub struct Conv2d {
    /// `[out, in, kh, kw]`
    pub weight: Param<Tensor<4>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub stride: usize,
    pub padding: usize,
    /// The canonical path within its model, where runtime LoRA deltas are looked up.
    pub path: String,
}

impl Conv2d {
    /// Loads `{name}.weight` (and `.bias`); padding keeps the spatial size at stride 1, as every
    /// convolution in SDXL does (3x3 with padding 1, 1x1 with padding 0).
    pub fn load(w: &mut Weights, name: &str, stride: usize) -> Result<Self, WeightError> {
        let weight: Param<Tensor<4>> = w.param(&format!("{name}.weight"))?;
        let weight = Param::from_tensor(channels_last(weight.val()));
        let bias_name = format!("{name}.bias");
        let kernel = weight.lazy_shape()[2];
        Ok(Conv2d {
            bias: w.has(&bias_name).then(|| w.param(&bias_name)).transpose()?,
            weight,
            stride,
            padding: kernel / 2,
            path: name.to_string(),
        })
    }
}

/// `[out, in, kh, kw]` with the same shape and values, its memory reordered to
/// `[out, kh, kw, in]`. burn's conv kernels read weights channels-last and copy one that is not
/// on every call (`conv_forward` permutes to NHWC, then `direct.rs` and cubek-convolution's
/// layout check want the channel stride to be 1); 1x1 weights already are.
/// <https://github.com/tracel-ai/burn/blob/v0.22.1/crates/burn-cubecl/src/kernel/conv/forward/direct.rs>
pub fn channels_last(weight: Tensor<4>) -> Tensor<4> {
    let [o, i, kh, kw] = weight.dims();
    if kh * kw == 1 {
        return weight;
    }
    weight
        .permute([0, 2, 3, 1]) // [out, kh, kw, in], a strided view
        .reshape([o, kh * kw * i]) // copied in that order: strides cannot merge these axes
        .reshape([o, kh, kw, i]) // [out, kh, kw, in], contiguous
        .permute([0, 3, 1, 2]) // [out, in, kh, kw], a view of channels-last memory
}

impl Conv2d {
    /// `[B, in, H, W]` -> `[B, out, H', W']` with the layer's stride and symmetric padding.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let p = self.padding;
        self.forward_padded(x, [(p, p), (p, p)])
    }

    /// [`Conv2d::forward`] plus the low-rank deltas `ad` holds for this layer: the down
    /// convolution with the layer's kernel, stride and padding, then the 1x1 up convolution.
    pub fn forward_with(&self, x: Tensor<4>, ad: Adapt) -> Tensor<4> {
        let deltas = ad.deltas(&self.path);
        if deltas.is_empty() {
            return self.forward(x);
        }
        let (s, p) = (self.stride, self.padding);
        let dtype = x.dtype();
        let mut y = self.forward(x.clone());
        for delta in deltas {
            if let LowRankDelta::Conv { down, up } = delta {
                let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
                let low = module::conv2d(x.clone(), down.clone().cast(dtype), None, options); // [B, rank, H', W']
                let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
                y = y + module::conv2d(low, up.clone().cast(dtype), None, options);
            }
        }
        y
    }

    /// The same with explicit `(begin, end)` padding per spatial axis (the VAE encoder's
    /// downsamplers pad only right and bottom). Computed in `x`'s dtype.
    pub fn forward_padded(&self, x: Tensor<4>, padding: [(usize, usize); 2]) -> Tensor<4> {
        let s = self.stride;
        let options = ConvOptions::new_with_padding([s, s], padding, [1, 1], 1);
        let dtype = x.dtype();
        let weight = self.weight.val().cast(dtype);
        module::conv2d(
            x,
            weight,
            self.bias.as_ref().map(|b| b.val().cast(dtype)),
            options,
        )
    }
}
