//! What a user asks of one generation, in the engine's own spelling, whichever front door it
//! came through: a jobs line is this form as JSON, `generate`'s request flags are its fields
//! ([`ASKED_FIELDS`]: the command line builds its flags from that table, so the library needs no
//! argument parser), and an A1111 body is read into it field by field
//! (`server/a1111/convert.rs`, in A1111's spelling and with A1111's defaults). Every field is
//! optional: unset, it takes the preset's value, the init image's size or the documented
//! default. [`Asked::plan`] turns it, with what the front-end read from files or a body, into
//! the checked request; [`Asked::resolved`] is what ran, for the image's JSON record.

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use super::{plan, Planned};
use crate::lora::LoraSpec;
use crate::pipeline::inpaint::{MaskedContent, DEFAULT_MASK_BLUR};
use crate::pipeline::{
    Error, Fit, Hires, HiresSize, InitImage, Mask, Noise, Request, SizeConditioning, UpscalerChoice,
};
use crate::policy::{PolicyName, Preset, Settings};
use crate::sampling::{Sampler, SamplerChoice, ScheduleKind};
use crate::spelling::Spelled;
use crate::text_encoder::check_prompt_size;
use crate::tokenizer::Prompt;
use crate::vae::{VaePrecision, VaeTiling};

/// The request's fields as a user states them (see the module's note). Field by field,
/// [`ASKED_FIELDS`] says how each is written and what it means.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Asked {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cfg: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cfg_rescale: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_skip: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_width: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_height: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop_top: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop_left: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vae_tiling: Option<VaeTiling>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vae_precision: Option<VaePrecision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hires_scale: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hires_width: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hires_height: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hires_upscaler: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hires_steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hires_denoise: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_blur: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_blur_y: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invert_mask: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inpaint_fill: Option<MaskedContent>,
}

/// How a field's value is written (as a flag's value, or as the text of a JSON value).
#[derive(Clone, Copy)]
pub enum ValueKind {
    Text,
    /// A whole number, 0 or more.
    Count,
    /// A finite number (negative ones too: the request's checks say what is allowed).
    Number,
    /// A sampler name: ours, ComfyUI's or A1111's, with or without a schedule suffix.
    Sampler,
    /// One of a closed set's spellings, with their descriptions ([`Spelled`]).
    Spelled(fn() -> Vec<(&'static str, &'static str)>),
    /// On when present (a flag without a value; `true` in JSON).
    Switch,
}

/// One field of [`Asked`]: its name (the JSON key; the flag is `--` and the name with `-` for
/// `_`), how its value is written, and what it means.
pub struct AskedField {
    pub name: &'static str,
    pub kind: ValueKind,
    pub help: &'static str,
}

/// `T`'s spellings and their descriptions.
fn spellings<T: Spelled>() -> Vec<(&'static str, &'static str)> {
    T::SPELLINGS.iter().map(|&(_, s, h)| (s, h)).collect()
}

const fn field(name: &'static str, kind: ValueKind, help: &'static str) -> AskedField {
    AskedField { name, kind, help }
}

/// Every field of [`Asked`], in the order help lists them.
pub const ASKED_FIELDS: [AskedField; 31] = [
    field(
        "prompt",
        ValueKind::Text,
        "The prompt (A1111 syntax: `(word:1.2)`, `[word]`, `BREAK`, `<lora:NAME:W>`)",
    ),
    field(
        "negative",
        ValueKind::Text,
        "The negative prompt; empty (default) gives SDXL's all-zero negative conditioning",
    ),
    field(
        "width",
        ValueKind::Count,
        "Image width, a multiple of 8 [default: the preset's, or the init image's]",
    ),
    field(
        "height",
        ValueKind::Count,
        "Image height, a multiple of 8 [default: the preset's, or the init image's]",
    ),
    field(
        "steps",
        ValueKind::Count,
        "Denoising steps of the schedule [default: the preset's]",
    ),
    field(
        "cfg",
        ValueKind::Number,
        "Classifier-free guidance scale [default: the preset's]",
    ),
    field(
        "cfg_rescale",
        ValueKind::Number,
        "Guidance rescale (\"CFG Rescale phi\"), 0 to 1 [default: 0.7 for zero-terminal-SNR \
         v-prediction checkpoints, else 0]",
    ),
    field(
        "seed",
        ValueKind::Count,
        "Seed of the first image; image i uses seed + i [default: random, printed]",
    ),
    field(
        "sampler",
        ValueKind::Sampler,
        "euler, euler_a, dpmpp_2m, ddim, or an A1111 name (\"Euler a\", \"DPM++ 2M Karras\", \
         \"Euler SGM Uniform\") [default: euler]",
    ),
    field(
        "schedule",
        ValueKind::Spelled(spellings::<ScheduleKind>),
        "The sigma schedule [default: the sampler name's, else default]",
    ),
    field(
        "batch",
        ValueKind::Count,
        "Images per request, one GPU batch, seeds seed, seed+1, ... [default: 1]",
    ),
    field(
        "clip_skip",
        ValueKind::Count,
        "Layers to skip beyond SDXL's penultimate one (diffusers' clip_skip) [default: 0]",
    ),
    field(
        "strength",
        ValueKind::Number,
        "img2img: how much to change the image, in (0, 1]; runs int(steps x strength) steps \
         [default: 0.75]",
    ),
    field(
        "original_width",
        ValueKind::Count,
        "SDXL size conditioning: the original width the image claims [default: width]",
    ),
    field(
        "original_height",
        ValueKind::Count,
        "SDXL size conditioning: the original height [default: height]",
    ),
    field(
        "crop_top",
        ValueKind::Count,
        "SDXL crop conditioning: top of the crop [default: 0]",
    ),
    field(
        "crop_left",
        ValueKind::Count,
        "SDXL crop conditioning: left of the crop [default: 0]",
    ),
    field(
        "preset",
        ValueKind::Spelled(spellings::<Preset>),
        "Defaults for size, CFG and steps: standard (768x768, CFG 7, 25 steps) or high \
         (1024x1024, CFG 7.5, 30 steps) [default: high]",
    ),
    field(
        "policy",
        ValueKind::Spelled(spellings::<PolicyName>),
        "The quality policy's profile; off disables it [default: the checkpoint's: vpred for \
         v-prediction checkpoints, else anime]",
    ),
    field(
        "vae_tiling",
        ValueKind::Spelled(spellings::<VaeTiling>),
        "[default: auto]",
    ),
    field(
        "vae_precision",
        ValueKind::Spelled(spellings::<VaePrecision>),
        "[default: f32]",
    ),
    field(
        "hires_scale",
        ValueKind::Number,
        "txt2img: a second pass at this scale of the size (A1111's hires fix); any hires_* \
         field turns it on [default: 2]",
    ),
    field(
        "hires_width",
        ValueKind::Count,
        "The hires pass's width instead of a scale (A1111's hr_resize_x; with hires_height, \
         the image covers both and is cropped) [default: from hires_height]",
    ),
    field(
        "hires_height",
        ValueKind::Count,
        "The hires pass's height instead of a scale (A1111's hr_resize_y) [default: from \
         hires_width]",
    ),
    field(
        "hires_upscaler",
        ValueKind::Text,
        "How the first pass is enlarged for the hires pass: latent, latent-antialiased, \
         latent-bicubic, latent-bicubic-antialiased, latent-nearest, latent-nearest-exact, \
         lanczos, nearest (or A1111's names), or a model upscaler (a file's stem in the \
         upscaler folder; on the command line also its path) [default: latent]",
    ),
    field(
        "hires_steps",
        ValueKind::Count,
        "Steps of the hires pass's schedule; it runs int(steps x hires_denoise) of them \
         [default: steps]",
    ),
    field(
        "hires_denoise",
        ValueKind::Number,
        "How much the hires pass changes the upscaled image, in (0, 1] [default: 0.75]",
    ),
    field(
        "mask_blur",
        ValueKind::Count,
        "Inpainting: the Gaussian blur of the mask's edge, in the mask's pixels, at most 64 \
         (A1111's mask_blur) [default: 4]",
    ),
    field(
        "mask_blur_y",
        ValueKind::Count,
        "Inpainting: the vertical blur when it differs from the horizontal one (A1111's \
         mask_blur_y) [default: mask_blur]",
    ),
    field(
        "invert_mask",
        ValueKind::Switch,
        "Inpainting: repaint the mask's black part instead of its white part",
    ),
    field(
        "inpaint_fill",
        ValueKind::Spelled(spellings::<MaskedContent>),
        "Inpainting: what the masked part starts from (A1111's inpainting_fill) \
         [default: original]",
    ),
];

/// img2img's strength when none is given (A1111's default denoising strength), also the hires
/// pass's.
pub const DEFAULT_STRENGTH: f64 = 0.75;
/// The hires pass's scale when none is given (A1111's `hr_scale`).
pub const DEFAULT_HIRES_SCALE: f64 = 2.0;

/// The hires fields of what `r` ran (none without a hires pass).
fn resolved_hires(r: &Request) -> Asked {
    let Some(hires) = &r.hires else {
        return Asked::default();
    };
    let (scale, width, height) = match hires.size {
        HiresSize::Scale(scale) => (Some(scale), None, None),
        HiresSize::Resize { width, height } => (
            None,
            (width > 0).then_some(width),
            (height > 0).then_some(height),
        ),
    };
    Asked {
        hires_scale: scale,
        hires_width: width,
        hires_height: height,
        hires_upscaler: Some(hires.upscaler.name()),
        hires_steps: Some(hires.steps_of(r.steps)),
        hires_denoise: Some(hires.strength),
        ..Asked::default()
    }
}

/// The pictures an img2img request starts from, as a front-end read them: the init image and,
/// for inpainting, the mask ([`crate::image_io::read_mask`]).
pub struct Pictures {
    pub image: RgbImage,
    pub mask: Option<GrayImage>,
    /// How both reach the request's size (A1111's `resize_mode` 0 or 1).
    pub fit: Fit,
}

/// What a front-end read for the request beyond its fields: the prompt parsed once (its LoRA
/// tags already resolved into `loras`), the LoRA files, noise a user handed in.
pub struct Inputs {
    pub prompt: Prompt,
    pub loras: Vec<LoraSpec>,
    pub init_noise: Option<Noise>,
    /// The hires upscaler `hires_upscaler` names, resolved ([`crate::intake::UpscalerFolder`]).
    pub hires_upscaler: Option<UpscalerChoice>,
}

macro_rules! over {
    ($job:expr, $base:expr, $($field:ident),*) => {
        Asked { $($field: $job.$field.clone().or_else(|| $base.$field.clone())),* }
    };
}

impl Asked {
    /// `self`'s fields, `base`'s where `self` has none (a jobs line over the command line).
    pub fn over(&self, base: &Asked) -> Asked {
        over!(
            self,
            base,
            prompt,
            negative,
            width,
            height,
            steps,
            cfg,
            cfg_rescale,
            seed,
            sampler,
            schedule,
            batch,
            clip_skip,
            strength,
            original_width,
            original_height,
            crop_top,
            crop_left,
            preset,
            policy,
            vae_tiling,
            vae_precision,
            hires_scale,
            hires_width,
            hires_height,
            hires_upscaler,
            hires_steps,
            hires_denoise,
            mask_blur,
            mask_blur_y,
            invert_mask,
            inpaint_fill
        )
    }

    /// The hires upscaler `hires_upscaler` names, looked up in `folder` (`paths`: a path to a
    /// model file is accepted too), for [`Inputs::hires_upscaler`].
    pub fn hires_upscaler(
        &self,
        folder: &super::UpscalerFolder,
        paths: bool,
    ) -> Result<Option<UpscalerChoice>, super::IntakeError> {
        self.hires_upscaler
            .as_deref()
            .map(|name| folder.resolve(name, paths))
            .transpose()
    }

    /// The size, CFG and steps asked for: the fields', else the preset's under `policy`'s
    /// profile.
    pub fn settings(&self, policy: PolicyName) -> Settings {
        let preset = self.preset.unwrap_or_default().settings(policy.profile());
        Settings {
            width: self.width.unwrap_or(preset.width),
            height: self.height.unwrap_or(preset.height),
            cfg: self.cfg.unwrap_or(preset.cfg),
            steps: self.steps.unwrap_or(preset.steps),
        }
    }

    /// The checked request, through [`plan`] under `policy`: `pictures` is called last, after
    /// every cheap check (the init image and mask decoded then);
    /// `refuse` turns a failed check into the front-end's error.
    pub fn plan<E>(
        &self,
        policy: PolicyName,
        inputs: Inputs,
        refuse: impl Fn(Error) -> E,
        pictures: impl FnOnce() -> Result<Option<Pictures>, E>,
    ) -> Result<Planned, E> {
        let Inputs {
            prompt,
            loras,
            init_noise,
            hires_upscaler,
        } = inputs;
        let negative = parse_prompt(
            self.negative.as_deref().unwrap_or_default(),
            "negative prompt",
        );
        let negative = negative.map_err(&refuse)?;
        plan(
            self.settings(policy),
            loras,
            policy.profile(),
            refuse,
            |settings, loras| {
                let init = pictures()?;
                let mut request =
                    self.request([prompt, negative], settings, init, init_noise, loras);
                if let (Some(hires), Some(upscaler)) = (&mut request.hires, hires_upscaler) {
                    hires.upscaler = upscaler;
                }
                Ok(request)
            },
        )
    }

    /// The request with the policy's `settings` and every other field's value or default.
    fn request(
        &self,
        [prompt, negative]: [Prompt; 2],
        settings: Settings,
        pictures: Option<Pictures>,
        init_noise: Option<Noise>,
        loras: Vec<LoraSpec>,
    ) -> Request {
        let choice = self.sampler.unwrap_or(SamplerChoice {
            sampler: Sampler::Euler,
            schedule: None,
        });
        let strength = self.strength.unwrap_or(DEFAULT_STRENGTH);
        Request {
            prompt,
            negative,
            width: settings.width,
            height: settings.height,
            steps: settings.steps,
            cfg: settings.cfg,
            cfg_rescale: self.cfg_rescale,
            seed: self.seed.unwrap_or_else(random_seed),
            batch: self.batch.unwrap_or(1),
            sampler: choice.sampler,
            schedule: self.schedule.or(choice.schedule).unwrap_or_default(),
            clip_skip: self.clip_skip.unwrap_or(0),
            size_conditioning: SizeConditioning {
                original_width: self.original_width,
                original_height: self.original_height,
                crop_top: self.crop_top.unwrap_or(0),
                crop_left: self.crop_left.unwrap_or(0),
            },
            init: pictures.map(|p| InitImage {
                image: p.image,
                strength,
                mask: p.mask.map(|image| self.mask(image)),
                fit: p.fit,
            }),
            init_noise,
            hires: self
                .hires()
                .filter(|h| h.changes_size(settings.width, settings.height)),
            vae_tiling: self.vae_tiling.unwrap_or_default(),
            vae_precision: self.vae_precision.unwrap_or_default(),
            loras,
        }
    }

    /// The inpainting mask `image` as the fields ask it used.
    fn mask(&self, image: GrayImage) -> Mask {
        let blur = self.mask_blur.unwrap_or(DEFAULT_MASK_BLUR);
        Mask {
            image,
            blur: [blur, self.mask_blur_y.unwrap_or(blur)],
            invert: self.invert_mask.unwrap_or(false),
            content: self.inpaint_fill.unwrap_or_default(),
        }
    }

    /// The hires pass asked for: any `hires_*` field turns it on, A1111's defaults filling the
    /// others (scale 2, the `latent` upscaler, the first pass's steps, strength 0.75); given
    /// sides take precedence over a scale, as A1111's `hr_resize_x/y` over `hr_scale`.
    fn hires(&self) -> Option<Hires> {
        let asked = self.hires_scale.is_some()
            || self.hires_width.is_some()
            || self.hires_height.is_some()
            || self.hires_upscaler.is_some()
            || self.hires_steps.is_some()
            || self.hires_denoise.is_some();
        let size = match (self.hires_width, self.hires_height) {
            (None, None) => HiresSize::Scale(self.hires_scale.unwrap_or(DEFAULT_HIRES_SCALE)),
            (w, h) => HiresSize::Resize {
                width: w.unwrap_or(0),
                height: h.unwrap_or(0),
            },
        };
        asked.then(|| Hires {
            size,
            upscaler: UpscalerChoice::default(), // the resolved one replaces it
            steps: self.hires_steps.unwrap_or(0),
            strength: self.hires_denoise.unwrap_or(DEFAULT_STRENGTH),
        })
    }

    /// What `r` ran, every field set (`policy` the one it ran under; `preset` as asked).
    pub fn resolved(&self, r: &Request, policy: PolicyName) -> Asked {
        let size = &r.size_conditioning;
        let mask = r.init.as_ref().and_then(|i| i.mask.as_ref());
        Asked {
            prompt: Some(r.prompt.text().to_string()),
            negative: Some(r.negative.text().to_string()),
            width: Some(r.width),
            height: Some(r.height),
            steps: Some(r.steps),
            cfg: Some(r.cfg),
            cfg_rescale: r.cfg_rescale,
            seed: Some(r.seed),
            sampler: Some(SamplerChoice {
                sampler: r.sampler,
                schedule: None,
            }),
            schedule: Some(r.schedule),
            batch: Some(r.batch),
            clip_skip: Some(r.clip_skip),
            strength: r.init.as_ref().map(|i| i.strength),
            original_width: Some(size.original_width.unwrap_or(r.width)),
            original_height: Some(size.original_height.unwrap_or(r.height)),
            crop_top: Some(size.crop_top),
            crop_left: Some(size.crop_left),
            preset: self.preset,
            policy: Some(policy),
            vae_tiling: Some(r.vae_tiling),
            vae_precision: Some(r.vae_precision),
            mask_blur: mask.map(|m| m.blur[0]),
            mask_blur_y: mask
                .map(|m| m.blur[1])
                .filter(|&y| Some(y) != mask.map(|m| m.blur[0])),
            invert_mask: mask.map(|m| m.invert),
            inpaint_fill: mask.map(|m| m.content),
            ..resolved_hires(r)
        }
    }
}

/// A prompt's text parsed once, or refused unparsed when it is past the encoders' bound (a
/// 7 MB prompt costs a length check, not a parse); `which`: "prompt" or "negative prompt".
pub fn parse_prompt(text: &str, which: &'static str) -> Result<Prompt, Error> {
    check_prompt_size(which, text)?;
    Ok(Prompt::new(text.to_string()))
}

/// A seed in A1111's range [0, 2^32 - 2) from the clock, for a request that names none.
pub fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // splitmix64 of the clock, so requests in the same moment differ little
    let mut z = nanos.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % 4_294_967_294
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table names every field of the form, once, in the form's order.
    #[test]
    fn the_table_is_the_form() {
        let every = Asked {
            prompt: Some("p".into()),
            negative: Some("n".into()),
            width: Some(8),
            height: Some(8),
            steps: Some(1),
            cfg: Some(1.0),
            cfg_rescale: Some(0.0),
            seed: Some(1),
            sampler: Some("euler".parse().expect("a sampler")),
            schedule: Some(ScheduleKind::Karras),
            batch: Some(1),
            clip_skip: Some(0),
            strength: Some(0.5),
            original_width: Some(8),
            original_height: Some(8),
            crop_top: Some(0),
            crop_left: Some(0),
            preset: Some(Preset::default()),
            policy: Some(PolicyName::Off),
            vae_tiling: Some(VaeTiling::Auto),
            vae_precision: Some(VaePrecision::F32),
            hires_scale: Some(1.5),
            hires_width: Some(8),
            hires_height: Some(8),
            hires_upscaler: Some("latent-nearest-exact".into()),
            hires_steps: Some(1),
            hires_denoise: Some(0.5),
            mask_blur: Some(4),
            mask_blur_y: Some(2),
            invert_mask: Some(true),
            inpaint_fill: Some(MaskedContent::Fill),
        };
        let json = serde_json::to_value(&every).expect("serialises");
        let keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut names: Vec<&str> = ASKED_FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        assert_eq!(keys, names, "serde_json's map is sorted");
        assert_eq!(every.over(&Asked::default()), every);
        assert_eq!(Asked::default().over(&every), every);
    }
}
