//! The `info` string of A1111's txt2img/img2img response: `Processed.js()`'s keys in its
//! order (A1111 v1.10 `modules/processing.py`), from what the job actually ran; its
//! `extra_generation_params` are the image's own infotext fields, so the two never drift.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::infotext;
use crate::server::jobs::Outcome;

/// `Processed.js()`, field for field.
#[derive(Serialize)]
struct Info<'a> {
    prompt: &'a str,
    all_prompts: Vec<&'a str>,
    negative_prompt: &'a str,
    all_negative_prompts: Vec<&'a str>,
    seed: u64,
    all_seeds: &'a [u64],
    subseed: i64,
    all_subseeds: Vec<i64>,
    subseed_strength: f64,
    width: usize,
    height: usize,
    sampler_name: &'a str,
    cfg_scale: f32,
    steps: usize,
    batch_size: usize,
    restore_faces: bool,
    face_restoration_model: Option<()>,
    sd_model_name: &'a str,
    sd_model_hash: Option<&'a str>,
    sd_vae_name: Option<()>,
    sd_vae_hash: Option<()>,
    seed_resize_from_w: i64,
    seed_resize_from_h: i64,
    denoising_strength: Option<f64>,
    extra_generation_params: Map<String, Value>,
    index_of_first_image: usize,
    infotexts: &'a [String],
    styles: Vec<String>,
    job_timestamp: &'a str,
    clip_skip: usize,
    is_using_inpainting_conditioning: bool,
    version: String,
}

/// The infotext fields `Processed.js()` carries as keys of its own; every other field of the
/// image's infotext is one of its `extra_generation_params`.
const OWN_FIELDS: [&str; 9] = [
    "Steps",
    "Sampler",
    "CFG scale",
    "Seed",
    "Size",
    "Model hash",
    "Model",
    "Clip skip",
    "Version",
];

/// `extra_generation_params`: the infotext's other fields, numbers as numbers (as A1111 keeps
/// them).
fn extra_params(fields: &[(String, String)]) -> Map<String, Value> {
    fields
        .iter()
        .filter(|(key, _)| !OWN_FIELDS.contains(&key.as_str()))
        .map(|(key, value)| {
            let number = value
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64);
            let value = number.map_or_else(|| Value::String(value.clone()), Value::Number);
            (key.clone(), value)
        })
        .collect()
}

/// The JSON text of `info` for `outcome`, `seeds` = every seed asked (all iterations), even
/// where an interrupt left fewer images.
pub fn info_json(outcome: &Outcome, seeds: &[u64], subseed: i64) -> String {
    let r = &outcome.request;
    let count = seeds.len();
    let info = Info {
        prompt: r.prompt.text(),
        all_prompts: vec![r.prompt.text(); count],
        negative_prompt: r.negative.text(),
        all_negative_prompts: vec![r.negative.text(); count],
        seed: seeds.first().copied().unwrap_or(r.seed),
        all_seeds: seeds,
        subseed,
        all_subseeds: (0..count as i64).map(|i| subseed.wrapping_add(i)).collect(),
        subseed_strength: 0.0,
        width: r.width,
        height: r.height,
        sampler_name: r.sampler.a1111_name(),
        cfg_scale: r.cfg,
        steps: r.steps,
        batch_size: r.batch,
        restore_faces: false,
        face_restoration_model: None,
        sd_model_name: &outcome.model.name,
        sd_model_hash: outcome.model.hash.as_deref(),
        sd_vae_name: None,
        sd_vae_hash: None,
        seed_resize_from_w: -1,
        seed_resize_from_h: -1,
        denoising_strength: r.denoising_strength(),
        extra_generation_params: extra_params(&outcome.fields),
        index_of_first_image: 0,
        infotexts: &outcome.infotexts,
        styles: Vec::new(),
        job_timestamp: &outcome.timestamp,
        clip_skip: r.clip_skip + 1,
        is_using_inpainting_conditioning: false,
        version: infotext::version(),
    };
    serde_json::to_string(&info).expect("plain data serialises")
}
