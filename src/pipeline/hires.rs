//! A1111's hires fix: a txt2img run's latents upscaled (a latent upscaler: `F.interpolate` in
//! one of A1111's modes) to a larger size, cropped where both sides were given, then denoised
//! again from there as img2img is (noised to the step the strength leaves, with fresh noise from
//! each image's own seed), the size conditioning recomputed at the larger size.
//!
//! The target size follows A1111's `calculate_target_resolution` and the crop its
//! `sample_hr_pass` (`modules/processing.py`,
//! <https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/processing.py>).
//! The second pass's steps follow the engine's img2img rule (diffusers'): `int(steps x
//! strength)` steps of a `steps`-step schedule, where A1111 runs `steps` steps of a longer one.

use burn::tensor::Tensor;

use crate::nn::interpolate::{interpolate, Interpolation};

/// The most a hires pass may scale each side by.
pub const MAX_HIRES_SCALE: f64 = 8.0;

/// A latent upscaler: how the first pass's latents are resized (A1111's `Latent ...` modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")] // the spellings below
pub enum LatentUpscaler {
    #[default]
    Latent,
    LatentAntialiased,
    LatentBicubic,
    LatentBicubicAntialiased,
    LatentNearest,
    LatentNearestExact,
}

crate::spelled! {
    LatentUpscaler, "hires upscaler",
    (LatentUpscaler::Latent, "latent", "Bilinear on the latents (A1111's \"Latent\")"),
    (LatentUpscaler::LatentAntialiased, "latent-antialiased", "Bilinear, antialiased"),
    (LatentUpscaler::LatentBicubic, "latent-bicubic", "Bicubic"),
    (LatentUpscaler::LatentBicubicAntialiased, "latent-bicubic-antialiased", "Bicubic, antialiased"),
    (LatentUpscaler::LatentNearest, "latent-nearest", "Nearest"),
    (LatentUpscaler::LatentNearestExact, "latent-nearest-exact", "Nearest, exact (pixel centres)"),
}

impl LatentUpscaler {
    /// A1111's name (`shared.latent_upscale_modes`) and the `F.interpolate` mode it calls.
    fn row(self) -> (&'static str, Interpolation) {
        use Interpolation::*;
        match self {
            Self::Latent => ("Latent", Bilinear { antialias: false }),
            Self::LatentAntialiased => ("Latent (antialiased)", Bilinear { antialias: true }),
            Self::LatentBicubic => ("Latent (bicubic)", Bicubic { antialias: false }),
            Self::LatentBicubicAntialiased => {
                ("Latent (bicubic antialiased)", Bicubic { antialias: true })
            }
            Self::LatentNearest => ("Latent (nearest)", Nearest),
            Self::LatentNearestExact => ("Latent (nearest-exact)", NearestExact),
        }
    }

    /// The name A1111 lists and writes in the infotext.
    pub fn a1111_name(self) -> &'static str {
        self.row().0
    }

    /// The upscaler A1111 calls `name`.
    pub fn from_a1111(name: &str) -> Option<Self> {
        use crate::spelling::Spelled;
        Self::SPELLINGS
            .iter()
            .map(|&(u, _, _)| u)
            .find(|u| u.a1111_name() == name)
    }
}

/// The second pass's size: a scale of the first pass's, or given sides (A1111's `hr_resize_x`
/// and `hr_resize_y`; 0 = from the other side and the first pass's aspect ratio).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HiresSize {
    Scale(f64),
    Resize { width: usize, height: usize },
}

/// A txt2img run's second pass at a larger size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hires {
    pub size: HiresSize,
    pub upscaler: LatentUpscaler,
    /// Steps of the second pass's schedule; 0: the first pass's.
    pub steps: usize,
    /// How much the second pass changes the upscaled image, in (0, 1].
    pub strength: f64,
}

/// Where a hires pass goes from a first pass of `width x height`: the latents are resized to
/// `upscaled` (latent pixels, `[rows, cols]`), then `truncate` rows and columns are cut (half
/// from each side, the odd one from the end) to give the second pass's `width x height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HiresTarget {
    pub upscaled: [usize; 2],
    pub truncate: [usize; 2],
    pub width: usize,
    pub height: usize,
}

impl Hires {
    /// A1111's target for a first pass of `width x height` (`calculate_target_resolution`):
    /// a scale truncates `width x scale`; one side given keeps the aspect ratio; both cover
    /// the given size keeping the aspect ratio, and the excess is cut from the latents.
    pub fn target(&self, width: usize, height: usize) -> HiresTarget {
        let (w, h) = (width.max(1), height.max(1));
        let (to_x, to_y, target) = match self.size {
            HiresSize::Scale(scale) => {
                let side = |s: usize| (s as f64 * scale) as usize; // Python's int(): truncates
                (side(w), side(h), None)
            }
            HiresSize::Resize {
                width: x,
                height: 0,
            } => (x, x * h / w, None),
            HiresSize::Resize {
                width: 0,
                height: y,
            } => (y * w / h, y, None),
            HiresSize::Resize {
                width: x,
                height: y,
            } => {
                // src_ratio < dst_ratio, in integers: w / h < x / y
                match w * y < x * h {
                    true => (x, x * h / w, Some((x, y))),
                    false => (y * w / h, y, Some((x, y))),
                }
            }
        };
        let upscaled = [to_y / 8, to_x / 8];
        let truncate = target.map_or([0, 0], |(x, y)| {
            [to_y.saturating_sub(y) / 8, to_x.saturating_sub(x) / 8]
        });
        HiresTarget {
            upscaled,
            truncate,
            width: 8 * upscaled[1].saturating_sub(truncate[1]),
            height: 8 * upscaled[0].saturating_sub(truncate[0]),
        }
    }

    /// The second pass's steps.
    pub fn steps_of(&self, first_pass_steps: usize) -> usize {
        match self.steps {
            0 => first_pass_steps,
            steps => steps,
        }
    }
}

/// The first pass's latents `[B, 4, h, w]` upscaled and cropped to the second pass's
/// `[B, 4, height/8, width/8]` (A1111's `sample_hr_pass` slicing).
pub fn upscale_latents(x: Tensor<4>, target: &HiresTarget, upscaler: LatentUpscaler) -> Tensor<4> {
    let [rows, cols] = target.upscaled;
    let x = interpolate(x, rows, cols, upscaler.row().1);
    let [b, c, _, _] = x.dims();
    let [ty, tx] = target.truncate;
    x.slice([
        0..b,
        0..c,
        ty / 2..rows - ty.div_ceil(2),
        tx / 2..cols - tx.div_ceil(2),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(size: HiresSize, w: usize, h: usize) -> HiresTarget {
        let hires = Hires {
            size,
            upscaler: LatentUpscaler::Latent,
            steps: 0,
            strength: 0.5,
        };
        hires.target(w, h)
    }

    /// A1111's rules, worked by hand from `calculate_target_resolution`:
    /// (size, first pass, latents resized to, rows and columns cut, second pass).
    #[test]
    fn targets_follow_a1111() {
        let resize = |width, height| HiresSize::Resize { width, height };
        let cases = [
            // int(832 x 1.5) = 1248, int(1216 x 1.5) = 1824
            (
                HiresSize::Scale(1.5),
                (832, 1216),
                [228, 156],
                [0, 0],
                (1248, 1824),
            ),
            // int(64 x 1.3) = 83 -> 10 latent pixels: 80
            (HiresSize::Scale(1.3), (64, 64), [10, 10], [0, 0], (80, 80)),
            // one side: the other from the aspect ratio (1500 * 1216 // 832 = 2192)
            (
                resize(1500, 0),
                (832, 1216),
                [274, 187],
                [0, 0],
                (1496, 2192),
            ),
            (resize(0, 96), (64, 32), [12, 24], [0, 0], (192, 96)),
            // both: cover, then cut the excess from the latents
            (resize(96, 64), (64, 64), [12, 12], [4, 0], (96, 64)),
            (resize(64, 120), (64, 64), [15, 15], [0, 7], (64, 120)),
        ];
        for (size, (w, h), upscaled, truncate, (width, height)) in cases {
            let want = HiresTarget {
                upscaled,
                truncate,
                width,
                height,
            };
            assert_eq!(target(size, w, h), want, "{size:?} from {w}x{h}");
        }
    }

    #[test]
    fn a1111_names_round_trip() {
        use crate::spelling::Spelled;
        for &(u, _, _) in LatentUpscaler::SPELLINGS {
            assert_eq!(LatentUpscaler::from_a1111(u.a1111_name()), Some(u));
        }
        assert_eq!(LatentUpscaler::from_a1111("Lanczos"), None);
    }
}
