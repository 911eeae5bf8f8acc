//! The whole-run cases of `tests/fixtures/pipeline_reference.safetensors` (made by
//! `tests/reference/make_pipeline_fixtures.py`) and of `tests/fixtures/hires_reference.safetensors`
//! (`tests/reference/make_hires_fixtures.py`) and of `tests/fixtures/inpaint_reference.safetensors`
//! (`tests/reference/make_inpaint_fixtures.py`) as engine requests: the pipeline's f32 parity
//! tests and the f16 spread test share them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use sdxl_wgpu::image_io;
use sdxl_wgpu::intake::UpscalerFolder;
use sdxl_wgpu::pipeline::{
    Fit, Hires, HiresSize, InitImage, Noise, Request, SizeConditioning, UpscalerChoice,
};
use sdxl_wgpu::sampling::{SamplerChoice, ScheduleKind};
use sdxl_wgpu::vae::{VaePrecision, VaeTiling};

use super::{fixture, Fixture};

#[derive(serde::Deserialize)]
pub struct Case {
    pub prompt: String,
    pub negative: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub cfg: f32,
    pub seed: u64,
    pub sampler: String,
    pub schedule: String,
    pub strength: Option<f64>,
    pub noise_seed: Option<u64>,
    pub original_width: Option<usize>,
    pub original_height: Option<usize>,
    pub crop_top: Option<usize>,
    pub crop_left: Option<usize>,
    /// Run as a zero-terminal-SNR v-prediction checkpoint.
    #[serde(default)]
    pub ztsnr: bool,
    pub cfg_rescale: Option<f32>,
    pub hires_scale: Option<f64>,
    /// `[width, height]`
    pub hires_resize: Option<[usize; 2]>,
    pub hires_upscaler: Option<String>,
    pub hires_steps: Option<usize>,
    pub hires_denoise: Option<f64>,
}

type Reference = (BTreeMap<String, Case>, Fixture);

fn read(name: &str) -> Reference {
    let f = fixture(name);
    (serde_json::from_str(&f.cases).expect("cases"), f)
}

pub fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| read("pipeline_reference.safetensors"))
}

pub fn hires_reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| read("hires_reference.safetensors"))
}

/// diffusers' inpainting runs (`make_inpaint_fixtures.py`), all on `mask_64.png`.
pub fn inpaint_reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| read("inpaint_reference.safetensors"))
}

pub fn request(name: &str) -> Request {
    request_in(reference(), name)
}

/// Case `name` of `reference` as a request.
pub fn request_in((cases, f): &Reference, name: &str) -> Request {
    let c = &cases[name];
    let sampler: SamplerChoice = c.sampler.parse().expect("a sampler name");
    let init_image = || {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/init_64.png");
        image_io::read(path.as_ref()).expect("init image")
    };
    Request {
        prompt: c.prompt.clone().into(),
        negative: c.negative.clone().into(),
        width: c.width,
        height: c.height,
        steps: c.steps,
        cfg: c.cfg,
        cfg_rescale: c.cfg_rescale,
        seed: c.seed,
        batch: 1,
        sampler: sampler.sampler,
        schedule: c.schedule.parse::<ScheduleKind>().expect("a schedule"),
        clip_skip: 0,
        size_conditioning: SizeConditioning {
            original_width: c.original_width,
            original_height: c.original_height,
            crop_top: c.crop_top.unwrap_or(0),
            crop_left: c.crop_left.unwrap_or(0),
        },
        init: c.strength.map(|strength| InitImage {
            image: init_image(),
            strength,
            mask: None,
            fit: Fit::Cover,
        }),
        init_noise: c.noise_seed.map(|_| {
            let (shape, values) = f.tensors[&format!("{name}.noise")].clone();
            Noise {
                shape: [shape[0], shape[1], shape[2], shape[3]],
                values,
            }
        }),
        hires: hires(c),
        vae_tiling: VaeTiling::Auto,
        vae_precision: VaePrecision::F32,
        loras: Vec::new(),
    }
}

/// A built-in upscaler's spelling, else a model of `tests/fixtures/upscalers/`.
fn upscaler(name: &str) -> UpscalerChoice {
    let folder = UpscalerFolder::new(Some(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/upscalers").as_ref(),
    ));
    folder.resolve(name, false).expect("an upscaler")
}

/// The case's hires pass, if it has one.
fn hires(c: &Case) -> Option<Hires> {
    let size = match (c.hires_scale, c.hires_resize) {
        (Some(scale), _) => HiresSize::Scale(scale),
        (None, Some([width, height])) => HiresSize::Resize { width, height },
        (None, None) => return None,
    };
    Some(Hires {
        size,
        upscaler: upscaler(c.hires_upscaler.as_deref()?),
        steps: c.hires_steps.unwrap_or(0),
        strength: c.hires_denoise.expect("a strength"),
    })
}
