//! The numerical self-test: the committed tiny model (carried in the binary) through text
//! encoding, four denoising steps and the VAE on the user's own device, in f16 and in f32, each
//! compared with what diffusers computed for the same request (the `euler_a` case of
//! `tests/fixtures/pipeline_reference.safetensors`, made by
//! `tests/reference/make_pipeline_fixtures.py`). A driver that miscompiles a kernel gives black
//! or noise images on full-size models; here it gives an error figure far past the limit, named
//! per path (compiler x precision), before any real model is loaded.
//!
//! One call tests the paths of one device ([`run`]); `sdxl-wgpu doctor` brings up one device per
//! compiler in a child process each (a driver that crashes fails its path, not the doctor),
//! and records the verdicts in the cache ([`crate::device::verdicts`]), which steer later runs.

use burn::tensor::Tensor;

use super::Check;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::device::{Gpu, PathVerdict};
use crate::pipeline::{Engine, Request};
use crate::sampling::{Sampler, ScheduleKind};
use crate::weights::{SafetensorsFile, WeightDtype};

/// The tiny random-weight SDXL model the test suite runs (`tests/fixtures/tiny-sdxl.safetensors`).
const TINY_MODEL: &[u8] = include_bytes!("../../tests/fixtures/tiny-sdxl.safetensors");
/// diffusers' outputs for the pipeline cases, f32 (`tests/fixtures/pipeline_reference.safetensors`).
const REFERENCE: &[u8] = include_bytes!("../../tests/fixtures/pipeline_reference.safetensors");
/// The case run: Euler a, 4 steps, 64x64, CFG 5, seed 42 (its request is [`request`]).
const CASE: &str = "euler_a";

/// The largest relative L2 error a correct path shows, per precision. f32: what lavapipe, GPUs
/// and reduced-precision matmul units all stay within by two orders of magnitude
/// (`tests/pipeline.rs` holds lavapipe to 2e-5 max-abs); f16: eight times diffusers' own fp16
/// spread on these cases (`tests/fixtures/f16_spread.json`: 2.7e-3 to 3.8e-3). A miscompiled
/// kernel lands near 1.
pub const LIMIT_F32: f32 = 1e-3;
pub const LIMIT_F16: f32 = 3e-2;

/// Set to `f16` or `f32` (test only), a path of that precision reports results perturbed by 10%:
/// how the tests check that a failure is caught and avoided.
pub const FAULT_VAR: &str = "SDXL_WGPU_SELFTEST_FAULT";

/// The request diffusers ran for [`CASE`] (the fixture's `cases` metadata says the same).
fn request() -> Request {
    Request {
        prompt: "1girl, solo, long hair, masterpiece, best quality".into(),
        negative: "lowres, bad anatomy, worst quality, blurry".into(),
        width: 64,
        height: 64,
        steps: 4,
        cfg: 5.0,
        seed: 42,
        sampler: Sampler::EulerAncestral,
        schedule: ScheduleKind::Default,
        ..Request::default()
    }
}

/// The committed tiny model, from the bytes this binary carries.
pub fn tiny_model() -> Result<Checkpoint, CheckpointError> {
    let file = SafetensorsFile::from_bytes("tiny-sdxl.safetensors (built in)", TINY_MODEL)
        .map_err(CheckpointError::Weights)?;
    Checkpoint::from_file(file)
}

/// One reference tensor of [`CASE`], f32.
fn reference(name: &str) -> Vec<f32> {
    let file = SafetensorsFile::from_bytes("pipeline_reference.safetensors (built in)", REFERENCE)
        .expect("the built-in reference parses");
    let info = &file.header().tensors[&format!("{CASE}.{name}")];
    let bytes = file.bytes(info).expect("the built-in reference has data");
    crate::weights::Dtype::F32
        .to_f32(bytes)
        .expect("the reference is f32")
}

/// `|a - b| / |b|` over all values.
fn relative_l2(got: &[f32], want: &[f32]) -> f32 {
    let diff: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|b| f64::from(*b).powi(2)).sum();
    if got.len() != want.len() || !diff.is_finite() {
        return f32::INFINITY;
    }
    (diff / norm.max(1e-30)).sqrt() as f32
}

fn host(t: Tensor<4>) -> Result<Vec<f32>, String> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

/// Runs the self-test on `gpu` in f16 (where it has f16 shaders) and f32: one verdict each.
pub fn run(gpu: &Gpu) -> Vec<PathVerdict> {
    let precisions: &[bool] = if gpu.adapter.shader_f16 {
        &[true, false]
    } else {
        &[false]
    };
    let fault = std::env::var(FAULT_VAR).ok();
    precisions
        .iter()
        .map(|&f16| {
            let faulty = fault.as_deref() == Some(if f16 { "f16" } else { "f32" });
            path(gpu, f16, faulty)
        })
        .collect()
}

/// One path's verdict: the stages' errors against diffusers, or why it could not run.
fn path(gpu: &Gpu, f16: bool, faulty: bool) -> PathVerdict {
    let limit = if f16 { LIMIT_F16 } else { LIMIT_F32 };
    let verdict = |passed, error, detail| PathVerdict {
        compiler: gpu.compiler,
        f16,
        passed,
        error,
        limit,
        detail,
    };
    let stages = match stage_errors(gpu, f16, faulty) {
        Ok(stages) => stages,
        Err(e) => return verdict(false, f32::INFINITY, format!("did not run: {e}")),
    };
    let worst = stages.iter().map(|(_, e)| *e).fold(0f32, f32::max);
    let detail = stages
        .iter()
        .map(|(stage, e)| format!("{stage} {e:.1e}"))
        .collect::<Vec<_>>()
        .join(", ");
    verdict(
        worst <= limit,
        worst,
        format!("relative L2 error: {detail}"),
    )
}

/// The run's relative L2 error against diffusers after one UNet call (text encoders included),
/// after the last step, and after the VAE.
fn stage_errors(gpu: &Gpu, f16: bool, faulty: bool) -> Result<Vec<(&'static str, f32)>, String> {
    let dtype = if f16 {
        WeightDtype::F16
    } else {
        WeightDtype::F32
    };
    let checkpoint = tiny_model().map_err(|e| e.to_string())?;
    let engine = Engine::load(gpu.clone(), checkpoint, dtype).map_err(|e| e.to_string())?;
    let out = engine
        .generate(&request(), &mut |_| {})
        .map_err(|e| e.to_string())?;
    let perturb = |t: Tensor<4>| if faulty { t * 1.1 } else { t };
    let stages = [
        (
            "first UNet step",
            perturb(out.noise_pred_step0),
            "noise_pred_step0",
        ),
        ("final latents", perturb(out.final_latents), "final_latents"),
        ("image", perturb(out.images), "image"),
    ];
    stages
        .into_iter()
        .map(|(stage, got, name)| Ok((stage, relative_l2(&host(got)?, &reference(name)))))
        .collect()
}

/// Each verdict as a doctor's line; `cached`: recorded by an earlier self-test, not run now.
pub fn checks(verdicts: &[PathVerdict], cached: bool) -> Vec<Check> {
    let when = if cached {
        " (recorded by an earlier self-test of this build and driver; doctor --selftest runs it again)"
    } else {
        ""
    };
    verdicts
        .iter()
        .map(|v| {
            let name = format!("self-test {}", v.path());
            let detail = format!("{}, limit {:.0e}{when}", v.detail, v.limit);
            if v.passed {
                Check::pass(name, detail)
            } else {
                Check::fail(
                    name,
                    detail,
                    "this path computes wrong results here: runs avoid it by themselves (another \
                     compiler, or f32); update the GPU driver, and report it with `sdxl-wgpu \
                     devices --json`",
                )
            }
        })
        .collect()
}
