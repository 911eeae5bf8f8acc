//! Live previews without the VAE: a fixed linear map from SDXL's 4 latent channels to RGB,
//! applied to the sampler's predicted clean latents (one small read-back every few steps).
//! Factors from ComfyUI's `latent_formats.SDXL`
//! (<https://github.com/comfyanonymous/ComfyUI/blob/v0.3.52/comfy/latent_formats.py>).

use burn::tensor::Tensor;
use image::RgbImage;

use crate::image_io::metadata::write_png;

/// `rgb = latent . FACTORS[c] + BIAS`, per latent channel c.
const FACTORS: [[f32; 3]; 4] = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
];
const BIAS: [f32; 3] = [0.1084, -0.0175, -0.0011];

/// The first image of `latents` (`[B, 4, h, w]`) as an `h x w` RGB PNG; `None` when the
/// device read fails (a preview is never worth failing a job for).
pub fn preview_png(latents: Tensor<4>) -> Option<Vec<u8>> {
    let [_, c, h, w] = latents.dims();
    if c != FACTORS.len() {
        return None;
    }
    let first = latents.slice([0..1, 0..c, 0..h, 0..w]); // [1, 4, h, w]
    let values = first.try_to_vec_as::<f32>().ok()?;
    let image = project(&values, h, w);
    let mut png = Vec::new();
    write_png(&image, &mut png, None).ok()?;
    Some(png)
}

/// `values`: one image's latents, channel-major `[4, h, w]`.
fn project(values: &[f32], h: usize, w: usize) -> RgbImage {
    let plane = h * w;
    let mut image = RgbImage::new(w as u32, h as u32);
    for (i, pixel) in image.pixels_mut().enumerate() {
        for (rgb, value) in pixel.0.iter_mut().enumerate() {
            let linear = BIAS[rgb]
                + (0..4)
                    .map(|c| values[c * plane + i] * FACTORS[c][rgb])
                    .sum::<f32>();
            *value = (((linear + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_latents_are_the_bias_colour() {
        let image = project(&[0.0; 4 * 2 * 3], 2, 3);
        assert_eq!(image.dimensions(), (3, 2));
        let expect = BIAS.map(|b| (((b + 1.0) / 2.0) * 255.0).round() as u8);
        assert!(image.pixels().all(|p| p.0 == expect));
        // channel 0 = 1 everywhere adds its factors
        let mut values = vec![0.0; 4 * 6];
        values[..6].fill(1.0);
        let red = project(&values, 2, 3).get_pixel(0, 0).0[0];
        assert_eq!(
            red,
            (((0.3651f32 + 0.1084 + 1.0) / 2.0) * 255.0).round() as u8
        );
    }
}
