//! An A1111 txt2img/img2img body -> the worker's [`Work`]: A1111's defaults and spellings,
//! seeds (-1 = random), sampler names split into sampler + schedule, init images decoded from
//! base64 or data URLs under the pixel budget, LoRA tags resolved in `--lora-dir`, per-job
//! `override_settings`, the quality policy. A field that asks for something we do not do is a
//! 422 naming it, never ignored; the same field at its "off" value is accepted.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use image::{GrayImage, RgbImage};
use serde_json::{Map, Value};

use super::fields::{A1111Names, Fields};
use super::samplers::resolve_sampler;
use crate::field::Described;
use crate::image_io;
use crate::image_io::mask::MAX_MASK_BLUR;
use crate::intake::{
    parse_prompt, random_seed, Asked, Inputs, IntakeError, Pictures, DEFAULT_HIRES_SCALE,
};
use crate::lora::{LoraSpec, LoraTag};
use crate::pipeline::inpaint::DEFAULT_MASK_BLUR;
use crate::pipeline::{Error, Fit, HiresUpscaler, MaskedContent, UpscalerChoice};
use crate::policy::PolicyName;
use crate::sampling::SamplerChoice;
use crate::server::error::ApiError;
use crate::server::jobs::{Kind, Work};
use crate::server::state::{lock, Shared};

/// The most images one request makes (`batch_size x n_iter`).
const MAX_IMAGES: usize = 1024;

/// A converted body: the work, and what the response needs of the body.
pub struct Converted {
    pub work: Work,
    /// The body's fields with defaults filled (`parameters` in the response).
    pub parameters: Map<String, Value>,
    pub send_images: bool,
    pub subseed: i64,
}

/// What converting a body needs of the server it runs on: its checkpoints, LoRA folder, quality
/// policy, options and outputs folder.
pub trait Resolver {
    /// The checkpoint a client's `sd_model_checkpoint` value (`field`) names.
    fn checkpoint(&self, field: &str, v: &Value) -> Result<PathBuf, ApiError>;
    /// The checkpoint jobs run on unless they say otherwise.
    fn selected_model(&self) -> Result<PathBuf, ApiError>;
    /// The prompt's `<lora:NAME:W>` tags as files.
    fn loras(&self, tags: &[LoraTag]) -> Result<Vec<LoraSpec>, ApiError>;
    /// The hires upscaler an `hr_upscaler` value names.
    fn upscaler(&self, name: &str) -> Result<UpscalerChoice, ApiError>;
    /// The quality policy of `model`'s jobs.
    fn policy(&self, model: &Path) -> PolicyName;
    /// The CLIP skip set with `POST options` (0 when none was).
    fn clip_skip(&self) -> usize;
    /// Where `save_images` writes.
    fn outputs(&self) -> Option<PathBuf>;
}

/// The server itself: what `serve` and a NATS worker convert with.
impl Resolver for Shared {
    fn checkpoint(&self, field: &str, v: &Value) -> Result<PathBuf, ApiError> {
        checkpoint(self, field, v)
    }

    fn selected_model(&self) -> Result<PathBuf, ApiError> {
        selected_model(self)
    }

    fn loras(&self, tags: &[LoraTag]) -> Result<Vec<LoraSpec>, ApiError> {
        let folder = lock(&self.loras).clone();
        folder.resolve(tags).map_err(|e| {
            let hint = match e {
                IntakeError::LoraNotFound { .. } => "; GET /sdapi/v1/loras lists them",
                _ => "",
            };
            ApiError::invalid(format!("{}{hint}", e.describe(&A1111Names)))
        })
    }

    fn upscaler(&self, name: &str) -> Result<UpscalerChoice, ApiError> {
        self.upscalers.resolve(name, false).map_err(|e| {
            ApiError::invalid(format!(
                "{}; GET /sdapi/v1/upscalers and /sdapi/v1/latent-upscale-modes list them",
                e.describe(&A1111Names)
            ))
        })
    }

    fn policy(&self, model: &Path) -> PolicyName {
        self.policy_for(model)
    }

    fn clip_skip(&self) -> usize {
        server_clip_skip(self)
    }

    fn outputs(&self) -> Option<PathBuf> {
        self.config.outputs.clone()
    }
}

/// The checks of a body that need no model, LoRA folder or outputs folder, for a node that
/// queues jobs for other machines (a NATS API node): whatever fails here would fail on the
/// worker too, so it is refused before anything is queued. LoRA names, the checkpoint's
/// quality policy and the outputs folder are the worker's to check.
#[cfg(feature = "nats")]
pub struct Precheck;

#[cfg(feature = "nats")]
impl Resolver for Precheck {
    fn checkpoint(&self, _: &str, v: &Value) -> Result<PathBuf, ApiError> {
        Ok(PathBuf::from(v.as_str().unwrap_or_default()))
    }

    fn selected_model(&self) -> Result<PathBuf, ApiError> {
        Ok(PathBuf::new())
    }

    fn loras(&self, tags: &[LoraTag]) -> Result<Vec<LoraSpec>, ApiError> {
        for tag in tags {
            crate::lora::check_weights(&tag.spec(PathBuf::from(&tag.name)))
                .map_err(|e| ApiError::invalid(e.to_string()))?;
        }
        Ok(Vec::new())
    }

    /// Built-in names resolve; a model's name is the worker's to find.
    fn upscaler(&self, name: &str) -> Result<UpscalerChoice, ApiError> {
        let folder = crate::intake::UpscalerFolder::default();
        Ok(folder.resolve(name, false).unwrap_or_else(|_| {
            UpscalerChoice::Model(crate::pipeline::ModelUpscaler {
                name: name.to_string(),
                path: PathBuf::from(name),
            })
        }))
    }

    fn policy(&self, _: &Path) -> PolicyName {
        PolicyName::Off
    }

    fn clip_skip(&self) -> usize {
        0
    }

    fn outputs(&self) -> Option<PathBuf> {
        Some(PathBuf::new())
    }
}

/// Reads `body` for `kind`'s endpoint.
pub fn convert(
    server: &dyn Resolver,
    kind: Kind,
    body: &Map<String, Value>,
) -> Result<Converted, ApiError> {
    let f = Fields::of(kind, body);
    refuse_unsupported(&f, kind)?;
    let refuse = |e: Error| ApiError::invalid(e.describe(&A1111Names));
    let prompt = parse_prompt(&f.text("prompt")?.unwrap_or_default(), "prompt").map_err(refuse)?;
    let (sampler, schedule) = resolve_sampler(
        f.string("sampler_name")?
            .or(f.string("sampler_index")?)
            .as_deref(),
        f.string("scheduler")?.as_deref(),
    )?;
    let overrides = Overrides::read(server, f.raw("override_settings"))?;
    let loras = server.loras(&prompt.parsed().loras)?;
    let hires = hires(&f, prompt.text())?;
    let masking = inpainting(&f, kind)?;
    // A1111's fields in the intake's form (A1111's defaults are filled in `f`)
    let asked = Asked {
        prompt: Some(prompt.text().to_string()),
        negative: f.string("negative_prompt")?,
        width: Some(positive(&f, "width")?),
        height: Some(positive(&f, "height")?),
        steps: Some(positive(&f, "steps")?),
        cfg: Some(f.float("cfg_scale")?.unwrap_or(7.0) as f32),
        seed: seed(f.int("seed")?),
        sampler: Some(SamplerChoice {
            sampler,
            schedule: None,
        }),
        schedule: Some(schedule),
        batch: Some(positive(&f, "batch_size")?),
        clip_skip: Some(overrides.clip_skip.unwrap_or_else(|| server.clip_skip())),
        strength: f.float("denoising_strength")?,
        mask_blur: masking.mask_blur,
        mask_blur_y: masking.mask_blur_y,
        invert_mask: masking.invert_mask,
        inpaint_fill: masking.inpaint_fill,
        ..hires
    };
    let n_iter = n_iter(&f)?;
    let save_to = save_to(server, &f)?;
    let send_images = f.bool("send_images")?.unwrap_or(true);
    let include_init_images = f.bool("include_init_images")?.unwrap_or(false);
    let subseed = seed(f.int("subseed")?).unwrap_or_else(random_seed) as i64;
    let model = match overrides.model {
        Some(model) => model,
        None => server.selected_model()?,
    };
    let hires_upscaler = asked
        .hires_upscaler
        .as_deref()
        .map(|name| server.upscaler(name))
        .transpose()?;
    let inputs = Inputs {
        prompt,
        loras,
        init_noise: None,
        hires_upscaler,
    };
    let planned = asked.plan(server.policy(&model), inputs, refuse, || {
        // the image is decoded last, after every cheap check
        match kind {
            Kind::Img2img => {
                let fit = fit(&f)?;
                let image = init_image(&f)?;
                let mask = match masking.inpaint_fill {
                    Some(_) => Some(mask_image(&f)?),
                    None => None,
                };
                Ok(Some(Pictures { image, mask, fit }))
            }
            _ => Ok(None),
        }
    })?;
    let request = planned.request;
    let mut parameters = f.values.clone();
    let mut record = parameters.clone();
    if kind == Kind::Img2img {
        for images in ["init_images", "mask"] {
            record.insert(images.into(), Value::Null);
        }
        if !include_init_images {
            parameters.clone_from(&record);
        }
    }
    Ok(Converted {
        work: Work {
            kind,
            request,
            n_iter,
            corrections: planned.corrections,
            model,
            save_to,
            record,
        },
        parameters,
        send_images,
        subseed,
    })
}

/// txt2img's `enable_hr` as the intake's hires fields (none when off): `hr_scale`, or the
/// sides `hr_resize_x/y` when either is set; `hr_upscaler` a latent upscaler by A1111's name
/// (null: `Latent`, A1111's default); `hr_second_pass_steps`; `denoising_strength`. A second
/// pass with its own checkpoint, sampler, schedule or prompts is refused naming the field.
fn hires(f: &Fields, prompt: &str) -> Result<Asked, ApiError> {
    if !f.bool("enable_hr")?.unwrap_or(false) {
        return Ok(Asked::default());
    }
    let upscaler = match f.text("hr_upscaler")?.as_deref() {
        None | Some("") => HiresUpscaler::Latent.a1111_name().to_string(),
        Some(name) => name.to_string(), // resolved with the server's upscaler folder
    };
    // `name` (a second pass's own `what`) only empty or at a value meaning "the same"
    let same = |name: &str, what: &str, same_as: &[&str]| -> Result<(), ApiError> {
        match f.text(name)?.as_deref() {
            Some(v) if !v.is_empty() && !same_as.contains(&v) => Err(ApiError::invalid(format!(
                "{name}: a hires pass with its own {what} is not supported by this server"
            ))),
            _ => Ok(()),
        }
    };
    let sampler = f.text("sampler_name")?.unwrap_or_default();
    same(
        "hr_sampler_name",
        "sampler",
        &["Use same sampler", &sampler],
    )?;
    let scheduler = f.text("scheduler")?.unwrap_or_default();
    let same_scheduler = ["Use same scheduler", "Automatic", &scheduler];
    same("hr_scheduler", "scheduler", &same_scheduler)?;
    same("hr_checkpoint_name", "checkpoint", &["Use same checkpoint"])?;
    same("hr_prompt", "prompt", &[prompt])?;
    let negative = f.text("negative_prompt")?.unwrap_or_default();
    same("hr_negative_prompt", "negative prompt", &[&negative])?;
    for name in ["firstphase_width", "firstphase_height"] {
        if f.int(name)?.unwrap_or(0) != 0 {
            return Err(ApiError::invalid(format!(
                "{name}: A1111's old first-pass size is not supported; send width and height"
            )));
        }
    }
    // 0 (A1111's default) is "from the other side"
    let side = |name| Ok::<_, ApiError>(f.count(name)?.filter(|&v| v > 0));
    let (width, height) = (side("hr_resize_x")?, side("hr_resize_y")?);
    let steps = f.count("hr_second_pass_steps")?.unwrap_or(0);
    Ok(Asked {
        hires_scale: match (width, height) {
            (None, None) => Some(f.float("hr_scale")?.unwrap_or(DEFAULT_HIRES_SCALE)),
            _ => None,
        },
        hires_width: width,
        hires_height: height,
        hires_upscaler: Some(upscaler),
        hires_steps: Some(steps),
        hires_denoise: f.float("denoising_strength")?,
        ..Asked::default()
    })
}

/// `n_iter`, when `batch_size x n_iter` is at most [`MAX_IMAGES`].
fn n_iter(f: &Fields) -> Result<usize, ApiError> {
    let n_iter = positive(f, "n_iter")?;
    let images = n_iter.saturating_mul(positive(f, "batch_size")?);
    if images > MAX_IMAGES {
        return Err(ApiError::invalid(format!(
            "batch_size x n_iter = {images}: at most {MAX_IMAGES} images per request"
        )));
    }
    Ok(n_iter)
}

/// `save_images: true`: the server's `--outputs` folder, refused up front when it has none.
fn save_to(server: &dyn Resolver, f: &Fields) -> Result<Option<PathBuf>, ApiError> {
    if !f.bool("save_images")?.unwrap_or(false) {
        return Ok(None);
    }
    match server.outputs() {
        Some(dir) => Ok(Some(dir)),
        None => Err(ApiError::invalid(
            "save_images: this server has no --outputs folder",
        )),
    }
}

/// A count that must be 1 or more (size, steps, batch).
fn positive(f: &Fields, name: &str) -> Result<usize, ApiError> {
    match f.count(name)? {
        Some(n) if n > 0 => Ok(n),
        other => Err(ApiError::invalid(format!(
            "{name}: {} must be 1 or more",
            other.unwrap_or(0)
        ))),
    }
}

/// A1111's seed: -1 (or any negative) draws one ([`crate::intake::random_seed`]).
fn seed(given: Option<i64>) -> Option<u64> {
    given.and_then(|s| u64::try_from(s).ok())
}

/// Fields that ask for a feature this engine does not have: a 422 naming the field when set
/// to anything but its "off" value.
fn refuse_unsupported(f: &Fields, kind: Kind) -> Result<(), ApiError> {
    let refuse = |name: &str, what: &str| {
        Err(ApiError::invalid(format!(
            "{name}: {what} is not supported by this server"
        )))
    };
    for (name, what) in [("restore_faces", "face restoration"), ("tiling", "tiling")] {
        if f.bool(name)?.unwrap_or(false) {
            return refuse(name, what);
        }
    }
    if f.float("subseed_strength")?.unwrap_or(0.0) != 0.0 {
        return refuse("subseed_strength", "variation seeds");
    }
    for name in ["seed_resize_from_h", "seed_resize_from_w"] {
        if f.int(name)?.unwrap_or(-1) > 0 {
            return refuse(name, "seed resize");
        }
    }
    if f.float("s_churn")?.unwrap_or(0.0) != 0.0 {
        return refuse("s_churn", "stochastic churn");
    }
    if f.float("s_noise")?.unwrap_or(1.0) != 1.0 {
        return refuse("s_noise", "a noise multiplier");
    }
    if f.float("s_min_uncond")?.unwrap_or(0.0) != 0.0 {
        return refuse("s_min_uncond", "negative guidance minimum sigma");
    }
    for (name, what) in [
        ("refiner_checkpoint", "a refiner"),
        ("firstpass_image", "a first-pass image"),
        ("script_name", "a script"),
        ("infotext", "filling fields from an infotext"),
    ] {
        if f.string(name)?
            .is_some_and(|s| !s.is_empty() && s != "None")
        {
            return refuse(name, what);
        }
    }
    for (name, what) in [
        ("alwayson_scripts", "always-on scripts"),
        ("styles", "prompt styles"),
    ] {
        if f.raw(name).is_some_and(non_empty) {
            return refuse(name, what);
        }
    }
    if kind == Kind::Img2img {
        if f.raw("latent_mask").is_some_and(non_empty) {
            return refuse("latent_mask", "a latent mask");
        }
        if f.float("initial_noise_multiplier")?.unwrap_or(1.0) != 1.0 {
            return refuse("initial_noise_multiplier", "a noise multiplier");
        }
    }
    Ok(())
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// `override_settings` for this job only: the checkpoint and CLIP skip; other options only at
/// the value that changes nothing.
struct Overrides {
    model: Option<PathBuf>,
    clip_skip: Option<usize>,
}

impl Overrides {
    fn read(server: &dyn Resolver, value: Option<&Value>) -> Result<Self, ApiError> {
        let mut overrides = Overrides {
            model: None,
            clip_skip: None,
        };
        let Some(value) = value else {
            return Ok(overrides);
        };
        let Some(map) = value.as_object() else {
            return Err(ApiError::invalid("override_settings: must be an object"));
        };
        for (key, v) in map {
            let field = format!("override_settings.{key}");
            match key.as_str() {
                "sd_model_checkpoint" => overrides.model = Some(server.checkpoint(&field, v)?),
                "CLIP_stop_at_last_layers" => overrides.clip_skip = Some(clip_skip(&field, v)?),
                _ if harmless_option(key, v) => {}
                _ => {
                    return Err(ApiError::invalid(format!(
                        "override_settings.{key}: not supported by this server (supported: sd_model_checkpoint, CLIP_stop_at_last_layers)"
                    )))
                }
            }
        }
        Ok(overrides)
    }
}

/// The checkpoint a client's `sd_model_checkpoint` value (`field`) names.
pub fn checkpoint(shared: &Shared, field: &str, v: &Value) -> Result<PathBuf, ApiError> {
    let name = v.as_str().unwrap_or_default();
    lock(&shared.catalogue)
        .find(name)
        .map(|e| e.path.clone())
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{field}: no checkpoint {name:?}; see GET /sdapi/v1/sd-models"
            ))
        })
}

/// Our CLIP skip for A1111's `CLIP_stop_at_last_layers` value (`field`): 1 (the default
/// penultimate layer) to 12, a number or a numeric string.
pub fn clip_skip(field: &str, v: &Value) -> Result<usize, ApiError> {
    let n = v
        .as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
    match n {
        Some(n @ 1..=12) => Ok(n as usize - 1),
        _ => Err(ApiError::invalid(format!(
            "{field}: {v} must be an integer from 1 to 12"
        ))),
    }
}

/// The CLIP skip set with `POST options` (0 when none was).
fn server_clip_skip(shared: &Shared) -> usize {
    let options = lock(&shared.options);
    let value = options.get("CLIP_stop_at_last_layers");
    value.map_or(0, |v| clip_skip("", v).unwrap_or(0))
}

/// The checkpoint jobs run on unless they say otherwise, fixed when the job is accepted.
fn selected_model(shared: &Shared) -> Result<PathBuf, ApiError> {
    lock(&shared.catalogue)
        .selected
        .clone()
        .ok_or_else(|| ApiError::invalid("no checkpoint is selected; set sd_model_checkpoint"))
}

/// Options clients send at the value that changes nothing here.
fn harmless_option(key: &str, v: &Value) -> bool {
    match key {
        "sd_vae" => matches!(v.as_str(), Some("Automatic" | "None" | "")),
        "eta_noise_seed_delta" => v.as_i64() == Some(0),
        "samples_format" => v.as_str() == Some("png"),
        _ => false,
    }
}

/// The first of `init_images`, decoded (raw base64 or a `data:image/...;base64,` URL); URLs
/// are refused.
fn init_image(f: &Fields) -> Result<RgbImage, ApiError> {
    let first = match f.raw("init_images") {
        Some(Value::Array(images)) => images.first(),
        _ => None,
    };
    let Some(first) = first else {
        return Err(ApiError::not_found("Init image not found"));
    };
    let Some(text) = first.as_str() else {
        return Err(ApiError::invalid(
            "init_images: items must be base64 strings",
        ));
    };
    decode_image(text).map_err(|e| ApiError::invalid(format!("init_images: {e}")))
}

/// The bytes of a base64 image or a `data:image/...;base64,` URL; URLs are refused.
pub fn decode_image_bytes(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err("image URLs are not fetched; send the image as base64".into());
    }
    let payload = match text.strip_prefix("data:") {
        Some(url) => match url.split_once(',') {
            Some((meta, data)) if meta.ends_with(";base64") => data,
            _ => {
                return Err(
                    "Invalid encoded image (a data URL must be `data:image/...;base64,...`)".into(),
                )
            }
        },
        None => text,
    };
    let cleaned: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(cleaned.as_bytes()))
        .map_err(|e| format!("Invalid encoded image ({e})"))
}

/// An image from base64 or a data URL, under the upload pixel budget.
fn decode_image(text: &str) -> Result<RgbImage, String> {
    let bytes = decode_image_bytes(text)?;
    image_io::decode_upload(&bytes).map_err(|e| format!("Invalid encoded image ({e})"))
}

/// img2img's `resize_mode` as the pipeline's [`Fit`]: 0 (just resize: stretched) or 1 (crop
/// and resize: covered, the centre cut); others refused.
fn fit(f: &Fields) -> Result<Fit, ApiError> {
    match f.int("resize_mode")?.unwrap_or(0) {
        0 => Ok(Fit::Stretch),
        1 => Ok(Fit::Cover),
        mode => Err(ApiError::invalid(format!(
            "resize_mode: {mode} is not supported (0 just resize, 1 crop and resize)"
        ))),
    }
}

/// img2img's inpainting fields in the intake's form (none without a `mask`): `mask_blur`
/// (both sides) else `mask_blur_x` / `mask_blur_y`, `inpainting_mask_invert`,
/// `inpainting_fill` (0 fill, 1 original, 2 latent noise, 3 latent nothing). Only-masked
/// inpainting (`inpaint_full_res`, A1111's API default) and unrounded masks (`mask_round`
/// false) are refused naming the field.
fn inpainting(f: &Fields, kind: Kind) -> Result<Asked, ApiError> {
    if kind != Kind::Img2img || !f.raw("mask").is_some_and(non_empty) {
        return Ok(Asked::default());
    }
    if f.bool("inpaint_full_res")?.unwrap_or(true) {
        return Err(ApiError::invalid(
            "inpaint_full_res: inpainting only the masked area is not supported yet; send \
             false (whole picture)",
        ));
    }
    if !f.bool("mask_round")?.unwrap_or(true) {
        return Err(ApiError::invalid(
            "mask_round: unrounded masks are not supported; send true",
        ));
    }
    let blur = |name: &str| -> Result<Option<u32>, ApiError> {
        match f.int(name)? {
            None => Ok(None),
            Some(b) if (0..=i64::from(MAX_MASK_BLUR)).contains(&b) => Ok(Some(b as u32)),
            Some(b) => Err(ApiError::invalid(format!(
                "{name}: {b} is outside 0 to {MAX_MASK_BLUR}"
            ))),
        }
    };
    let (x, y) = match blur("mask_blur")? {
        Some(both) => (both, both),
        None => (
            blur("mask_blur_x")?.unwrap_or(DEFAULT_MASK_BLUR),
            blur("mask_blur_y")?.unwrap_or(DEFAULT_MASK_BLUR),
        ),
    };
    let fill = f.int("inpainting_fill")?.unwrap_or(0);
    let content = MaskedContent::from_a1111(fill).ok_or_else(|| {
        ApiError::invalid(format!(
            "inpainting_fill: {fill} is not one of 0 (fill), 1 (original), 2 (latent noise), \
             3 (latent nothing)"
        ))
    })?;
    Ok(Asked {
        mask_blur: Some(x),
        mask_blur_y: (y != x).then_some(y),
        invert_mask: Some(f.int("inpainting_mask_invert")?.unwrap_or(0) != 0),
        inpaint_fill: Some(content),
        ..Asked::default()
    })
}

/// img2img's `mask`, decoded as A1111 reads a mask.
fn mask_image(f: &Fields) -> Result<GrayImage, ApiError> {
    let Some(text) = f.raw("mask").and_then(Value::as_str) else {
        return Err(ApiError::invalid("mask: must be a base64 string"));
    };
    let bytes = decode_image_bytes(text).map_err(|e| ApiError::invalid(format!("mask: {e}")))?;
    image_io::decode_upload_mask(&bytes)
        .map_err(|e| ApiError::invalid(format!("mask: Invalid encoded image ({e})")))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::server::jobs::{Jobs, Retention};
    use crate::server::models::Catalogue;
    use crate::server::state::ServerConfig;
    use crate::server::LocalQueue;
    use proptest::prelude::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    /// `serve`'s state on the tiny checkpoint and the test LoRAs, without a worker: what its
    /// handlers convert bodies with.
    fn serving() -> Shared {
        let model = PathBuf::from(FIXTURES).join("tiny-sdxl.safetensors");
        let config = ServerConfig {
            model: Some(model.clone()),
            lora_dir: Some(PathBuf::from(FIXTURES).join("lora")),
            ..ServerConfig::default()
        };
        Shared {
            jobs: Jobs::new(Retention::default()),
            queue: Arc::new(LocalQueue::new(4)),
            current: Mutex::new(None),
            catalogue: Mutex::new(Catalogue::scan(Some(&model), None).expect("the fixture")),
            loras: Mutex::new(Arc::new(crate::intake::LoraFolder::scan(
                config.lora_dir.as_deref(),
            ))),
            upscalers: crate::intake::UpscalerFolder::new(config.upscalers_dir.as_deref()),
            options: Mutex::new(Map::new()),
            metrics: Default::default(),
            memory: Default::default(),
            adapter: String::new(),
            config,
        }
    }

    /// A JSON value of any type, small.
    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (0u64..5000).prop_map(Value::from),
            "[a-zA-Z0-9 _.:()<>+-]{0,16}".prop_map(Value::from),
            "<lora:(style_kohya|nope|\\.\\./x):(1|1e38|-3|nan|x)>".prop_map(Value::from),
            Just(serde_json::json!(["%%", "data:image/png;base64,AAAA"])),
            Just(Value::from("Latent (nearest-exact)")),
            Just(serde_json::json!({"CLIP_stop_at_last_layers": "2", "sd_vae": "None"})),
        ]
    }

    /// A body: A1111's fields (and unknown ones) at random values.
    fn body() -> impl Strategy<Value = Map<String, Value>> {
        let field = prop_oneof![
            Just("prompt"),
            Just("negative_prompt"),
            Just("seed"),
            Just("subseed"),
            Just("steps"),
            Just("cfg_scale"),
            Just("width"),
            Just("height"),
            Just("batch_size"),
            Just("n_iter"),
            Just("sampler_name"),
            Just("scheduler"),
            Just("denoising_strength"),
            Just("init_images"),
            Just("resize_mode"),
            Just("override_settings"),
            Just("enable_hr"),
            Just("hr_scale"),
            Just("hr_upscaler"),
            Just("hr_resize_x"),
            Just("hr_resize_y"),
            Just("hr_second_pass_steps"),
            Just("hr_sampler_name"),
            Just("s_noise"),
            Just("styles"),
            Just("send_images"),
            Just("save_images"),
            Just("include_init_images"),
            Just("alwayson_scripts"),
            Just("unknown_field"),
        ];
        proptest::collection::vec((field, value()), 0..8).prop_map(|fields| {
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Every body ends in a job or a client error (4xx), never a panic or a 500, through
        /// `serve`'s conversion and through the checks an API node runs before it queues
        /// anything.
        #[test]
        fn every_body_is_a_job_or_a_client_error(body in body(), img2img in any::<bool>()) {
            static SERVING: std::sync::OnceLock<Shared> = std::sync::OnceLock::new();
            let kind = if img2img { Kind::Img2img } else { Kind::Txt2img };
            let serve: &dyn Resolver = SERVING.get_or_init(serving);
            #[cfg(feature = "nats")]
            let resolvers = [serve, &Precheck];
            #[cfg(not(feature = "nats"))]
            let resolvers = [serve];
            for resolver in resolvers {
                if let Err(e) = convert(resolver, kind, &body) {
                    prop_assert!(e.status.is_client_error(), "{body:?}: {e:?}");
                }
            }
        }
    }
}
