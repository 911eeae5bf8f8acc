//! A1111's "fill" masked content (`inpainting_fill` 0, `modules/masking.py` `fill`): the masked
//! part of the init image replaced by ever less blurred copies of what is around it, before the
//! image is encoded. Bit for bit as Pillow computes it (its Gaussian blur is three extended box
//! blurs in fixed point, `BoxBlur.c`), which no crate reproduces.
//! <https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/masking.py>,
//! <https://github.com/python-pillow/Pillow/blob/main/src/libImaging/BoxBlur.c>

use image::{GrayImage, RgbImage, Rgba, RgbaImage};

use super::mask::{alpha_composite, div255, unpremultiply};

/// A1111's `fill(image, mask)` at the image's size: the image pasted under the inverted mask
/// into a premultiplied image, blurred with radii 256, 64, 16, 4, 2, 0 and composited 1, 1, 2,
/// 4, 2, 1 times onto a transparent one, whose colour is the result.
pub fn a1111_fill(image: &RgbImage, mask: &GrayImage) -> RgbImage {
    let (w, h) = image.dimensions();
    // Image.new('RGBa') pasted with the original under invert(mask): premultiplied
    let masked = RgbaImage::from_fn(w, h, |x, y| {
        let alpha = 255 - u32::from(mask.get_pixel(x, y)[0]);
        let p = image.get_pixel(x, y).0;
        let c = |v: u8| div255(u32::from(v) * alpha) as u8;
        Rgba([c(p[0]), c(p[1]), c(p[2]), alpha as u8])
    });
    let mut out = RgbaImage::new(w, h); // transparent black
    for (radius, repeats) in [
        (256.0, 1),
        (64.0, 1),
        (16.0, 2),
        (4.0, 4),
        (2.0, 2),
        (0.0, 1),
    ] {
        let blurred = straight(&gaussian_blur(&masked, radius));
        for _ in 0..repeats {
            composite(&mut out, &blurred);
        }
    }
    RgbImage::from_fn(w, h, |x, y| {
        let p = out.get_pixel(x, y).0;
        image::Rgb([p[0], p[1], p[2]])
    })
}

/// Pillow's `RGBa` -> `RGBA` of every pixel.
fn straight(image: &RgbaImage) -> RgbaImage {
    let mut out = image.clone();
    for p in out.pixels_mut() {
        let a = u32::from(p[3]);
        for c in 0..3 {
            p[c] = unpremultiply(u32::from(p[c]), a) as u8;
        }
    }
    out
}

/// Pillow's `dst.alpha_composite(src)` of two `RGBA` images, in place.
fn composite(dst: &mut RgbaImage, src: &RgbaImage) {
    for (d, s) in dst.pixels_mut().zip(src.pixels()) {
        if s[3] == 0 {
            continue;
        }
        let (sa, da) = (u32::from(s[3]), u32::from(d[3]));
        for c in 0..3 {
            d[c] = alpha_composite(u32::from(s[c]), u32::from(d[c]), sa, da);
        }
        let outa255 = sa * 255 + da * (255 - sa);
        d[3] = div255(outa255) as u8;
    }
}

/// `ImageFilter.GaussianBlur(radius)` of an `RGBa` image: three extended box blurs of
/// Pillow's radius for that standard deviation along x, then three along y; radius 0 a copy.
fn gaussian_blur(image: &RgbaImage, radius: f32) -> RgbaImage {
    if radius == 0.0 {
        return image.clone();
    }
    let box_radius = box_radius(radius, 3);
    let mut out = image.clone();
    if box_radius == 0.0 {
        return out;
    }
    let (w, h) = out.dimensions();
    for _ in 0..3 {
        for y in 0..h {
            let line: Vec<[u8; 4]> = (0..w).map(|x| out.get_pixel(x, y).0).collect();
            for (x, p) in box_blur_line(&line, box_radius).into_iter().enumerate() {
                out.put_pixel(x as u32, y, Rgba(p));
            }
        }
    }
    for _ in 0..3 {
        for x in 0..w {
            let line: Vec<[u8; 4]> = (0..h).map(|y| out.get_pixel(x, y).0).collect();
            for (y, p) in box_blur_line(&line, box_radius).into_iter().enumerate() {
                out.put_pixel(x, y as u32, Rgba(p));
            }
        }
    }
    out
}

/// Pillow's `_gaussian_blur_radius`: the extended box radius whose `passes` passes have the
/// variance of a Gaussian of standard deviation `radius` (Gwosdek et al. 2011), in its mix of
/// f32 and f64 arithmetic.
fn box_radius(radius: f32, passes: i32) -> f32 {
    let sigma2 = radius * radius / passes as f32;
    let big_l = (12.0 * f64::from(sigma2) + 1.0).sqrt() as f32;
    let l = ((f64::from(big_l) - 1.0) / 2.0).floor() as f32;
    let mut a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

/// Pillow's `ImagingLineBoxBlur32`: one line blurred by a box of radius `float_radius` (the
/// whole part averaged, the fraction weighting the next pixel on each side), edges extended,
/// in 24-bit fixed point.
fn box_blur_line(line: &[[u8; 4]], float_radius: f32) -> Vec<[u8; 4]> {
    let radius = float_radius as i64;
    let ww = (16_777_216.0f32 / (float_radius * 2.0 + 1.0)) as u32;
    let fw = (16_777_216 - (radius as u32 * 2 + 1).wrapping_mul(ww)) / 2;
    let n = line.len() as i64;
    let last = n - 1;
    let edge_a = (radius + 1).min(n);
    let edge_b = (n - radius - 1).max(0);
    let at = |i: i64| line[i as usize];
    // the window's sum for pixel -1: the first pixel radius + 1 times, then up to radius - 1
    let rest = (radius - edge_a + 1) as u32;
    let mut acc: [u32; 4] = std::array::from_fn(|c| {
        let first = u32::from(at(0)[c]).wrapping_mul(radius as u32 + 1);
        let inner = (0..edge_a - 1).fold(first, |a, x| a.wrapping_add(u32::from(at(x)[c])));
        inner.wrapping_add(u32::from(at(last)[c]).wrapping_mul(rest))
    });
    let mut out = vec![[0u8; 4]; line.len()];
    // per x: the pixel leaving the window, the one entering it, and the far pixels' indices
    let mut step = |x: i64, sub: i64, add: i64, left: i64, right: i64| {
        for c in 0..4 {
            acc[c] = acc[c]
                .wrapping_add(u32::from(at(add)[c]))
                .wrapping_sub(u32::from(at(sub)[c]));
            let far = u32::from(at(left)[c]) + u32::from(at(right)[c]);
            let bulk = acc[c].wrapping_mul(ww).wrapping_add(far.wrapping_mul(fw));
            out[x as usize][c] = (bulk.wrapping_add(1 << 23) >> 24) as u8;
        }
    };
    if edge_a <= edge_b {
        for x in 0..edge_a {
            step(x, 0, x + radius, 0, x + radius + 1);
        }
        for x in edge_a..edge_b {
            step(
                x,
                x - radius - 1,
                x + radius,
                x - radius - 1,
                x + radius + 1,
            );
        }
        for x in edge_b..=last {
            step(x, x - radius - 1, last, x - radius - 1, last);
        }
    } else {
        for x in 0..edge_b {
            step(x, 0, x + radius, 0, x + radius + 1);
        }
        for x in edge_b..edge_a {
            step(x, 0, last, 0, last);
        }
        for x in edge_a..=last {
            step(x, x - radius - 1, last, x - radius - 1, last);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A1111's `fill` run with Pillow 13 on the image and mask of
    /// `tests/fixtures/mask_fill.json` (`tests/reference/make_mask_fixtures.py`), bit for bit.
    #[test]
    fn fill_is_a1111s_with_pillow() {
        #[derive(serde::Deserialize)]
        struct Case {
            name: String,
            width: u32,
            height: u32,
            image: Vec<u8>,
            mask: Vec<u8>,
            filled: Vec<u8>,
        }
        let text = include_str!("../../tests/fixtures/mask_fill.json");
        let cases: Vec<Case> = serde_json::from_str(text).expect("fixture");
        assert_eq!(cases.len(), 2);
        for c in cases {
            let image = RgbImage::from_raw(c.width, c.height, c.image).expect("size");
            let mask = GrayImage::from_raw(c.width, c.height, c.mask).expect("size");
            let got = a1111_fill(&image, &mask);
            let wrong = got.as_raw().iter().zip(&c.filled).filter(|(a, b)| a != b);
            assert_eq!(wrong.count(), 0, "{}", c.name);
        }
    }
}
