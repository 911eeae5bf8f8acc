//! txt2img on the tiny model against diffusers' StableDiffusionXLPipeline with a seeded CPU
//! generator (`tests/fixtures/pipeline_reference.safetensors`, made by
//! `tests/reference/make_pipeline_fixtures.py`): final latents and decoded image, f32. Plus the
//! request errors, after which the engine still gives the same result.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use clap::ValueEnum;
use sdxl_wgpu::checkpoint::{Checkpoint, WeightDtype};
use sdxl_wgpu::pipeline::{Engine, Txt2Img};
use sdxl_wgpu::sampling::{Sampler, ScheduleKind};
use sdxl_wgpu::vae::{VaePrecision, VaeTiling};
use sdxl_wgpu::Error;

mod common;
use common::{fixture, gpu, relative_error, values, Fixture, TINY};

#[derive(serde::Deserialize)]
struct Case {
    prompt: String,
    negative: String,
    width: usize,
    height: usize,
    steps: usize,
    cfg: f32,
    seed: u64,
    sampler: String,
    schedule: String,
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let checkpoint = Checkpoint::open(TINY).expect("fixture");
        Engine::load(gpu().clone(), checkpoint, WeightDtype::F32).expect("loads")
    })
}

fn reference() -> &'static (BTreeMap<String, Case>, Fixture) {
    static REF: OnceLock<(BTreeMap<String, Case>, Fixture)> = OnceLock::new();
    REF.get_or_init(|| {
        let f = fixture("pipeline_reference.safetensors");
        (serde_json::from_str(&f.cases).expect("cases"), f)
    })
}

fn request(c: &Case) -> Txt2Img {
    Txt2Img {
        prompt: c.prompt.clone(),
        negative: c.negative.clone(),
        width: c.width,
        height: c.height,
        steps: c.steps,
        cfg: c.cfg,
        seed: c.seed,
        sampler: Sampler::from_str(&c.sampler, false).expect("a sampler name"),
        schedule: if c.schedule == "karras" {
            ScheduleKind::Karras
        } else {
            ScheduleKind::Default
        },
        clip_skip: 0,
        vae_tiling: VaeTiling::Auto,
        vae_precision: VaePrecision::F32,
    }
}

/// Measured on lavapipe: final latents ≤ 4.0e-6, image ≤ 3.8e-6 relative to their largest values.
const TOLERANCE: f32 = 2e-5;

#[test]
fn txt2img_equals_diffusers() {
    let (cases, f) = reference();
    for (name, case) in cases {
        let out = engine().txt2img(&request(case)).expect("generates");
        for (got, key) in [
            (values(out.final_latents), "final_latents"),
            (values(out.image), "image"),
        ] {
            let err = relative_error(&got, &f.tensors[&format!("{name}.{key}")], key);
            eprintln!("{name}.{key}: relative max error {err:.2e}");
            assert!(err <= TOLERANCE, "{name}.{key}: {err:.2e}");
        }
    }
}

#[test]
fn bad_requests_fail_and_the_engine_still_works() {
    let (cases, _) = reference();
    let good = request(&cases["euler_a"]);
    let before = values(engine().txt2img(&good).expect("generates").final_latents);
    let bad = [
        Txt2Img {
            width: 60,
            ..good.clone()
        },
        Txt2Img {
            height: 0,
            ..good.clone()
        },
        Txt2Img {
            steps: 0,
            ..good.clone()
        },
        Txt2Img {
            cfg: f32::NAN,
            ..good.clone()
        },
        Txt2Img {
            clip_skip: 9,
            ..good.clone()
        },
        Txt2Img {
            sampler: Sampler::Ddim,
            schedule: ScheduleKind::Karras,
            ..good.clone()
        },
    ];
    for request in &bad {
        let err = engine().txt2img(request).err().expect("refused");
        assert!(
            matches!(
                err,
                Error::Pipeline(_) | Error::Schedule(_) | Error::Text(_)
            ),
            "{err}"
        );
    }
    let after = values(engine().txt2img(&good).expect("generates").final_latents);
    assert_eq!(
        before.1, after.1,
        "same request, same latents, after the failures"
    );
}
