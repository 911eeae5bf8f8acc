//! What A1111 does around a model upscaler's pass, shared by `sdxl-wgpu upscale`, the Extras
//! endpoints and hires fix: the model run (up to 3 times) until the image covers the target,
//! then Pillow's Lanczos to the target, whose sides A1111 rounds down to multiples of 8
//! (`Upscaler.upscale`); hires fix then resizes to its exact size (`images.resize_image`, mode
//! 0). <https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/upscaler.py>

use image::RgbImage;

use crate::device::Gpu;
use crate::image_io::resample::{pil_resize, PilFilter};
use crate::upscaler::{TileMode, Tiling, Upscaler, UpscalerError};

/// The most passes of the model (A1111's loop).
const MAX_PASSES: usize = 3;

/// A1111's target for scaling a `width x height` image by `scale`: each side truncated, then
/// rounded down to a multiple of 8.
pub fn target_size(width: u32, height: u32, scale: f64) -> (u32, u32) {
    let side = |s: u32| ((f64::from(s) * scale) as u32) / 8 * 8;
    (side(width), side(height))
}

/// `image` scaled by `scale` as A1111's `Upscaler.upscale` does with a model: to
/// [`target_size`] (see [`a1111_upscale`]).
pub fn upscale_by(
    model: &Upscaler,
    image: &RgbImage,
    scale: f64,
    tiles: TileMode,
    gpu: &Gpu,
) -> Result<RgbImage, UpscalerError> {
    let tiles = match tiles {
        TileMode::Blended(None) => {
            let tiling = Tiling::for_buffer(model, gpu.adapter.max_tensor_bytes())?;
            TileMode::Blended(Some(tiling)) // sized once for every pass
        }
        other => other,
    };
    a1111_upscale(image, scale, |img| model.upscale_in(img, tiles, gpu))
}

/// `image` scaled by `scale` with one of A1111's built-in pixel upscalers (`None`: no pass;
/// `Lanczos`, `Nearest`: Pillow's resize by `scale`, sides truncated), as its
/// `Upscaler.upscale` runs them: the pass, then Lanczos to [`target_size`].
/// <https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/upscaler.py>
pub fn builtin_upscale_by(
    filter: Option<PilFilter>,
    image: &RgbImage,
    scale: f64,
) -> Result<RgbImage, UpscalerError> {
    a1111_upscale(image, scale, |img| {
        Ok(match filter {
            Some(filter) => {
                let side = |s: u32| (f64::from(s) * scale) as u32;
                pil_resize(img, side(img.width()), side(img.height()), filter)
            }
            None => img.clone(),
        })
    })
}

/// A1111's `Upscaler.upscale` around one upscaler `pass`: passes (at most 3) until the image
/// covers [`target_size`] (at scale 1, one pass all the same), stopping when a pass changes
/// nothing; then Lanczos to the target.
fn a1111_upscale(
    image: &RgbImage,
    scale: f64,
    mut pass: impl FnMut(&RgbImage) -> Result<RgbImage, UpscalerError>,
) -> Result<RgbImage, UpscalerError> {
    let (w, h) = image.dimensions();
    let (dest_w, dest_h) = target_size(w, h, scale);
    if dest_w == 0 || dest_h == 0 {
        return Err(UpscalerError::TooSmall {
            width: w,
            height: h,
            min: (8.0 / scale).ceil() as u32,
        });
    }
    let mut out = image.clone();
    for i in 0..MAX_PASSES {
        let covers = out.width() >= dest_w && out.height() >= dest_h;
        if covers && (i > 0 || scale != 1.0) {
            break;
        }
        let before = out.dimensions();
        out = pass(&out)?;
        if out.dimensions() == before {
            break;
        }
    }
    Ok(pil_resize(&out, dest_w, dest_h, PilFilter::Lanczos))
}

/// `image` resized to exactly `width x height` through the model (A1111's `resize_image` with
/// an upscaler, as hires fix calls it): [`upscale_by`] the larger ratio, then Lanczos.
pub fn upscale_to(
    model: &Upscaler,
    image: &RgbImage,
    width: u32,
    height: u32,
    gpu: &Gpu,
) -> Result<RgbImage, UpscalerError> {
    let (w, h) = image.dimensions();
    let scale = (f64::from(width) / f64::from(w)).max(f64::from(height) / f64::from(h));
    let out = if scale > 1.0 {
        upscale_by(model, image, scale, TileMode::default(), gpu)?
    } else {
        image.clone()
    };
    Ok(pil_resize(&out, width, height, PilFilter::Lanczos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_down_to_multiples_of_8_as_a1111() {
        assert_eq!(target_size(1001, 750, 4.0), (4000, 3000));
        assert_eq!(target_size(512, 512, 2.0), (1024, 1024));
        assert_eq!(target_size(100, 60, 1.5), (144, 88));
        assert_eq!(target_size(3, 3, 2.0), (0, 0));
    }
}
