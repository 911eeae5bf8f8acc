//! A1111's Extras upscale (the `extra-single-image` / `extra-batch-images` endpoints): upscaler
//! 1 by a factor or to a size (then, in "scale to" mode, the centre cut to that size), upscaler
//! 2 from the same input blended over it by its visibility, and the `postprocessing` infotext
//! that says so. Ported from A1111's `ScriptPostprocessingUpscale`
//! (<https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/scripts/postprocessing_upscale.py>)
//! and `run_postprocessing` (`modules/postprocessing.py`). Face restoration is not here.

use image::RgbImage;

use super::hires::UpscalerChoice;
use crate::image_io::pil_crop;
use crate::upscaler::{UpscalerError, MAX_OUTPUT_SIDE};

/// How much larger the image gets (A1111's `resize_mode`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExtrasResize {
    /// 0: each side times this (`upscaling_resize`), rounded down to a multiple of 8.
    By(f64),
    /// 1: by the larger of the two ratios to `width x height` (`upscaling_resize_w/h`); with
    /// `crop`, the centre `width x height` of that (black where the image falls short).
    To { width: u32, height: u32, crop: bool },
}

/// One Extras upscale.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtrasUpscale {
    /// `upscaler_1`; `None` (A1111's `None`): the image is returned as it came.
    pub upscaler: Option<UpscalerChoice>,
    /// `upscaler_2` and its visibility in (0, 1]; left out at visibility 0.
    pub second: Option<(UpscalerChoice, f64)>,
    pub resize: ExtrasResize,
}

/// An image after the upscale and the `postprocessing` infotext's fields, in A1111's order.
pub struct Postprocessed {
    pub image: RgbImage,
    pub info: Vec<(String, String)>,
}

/// Runs one upscaler on an image by a factor: A1111's `Upscaler.upscale` (the caller owns the
/// models and the device).
pub type UpscaleBy<'a> =
    dyn FnMut(&UpscalerChoice, &RgbImage, f64) -> Result<RgbImage, UpscalerError> + 'a;

impl ExtrasUpscale {
    /// The upscale of `image`, with `upscale` running each upscaler.
    pub fn run(
        &self,
        image: &RgbImage,
        upscale: &mut UpscaleBy<'_>,
    ) -> Result<Postprocessed, UpscalerError> {
        let mut info = Vec::new();
        let Some(first) = &self.upscaler else {
            return Ok(Postprocessed {
                image: image.clone(),
                info,
            });
        };
        let mut out = self.one(first, image, &mut info, upscale)?;
        set(&mut info, "Postprocess upscaler", first.a1111_name());
        if let Some((second, visibility)) = &self.second {
            let other = self.one(second, image, &mut info, upscale)?;
            out = pil_blend(&out, &other, *visibility as f32);
            set(&mut info, "Postprocess upscaler 2", second.a1111_name());
        }
        Ok(Postprocessed { image: out, info })
    }

    /// The factor A1111 scales `width x height` by.
    pub fn scale(&self, width: u32, height: u32) -> f64 {
        match self.resize {
            ExtrasResize::By(scale) => scale,
            ExtrasResize::To {
                width: w,
                height: h,
                ..
            } => (f64::from(w) / f64::from(width)).max(f64::from(h) / f64::from(height)),
        }
    }

    /// Checks that an image of `width x height` gives an output the engine makes.
    pub fn check(&self, width: u32, height: u32) -> Result<(), UpscalerError> {
        let scale = self.scale(width, height);
        let side = |s: u32| (f64::from(s) * scale) as u64;
        let (w, h) = match self.resize {
            ExtrasResize::To {
                width,
                height,
                crop: true,
            } => (u64::from(width), u64::from(height)),
            _ => (side(width), side(height)),
        };
        if self.upscaler.is_some() && w.max(h) > MAX_OUTPUT_SIDE {
            return Err(UpscalerError::TooLarge {
                width: w,
                height: h,
                max: MAX_OUTPUT_SIDE,
            });
        }
        Ok(())
    }

    /// `ScriptPostprocessingUpscale.upscale`: one upscaler, then the crop.
    fn one(
        &self,
        upscaler: &UpscalerChoice,
        image: &RgbImage,
        info: &mut Vec<(String, String)>,
        upscale: &mut UpscaleBy<'_>,
    ) -> Result<RgbImage, UpscalerError> {
        let scale = self.scale(image.width(), image.height());
        match self.resize {
            ExtrasResize::By(by) => set(info, "Postprocess upscale by", &python_float(by)),
            ExtrasResize::To { width, height, .. } => {
                set(info, "Postprocess upscale to", &format!("{width}x{height}"))
            }
        }
        let out = upscale(upscaler, image, scale)?;
        Ok(match self.resize {
            ExtrasResize::To {
                width,
                height,
                crop: true,
            } => {
                set(info, "Postprocess crop to", &format!("{width}x{height}"));
                centre_paste(&out, width, height)
            }
            _ => out,
        })
    }
}

/// Sets `key` in A1111's info dict: a new key goes last, an existing one keeps its place.
fn set(info: &mut Vec<(String, String)>, key: &str, value: &str) {
    match info.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value.to_string(),
        None => info.push((key.to_string(), value.to_string())),
    }
}

/// Python's `str` of a float (`2.0`, `1.5`, `0.1`): Rust's shortest round-trip digits, with
/// `.0` on whole numbers.
fn python_float(x: f64) -> String {
    let s = format!("{x}");
    match s.contains(['.', 'e', 'i', 'N']) {
        true => s,
        false => format!("{s}.0"),
    }
}

/// `Image.new("RGB", (w, h))` (black) with `image` pasted at
/// `(w // 2 - image.width // 2, h // 2 - image.height // 2)`, clipped.
fn centre_paste(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let left = i64::from(width / 2) - i64::from(image.width() / 2);
    let top = i64::from(height / 2) - i64::from(image.height() / 2);
    pil_crop(image, -left, -top, width, height)
}

/// Pillow's `Image.blend(a, b, alpha)` on 8-bit images: `a + alpha * (b - a)` in C `float`,
/// truncated (`libImaging/Blend.c`). `b` is `a`'s size (both come from the same target).
fn pil_blend(a: &RgbImage, b: &RgbImage, alpha: f32) -> RgbImage {
    let mut out = a.clone();
    for (o, (&x, &y)) in out.iter_mut().zip(a.iter().zip(b.iter())) {
        *o = (f32::from(x) + alpha * (f32::from(y) - f32::from(x))) as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_io::metadata::fields_line as infotext;
    use crate::pipeline::hires::HiresUpscaler;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 9) as u8, (y * 7) as u8, 200]))
    }

    /// A stand-in upscaler: every pixel repeated `scale` times per side (truncated), so the
    /// tests see what `run` does around it.
    fn repeat(_: &UpscalerChoice, image: &RgbImage, scale: f64) -> Result<RgbImage, UpscalerError> {
        let (w, h) = image.dimensions();
        let side = |s: u32| (f64::from(s) * scale) as u32;
        Ok(RgbImage::from_fn(side(w), side(h), |x, y| {
            *image.get_pixel(
                ((f64::from(x) / scale) as u32).min(w - 1),
                ((f64::from(y) / scale) as u32).min(h - 1),
            )
        }))
    }

    #[test]
    fn no_first_upscaler_returns_the_image_and_no_info() {
        let image = gradient(20, 12);
        let extras = ExtrasUpscale {
            upscaler: None,
            second: Some((HiresUpscaler::Lanczos.into(), 0.5)),
            resize: ExtrasResize::By(2.0),
        };
        let out = extras.run(&image, &mut repeat).expect("runs");
        assert_eq!(out.image, image);
        assert!(out.info.is_empty());
    }

    #[test]
    fn scale_to_with_crop_centres_and_writes_a1111s_fields() {
        let image = gradient(20, 10);
        let extras = ExtrasUpscale {
            upscaler: Some(HiresUpscaler::Nearest.into()),
            second: None,
            resize: ExtrasResize::To {
                width: 24,
                height: 24,
                crop: true,
            },
        };
        let out = extras.run(&image, &mut repeat).expect("runs");
        // scale max(24/20, 24/10) = 2.4: 48x24, of which the centre 24x24 (from x = 12)
        assert_eq!(out.image.dimensions(), (24, 24));
        let upscaled = repeat(&HiresUpscaler::Nearest.into(), &image, 2.4).expect("runs");
        assert_eq!(out.image.get_pixel(0, 5), upscaled.get_pixel(12, 5));
        assert_eq!(
            infotext(&out.info),
            "Postprocess upscale to: 24x24, Postprocess crop to: 24x24, Postprocess upscaler: Nearest"
        );
        // a source smaller than the cut leaves black borders, as Pillow's paste does
        let small = centre_paste(&gradient(4, 2), 8, 6);
        assert_eq!(small.get_pixel(0, 0), &image::Rgb([0, 0, 0]));
        assert_eq!(small.get_pixel(2, 2), &image::Rgb([0, 0, 200]));
    }

    #[test]
    fn a_second_upscaler_blends_by_its_visibility() {
        let image = gradient(16, 8);
        let lanczos = UpscalerChoice::from(HiresUpscaler::Lanczos);
        let extras = ExtrasUpscale {
            upscaler: Some(HiresUpscaler::Nearest.into()),
            second: Some((lanczos.clone(), 0.25)),
            resize: ExtrasResize::By(2.0),
        };
        let mut dark = |c: &UpscalerChoice, i: &RgbImage, s: f64| {
            let mut out = repeat(c, i, s)?;
            if *c == lanczos {
                out.pixels_mut().for_each(|p| p.0 = [0, 0, 0]);
            }
            Ok(out)
        };
        let out = extras.run(&image, &mut dark).expect("runs");
        let first = repeat(&lanczos, &image, 2.0).expect("runs");
        for (o, f) in out.image.iter().zip(first.iter()) {
            assert_eq!(*o, (f32::from(*f) * 0.75) as u8);
        }
        assert_eq!(
            infotext(&out.info),
            "Postprocess upscale by: 2.0, Postprocess upscaler: Nearest, \
             Postprocess upscaler 2: Lanczos"
        );
    }

    #[test]
    fn outputs_past_the_largest_side_are_refused_before_any_work() {
        let extras = ExtrasUpscale {
            upscaler: Some(HiresUpscaler::Lanczos.into()),
            second: None,
            resize: ExtrasResize::By(8.0),
        };
        assert!(extras.check(1024, 1024).is_ok());
        assert!(matches!(
            extras.check(1025, 64),
            Err(UpscalerError::TooLarge { .. })
        ));
        assert_eq!(python_float(2.0), "2.0");
        assert_eq!(python_float(1.25), "1.25");
    }
}
