//! ESRGAN's RRDBNet in the old ESRGAN layout's names (`model.0`, `model.1.sub.N.RDBk.convj.0`,
//! ...): a first convolution, residual-in-residual dense blocks with a trunk convolution around
//! them, nearest-x2 + convolution stages, and two last convolutions; LeakyReLU(0.2) after every
//! convolution but the first, the trunk's, each dense block's fifth and the last. A port of
//! spandrel's `RRDB.py` with `block.py`'s `RRDB` and `ResidualDenseBlock_5C` (gc = 32):
//! <https://github.com/chaiNNer-org/spandrel/blob/v0.4.1/libs/spandrel/spandrel/architectures/ESRGAN/__arch/RRDB.py>

use burn::module::Module;
use burn::tensor::activation::leaky_relu;
use burn::tensor::Tensor;

use crate::nn::pixel_shuffle::{pixel_unshuffle, upsample_nearest};
use crate::nn::Conv2d;
use crate::weights::{WeightError, Weights};

const SLOPE: f64 = 0.2;
/// How much of a dense block's (and an RRDB's) output is added to its input.
const RESIDUAL_SCALE: f64 = 0.2;

/// Five convolutions, each seeing the block's input and every earlier output.
#[derive(Module, Debug)]
struct DenseBlock {
    convs: Vec<Conv2d>,
}

impl DenseBlock {
    fn load(w: &mut Weights, name: &str) -> Result<Self, WeightError> {
        let convs = (1..=5)
            .map(|j| Conv2d::load(w, &format!("{name}.conv{j}.0"), 1))
            .collect::<Result<_, _>>()?;
        Ok(DenseBlock { convs })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut features = vec![x.clone()];
        for conv in &self.convs[..4] {
            let input = Tensor::cat(features.clone(), 1); // [B, nf + k*gc, H, W]
            features.push(leaky_relu(conv.forward(input), SLOPE));
        }
        let out = self.convs[4].forward(Tensor::cat(features, 1)); // [B, nf, H, W]
        out * RESIDUAL_SCALE + x
    }
}

/// Three dense blocks in a row, scaled and added to the input.
#[derive(Module, Debug)]
struct Rrdb {
    blocks: Vec<DenseBlock>,
}

impl Rrdb {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self.blocks.iter().fold(x.clone(), |h, b| b.forward(h));
        out * RESIDUAL_SCALE + x
    }
}

#[derive(Module, Debug)]
pub struct RrdbNet {
    first: Conv2d,
    trunk: Vec<Rrdb>,
    trunk_conv: Conv2d,
    up: Vec<Conv2d>,
    hr: Conv2d,
    last: Conv2d,
    unshuffle: usize,
    scale: usize,
}

impl RrdbNet {
    pub fn load(
        w: &mut Weights,
        blocks: usize,
        stages: usize,
        unshuffle: usize,
    ) -> Result<Self, WeightError> {
        let trunk = (0..blocks)
            .map(|n| {
                let blocks = (1..=3)
                    .map(|k| DenseBlock::load(w, &format!("model.1.sub.{n}.RDB{k}")))
                    .collect::<Result<_, _>>()?;
                Ok(Rrdb { blocks })
            })
            .collect::<Result<_, WeightError>>()?;
        Ok(RrdbNet {
            first: Conv2d::load(w, "model.0", 1)?,
            trunk,
            trunk_conv: Conv2d::load(w, &format!("model.1.sub.{blocks}"), 1)?,
            up: (1..=stages)
                .map(|s| Conv2d::load(w, &format!("model.{}", 3 * s), 1))
                .collect::<Result<_, _>>()?,
            hr: Conv2d::load(w, &format!("model.{}", 3 * stages + 2), 1)?,
            last: Conv2d::load(w, &format!("model.{}", 3 * stages + 4), 1)?,
            unshuffle,
            scale: (1 << stages) / unshuffle,
        })
    }

    /// `[B, C, H, W]` -> `[B, C', H*scale, W*scale]`. With a pixel-unshuffle, the input is
    /// first padded by reflection to a multiple of its factor (spandrel's `pad_to_multiple`)
    /// and the output cropped back.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let x = if self.unshuffle > 1 {
            pixel_unshuffle(pad_reflect(x, self.unshuffle), self.unshuffle)
        } else {
            x
        };
        let fea = self.first.forward(x);
        let trunk = self.trunk.iter().fold(fea.clone(), |h, b| b.forward(h));
        let mut x = fea + self.trunk_conv.forward(trunk);
        for conv in &self.up {
            x = leaky_relu(conv.forward(upsample_nearest(x, 2)), SLOPE);
        }
        let x = self.last.forward(leaky_relu(self.hr.forward(x), SLOPE));
        if self.unshuffle > 1 {
            let [b, c, _, _] = x.dims();
            x.slice([0..b, 0..c, 0..h * self.scale, 0..w * self.scale])
        } else {
            x
        }
    }
}

/// `[B, C, H, W]` padded at the bottom and right by reflection (`F.pad(mode="reflect")`) to
/// multiples of `r`; needs `H, W >= r`.
fn pad_reflect(x: Tensor<4>, r: usize) -> Tensor<4> {
    let x = pad_axis(x, 2, r);
    pad_axis(x, 3, r)
}

fn pad_axis(x: Tensor<4>, axis: usize, r: usize) -> Tensor<4> {
    let n = x.dims()[axis];
    let pad = (r - n % r) % r;
    if pad == 0 {
        return x;
    }
    // rows n-2, n-3, ..., n-1-pad: the rows before the last, mirrored
    let tail = x.clone().narrow(axis, n - 1 - pad, pad).flip([axis]);
    Tensor::cat(vec![x, tail], axis)
}
