//! Pillow's `Image.resize` on 8-bit RGB, bit for bit: `LANCZOS` (a separable Lanczos-3 filter
//! widened when reducing, fixed-point coefficients, horizontal pass first through an 8-bit
//! image) and `NEAREST` (an affine scale sampled at pixel centres). A1111's "Lanczos" and
//! "Nearest" upscalers, and its hires fix's resizes, are these calls; the `image` crate's filters
//! differ from Pillow's by more than the last bit, hence this port of Pillow's
//! `libImaging/Resample.c` (`precompute_coeffs`, `normalize_coeffs_8bpc`,
//! `ImagingResample{Horizontal,Vertical}_8bpc`) and `libImaging/Geometry.c`
//! (`ImagingScaleAffine`), <https://github.com/python-pillow/Pillow/blob/12.0.0/src/libImaging/Resample.c>.

use image::RgbImage;

/// A Pillow resampling filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PilFilter {
    Lanczos,
    Nearest,
}

/// Pillow's fixed-point precision for 8-bit images: `32 - 8 - 2` bits.
const PRECISION_BITS: u32 = 22;

/// `image.resize((width, height), resample=filter)`.
pub fn pil_resize(image: &RgbImage, width: u32, height: u32, filter: PilFilter) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone(); // Pillow copies
    }
    match filter {
        PilFilter::Lanczos => lanczos(image, width, height),
        PilFilter::Nearest => nearest(image, width, height),
    }
}

/// `ImagingResample` with the Lanczos filter: each axis only when its size changes.
fn lanczos(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut out = image.clone();
    if width != w {
        let taps = coefficients(w as usize, width as usize);
        out = pass(&out, width, h, |x, y, src| {
            taps.apply(x, |i| src.get_pixel(i as u32, y).0)
        });
    }
    if height != h {
        let taps = coefficients(h as usize, height as usize);
        out = pass(&out, width, height, |x, y, src| {
            taps.apply(y, |i| src.get_pixel(x, i as u32).0)
        });
    }
    out
}

/// An image of `width x height` whose pixel `(x, y)` is `pixel(x, y, source)`.
fn pass(
    source: &RgbImage,
    width: u32,
    height: u32,
    pixel: impl Fn(u32, u32, &RgbImage) -> [u8; 3],
) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| image::Rgb(pixel(x, y, source)))
}

/// One axis's fixed-point filter taps: per output index, the first input index and weights.
struct Taps {
    bounds: Vec<(usize, usize)>,
    weights: Vec<Vec<i32>>,
}

impl Taps {
    /// Output `i` from the inputs `input(j)`, rounded and clipped as Pillow's 8-bit passes do.
    fn apply(&self, i: u32, input: impl Fn(usize) -> [u8; 3]) -> [u8; 3] {
        let (min, count) = self.bounds[i as usize];
        let mut sums = [1i64 << (PRECISION_BITS - 1); 3];
        for (k, &w) in self.weights[i as usize][..count].iter().enumerate() {
            let p = input(min + k);
            for c in 0..3 {
                sums[c] += i64::from(p[c]) * i64::from(w);
            }
        }
        sums.map(|s| (s >> PRECISION_BITS).clamp(0, 255) as u8) // clip8
    }
}

/// `precompute_coeffs` and `normalize_coeffs_8bpc` for resizing `input` samples to `output`.
fn coefficients(input: usize, output: usize) -> Taps {
    const SUPPORT: f64 = 3.0;
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let (mut bounds, mut weights) = (Vec::with_capacity(output), Vec::with_capacity(output));
    for xx in 0..output {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let min = ((center - support + 0.5) as i64).max(0) as usize; // C casts truncate
        let max = ((center + support + 0.5) as i64).min(input as i64) as usize;
        let count = max.saturating_sub(min);
        let mut k: Vec<f64> = (0..count)
            .map(|x| lanczos3((x as f64 + min as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = k.iter().sum();
        if total != 0.0 {
            k.iter_mut().for_each(|w| *w /= total);
        }
        let one = f64::from(1u32 << PRECISION_BITS);
        let fixed = k
            .iter()
            .map(|&w| match w < 0.0 {
                true => (-0.5 + w * one) as i32,
                false => (0.5 + w * one) as i32,
            })
            .collect();
        bounds.push((min, count));
        weights.push(fixed);
    }
    Taps { bounds, weights }
}

/// Pillow's `lanczos_filter`: the sinc windowed by a sinc three times wider.
fn lanczos3(x: f64) -> f64 {
    let sinc = |x: f64| {
        if x == 0.0 {
            1.0
        } else {
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
    };
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// `ImagingScaleAffine` as `resize(NEAREST)` calls it: source positions accumulated in f64
/// from the first pixel's centre, truncated (Pillow's `COORD`).
fn nearest(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let positions = |input: u32, output: u32| -> Vec<u32> {
        let step = f64::from(input) / f64::from(output);
        let mut at = step * 0.5;
        (0..output)
            .map(|_| {
                let i = (at as u32).min(input - 1); // at >= 0: a cast truncates
                at += step;
                i
            })
            .collect()
    };
    let (xs, ys) = (positions(w, width), positions(h, height));
    RgbImage::from_fn(width, height, |x, y| {
        *image.get_pixel(xs[x as usize], ys[y as usize])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pillow's outputs (`tests/reference/make_resample_fixtures.py`) for both filters, up and
    /// down, in each axis alone and both.
    #[test]
    fn equals_pillow() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resample.json");
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
        let cases = fixture["cases"].as_array().expect("cases");
        assert!(cases.len() >= 10);
        let dims =
            |v: &serde_json::Value| (v[0].as_u64().unwrap() as u32, v[1].as_u64().unwrap() as u32);
        let bytes = |v: &serde_json::Value| -> Vec<u8> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8)
                .collect()
        };
        for case in cases {
            let ((w, h), (ow, oh)) = (dims(&case["input"]), dims(&case["output"]));
            let filter = match case["filter"].as_str().unwrap() {
                "lanczos" => PilFilter::Lanczos,
                _ => PilFilter::Nearest,
            };
            let source = RgbImage::from_raw(w, h, bytes(&case["pixels"])).expect("pixels");
            let got = pil_resize(&source, ow, oh, filter);
            assert_eq!(
                got.into_raw(),
                bytes(&case["expected"]),
                "{filter:?} {w}x{h} -> {ow}x{oh}"
            );
        }
    }
}
