//! Inpainting on a base (4-channel) checkpoint, as diffusers'
//! `StableDiffusionXLInpaintPipeline` runs it: after every sampler call, the latents outside
//! the mask are replaced by the original's latents noised to the next call's level (clean
//! after the last), and at strength 1 the run starts from pure noise
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_inpaint.py>).
//! The mask reaches the latents by diffusers' rule (cut at half, each 8x8 block taking its
//! top-left pixel); A1111's preparation comes before it (inverting, blurring the edge, fitting
//! to the size as the init image), and its masked content (fill, latent noise, latent nothing)
//! and overlay after the decode, so the pixels the mask leaves are the init image's.

use burn::tensor::{Device, Tensor, TensorData};
use image::{GrayImage, RgbImage};

use crate::image_io::{mask, Fit};
use crate::sampling::SamplingRun;

/// What the masked part starts from (A1111's `inpainting_fill`, "Masked content").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskedContent {
    /// The init image as it is (A1111's 1, `original`).
    #[default]
    Original,
    /// The masked part painted over with blurred surroundings before encoding (0, `fill`).
    Fill,
    /// The masked latents replaced by the start noise (2, `latent noise`).
    Noise,
    /// The masked latents zeroed (3, `latent nothing`).
    Nothing,
}

crate::spelled! {
    MaskedContent, "masked content",
    (MaskedContent::Original, "original", "The init image as it is"),
    (MaskedContent::Fill, "fill",
        "The masked part painted over with blurred surroundings first (A1111's `fill`)"),
    (MaskedContent::Noise, "noise", "The masked latents replaced by the start noise"),
    (MaskedContent::Nothing, "nothing", "The masked latents zeroed"),
}

impl MaskedContent {
    /// A1111's `inpainting_fill` number.
    pub fn a1111(self) -> u8 {
        match self {
            MaskedContent::Fill => 0,
            MaskedContent::Original => 1,
            MaskedContent::Noise => 2,
            MaskedContent::Nothing => 3,
        }
    }

    /// [`MaskedContent::a1111`]'s inverse.
    pub fn from_a1111(n: i64) -> Option<Self> {
        [Self::Fill, Self::Original, Self::Noise, Self::Nothing]
            .into_iter()
            .find(|m| i64::from(m.a1111()) == n)
    }
}

/// What an inpainting request repaints of its init image.
#[derive(Clone, Debug)]
pub struct Mask {
    /// White repaints, black keeps (as [`image_io::read_mask`] reads a file), any size: fitted
    /// to the request's size as the init image is.
    pub image: GrayImage,
    /// A1111's `mask_blur_x`, `mask_blur_y`: Gaussian sigmas in the mask's own pixels (0:
    /// none), at most [`mask::MAX_MASK_BLUR`].
    pub blur: [u32; 2],
    /// Repaint what is black instead (A1111's `inpainting_mask_invert`).
    pub invert: bool,
    pub content: MaskedContent,
}

/// A1111's default `mask_blur`.
pub const DEFAULT_MASK_BLUR: u32 = 4;

impl Mask {
    /// Whether any pixel repaints (white, or black when inverted): a run that would return its
    /// init image is refused instead.
    pub fn repaints_anything(&self) -> bool {
        let keep = if self.invert { 255 } else { 0 };
        self.image.pixels().any(|p| p[0] != keep)
    }

    /// The mask at `width x height`, as A1111 prepares it: inverted if asked, blurred at its
    /// own size, then fitted like the init image (`fit`).
    pub fn prepared(&self, width: usize, height: usize, fit: Fit) -> GrayImage {
        let mut m = self.image.clone();
        if self.invert {
            mask::invert(&mut m);
        }
        let [bx, by] = self.blur;
        fit.apply(&mask::gaussian_blur(&m, bx, by), width, height)
    }
}

/// The pixels an inpainting run gives back: the init image (fitted to the result's size) and
/// A1111's overlay mask, pasted over each decoded image.
#[derive(Clone, Debug)]
pub struct Overlay {
    pub original: RgbImage,
    pub mask: GrayImage,
}

impl Overlay {
    /// `generated` with the original's pixels where the mask keeps them (A1111's
    /// `apply_overlay`).
    pub fn apply(&self, generated: &RgbImage) -> RgbImage {
        mask::apply_overlay(generated, &self.original, &self.mask)
    }
}

/// `image` (at the request's size) as the masked content starts it: A1111's fill applied under
/// the prepared mask, else as it is.
pub(super) fn start_image(image: RgbImage, mask: &GrayImage, content: MaskedContent) -> RgbImage {
    match content {
        MaskedContent::Fill => crate::image_io::fill::a1111_fill(&image, mask),
        _ => image,
    }
}

/// The per-call blend of a run: the original's latents, the start noise, and the latent mask
/// (1 repaints) with its complement, all `[B, 4, h/8, w/8]`.
pub(super) struct Blend {
    x0: Tensor<4>,
    noise: Tensor<4>,
    repaint: Tensor<4>,
    keep: Tensor<4>,
}

impl Blend {
    /// The blend of `x0` (`[B, 4, h, w]`) under `mask` (at the image's size, `8h x 8w`).
    pub(super) fn new(x0: Tensor<4>, noise: Tensor<4>, mask: &GrayImage, device: &Device) -> Blend {
        let [b, c, h, w] = x0.dims();
        let repaint =
            Tensor::<4>::from_data(TensorData::new(latent_mask(mask), [1, 1, h, w]), device)
                .repeat_dim(0, b)
                .repeat_dim(1, c); // [B, 4, h, w]
        Blend {
            keep: repaint.ones_like() - repaint.clone(),
            x0,
            noise,
            repaint,
        }
    }

    /// The clean latents the run starts from under `content`: the original's, with the masked
    /// part replaced by the start noise or zeroed (A1111's latent noise / latent nothing).
    pub(super) fn start(&self, content: MaskedContent) -> Tensor<4> {
        match content {
            MaskedContent::Noise => {
                self.x0.clone() * self.keep.clone() + self.noise.clone() * self.repaint.clone()
            }
            MaskedContent::Nothing => self.x0.clone() * self.keep.clone(),
            MaskedContent::Original | MaskedContent::Fill => self.x0.clone(),
        }
    }

    /// `x` after a sampler call: the original noised to the next call's level (clean after the
    /// last) where the mask keeps, `x` where it repaints.
    pub(super) fn apply(&self, x: Tensor<4>, sampling: &SamplingRun) -> Tensor<4> {
        let kept = match sampling.steps_left() {
            0 => self.x0.clone(),
            _ => sampling.add_noise(self.x0.clone(), self.noise.clone()),
        };
        x * self.repaint.clone() + kept * self.keep.clone()
    }
}

/// diffusers' latent mask of a mask at the image's size: binarised at half (`v >= 128`), then
/// `F.interpolate(mode="nearest")` to an eighth of the size, which takes each 8x8 block's
/// top-left pixel. `[h/8 * w/8]`, row-major.
fn latent_mask(mask: &GrayImage) -> Vec<f32> {
    let (w, h) = (mask.width() / 8, mask.height() / 8);
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| f32::from(u8::from(mask.get_pixel(8 * x, 8 * y)[0] >= 128)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn latent_mask_takes_each_blocks_top_left_pixel_cut_at_half() {
        let mut m = GrayImage::new(16, 8);
        m.put_pixel(8, 0, Luma([128]));
        m.put_pixel(0, 1, Luma([255])); // not a block's corner
        assert_eq!(latent_mask(&m), [0.0, 1.0]);
        m.put_pixel(8, 0, Luma([127]));
        assert_eq!(latent_mask(&m), [0.0, 0.0]);
    }

    #[test]
    fn masked_content_numbers_are_a1111s() {
        for n in 0..4 {
            let content = MaskedContent::from_a1111(n).expect("0 to 3");
            assert_eq!(i64::from(content.a1111()), n);
        }
        assert_eq!(MaskedContent::from_a1111(4), None);
        assert_eq!("noise".parse(), Ok(MaskedContent::Noise));
    }

    #[test]
    fn preparation_inverts_before_fitting() {
        let white = GrayImage::from_pixel(32, 16, Luma([255]));
        let mask = Mask {
            image: white,
            blur: [0, 0],
            invert: true,
            content: MaskedContent::Original,
        };
        let prepared = mask.prepared(16, 16, Fit::Cover);
        assert_eq!(prepared.dimensions(), (16, 16));
        assert!(prepared.pixels().all(|p| p[0] == 0));
        assert!(!mask.repaints_anything());
    }
}
