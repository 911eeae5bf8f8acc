//! An upscale in overlapping tiles, so a network whose activations at the output size would not
//! fit one of the adapter's buffers still runs: each tile goes through the network alone, comes
//! back to the host and is blended into the image with weights that ramp linearly across the
//! overlap (no seams where neighbours meet). Tiles of one image share a size, so kernels compile
//! once. The tile size is chosen from the adapter's largest buffer before anything runs.
//!
//! Where A1111 differs: it cuts 192-pixel tiles with 8 pixels of overlap whatever the device
//! (`ESRGAN_tile`), feeds the network BGR and truncates to 8 bits per tile before blending
//! (`modules/upscaler_utils.py`); we feed RGB (the channel order ESRGAN and Real-ESRGAN were
//! trained on, as spandrel and ComfyUI do) and round once, after blending. [`TileMode::A1111`]
//! runs A1111's way instead (`a1111_tiles`).

use burn::tensor::Tensor;
use image::RgbImage;

use super::{Upscaler, UpscalerError};

/// How an upscale is cut into tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileMode {
    /// Ours (the default): these tiles, or (`None`) the largest the adapter's buffers hold;
    /// RGB, blended across the overlap, rounded once.
    Blended(Option<Tiling>),
    /// A1111's: 192-pixel tiles with 8 of overlap, BGR, truncated per tile, pasted by its grid
    /// (`a1111_tiles`).
    A1111,
}

impl Default for TileMode {
    fn default() -> Self {
        TileMode::Blended(None)
    }
}

/// Tiles of `tile` x `tile` input pixels, neighbours overlapping by `overlap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Tiling {
    pub tile: usize,
    pub overlap: usize,
}

/// The largest tile side tried (ComfyUI's default), and the smallest accepted.
const MAX_TILE: usize = 512;
const MIN_TILE: usize = 32;
/// Overlap between neighbouring tiles, input pixels (ComfyUI: 32, A1111: 8).
pub const OVERLAP: usize = 16;

impl Tiling {
    /// The largest tile (a multiple of 8, at most 512) whose largest activation fits a buffer
    /// of `max_tensor_bytes`.
    pub fn for_buffer(upscaler: &Upscaler, max_tensor_bytes: u64) -> Result<Tiling, UpscalerError> {
        let per_pixel = upscaler.peak_bytes_per_pixel();
        let fits = |t: usize| (t * t) as u64 * per_pixel <= max_tensor_bytes;
        let tile = (MIN_TILE..=MAX_TILE).rev().step_by(8).find(|&t| fits(t));
        match tile {
            Some(tile) => Ok(Tiling {
                tile,
                overlap: OVERLAP,
            }),
            None => Err(UpscalerError::TileTooLarge {
                tile: MIN_TILE,
                need: (MIN_TILE * MIN_TILE) as u64 * per_pixel,
                max: max_tensor_bytes,
            }),
        }
    }

    /// Each tile's start along an axis of `n` pixels, the last flush with the end
    /// (`tiled_upscale_2`'s grid).
    fn starts(&self, n: usize) -> Vec<usize> {
        if n <= self.tile {
            return vec![0];
        }
        let stride = (self.tile - self.overlap.min(self.tile / 2)).max(1);
        let mut starts: Vec<usize> = (0..n - self.tile).step_by(stride).collect();
        starts.push(n - self.tile);
        starts
    }
}

/// A tile's blending weight along one axis at offset `i` of `len` output pixels, on a side
/// another tile covers too (an overlap of `ramp` pixels): nothing from the outer quarter (the
/// pixels the tile's zero padding reaches), a linear rise over the middle half, full weight
/// beyond. The neighbour's weight falls as this one's rises, so every pixel has weight.
fn ramp_weight(i: usize, len: usize, ramp: usize, before: bool, after: bool) -> f32 {
    let (outer, rise) = (ramp as f32 / 4.0, (ramp as f32 / 2.0).max(1.0));
    let rise = |d: usize| ((d as f32 + 0.5 - outer) / rise).clamp(0.0, 1.0);
    let mut w = 1.0f32;
    if before {
        w = w.min(rise(i));
    }
    if after {
        w = w.min(rise(len - 1 - i));
    }
    w
}

/// `x` (`[1, 3, H, W]`, [0, 1]) upscaled tile by tile, blended on the host, rounded to 8 bits.
pub fn run(upscaler: &Upscaler, x: Tensor<4>, tiling: Tiling) -> Result<RgbImage, UpscalerError> {
    let [_, _, h, w] = x.dims();
    let s = upscaler.info.scale;
    let (oh, ow) = (h * s, w * s);
    let mut sum = vec![0f32; 3 * oh * ow]; // [3, oh, ow]
    let mut weight = vec![0f32; oh * ow]; // [oh, ow]
    let (ys, xs) = (tiling.starts(h), tiling.starts(w));
    let (th, tw) = (tiling.tile.min(h), tiling.tile.min(w));
    for (iy, &y0) in ys.iter().enumerate() {
        for (ix, &x0) in xs.iter().enumerate() {
            let tile = x.clone().slice([0..1, 0..3, y0..y0 + th, x0..x0 + tw]); // [1, 3, th, tw]
            let out = upscaler
                .forward(tile)
                .try_into_data()
                .map_err(|e| UpscalerError::Device(format!("{e:?}")))?
                .try_to_vec::<f32>()
                .map_err(|e| UpscalerError::Device(format!("{e:?}")))?; // [3, th*s, tw*s]
            let (oth, otw) = (th * s, tw * s);
            let ramp = tiling.overlap * s;
            for ty in 0..oth {
                let wy = ramp_weight(ty, oth, ramp, iy > 0, iy + 1 < ys.len());
                let row = (y0 * s + ty) * ow + x0 * s;
                for tx in 0..otw {
                    let wt = wy * ramp_weight(tx, otw, ramp, ix > 0, ix + 1 < xs.len());
                    weight[row + tx] += wt;
                    for c in 0..3 {
                        sum[c * oh * ow + row + tx] += wt * out[(c * oth + ty) * otw + tx];
                    }
                }
            }
        }
    }
    let mut pixels = Vec::with_capacity(3 * oh * ow);
    for p in 0..oh * ow {
        for c in 0..3 {
            let v = sum[c * oh * ow + p] / weight[p];
            pixels.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    Ok(RgbImage::from_raw(ow as u32, oh as u32, pixels).expect("3 bytes per pixel"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_every_pixel_and_end_flush() {
        let t = Tiling {
            tile: 64,
            overlap: 16,
        };
        assert_eq!(t.starts(64), vec![0]);
        assert_eq!(t.starts(40), vec![0]);
        assert_eq!(t.starts(100), vec![0, 36]);
        assert_eq!(t.starts(200), vec![0, 48, 96, 136]);
        for n in 65..400 {
            let starts = t.starts(n);
            assert_eq!(*starts.last().unwrap(), n - 64, "{n}");
            assert!(
                starts.windows(2).all(|p| p[1] > p[0] && p[1] - p[0] <= 48),
                "{n}"
            );
        }
    }

    #[test]
    fn weights_ramp_only_toward_neighbours() {
        assert_eq!(ramp_weight(0, 10, 4, false, false), 1.0);
        assert_eq!(ramp_weight(0, 20, 8, true, false), 0.0);
        assert_eq!(ramp_weight(2, 20, 8, true, false), 0.125);
        assert_eq!(ramp_weight(17, 20, 8, true, true), 0.125);
        assert_eq!(ramp_weight(10, 20, 8, true, true), 1.0);
        // across an overlap of 8, the two tiles' weights never both vanish
        for j in 0..8 {
            let sum =
                ramp_weight(j, 20, 8, true, false) + ramp_weight(19 - (7 - j), 20, 8, false, true);
            assert!(sum >= 1.0, "{j}: {sum}");
        }
    }
}
