//! The A1111 infotext of a generated image (the `parameters` text A1111 writes into a PNG and
//! reads back): the request's settings in A1111's field order, the model and its hash, the
//! quality policy's corrections, and the LoRAs with their hashes; and the image's JSON record
//! beside it. The CLI and the server write both here, the same text for the same run.
//! Field order as A1111's `create_infotext`
//! (<https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/processing.py>).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::device::MadeOn;
use crate::image_io::metadata::{self, ImageMetadata, Infotext};
use crate::lora::LoraSpec;
use crate::model_hash;
use crate::pipeline::{Hires, HiresSize, Request};
use crate::policy::Correction;
use crate::tokenizer::Prompt;

/// The model as image metadata names it.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// The file's (or folder's) name without extension.
    pub name: String,
    /// A1111's short hash (files only; a diffusers folder has none).
    pub hash: Option<String>,
}

impl ModelInfo {
    /// Names and hashes the model at `path` (cached; the first hash of a file reads it whole).
    /// A file that cannot be hashed gets no hash, and the error says why.
    pub fn of(path: &Path) -> (Self, Option<std::io::Error>) {
        let (hash, error) = if path.is_file() {
            match model_hash::model_hash(path) {
                Ok(hash) => (Some(hash), None),
                Err(e) => (None, Some(e)),
            }
        } else {
            (None, None)
        };
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let info = ModelInfo {
            path: path.to_path_buf(),
            name,
            hash,
        };
        (info, error)
    }
}

/// The version every infotext ends with.
pub fn version() -> String {
    format!("sdxl-wgpu {}", env!("CARGO_PKG_VERSION"))
}

/// Both PNG text chunks of image `seed` of `request` ([`infotext`]'s text, and its parse): the
/// infotext, and the JSON record: the request as the front-end was `asked` it (in that
/// front-end's spelling: a jobs line, an A1111 body), with the image's seed, the model, the
/// policy's corrections, where it was made and the version.
pub fn image_metadata(
    request: &Request,
    corrections: &[Correction],
    model: &ModelInfo,
    made_on: &MadeOn,
    asked: &Map<String, Value>,
    seed: u64,
) -> std::io::Result<(Infotext, ImageMetadata)> {
    let text = infotext(request, corrections, model, seed)?;
    let mut json = asked.clone();
    let record = [
        ("seed", Value::from(seed)),
        ("model", model.path.display().to_string().into()),
        ("model_hash", model.hash.clone().into()),
        ("quality_policy", serde_json::to_value(corrections)?),
        ("backend", serde_json::to_value(made_on)?),
        ("version", version().into()),
    ];
    json.extend(record.map(|(k, v)| (k.to_string(), v)));
    let metadata = ImageMetadata {
        parameters: metadata::parameters(&text),
        json: Value::Object(json).to_string(),
    };
    Ok((text, metadata))
}

/// The infotext of image `seed` of `request` (with its LoRAs), run after the policy made
/// `corrections`. LoRAs not named by a prompt tag are added to the prompt as A1111 tags, so
/// pasting the text back reproduces the run; every LoRA's hash is listed.
pub fn infotext(
    request: &Request,
    corrections: &[Correction],
    model: &ModelInfo,
    seed: u64,
) -> std::io::Result<Infotext> {
    let r = request;
    let mut fields: Vec<(String, String)> = vec![
        ("Steps".into(), r.steps.to_string()),
        ("Sampler".into(), r.sampler.a1111_name().into()),
        ("Schedule type".into(), r.schedule.a1111_name().into()),
        ("CFG scale".into(), r.cfg.to_string()),
        ("Seed".into(), seed.to_string()),
        ("Size".into(), format!("{}x{}", r.width, r.height)),
    ];
    if let Some(hash) = &model.hash {
        fields.push(("Model hash".into(), hash.clone()));
    }
    fields.push(("Model".into(), model.name.clone()));
    if let Some(strength) = r.denoising_strength() {
        fields.push(("Denoising strength".into(), strength.to_string()));
    }
    if r.clip_skip > 0 {
        // A1111 counts the default (penultimate) layer as 1
        fields.push(("Clip skip".into(), (r.clip_skip + 1).to_string()));
    }
    if let Some(hires) = &r.hires {
        fields.extend(hires_fields(hires));
    }
    if let Some(mask) = r.init.as_ref().and_then(|i| i.mask.as_ref()) {
        // A1111's `init` adds these to its extra parameters, in this order
        if mask.invert {
            fields.push(("Mask mode".into(), "Inpaint not masked".into()));
        }
        // A1111's `mask_blur` is None when the sides differ, and a None field is not written
        let [x, y] = mask.blur;
        if x > 0 && x == y {
            fields.push(("Mask blur".into(), x.to_string()));
        }
    }
    if let Some(phi) = r.cfg_rescale.filter(|&phi| phi > 0.0) {
        // an extension's field, after A1111's own: the name its CFG Rescale extension writes
        fields.push(("CFG Rescale phi".into(), phi.to_string()));
    }
    if !corrections.is_empty() {
        let text: Vec<String> = corrections.iter().map(|c| c.to_string()).collect();
        fields.push(("Quality policy".into(), text.join(", ")));
    }
    let (prompt, hashes) = lora_fields(&r.prompt, &r.loras)?;
    if !hashes.is_empty() {
        fields.push(("Lora hashes".into(), hashes.join(", ")));
    }
    fields.push(("Version".into(), version()));
    Ok(Infotext {
        prompt,
        negative: r.negative.text().to_string(),
        fields,
    })
}

/// A hires pass's fields, as A1111's txt2img adds them (`Size` stays the first pass's).
fn hires_fields(hires: &Hires) -> Vec<(String, String)> {
    let mut fields = vec![match hires.size {
        HiresSize::Scale(scale) => ("Hires upscale".to_string(), scale.to_string()),
        HiresSize::Resize { width, height } => {
            ("Hires resize".to_string(), format!("{width}x{height}"))
        }
    }];
    if hires.steps > 0 {
        fields.push(("Hires steps".into(), hires.steps.to_string()));
    }
    fields.push(("Hires upscaler".into(), hires.upscaler.a1111_name().into()));
    fields
}

/// The prompt with a tag for each LoRA it does not name, and `name: hash` of every LoRA.
fn lora_fields(prompt: &Prompt, loras: &[LoraSpec]) -> std::io::Result<(String, Vec<String>)> {
    // the prompt's tags are the last of the request's LoRAs (by stem or alias); the others
    // get a tag of their own
    let untagged = loras.len().saturating_sub(prompt.parsed().loras.len());
    let mut prompt = prompt.text().to_string();
    let mut hashes = Vec::new();
    for (i, lora) in loras.iter().enumerate() {
        let name = lora.name();
        if i < untagged {
            let (te, unet) = (lora.text_encoder_weight, lora.unet_weight);
            if te == unet {
                prompt.push_str(&format!(" <lora:{name}:{unet}>"));
            } else {
                prompt.push_str(&format!(" <lora:{name}:{te}:{unet}>"));
            }
        }
        hashes.push(format!("{name}: {}", model_hash::lora_hash(&lora.path)?));
    }
    Ok((prompt, hashes))
}
