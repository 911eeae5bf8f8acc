//! The engine's runs on the tiny model against diffusers' StableDiffusionXLPipeline and
//! StableDiffusionXLImg2ImgPipeline with CPU generators (`tests/fixtures/pipeline_reference.safetensors`,
//! made by `tests/reference/make_pipeline_fixtures.py`): seeded and injected-noise txt2img with
//! every sampler, a non-square size, negative prompts, size/crop conditioning, CFG 1 (no
//! unconditional pass), img2img at strength 0.6, A1111's hires fix with latent, pixel and model upscalers
//! (`tests/fixtures/hires_reference.safetensors`), a zero-terminal-SNR v-prediction checkpoint
//! (its markers in the file) with guidance rescale 0.7 and at CFG 1; final latents, the first guided prediction and
//! the decoded image, f32 (the f16 runs are checked in `unet_vae.rs`). Plus GPU batches, progress events, and the request errors, after which
//! the engine still gives the same result.

use std::sync::OnceLock;

use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::image_io;
use sdxl_wgpu::pipeline::{
    Engine, Event, Generated, InitImage, Mask, MaskedContent, Noise, PipelineError, Request,
};
use sdxl_wgpu::sampling::{Sampler, ScheduleKind};
use sdxl_wgpu::weights::WeightDtype;
use sdxl_wgpu::Error;

mod common;
use common::pipeline_cases::{hires_reference, inpaint_reference, reference, request, request_in};
use common::{assert_close, gpu, relative_error, values, TINY};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let checkpoint = Checkpoint::open(TINY).expect("fixture");
        Engine::load(gpu().clone(), checkpoint, WeightDtype::F32).expect("loads")
    })
}

/// The tiny model as a zero-terminal-SNR v-prediction checkpoint: a copy of its file with the
/// `v_pred` and `ztsnr` marker keys such checkpoints carry.
fn vpred_engine() -> &'static Engine {
    static ENGINE: OnceLock<(tempfile::TempDir, Engine)> = OnceLock::new();
    &ENGINE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("tiny-vpred.safetensors");
            common::with_markers(TINY, &path, &["v_pred", "ztsnr"]);
            let checkpoint = Checkpoint::open(&path).expect("opens");
            let engine = Engine::load(gpu().clone(), checkpoint, WeightDtype::F32).expect("loads");
            (dir, engine)
        })
        .1
}

fn generate(request: &Request) -> Result<Generated, Error> {
    engine().generate(request, &mut |_| {})
}

/// Measured on lavapipe (max |error| / max |reference|, all 24 cases): final latents ≤ 4.9e-6,
/// first guided prediction ≤ 6.5e-6, image ≤ 6.9e-6.
const TOLERANCE: f32 = 2e-5;

#[test]
fn runs_equal_diffusers() {
    let (cases, f) = reference();
    for (name, case) in cases {
        let engine = if case.ztsnr { vpred_engine() } else { engine() };
        let out = engine
            .generate(&request(name), &mut |_| {})
            .expect("generates");
        assert_close(
            f,
            name,
            vec![
                (values(out.final_latents), "final_latents"),
                (values(out.noise_pred_step0), "noise_pred_step0"),
                (values(out.images), "image"),
            ],
            TOLERANCE,
        )
    }
}

/// A1111's hires fix (a scale with bilinear latents; both sides, cropped, with bicubic
/// antialiased latents and an ancestral sampler; Pillow's Lanczos on the decoded image; a model
/// upscaler, then Lanczos) against diffusers' txt2img -> `F.interpolate` (or decode -> Pillow or
/// spandrel -> encode) -> img2img on the latents with a fresh generator
/// (`make_hires_fixtures.py`).
#[test]
fn hires_passes_equal_diffusers() {
    let reference = hires_reference();
    let (cases, f) = reference;
    assert_eq!(cases.len(), 4);
    for (name, case) in cases {
        let out = generate(&request_in(reference, name)).expect("generates");
        // a pixel upscaler makes 8-bit images between the passes: a decode 1e-6 away from
        // diffusers' truncates a few pixels to the next whole value, which the second pass
        // carries (measured on lavapipe, run to run: latents 8.7e-5 to 3.7e-4)
        let pixels = !case
            .hires_upscaler
            .as_deref()
            .unwrap_or("")
            .starts_with("latent");
        let tolerance = if pixels { 2e-3 } else { TOLERANCE };
        assert_close(
            f,
            name,
            vec![
                (values(out.final_latents), "final_latents"),
                (values(out.images), "image"),
            ],
            tolerance,
        )
    }
}

/// `tests/fixtures/mask_64.png` (a soft-edged disc and a bar off the 8-pixel grid) as an
/// inpainting mask.
fn mask_64(blur: u32, invert: bool) -> Mask {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mask_64.png");
    Mask {
        image: image_io::read_mask(path.as_ref()).expect("mask"),
        blur: [blur; 2],
        invert,
        content: MaskedContent::Original,
    }
}

/// diffusers' `StableDiffusionXLInpaintPipeline` on the tiny (4-channel) model with
/// `mask_64.png`: Euler, DPM++ 2M, DDIM, and Euler a at strength 1 (pure noise at the start);
/// then A1111's overlay: with a blurred mask, every pixel the overlay keeps is the init image's,
/// and every pixel it gives up is the decoded one's.
#[test]
fn inpainting_equals_diffusers() {
    let reference = inpaint_reference();
    let (cases, f) = reference;
    assert_eq!(cases.len(), 4);
    for name in cases.keys() {
        let mut request = request_in(reference, name);
        request.init.as_mut().expect("img2img").mask = Some(mask_64(0, false));
        let out = generate(&request).expect("generates");
        assert_close(
            f,
            name,
            vec![
                (values(out.final_latents), "final_latents"),
                (values(out.images), "image"),
            ],
            TOLERANCE,
        )
    }
    let mut request = request_in(reference, "inpaint_euler");
    let init = request.init.as_mut().expect("img2img");
    init.mask = Some(mask_64(4, false));
    let original = init.image.clone();
    let out = generate(&request).expect("generates");
    let overlay = out.overlay.as_ref().expect("an inpainting run's overlay");
    let (picture, decoded) = (
        &out.pictures().expect("pictures")[0],
        &image_io::to_rgb(out.images.clone()).expect("pixels")[0],
    );
    let (mut kept, mut given) = (0, 0);
    for (x, y, m) in overlay.mask.enumerate_pixels() {
        if m[0] == 0 {
            assert_eq!(
                picture.get_pixel(x, y),
                original.get_pixel(x, y),
                "({x}, {y})"
            );
            kept += 1;
        } else if m[0] == 255 {
            assert_eq!(
                picture.get_pixel(x, y),
                decoded.get_pixel(x, y),
                "({x}, {y})"
            );
            given += 1;
        }
    }
    assert!(kept > 500 && given > 500, "kept {kept}, repainted {given}");
    // a mask that repaints nothing is refused before the run
    let mut request = request_in(reference, "inpaint_euler");
    let init = request.init.as_mut().expect("img2img");
    init.mask = Some(Mask {
        image: image::GrayImage::new(64, 64),
        blur: [4, 4],
        invert: false,
        content: MaskedContent::Original,
    });
    let err = generate(&request).err().expect("refused");
    assert!(
        matches!(err, Error::Pipeline(PipelineError::MaskEmpty)),
        "{err}"
    );
}

#[test]
fn a_batch_is_the_images_of_seed_seed_plus_one() {
    let single = |seed| {
        let r = Request {
            seed,
            ..request("euler_a")
        };
        values(generate(&r).expect("generates").final_latents)
    };
    let batch = Request {
        batch: 2,
        ..request("euler_a")
    };
    let out = generate(&batch).expect("generates");
    let (shape, both) = values(out.final_latents);
    assert_eq!(shape, [2, 4, 8, 8]);
    assert_eq!(out.images.dims(), [2, 3, 64, 64]);
    let half = both.len() / 2;
    for (i, seed) in [42, 43].into_iter().enumerate() {
        let item = (vec![1, 4, 8, 8], both[i * half..(i + 1) * half].to_vec());
        let err = relative_error(&item, &single(seed), "batch item");
        assert!(err <= 1e-5, "item {i}: {err:.2e}");
    }
}

/// At CFG <= 1 the UNet runs once per step on the prompt alone (diffusers skips guidance
/// there): CFG 0.5 and 1 give the same latents, and they sit next to a guided run at CFG 1.001
/// (the two-pass formula at a scale that nearly cancels the unconditional half), far from CFG 2.
#[test]
fn guidance_at_or_below_one_is_one_unet_pass_on_the_prompt() {
    let at = |cfg: f32| {
        let out = generate(&Request {
            cfg,
            ..request("euler_a")
        })
        .expect("generates");
        (out.stats.unet_batch, values(out.final_latents))
    };
    let (one_batch, one) = at(1.0);
    let (half_batch, half) = at(0.5);
    let (near_batch, near) = at(1.001);
    let (_, two) = at(2.0);
    assert_eq!((one_batch, half_batch, near_batch), (1, 1, 2));
    assert_eq!(one, half, "CFG 0.5 is CFG 1: the prompt's prediction alone");
    let close = relative_error(&one, &near, "CFG 1 vs 1.001");
    let far = relative_error(&one, &two, "CFG 1 vs 2");
    assert!(
        close < 1e-2 && close * 50.0 < far,
        "1 vs 1.001: {close:.2e}, 1 vs 2: {far:.2e}"
    );
}

#[test]
fn events_count_the_steps_run() {
    for (name, steps) in [("euler_a", 4), ("img2img_euler", 6)] {
        let mut events = Vec::new();
        let out = engine()
            .generate(&request(name), &mut |e| events.push(e))
            .expect("generates");
        let done: Vec<(usize, usize)> = events
            .iter()
            .filter_map(|e| match *e {
                Event::Step { done, total } => Some((done, total)),
                _ => None,
            })
            .collect();
        let want: Vec<(usize, usize)> = (0..=steps).map(|d| (d, steps)).collect();
        assert_eq!(done, want, "{name}");
        assert!(matches!(events[0], Event::Encoded { .. }), "{events:?}");
        assert_eq!(out.stats.steps, steps);
        assert_eq!(out.timesteps.len(), steps, "{name}");
        assert_eq!(out.sigmas.len(), steps + 1, "{name}");
    }
}

#[test]
fn bad_requests_fail_and_the_engine_still_works() {
    let good = request("euler_a");
    let before = values(generate(&good).expect("generates").final_latents);
    let img2img = request("img2img_euler");
    let pipeline_errors = [
        Request {
            width: 60,
            ..good.clone()
        },
        Request {
            height: 0,
            ..good.clone()
        },
        Request {
            width: 16384,
            ..good.clone()
        },
        Request {
            cfg: f32::NAN,
            ..good.clone()
        },
        Request {
            cfg: -1.0,
            ..good.clone()
        },
        Request {
            batch: 0,
            ..good.clone()
        },
        Request {
            init: Some(InitImage {
                strength: 0.0,
                ..img2img.init.clone().expect("img2img")
            }),
            ..img2img.clone()
        },
        Request {
            init: Some(InitImage {
                strength: 1.5,
                ..img2img.init.clone().expect("img2img")
            }),
            ..img2img.clone()
        },
        // int(1 x 0.6) = 0 steps
        Request {
            steps: 1,
            ..img2img.clone()
        },
        Request {
            init_noise: Some(Noise {
                shape: [1, 4, 8, 9],
                values: vec![0.0; 288],
            }),
            ..good.clone()
        },
        Request {
            batch: 2,
            init_noise: Some(Noise {
                shape: [1, 4, 8, 8],
                values: vec![0.0; 256],
            }),
            ..good.clone()
        },
    ];
    for request in &pipeline_errors {
        let err = generate(request).err().expect("refused");
        assert!(matches!(err, Error::Pipeline(_)), "{err}");
    }
    assert!(matches!(
        generate(&Request {
            steps: 1,
            ..img2img.clone()
        }),
        Err(Error::Pipeline(PipelineError::NoSteps { .. }))
    ));
    let other_errors = [
        Request {
            steps: 0,
            ..good.clone()
        },
        Request {
            clip_skip: 9,
            ..good.clone()
        },
        Request {
            sampler: Sampler::Ddim,
            schedule: ScheduleKind::Karras,
            ..good.clone()
        },
    ];
    for request in &other_errors {
        let err = generate(request).err().expect("refused");
        assert!(matches!(err, Error::Schedule(_) | Error::Text(_)), "{err}");
    }
    let after = values(generate(&good).expect("generates").final_latents);
    assert_eq!(
        before.1, after.1,
        "same request, same latents, after the failures"
    );
}

/// A run whose latents overflow is an error naming the likely cause, not an image; the engine
/// then gives the same result as before.
#[test]
fn non_finite_results_are_errors_naming_the_cause() {
    let good = request("euler_a");
    let before = values(generate(&good).expect("generates").final_latents);
    let shape = good.latent_shape();
    let overflowing = Noise {
        shape,
        values: vec![3e38; shape.iter().product()],
    };
    let plain = Request {
        init_noise: Some(overflowing.clone()),
        ..good.clone()
    };
    let err = generate(&plain).err().expect("overflows");
    assert!(
        matches!(
            err,
            Error::Pipeline(PipelineError::NonFinite {
                what: "final latents",
                ..
            })
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("the checkpoint") && !message.contains("prompt weight"),
        "{message}"
    );
    let weighted = Request {
        prompt: "(cat:2) on a sofa".into(),
        init_noise: Some(overflowing),
        ..good.clone()
    };
    let message = generate(&weighted).err().expect("overflows").to_string();
    assert!(
        message.contains("likely cause: a prompt weight"),
        "{message}"
    );
    let after = values(generate(&good).expect("generates").final_latents);
    assert_eq!(before.1, after.1, "same latents after the failures");
}
