//! Inpainting masks as A1111 reads and uses them: a picture's alpha or its luminance
//! (`create_binary_mask`), OpenCV's Gaussian blur of the edge, and the paste of the original's
//! unmasked pixels over the result (`apply_overlay`: Pillow's masked paste into `RGBa`, then
//! `alpha_composite`). Pillow's and OpenCV's integer arithmetic is written out here because
//! no crate reproduces it, and A1111 promises the unmasked pixels back exactly; each is
//! checked against the library's own output (fixtures from `tests/reference/`).
//! <https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/processing.py>
//! (`create_binary_mask`, `apply_overlay`, `StableDiffusionProcessingImg2Img.init`).

use image::{DynamicImage, GrayImage, Luma, RgbImage};

/// Pillow's `convert("L")` of an RGB pixel: ITU-R 601-2 luma in 16-bit fixed point
/// (`L24` in Pillow's `Convert.c`).
pub fn pil_luma([r, g, b]: [u8; 3]) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// A1111's `create_binary_mask(image, round=True)`: an RGBA picture whose alpha is not all
/// opaque gives its alpha, cut at 128 (above: 255, else 0); any other picture its luminance
/// as Pillow computes it. White repaints.
pub fn binary_mask(image: DynamicImage) -> GrayImage {
    if let DynamicImage::ImageRgba8(rgba) = &image {
        if rgba.pixels().any(|p| p[3] != 255) {
            let (w, h) = rgba.dimensions();
            return GrayImage::from_fn(w, h, |x, y| {
                Luma([if rgba.get_pixel(x, y)[3] > 128 {
                    255
                } else {
                    0
                }])
            });
        }
    }
    match image {
        DynamicImage::ImageLuma8(gray) => gray,
        other => {
            let rgb = other.into_rgb8();
            let (w, h) = rgb.dimensions();
            GrayImage::from_fn(w, h, |x, y| Luma([pil_luma(rgb.get_pixel(x, y).0)]))
        }
    }
}

/// Pillow's `ImageOps.invert` of a mask.
pub fn invert(mask: &mut GrayImage) {
    mask.pixels_mut().for_each(|p| p[0] = 255 - p[0]);
}

/// The largest blur sigma accepted (A1111's slider ends at 64): the kernel has
/// `2 * int(2.5 * sigma + 0.5) + 1` taps, so the cost stays bounded.
pub const MAX_MASK_BLUR: u32 = 64;

/// A1111's mask blur: `cv2.GaussianBlur(mask, (k, 1), sigma_x)`, then `(1, k)` with `sigma_y`,
/// `k = 2 * int(2.5 * sigma + 0.5) + 1`, bit for bit as OpenCV computes it on 8-bit images:
/// taps quantised to 8 fractional bits ([`gaussian_taps`]), whole-number sums, each pass
/// rounded to 8 bits, borders mirrored without repeating the edge (`BORDER_REFLECT_101`).
/// A sigma of 0 skips its pass.
pub fn gaussian_blur(mask: &GrayImage, sigma_x: u32, sigma_y: u32) -> GrayImage {
    let blurred = blur_pass(mask, sigma_x, true);
    blur_pass(&blurred, sigma_y, false)
}

/// One direction of [`gaussian_blur`] (`along_x`: within rows). OpenCV's fixed-point filter
/// (`GaussianBlurFixedPoint`): the sum of pixel x tap in units of 1/256, rounded half up.
fn blur_pass(mask: &GrayImage, sigma: u32, along_x: bool) -> GrayImage {
    if sigma == 0 {
        return mask.clone();
    }
    let taps = gaussian_taps(sigma);
    let half = (taps.len() / 2) as i64;
    let (w, h) = mask.dimensions();
    let len = i64::from(if along_x { w } else { h });
    GrayImage::from_fn(w, h, |x, y| {
        let at = i64::from(if along_x { x } else { y });
        let sum: u32 = taps.iter().enumerate().fold(0, |sum, (k, tap)| {
            let i = reflect_101(at + k as i64 - half, len) as u32;
            let (sx, sy) = if along_x { (i, y) } else { (x, i) };
            sum + tap * u32::from(mask.get_pixel(sx, sy)[0])
        });
        Luma([((sum + 128) >> 8).min(255) as u8])
    })
}

/// OpenCV's Gaussian taps for A1111's `k` in units of 1/256, as its 8-bit blur uses them:
/// `getGaussianKernelBitExact` (`exp(-d^2 / (2 sigma^2))` normalised to sum 1), then
/// `getGaussianKernelFixedPoint_ED` (the outer taps rounded with the error carried inward,
/// the centre tap what makes the sum 256).
/// <https://github.com/opencv/opencv/blob/4.10.0/modules/imgproc/src/smooth.dispatch.cpp>
fn gaussian_taps(sigma: u32) -> Vec<u32> {
    let sigma = f64::from(sigma);
    let n = 2 * ((2.5 * sigma + 0.5) as usize) + 1;
    let outer = (n - 1) / 2;
    let scale = -0.125 / (sigma * sigma);
    // x = 2 (i - (n - 1) / 2), so exp(x^2 scale) = exp(-d^2 / (2 sigma^2))
    let values: Vec<f64> = (0..outer)
        .map(|i| {
            let x = (2 * i) as f64 + 1.0 - n as f64;
            (x * x * scale).exp()
        })
        .collect();
    let norm = 1.0 / (2.0 * values.iter().sum::<f64>() + 1.0);
    let mut taps = vec![0; n];
    let (mut err, mut sum) = (0.0, 0);
    for (i, v) in values.iter().enumerate() {
        let adjusted = v * norm * 256.0 + err;
        let q = adjusted.round_ties_even();
        err = adjusted - q;
        taps[i] = q as u32;
        taps[n - 1 - i] = q as u32;
        sum += 2 * q as u32;
    }
    taps[outer] = 256 - sum;
    taps
}

/// OpenCV's `BORDER_REFLECT_101` index into `0..len`: `-1 -> 1`, `len -> len - 2`, repeated
/// for kernels wider than the image.
fn reflect_101(i: i64, len: i64) -> i64 {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len - 1);
    let j = i.rem_euclid(period);
    if j >= len {
        period - j
    } else {
        j
    }
}

/// A1111's `mask_for_overlay` of a blurred mask at the image's size: `clip(2 * mask, 0, 255)`,
/// so the original shows only where the blurred mask is under half.
pub fn overlay_mask(mask: &GrayImage) -> GrayImage {
    let mut out = mask.clone();
    out.pixels_mut().for_each(|p| p[0] = p[0].saturating_mul(2));
    out
}

/// A1111's `apply_overlay` of `original` (the init image at the result's size) through
/// `overlay` (from [`overlay_mask`]) onto `generated`: where `overlay` is 0 the original's pixel
/// exactly, where 255 the generated one, between them Pillow's arithmetic (the original pasted
/// into a premultiplied `RGBa` image under `255 - overlay`, converted back to `RGBA`, then
/// `alpha_composite` over the generated image).
pub fn apply_overlay(generated: &RgbImage, original: &RgbImage, overlay: &GrayImage) -> RgbImage {
    let (w, h) = generated.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let alpha = 255 - u32::from(overlay.get_pixel(x, y)[0]);
        let (dst, src) = (generated.get_pixel(x, y).0, original.get_pixel(x, y).0);
        image::Rgb(std::array::from_fn(|c| {
            let straight = unpremultiply(div255(u32::from(src[c]) * alpha), alpha);
            alpha_composite(straight, u32::from(dst[c]), alpha, 255)
        }))
    })
}

/// Pillow's `DIV255`: `a / 255` rounded, in integers.
pub fn div255(a: u32) -> u32 {
    let tmp = a + 128;
    ((tmp >> 8) + tmp) >> 8
}

/// Pillow's `RGBa` -> `RGBA` (`rgba2rgbA`): `255 * value / alpha` truncated and clipped, the
/// value itself at alpha 0 or 255.
pub(super) fn unpremultiply(value: u32, alpha: u32) -> u32 {
    match alpha {
        0 | 255 => value,
        _ => (255 * value / alpha).min(255),
    }
}

/// One channel of Pillow's `alpha_composite` of a source pixel of alpha `alpha` over a
/// destination of alpha `dst_alpha` (`AlphaComposite.c`, 7 bits of precision).
pub(super) fn alpha_composite(src: u32, dst: u32, alpha: u32, dst_alpha: u32) -> u8 {
    const PRECISION_BITS: u32 = 7;
    if alpha == 0 {
        return dst as u8;
    }
    let blend = dst_alpha * (255 - alpha);
    let outa255 = alpha * 255 + blend;
    let coef1 = alpha * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = src * coef1 + dst * coef2 + (0x80 << PRECISION_BITS);
    ((((tmp >> 8) + tmp) >> 8) >> PRECISION_BITS) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pillow 13's `convert("L")` of these pixels.
    #[test]
    fn luma_is_pillows() {
        for (rgb, l) in [
            ([0, 0, 0], 0),
            ([255, 255, 255], 255),
            ([255, 0, 0], 76),
            ([0, 255, 0], 150),
            ([0, 0, 255], 29),
            ([12, 200, 99], 132),
        ] {
            assert_eq!(pil_luma(rgb), l, "{rgb:?}");
        }
    }

    #[test]
    fn reflect_101_mirrors_without_the_edge() {
        let got: Vec<i64> = (-4..9).map(|i| reflect_101(i, 5)).collect();
        assert_eq!(got, [4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0]);
        assert_eq!(reflect_101(-7, 1), 0);
    }

    /// OpenCV 4.10's blur of the masks of `tests/fixtures/mask_blur.json`
    /// (`tests/reference/make_mask_fixtures.py`), bit for bit.
    #[test]
    fn blur_is_opencvs() {
        #[derive(serde::Deserialize)]
        struct Case {
            name: String,
            width: u32,
            height: u32,
            blur: [u32; 2],
            mask: Vec<u8>,
            blurred: Vec<u8>,
        }
        #[derive(serde::Deserialize)]
        struct Fixture {
            cases: Vec<Case>,
        }
        let text = include_str!("../../tests/fixtures/mask_blur.json");
        let fixture: Fixture = serde_json::from_str(text).expect("fixture");
        assert_eq!(fixture.cases.len(), 6);
        for c in fixture.cases {
            let mask = GrayImage::from_raw(c.width, c.height, c.mask).expect("size");
            let got = gaussian_blur(&mask, c.blur[0], c.blur[1]);
            assert_eq!(got.as_raw(), &c.blurred, "{}", c.name);
        }
        let flat = GrayImage::from_pixel(9, 5, Luma([200]));
        assert_eq!(gaussian_blur(&flat, 4, 4), flat);
    }

    #[test]
    fn alpha_decides_when_the_picture_has_some() {
        let mut rgba = image::RgbaImage::from_pixel(2, 1, image::Rgba([0, 0, 0, 255]));
        rgba.put_pixel(1, 0, image::Rgba([0, 0, 0, 129]));
        let mask = binary_mask(DynamicImage::ImageRgba8(rgba.clone()));
        assert_eq!(mask.as_raw(), &[255, 255]);
        rgba.put_pixel(1, 0, image::Rgba([0, 0, 0, 128]));
        assert_eq!(
            binary_mask(DynamicImage::ImageRgba8(rgba)).as_raw(),
            &[255, 0]
        );
        let opaque = image::RgbaImage::from_pixel(1, 1, image::Rgba([255, 0, 0, 255]));
        assert_eq!(
            binary_mask(DynamicImage::ImageRgba8(opaque)).as_raw(),
            &[76]
        );
    }

    /// Pillow 13's `apply_overlay` of these values (see the module's note), worked in Python:
    /// `Image.new('RGBa', ...)`, `paste(..., mask=invert(overlay))`, `convert('RGBA')`,
    /// `alpha_composite` over the generated pixel.
    #[test]
    fn overlay_is_pillows() {
        // (original, generated, overlay) -> result
        for (src, dst, overlay, want) in [
            (200, 10, 0, 200),
            (200, 10, 255, 10),
            (200, 10, 128, 105),
            (17, 240, 64, 73),
            (255, 0, 1, 254),
            (3, 250, 254, 249),
        ] {
            let generated = RgbImage::from_pixel(1, 1, image::Rgb([dst; 3]));
            let original = RgbImage::from_pixel(1, 1, image::Rgb([src; 3]));
            let mask = GrayImage::from_pixel(1, 1, Luma([overlay]));
            let got = apply_overlay(&generated, &original, &mask).get_pixel(0, 0)[0];
            assert_eq!(got, want, "{src} over {dst} at {overlay}");
        }
        let mask = GrayImage::from_raw(4, 1, vec![0, 10, 127, 128]).expect("4 values");
        assert_eq!(overlay_mask(&mask).as_raw(), &[0, 20, 254, 255]);
    }
}
