//! A1111's hires fix: a txt2img run's latents upscaled to a larger size (a latent upscaler:
//! `F.interpolate` in one of A1111's modes; or a pixel upscaler: the images decoded, resized as
//! Pillow does or through a model upscaler, and encoded again), cropped where both sides were given, then denoised again from
//! there as img2img is (noised to the step the strength leaves, with fresh noise from each
//! image's own seed), the size conditioning recomputed at the larger size.
//!
//! The target size follows A1111's `calculate_target_resolution` and the crop its
//! `sample_hr_pass` (`modules/processing.py`,
//! <https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/processing.py>).
//! The second pass's steps follow the engine's img2img rule (diffusers'): `int(steps x
//! strength)` steps of a `steps`-step schedule, where A1111 runs `steps` steps of a longer one.

use std::path::PathBuf;

use burn::tensor::Tensor;

use crate::image_io::resample::PilFilter;
use crate::nn::interpolate::{interpolate, Interpolation};

/// The most a hires pass may scale each side by.
pub const MAX_HIRES_SCALE: f64 = 8.0;

/// How the first pass's result is enlarged: a latent upscaler (A1111's `Latent ...` modes) or
/// a pixel one (A1111's `Lanczos` and `Nearest`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")] // the spellings below
pub enum HiresUpscaler {
    #[default]
    Latent,
    LatentAntialiased,
    LatentBicubic,
    LatentBicubicAntialiased,
    LatentNearest,
    LatentNearestExact,
    /// A1111's `None`: Pillow's Lanczos straight to the target (`images.resize_image` without
    /// an upscaler), written `None` in the infotext.
    None,
    Lanczos,
    Nearest,
}

crate::spelled! {
    HiresUpscaler, "hires upscaler",
    (HiresUpscaler::Latent, "latent", "Bilinear on the latents (A1111's \"Latent\")"),
    (HiresUpscaler::LatentAntialiased, "latent-antialiased", "Bilinear, antialiased"),
    (HiresUpscaler::LatentBicubic, "latent-bicubic", "Bicubic"),
    (HiresUpscaler::LatentBicubicAntialiased, "latent-bicubic-antialiased", "Bicubic, antialiased"),
    (HiresUpscaler::LatentNearest, "latent-nearest", "Nearest"),
    (HiresUpscaler::LatentNearestExact, "latent-nearest-exact", "Nearest, exact (pixel centres)"),
    (HiresUpscaler::None, "none", "The decoded image resized by Pillow's Lanczos (A1111's \"None\")"),
    (HiresUpscaler::Lanczos, "lanczos", "The decoded image resized by Pillow's Lanczos, encoded again"),
    (HiresUpscaler::Nearest, "nearest", "The decoded image resized by Pillow's nearest neighbour"),
}

/// What an upscaler does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method<'a> {
    /// `F.interpolate` on the latents.
    Latent(Interpolation),
    /// Pillow's resize of the decoded 8-bit images.
    Pixel(PilFilter),
    /// A model upscaler on the decoded 8-bit images ([`crate::pipeline::upscale::upscale_to`]).
    Model(&'a ModelUpscaler),
}

/// A model upscaler a request names: the name A1111 lists it by (its file's stem) and the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelUpscaler {
    pub name: String,
    pub path: PathBuf,
}

/// A hires pass's upscaler: a built-in one or a model file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpscalerChoice {
    Builtin(HiresUpscaler),
    Model(ModelUpscaler),
}

impl Default for UpscalerChoice {
    fn default() -> Self {
        UpscalerChoice::Builtin(HiresUpscaler::default())
    }
}

impl From<HiresUpscaler> for UpscalerChoice {
    fn from(u: HiresUpscaler) -> Self {
        UpscalerChoice::Builtin(u)
    }
}

impl UpscalerChoice {
    /// What it does.
    pub fn method(&self) -> Method<'_> {
        match self {
            UpscalerChoice::Builtin(u) => u.method(),
            UpscalerChoice::Model(m) => Method::Model(m),
        }
    }

    /// The name A1111 lists and writes in the infotext.
    pub fn a1111_name(&self) -> &str {
        match self {
            UpscalerChoice::Builtin(u) => u.a1111_name(),
            UpscalerChoice::Model(m) => &m.name,
        }
    }

    /// Our name: a built-in's spelling (`latent-bicubic`), a model's name.
    pub fn name(&self) -> String {
        match self {
            UpscalerChoice::Builtin(u) => u.to_string(),
            UpscalerChoice::Model(m) => m.name.clone(),
        }
    }

    /// The model file, if it is one.
    pub fn model(&self) -> Option<&ModelUpscaler> {
        match self {
            UpscalerChoice::Model(m) => Some(m),
            UpscalerChoice::Builtin(_) => None,
        }
    }
}

impl HiresUpscaler {
    /// A1111's name (`shared.latent_upscale_modes`, `shared.sd_upscalers`) and what it does.
    fn row(self) -> (&'static str, Method<'static>) {
        use Interpolation::*;
        use Method::{Latent, Pixel};
        match self {
            Self::Latent => ("Latent", Latent(Bilinear { antialias: false })),
            Self::LatentAntialiased => {
                ("Latent (antialiased)", Latent(Bilinear { antialias: true }))
            }
            Self::LatentBicubic => ("Latent (bicubic)", Latent(Bicubic { antialias: false })),
            Self::LatentBicubicAntialiased => (
                "Latent (bicubic antialiased)",
                Latent(Bicubic { antialias: true }),
            ),
            Self::LatentNearest => ("Latent (nearest)", Latent(Nearest)),
            Self::LatentNearestExact => ("Latent (nearest-exact)", Latent(NearestExact)),
            Self::Lanczos => ("Lanczos", Pixel(PilFilter::Lanczos)),
            Self::Nearest => ("Nearest", Pixel(PilFilter::Nearest)),
            Self::None => ("None", Pixel(PilFilter::Lanczos)),
        }
    }

    /// What this upscaler does.
    pub fn method(self) -> Method<'static> {
        self.row().1
    }

    /// Every upscaler, in the order A1111 lists them.
    pub fn all() -> impl Iterator<Item = Self> {
        use crate::spelling::Spelled;
        Self::SPELLINGS.iter().map(|&(u, _, _)| u)
    }

    /// The name A1111 lists and writes in the infotext.
    pub fn a1111_name(self) -> &'static str {
        self.row().0
    }

    /// The upscaler A1111 calls `name`.
    pub fn from_a1111(name: &str) -> Option<Self> {
        Self::all().find(|u| u.a1111_name() == name)
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
#[derive(Clone, Debug, PartialEq)]
pub struct Hires {
    pub size: HiresSize,
    pub upscaler: UpscalerChoice,
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
        let [to_x, to_y] = self.upscale_to(width, height);
        let upscaled = [to_y / 8, to_x / 8];
        let truncate = match self.size {
            HiresSize::Resize {
                width: x,
                height: y,
            } if x > 0 && y > 0 => [to_y.saturating_sub(y) / 8, to_x.saturating_sub(x) / 8],
            _ => [0, 0],
        };
        HiresTarget {
            upscaled,
            truncate,
            width: 8 * upscaled[1].saturating_sub(truncate[1]),
            height: 8 * upscaled[0].saturating_sub(truncate[0]),
        }
    }

    /// A1111's `hr_upscale_to_x/y`: the size the image is enlarged to before any crop (in
    /// pixels; user sizes are untrusted, so products saturate and the checks refuse them).
    pub fn upscale_to(&self, width: usize, height: usize) -> [usize; 2] {
        let (w, h) = (width.max(1), height.max(1));
        let keep_ratio = |a: usize, b: usize, c: usize| a.saturating_mul(b) / c; // a * b // c
        match self.size {
            HiresSize::Scale(scale) => {
                let side = |s: usize| (s as f64 * scale) as usize; // Python's int(): truncates
                [side(w), side(h)]
            }
            HiresSize::Resize {
                width: x,
                height: 0,
            } => [x, keep_ratio(x, h, w)],
            HiresSize::Resize {
                width: 0,
                height: y,
            } => [keep_ratio(y, w, h), y],
            // src_ratio < dst_ratio, in integers: w / h < x / y
            HiresSize::Resize {
                width: x,
                height: y,
            } => match (w as u128) * (y as u128) < (x as u128) * (h as u128) {
                true => [x, keep_ratio(x, h, w)],
                false => [keep_ratio(y, w, h), y],
            },
        }
    }

    /// Whether a first pass of `width x height` gets a second pass: not when the target is the
    /// same size (A1111 then turns the hires fix off, and writes none of its fields).
    pub fn changes_size(&self, width: usize, height: usize) -> bool {
        self.upscale_to(width, height) != [width, height]
    }

    /// The second pass's steps.
    pub fn steps_of(&self, first_pass_steps: usize) -> usize {
        match self.steps {
            0 => first_pass_steps,
            steps => steps,
        }
    }
}

/// The first pass's latents `[B, 4, h, w]` resized by `mode` to `target.upscaled` and cropped
/// to the second pass's `[B, 4, height/8, width/8]`.
pub fn upscale_latents(x: Tensor<4>, target: &HiresTarget, mode: Interpolation) -> Tensor<4> {
    let [rows, cols] = target.upscaled;
    crop(interpolate(x, rows, cols, mode), target)
}

/// Latents at `target.upscaled` cut to the second pass's size (A1111's `sample_hr_pass`
/// slicing: half the excess from each side, the odd row or column from the end).
pub fn crop(x: Tensor<4>, target: &HiresTarget) -> Tensor<4> {
    let [b, c, rows, cols] = x.dims();
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
            upscaler: HiresUpscaler::Latent.into(),
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

    /// Sizes past any bound are refused by the request's checks, never overflowed or
    /// allocated; a same-size target is told apart.
    #[test]
    fn hostile_sizes_are_refused() {
        let resize = |width, height| HiresSize::Resize { width, height };
        for size in [
            resize(usize::MAX, 0),
            resize(0, usize::MAX),
            resize(64, usize::MAX),
            resize(usize::MAX, usize::MAX),
            resize(8200, 1),
            HiresSize::Scale(f64::MAX),
            HiresSize::Scale(f64::NAN),
            HiresSize::Scale(0.01),
        ] {
            let request = crate::pipeline::Request {
                width: 64,
                height: 64,
                steps: 4,
                hires: Some(Hires {
                    size,
                    upscaler: HiresUpscaler::Latent.into(),
                    steps: 0,
                    strength: 0.5,
                }),
                ..Default::default()
            };
            assert!(request.check().is_err(), "{size:?}");
        }
        let same = |size| Hires {
            size,
            upscaler: HiresUpscaler::Latent.into(),
            steps: 0,
            strength: 0.5,
        };
        assert!(!same(HiresSize::Scale(1.0)).changes_size(64, 96));
        assert!(!same(resize(64, 0)).changes_size(64, 96));
        assert!(same(HiresSize::Scale(1.05)).changes_size(64, 96));
    }

    #[test]
    fn a1111_names_round_trip() {
        for u in HiresUpscaler::all() {
            assert_eq!(HiresUpscaler::from_a1111(u.a1111_name()), Some(u));
        }
        assert_eq!(HiresUpscaler::from_a1111("R-ESRGAN 4x+"), None);
    }
}
