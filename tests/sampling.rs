//! Whole sampling loops against diffusers' schedulers with a stand-in model
//! (`tests/fixtures/sampler_runs.json`, made by `tests/reference/make_sampler_fixtures.py`):
//! initial noise from the seeded CPU generator times `init_noise_sigma`, model-input scaling,
//! every sampler's stepping rule under each of its schedules for eps and v prediction and for
//! zero-terminal-SNR v prediction, and the stochastic samplers' per-step noise order.

use burn::tensor::{Tensor, TensorData};
use sdxl_wgpu::sampling::{
    Prediction, Sampler, SamplingRun, ScheduleKind, TorchRng, TrainSchedule,
};

mod common;
use common::{gpu, values};

#[derive(serde::Deserialize)]
struct Run {
    sampler: String,
    schedule: String,
    ztsnr: bool,
    prediction: String,
    steps: usize,
    seed: u64,
    /// Model calls (Heun and DPM2: two per step but the last).
    calls: usize,
    first_step: Vec<f32>,
    #[serde(rename = "final")]
    last: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    shape: [usize; 4],
    runs: Vec<Run>,
}

/// The stand-in model: `0.8 tanh(x) + 0.05 t / 1000`.
fn model(x: Tensor<4>, t: f32) -> Tensor<4> {
    x.tanh() * 0.8 + 0.05 * f64::from(t) / 1000.0
}

#[test]
fn sampling_loops_equal_diffusers() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sampler_runs.json"
    ))
    .expect("fixture");
    let fixture: Fixture = serde_json::from_str(&text).expect("json");
    let device = &gpu().device;
    let mut worst = 0f32;
    for run in &fixture.runs {
        let sampler = run.sampler.parse::<Sampler>().expect("a sampler name");
        let kind = run.schedule.parse::<ScheduleKind>().expect("a schedule");
        let train = TrainSchedule::for_checkpoint(run.ztsnr);
        let prediction = if run.prediction == "epsilon" {
            Prediction::Epsilon
        } else {
            Prediction::V
        };
        let what = format!(
            "{} {} ztsnr={} {} steps={}",
            run.sampler, run.schedule, run.ztsnr, run.prediction, run.steps
        );
        let mut s = SamplingRun::new(sampler, kind, run.steps, prediction, &train).expect(&what);
        let mut rng = TorchRng::new(run.seed);
        let n: usize = fixture.shape.iter().product();
        let noise = Tensor::from_data(TensorData::new(rng.randn(n), fixture.shape), device);
        let mut x = s.initial_latents(noise);
        assert_eq!(s.steps_left(), run.calls, "{what}: calls");
        for i in 0..run.calls {
            // two f32 computations agree to a few ulps of their largest operand: the latents
            // going in (4096 x noise at a zero-terminal-SNR start), or the result
            let operands = values(x.clone()).1.iter().fold(0f32, |m, v| m.max(v.abs()));
            let out = model(s.model_input(&x), s.timestep());
            x = s.step(out, x, std::slice::from_mut(&mut rng));
            let want = if i == 0 {
                Some(&run.first_step)
            } else if i + 1 == run.calls {
                Some(&run.last)
            } else {
                None
            };
            if let Some(want) = want {
                let got = values(x.clone()).1;
                let scale = want.iter().fold(operands.max(1.0), |m, v| m.max(v.abs()));
                let err = got
                    .iter()
                    .zip(want)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
                    / scale;
                worst = worst.max(err);
                assert!(err <= 1e-5, "{what}: call {i}: relative error {err:.2e}");
            }
        }
        assert_eq!(s.steps_done(), run.steps);
    }
    eprintln!(
        "worst relative error over {} runs: {worst:.2e}",
        fixture.runs.len()
    );
}
