//! Timesteps and sigmas against diffusers' schedulers for SDXL's config
//! (`tests/fixtures/schedules.json`, made by `tests/reference/make_schedule_fixtures.py`).

use sdxl_wgpu::sampling::{
    schedule, Prediction, Sampler, SamplingRun, ScheduleError, ScheduleKind, TrainSchedule,
};

#[derive(serde::Deserialize)]
struct Case {
    sampler: String,
    schedule: String,
    ztsnr: bool,
    steps: usize,
    timesteps: Vec<f32>,
    sigmas: Option<Vec<f32>>,
    init_noise_sigma: Option<f32>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    /// diffusers' `alphas_cumprod`: "sdxl" and "ztsnr" (rescaled; its last replaced by 2^-24
    /// in the Euler schedulers).
    alphas_cumprod: std::collections::BTreeMap<String, Vec<f32>>,
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schedules.json"
    ))
    .expect("fixture");
    serde_json::from_str(&text).expect("json")
}

/// SDXL's table equals PyTorch's bit for bit. The rescaled one within 2e-7 relative:
/// PyTorch's vectorised CPU `sqrt` is not correctly rounded (5 of SDXL's 1000 roots are an ulp
/// off), and the cumulative product carries that on.
#[test]
fn training_tables_equal_pytorch() {
    let fixture = fixture();
    for (name, train, tolerance) in [
        ("sdxl", TrainSchedule::sdxl(), 0.0),
        ("ztsnr", TrainSchedule::sdxl_zero_terminal_snr(), 2e-7),
    ] {
        let want = &fixture.alphas_cumprod[name];
        let n = want.len() - 1;
        let worst = (0..n)
            .map(|t| (train.alphas_cumprod[t] - want[t]).abs() / want[t])
            .fold(0f32, f32::max);
        assert!(worst <= tolerance, "{name}: relative difference {worst:e}");
    }
    let ztsnr = TrainSchedule::sdxl_zero_terminal_snr();
    assert_eq!(ztsnr.alphas_cumprod[999], 0.0, "zero terminal SNR");
}

#[test]
fn timesteps_and_sigmas_equal_diffusers() {
    let fixture = fixture();
    for case in &fixture.cases {
        let sampler = case.sampler.parse::<Sampler>().expect("a sampler name");
        let kind = case.schedule.parse::<ScheduleKind>().expect("a schedule");
        let train = TrainSchedule::for_checkpoint(case.ztsnr);
        let what = format!(
            "{} {} ztsnr={} steps={}",
            case.sampler, case.schedule, case.ztsnr, case.steps
        );
        let got = schedule(sampler, kind, case.steps, &train).expect(&what);
        // the timestep of every model call (two per step but the last for Heun and DPM2)
        let prediction = Prediction::Epsilon;
        let run = SamplingRun::new(sampler, kind, case.steps, prediction, &train).expect(&what);
        let timesteps = run.timesteps();
        assert_eq!(timesteps.len(), case.timesteps.len(), "{what}: timesteps");
        for (i, (g, w)) in timesteps.iter().zip(&case.timesteps).enumerate() {
            assert!(
                (g - w).abs() <= 2e-3,
                "{what}: timestep {i}: {g} vs diffusers {w}"
            );
        }
        if let Some(sigmas) = &case.sigmas {
            assert_eq!(got.sigmas.len(), sigmas.len(), "{what}: sigmas");
            for (i, (g, w)) in got.sigmas.iter().zip(sigmas).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * w.max(1.0),
                    "{what}: sigma {i}: {g} vs diffusers {w}"
                );
            }
        }
        if let Some(init) = case.init_noise_sigma {
            assert!(
                (got.init_noise_sigma - init).abs() <= 1e-5 * init,
                "{what}: init_noise_sigma"
            );
        }
    }
}

#[test]
fn bad_step_counts_and_ddim_sigma_schedules_are_errors() {
    let train = TrainSchedule::sdxl();
    for steps in [0, 1001] {
        let err = schedule(Sampler::Euler, ScheduleKind::Default, steps, &train).unwrap_err();
        assert_eq!(err, ScheduleError::Steps { steps, max: 1000 });
    }
    for kind in [ScheduleKind::Karras, ScheduleKind::Exponential] {
        assert_eq!(
            schedule(Sampler::Ddim, kind, 20, &train),
            Err(ScheduleError::Unsupported {
                sampler: Sampler::Ddim,
                kind
            })
        );
    }
    // Euler a with Karras: diffusers' EulerAncestral has none; it takes Euler's Karras sigmas.
    let a = schedule(Sampler::EulerAncestral, ScheduleKind::Karras, 20, &train).expect("karras");
    let e = schedule(Sampler::Euler, ScheduleKind::Karras, 20, &train).expect("karras");
    assert_eq!(a, e);
}
