//! PyTorch's `pixel_shuffle`, `pixel_unshuffle` and nearest upsampling by a whole factor, as
//! reshapes and permutes (exact: no arithmetic), for the upscaler networks.

use burn::tensor::Tensor;

/// `[B, C*r*r, H, W]` -> `[B, C, H*r, W*r]`: `out[c, h*r+i, w*r+j] = in[c*r*r + i*r + j, h, w]`
/// (`torch.nn.functional.pixel_shuffle`).
pub fn pixel_shuffle(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let c = c / (r * r);
    x.reshape([b, c, r, r, h, w]) // [B, C, i, j, H, W]
        .permute([0, 1, 4, 2, 5, 3]) // [B, C, H, i, W, j]
        .reshape([b, c, h * r, w * r])
}

/// `[B, C, H, W]` -> `[B, C*r*r, H/r, W/r]`, the inverse of [`pixel_shuffle`]
/// (`torch.nn.functional.pixel_unshuffle`); `H` and `W` are multiples of `r`.
pub fn pixel_unshuffle(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let (h, w) = (h / r, w / r);
    x.reshape([b, c, h, r, w, r]) // [B, C, H, i, W, j]
        .permute([0, 1, 3, 5, 2, 4]) // [B, C, i, j, H, W]
        .reshape([b, c * r * r, h, w])
}

/// `[B, C, H, W]` -> `[B, C, H*r, W*r]`, each pixel repeated r x r times
/// (`F.interpolate(mode="nearest", scale_factor=r)` for a whole r).
pub fn upsample_nearest(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1]) // [B, C, H, 1, W, 1]
        .expand([b, c, h, r, w, r]) // [B, C, H, r, W, r]
        .reshape([b, c, h * r, w * r])
}
