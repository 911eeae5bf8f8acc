//! Real-ESRGAN's SRVGGNetCompact (`body.N`: 3x3 convolutions alternating with PReLUs, the last
//! convolution's channels pixel-shuffled to the scale) plus the input upsampled by nearest, so
//! the network learns the residual. A port of spandrel's `SRVGG.py`:
//! <https://github.com/chaiNNer-org/spandrel/blob/v0.4.1/libs/spandrel/spandrel/architectures/Compact/__arch/SRVGG.py>

use burn::module::{Module, Param};
use burn::tensor::activation::prelu;
use burn::tensor::Tensor;

use crate::nn::pixel_shuffle::{pixel_shuffle, upsample_nearest};
use crate::nn::Conv2d;
use crate::weights::{WeightError, Weights};

#[derive(Module, Debug)]
pub struct CompactNet {
    convs: Vec<Conv2d>,
    /// One PReLU's per-channel slopes after each convolution but the last: `[width]`.
    slopes: Vec<Param<Tensor<1>>>,
    scale: usize,
}

impl CompactNet {
    pub fn load(w: &mut Weights, convs: usize, scale: usize) -> Result<Self, WeightError> {
        let layers = convs + 1; // the first convolution and the body's, each with a PReLU
        Ok(CompactNet {
            convs: (0..=layers)
                .map(|i| Conv2d::load(w, &format!("body.{}", 2 * i), 1))
                .collect::<Result<_, _>>()?,
            slopes: (0..layers)
                .map(|i| w.param(&format!("body.{}.weight", 2 * i + 1)))
                .collect::<Result<_, _>>()?,
            scale,
        })
    }

    /// `[B, C, H, W]` -> `[B, C', H*scale, W*scale]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (last, body) = self.convs.split_last().expect("at least two convolutions");
        let mut out = x.clone();
        for (conv, slope) in body.iter().zip(&self.slopes) {
            out = prelu(conv.forward(out), slope.val().cast(x.dtype()));
        }
        let out = pixel_shuffle(last.forward(out), self.scale); // [B, C', H*s, W*s]
        out + upsample_nearest(x, self.scale)
    }
}
