//! Timesteps and sigmas against diffusers' schedulers for SDXL's config
//! (`tests/fixtures/schedules.json`, made by `tests/reference/make_schedule_fixtures.py`).

use sdxl_wgpu::sampling::{schedule, Sampler, ScheduleError, ScheduleKind, TrainSchedule};

#[derive(serde::Deserialize)]
struct Case {
    sampler: String,
    karras: bool,
    steps: usize,
    timesteps: Vec<f32>,
    sigmas: Option<Vec<f32>>,
    init_noise_sigma: Option<f32>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[test]
fn timesteps_and_sigmas_equal_diffusers() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schedules.json"
    ))
    .expect("fixture");
    let fixture: Fixture = serde_json::from_str(&text).expect("json");
    let train = TrainSchedule::sdxl();
    for case in &fixture.cases {
        let sampler = case.sampler.parse::<Sampler>().expect("a sampler name");
        let kind = if case.karras {
            ScheduleKind::Karras
        } else {
            ScheduleKind::Default
        };
        let what = format!(
            "{} karras={} steps={}",
            case.sampler, case.karras, case.steps
        );
        let got = schedule(sampler, kind, case.steps, &train).expect(&what);
        assert_eq!(
            got.timesteps.len(),
            case.timesteps.len(),
            "{what}: timesteps"
        );
        for (i, (g, w)) in got.timesteps.iter().zip(&case.timesteps).enumerate() {
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
fn bad_step_counts_and_ddim_karras_are_errors() {
    let train = TrainSchedule::sdxl();
    for steps in [0, 1001] {
        let err = schedule(Sampler::Euler, ScheduleKind::Default, steps, &train).unwrap_err();
        assert_eq!(err, ScheduleError::Steps { steps, max: 1000 });
    }
    assert!(matches!(
        schedule(Sampler::Ddim, ScheduleKind::Karras, 20, &train),
        Err(ScheduleError::NoKarras { .. })
    ));
    // Euler a with Karras: diffusers' EulerAncestral has none; it takes Euler's Karras sigmas.
    let a = schedule(Sampler::EulerAncestral, ScheduleKind::Karras, 20, &train).expect("karras");
    let e = schedule(Sampler::Euler, ScheduleKind::Karras, 20, &train).expect("karras");
    assert_eq!(a, e);
}
