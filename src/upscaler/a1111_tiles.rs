//! A1111's own way to run a model upscaler, for users who want its images pixel for pixel: fixed
//! 192-pixel tiles with 8 pixels of overlap (`ESRGAN_tile`, `ESRGAN_tile_overlap`), cut by
//! `images.split_grid` (Pillow's crop: black beyond the image), each fed to the network as BGR
//! and truncated to 8 bits (`upscale_without_tiling`), then pasted back by `images.combine_grid`
//! (Pillow's paste; the first `overlap` columns and rows of each tile blended through a ramp
//! mask). Ported from
//! <https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/upscaler_utils.py>
//! and `modules/images.py` of the same version.

use burn::tensor::{Tensor, TensorData};
use image::RgbImage;

use super::{Upscaler, UpscalerError};
use crate::device::Gpu;
use crate::image_io::mask::div255;
use crate::image_io::pil_crop;

/// A1111's defaults for `ESRGAN_tile` and `ESRGAN_tile_overlap`.
pub const A1111_TILE: u32 = 192;
pub const A1111_OVERLAP: u32 = 8;

/// `split_grid`'s tile origins: rows of `(y, [x, ...])`, possibly negative when the image is
/// smaller than a tile.
fn split_grid(w: i64, h: i64, tile: i64, overlap: i64) -> Vec<(i64, Vec<i64>)> {
    let count = |n: i64| ((n - overlap) as f64 / (tile - overlap) as f64).ceil() as i64;
    let (cols, rows) = (count(w), count(h));
    let step = |n: i64, k: i64| match k > 1 {
        true => (n - tile) as f64 / (k - 1) as f64,
        false => 0.0,
    };
    let (dx, dy) = (step(w, cols), step(h, rows));
    let origin = |i: i64, d: f64, n: i64| {
        let p = (i as f64 * d) as i64; // Python's int(): toward zero
        if p + tile >= n {
            n - tile
        } else {
            p
        }
    };
    (0..rows)
        .map(|r| {
            let xs = (0..cols).map(|c| origin(c, dx, w)).collect();
            (origin(r, dy, h), xs)
        })
        .collect()
}

/// `image` upscaled by the network's scale as A1111 tiles it.
pub fn upscale(model: &Upscaler, image: &RgbImage, gpu: &Gpu) -> Result<RgbImage, UpscalerError> {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let (tile, overlap) = (i64::from(A1111_TILE), i64::from(A1111_OVERLAP));
    let s = model.info.scale as i64;
    let grid = split_grid(w, h, tile, overlap);
    let (ts, ov) = (tile * s, overlap * s);
    let mut combined = Canvas::black(w * s, h * s);
    for (y, xs) in &grid {
        let mut row = Canvas::black(w * s, ts);
        for &x in xs {
            let tile_in = pil_crop(image, x, *y, tile as u32, tile as u32);
            let out = Canvas::from(upscale_tile(model, &tile_in, gpu)?);
            let (x, ramp) = (x * s, Ramp::Columns(ov));
            if x == 0 {
                row.paste(&out, 0, 0, (0, 0, ts, ts), None);
                continue;
            }
            row.paste(&out, x, 0, (0, 0, ov, ts), Some(ramp));
            row.paste(&out, x + ov, 0, (ov, 0, ts, ts), None);
        }
        let y = y * s;
        if y == 0 {
            combined.paste(&row, 0, 0, (0, 0, w * s, ts), None);
            continue;
        }
        combined.paste(&row, 0, y, (0, 0, w * s, ov), Some(Ramp::Rows(ov)));
        combined.paste(&row, 0, y + ov, (0, ov, w * s, ts), None);
    }
    Ok(combined.into_image())
}

/// `upscale_without_tiling`: the tile as BGR in [0, 1], the network, clamped, times 255
/// truncated to 8 bits, back to RGB.
fn upscale_tile(model: &Upscaler, tile: &RgbImage, gpu: &Gpu) -> Result<RgbImage, UpscalerError> {
    let (w, h) = (tile.width() as usize, tile.height() as usize);
    let bgr: Vec<f32> = tile
        .pixels()
        .flat_map(|p| [p[2], p[1], p[0]])
        .map(|v| (f64::from(v) / 255.0) as f32)
        .collect();
    let hwc = Tensor::<3>::from_data(TensorData::new(bgr, [h, w, 3]), &gpu.device);
    let x = hwc.permute([2, 0, 1]).unsqueeze::<4>(); // [1, 3, H, W], BGR
    let y = model
        .forward(x)
        .clamp(0.0, 1.0)
        .squeeze::<3>()
        .permute([1, 2, 0]); // [H', W', 3]
    let [oh, ow, _] = y.dims();
    let values = y
        .try_into_data()
        .map_err(|e| UpscalerError::Device(format!("{e:?}")))?
        .try_to_vec::<f32>()
        .map_err(|e| UpscalerError::Device(format!("{e:?}")))?;
    let rgb: Vec<u8> = values
        .chunks_exact(3)
        .flat_map(|c| [c[2], c[1], c[0]])
        .map(|v| (255.0f32 * v) as u8)
        .collect();
    RgbImage::from_raw(ow as u32, oh as u32, rgb)
        .ok_or_else(|| UpscalerError::Device("an upscaled tile of the wrong size".into()))
}

/// `make_mask_image`'s ramp over the first `n` columns or rows: `trunc(i * 255 / n)`.
#[derive(Clone, Copy)]
enum Ramp {
    Columns(i64),
    Rows(i64),
}

impl Ramp {
    fn at(self, i: i64, j: i64) -> u32 {
        let (k, n) = match self {
            Ramp::Columns(n) => (i, n),
            Ramp::Rows(n) => (j, n),
        };
        (k as f32 * 255.0 / n as f32) as u8 as u32
    }
}

/// An RGB image addressed with signed coordinates, for Pillow's clipped paste.
struct Canvas {
    w: i64,
    h: i64,
    pixels: RgbImage,
}

impl Canvas {
    fn black(w: i64, h: i64) -> Self {
        Canvas {
            w,
            h,
            pixels: RgbImage::new(w as u32, h as u32),
        }
    }

    fn from(image: RgbImage) -> Self {
        Canvas {
            w: i64::from(image.width()),
            h: i64::from(image.height()),
            pixels: image,
        }
    }

    /// `self.paste(src.crop(region), (x, y), mask=ramp)`, clipped to `self`; through a mask,
    /// Pillow's `BLEND`: `(out * (255 - a) + in * a) / 255` with its rounding.
    fn paste(
        &mut self,
        src: &Canvas,
        x: i64,
        y: i64,
        region: (i64, i64, i64, i64),
        ramp: Option<Ramp>,
    ) {
        let (left, top, right, bottom) = region;
        for j in 0..bottom - top {
            for i in 0..right - left {
                let (dx, dy) = (x + i, y + j);
                let (sx, sy) = (left + i, top + j);
                if dx < 0 || dy < 0 || dx >= self.w || dy >= self.h || sx >= src.w || sy >= src.h {
                    continue;
                }
                let from = *src.pixels.get_pixel(sx as u32, sy as u32);
                let to = self.pixels.get_pixel_mut(dx as u32, dy as u32);
                *to = match ramp {
                    None => from,
                    Some(ramp) => {
                        let a = ramp.at(i, j);
                        image::Rgb(std::array::from_fn(|c| {
                            div255(u32::from(to[c]) * (255 - a) + u32::from(from[c]) * a) as u8
                        }))
                    }
                };
            }
        }
    }

    fn into_image(self) -> RgbImage {
        self.pixels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_follow_split_grid() {
        // 1024: ceil(1016 / 184) = 6 columns, dx = 832 / 5 = 166.4
        let grid = split_grid(1024, 200, 192, 8);
        assert_eq!(grid.len(), 2);
        assert_eq!(grid[0].1, vec![0, 166, 332, 499, 665, 832]);
        assert_eq!((grid[0].0, grid[1].0), (0, 8));
        // smaller than a tile: one tile reaching back past the image
        assert_eq!(split_grid(64, 40, 192, 8), vec![(-152, vec![-128])]);
    }

    #[test]
    fn masked_paste_blends_as_pillow() {
        let mut dst = Canvas::black(4, 1);
        let src = Canvas::from(RgbImage::from_pixel(4, 1, image::Rgb([255, 100, 7])));
        dst.paste(&src, 0, 0, (0, 0, 4, 1), Some(Ramp::Columns(4)));
        // masks 0, 63, 127, 191 over black
        let got: Vec<u8> = dst.into_image().pixels().map(|p| p[0]).collect();
        assert_eq!(got, vec![0, 63, 127, 191]);
    }
}
