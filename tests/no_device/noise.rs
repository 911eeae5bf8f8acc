//! The CPU noise generator against `torch.randn` with a seeded CPU generator
//! (`tests/fixtures/torch_randn.json`, made by `tests/reference/make_noise_fixtures.py`):
//! values of draws of every size class and the generator state carried between draws.

use sdxl_wgpu::sampling::TorchRng;

#[derive(serde::Deserialize)]
struct Draw {
    n: usize,
    sum: f64,
    values: Option<Vec<f32>>,
    head: Option<Vec<f32>>,
    tail: Option<Vec<f32>>,
}

#[derive(serde::Deserialize)]
struct Case {
    seed: u64,
    draws: Vec<Draw>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

/// Values equal torch's to a few f32 ulps (the libm's ln/cos/sin may round differently).
fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 2e-6 * w.abs().max(1.0),
            "{what}[{i}]: {g} vs torch {w}"
        );
    }
}

#[test]
fn randn_equals_torch_cpu_generator() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/torch_randn.json"
    ))
    .expect("fixture");
    let fixture: Fixture = serde_json::from_str(&text).expect("json");
    for case in &fixture.cases {
        let mut rng = TorchRng::new(case.seed);
        for (k, draw) in case.draws.iter().enumerate() {
            let what = format!("seed {} draw {k} (n = {})", case.seed, draw.n);
            let got = rng.randn(draw.n);
            assert_eq!(got.len(), draw.n);
            if let Some(values) = &draw.values {
                close(&got, values, &what);
            }
            if let (Some(head), Some(tail)) = (&draw.head, &draw.tail) {
                close(&got[..head.len()], head, &what);
                close(&got[draw.n - tail.len()..], tail, &what);
            }
            let sum: f64 = got.iter().map(|&v| f64::from(v)).sum();
            assert!(
                (sum - draw.sum).abs() <= 1e-3 * (draw.n as f64).sqrt(),
                "{what}: sum {sum} vs {}",
                draw.sum
            );
        }
    }
}
