//! The swap soak (docs/ARCHITECTURE.md, "Invariants"): one engine, 200+ LoRA swaps cycling A, B, A+B, none, a
//! corrupt file, an SD 1.5 LoRA, A again. Every successful job equals, bit for bit, what a
//! fresh engine with the same set gives; every failure fails with its message and leaves the
//! previous set active; the device memory in use after each swap is exactly that of the set
//! (no LoRA: the baseline after loading) and again after each run, and the pools' reservation
//! does not creep up.
//!
//! (A fresh *process* is not bit-identical even to another fresh process with the same set:
//! autotune picks kernels by timing, so two processes differ by ~1e-6 relative; the CLI test
//! compares processes within a tolerance instead.)

use std::path::{Path, PathBuf};

use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::device::{memory_in_use, Precision};
use sdxl_wgpu::doctor::{self, Report, Status};
use sdxl_wgpu::lora::{LoraError, LoraSpec};
use sdxl_wgpu::pipeline::{Engine, Request};
use sdxl_wgpu::weights::WeightDtype;
use sdxl_wgpu::Error;

mod common;
use common::{gpu, values, TINY};

fn lora(name: &str, weight: f32) -> LoraSpec {
    LoraSpec {
        path: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/lora/{name}.safetensors")),
        unet_weight: weight,
        text_encoder_weight: weight,
    }
}

fn engine() -> Engine {
    let checkpoint = Checkpoint::open(TINY).expect("fixture");
    Engine::load(gpu().clone(), checkpoint, WeightDtype::F32).expect("loads")
}

fn request() -> Request {
    Request {
        prompt: "1girl, solo, red dress".into(),
        negative: "lowres".into(),
        width: 64,
        height: 64,
        steps: 1,
        cfg: 6.0,
        seed: 3,
        ..Request::default()
    }
}

fn latents(engine: &Engine, loras: &[LoraSpec]) -> Vec<f32> {
    let request = Request {
        loras: loras.to_vec(),
        ..request()
    };
    values(
        engine
            .generate(&request, &mut |_| {})
            .expect("generates")
            .final_latents,
    )
    .1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Set {
    A,
    B,
    AB,
    None,
    Corrupt,
    Sd15,
}

/// The tests of this binary measure the device memory in use: they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn two_hundred_swaps_leave_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let corrupt: PathBuf = dir.path().join("corrupt.safetensors");
    let bytes = std::fs::read(lora("style_kohya", 1.0).path).expect("fixture");
    std::fs::write(&corrupt, &bytes[..bytes.len() - 1000]).expect("write");
    let specs = |set: Set| -> Vec<LoraSpec> {
        match set {
            Set::A => vec![lora("style_kohya", 0.8)],
            Set::B => vec![lora("detail_locon", 0.5)],
            Set::AB => vec![lora("style_kohya", 0.8), lora("detail_locon", 0.5)],
            Set::None => vec![],
            Set::Corrupt => vec![LoraSpec {
                path: corrupt.clone(),
                ..lora("style_kohya", 0.8)
            }],
            Set::Sd15 => vec![lora("sd15", 1.0)],
        }
    };
    let good = [Set::A, Set::B, Set::AB, Set::None];

    // what a fresh engine gives for each set
    let fresh: Vec<(Set, Vec<f32>)> = good
        .iter()
        .map(|&set| {
            let e = engine();
            e.set_loras(&specs(set)).expect("builds");
            (set, latents(&e, &specs(set)))
        })
        .collect();
    gpu().device.memory_cleanup();

    let engine = engine();
    engine.set_loras(&[]).expect("no LoRA");
    gpu().device.memory_cleanup();
    let in_use = || memory_in_use(&gpu().device).expect("the wgpu pools report usage");
    let baseline = in_use().0;
    let cycle = [Set::A, Set::B, Set::AB, Set::None, Set::Corrupt, Set::Sd15];
    let mut active = Set::None;
    let mut bytes_of: Vec<(Set, u64)> = vec![(Set::None, baseline)];
    let mut reserved = Vec::new();
    let mut swaps = 0;
    while swaps < 200 {
        for &set in &cycle {
            swaps += 1;
            match engine.set_loras(&specs(set)) {
                Ok(_) => active = set,
                Err(e) => {
                    let message = e.to_string();
                    match set {
                        Set::Corrupt => {
                            assert!(matches!(e, Error::Lora(LoraError::File(_))), "{e}");
                            assert!(message.contains("corrupt.safetensors"), "{message}");
                        }
                        Set::Sd15 => {
                            assert!(matches!(e, Error::Lora(LoraError::NoMatch { .. })), "{e}");
                            assert!(message.contains("sd15.safetensors"), "{message}");
                        }
                        _ => panic!("{set:?} failed: {message}"),
                    }
                }
            }
            assert!(
                good.contains(&set) || active != set,
                "a failed set must not become active"
            );
            let (bytes, pool) = in_use();
            reserved.push(pool);
            match bytes_of.iter().find(|(s, _)| *s == active) {
                Some(&(_, first)) => assert_eq!(
                    bytes, first,
                    "swap {swaps} to {set:?} (active {active:?}): device memory in use {bytes}, first time {first}"
                ),
                None => bytes_of.push((active, bytes)),
            }
            if good.contains(&set) {
                let want = &fresh.iter().find(|(s, _)| *s == set).expect("fresh").1;
                assert_eq!(
                    &latents(&engine, &specs(set)),
                    want,
                    "swap {swaps}: {set:?} differs from a fresh engine"
                );
                // a run leaves nothing in use behind, and releases its activations
                let (after_run, pool) = in_use();
                assert_eq!(after_run, bytes, "swap {swaps}: the run left memory in use");
                reserved.push(pool);
            }
        }
    }
    let none = bytes_of
        .iter()
        .find(|(s, _)| *s == Set::None)
        .expect("none")
        .1;
    assert_eq!(none, baseline);
    let third = reserved.len() / 3;
    let early = reserved[..third].iter().max().copied().unwrap_or(0);
    let late = reserved[reserved.len() - third..]
        .iter()
        .max()
        .copied()
        .unwrap_or(0);
    eprintln!("{swaps} swaps; in use per set {bytes_of:?}; pools reserved early max {early}, late max {late}");
    assert!(
        late <= early,
        "pool reservation crept up: {early} -> {late}"
    );
}

/// `sdxl-wgpu doctor --model tiny --lora A --lora B` as the library runs it (in this binary,
/// whose kernels for the tiny model in f32 are compiled once): the checkpoint, a finite
/// generation, each LoRA compatible, and load -> generate -> unload -> generate giving the
/// first image back bit for bit with the memory in use back to its value; every check passes.
#[test]
fn doctor_round_trips_the_fixture_loras() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lines = Vec::new();
    let mut report = Report::new(|c| {
        lines.push(format!("{:?} {}: {}", c.status, c.check, c.detail));
        Ok(())
    });
    let loras = [lora("style_kohya", 0.8), lora("detail_locon", 0.5)];
    doctor::model(
        Path::new(TINY),
        Some(gpu().clone()),
        Precision::F32,
        &loras,
        &mut report,
    )
    .expect("no observer error");
    let checks = std::mem::take(&mut report.checks);
    drop(report);
    let all = lines.join("\n");
    assert!(checks.iter().all(|c| c.status == Status::Pass), "{all}");
    let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
    for name in [
        "checkpoint",
        "tensors",
        "policy profile",
        "load",
        "generation",
        "memory release",
    ] {
        assert!(names.contains(&name), "{name} missing: {all}");
    }
    for spec in &loras {
        let name = format!("LoRA {}", spec.path.display());
        for part in ["", ": generate", ": generate after unloading", ": unload"] {
            let check = format!("{name}{part}");
            assert!(names.contains(&check.as_str()), "{check} missing: {all}");
        }
        let unload = checks
            .iter()
            .find(|c| c.check == format!("{name}: unload"))
            .expect("unload");
        assert!(
            unload.detail.contains("image after unloading equals"),
            "{all}"
        );
        assert!(!unload.detail.contains("changed nothing"), "{all}");
    }
}
