//! SDXL text conditioning on the tiny reference model against diffusers
//! (`tests/fixtures/text_reference.safetensors`, made by `tests/reference/make_text_fixtures.py`):
//! prompt_embeds, pooled_prompt_embeds and the negative pair for a short prompt with an empty and
//! a real negative, clip skip, a 150-token (two-chunk) prompt, A1111 weights and BREAK; plus the
//! weighting rules and the errors. f32 and f16 weights; runs on lavapipe in CI.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::text_encoder::{Conditioning, TextEncoders, TextError, TextOptions};
use sdxl_wgpu::tokenizer::parse_prompt;
use sdxl_wgpu::weights::WeightDtype;

mod common;
use common::{gpu, relative_error, values, TINY};

/// Largest |ours - diffusers| over the largest |diffusers|, per dtype of the weights.
/// Measured on lavapipe: f32 ≤ 6.3e-7, f16 (weights and compute; norms in f32) ≤ 1.8e-3.
const F32_TOLERANCE: f32 = 2e-6;
const F16_TOLERANCE: f32 = 5e-3;

fn models(dtype: WeightDtype) -> &'static TextEncoders {
    static F32: OnceLock<TextEncoders> = OnceLock::new();
    static F16: OnceLock<TextEncoders> = OnceLock::new();
    let cell = match dtype {
        WeightDtype::F32 => &F32,
        _ => &F16,
    };
    cell.get_or_init(|| {
        Checkpoint::open(TINY)
            .expect("fixture")
            .load_text_encoders(gpu(), dtype)
            .expect("loads")
    })
}

#[derive(serde::Deserialize)]
struct Case {
    prompt: String,
    negative: String,
    clip_skip: usize,
}

struct Reference {
    cases: BTreeMap<String, Case>,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let f = common::fixture("text_reference.safetensors");
        Reference {
            cases: serde_json::from_str(&f.cases).expect("cases"),
            tensors: f.tensors,
        }
    })
}

fn encode(
    dtype: WeightDtype,
    prompt: &str,
    negative: &str,
    clip_skip: usize,
) -> Result<Conditioning, TextError> {
    models(dtype).encode(
        &parse_prompt(prompt),
        &parse_prompt(negative),
        TextOptions { clip_skip },
    )
}

/// Compares one case's four tensors; returns the worst relative error.
fn compare_case(dtype: WeightDtype, name: &str) -> f32 {
    let r = reference();
    let case = &r.cases[name];
    let c = encode(dtype, &case.prompt, &case.negative, case.clip_skip).expect("encodes");
    let [neg_ctx, pos_ctx] = [0, 1].map(|i| values(c.context.clone().slice(i..i + 1)));
    let [neg_pool, pos_pool] = [0, 1].map(|i| values(c.pooled.clone().slice(i..i + 1)));
    let mut worst = 0f32;
    for (got, key) in [
        (pos_ctx, "prompt_embeds"),
        (neg_ctx, "negative_prompt_embeds"),
        (pos_pool, "pooled_prompt_embeds"),
        (neg_pool, "negative_pooled_prompt_embeds"),
    ] {
        let want = &r.tensors[&format!("{name}.{key}")];
        let err = relative_error(&got, want, &format!("{name}.{key} {dtype:?}"));
        if want.1.iter().all(|&v| v == 0.0) {
            assert!(
                got.1.iter().all(|&v| v == 0.0),
                "{name}.{key}: must be all zeros"
            );
        }
        eprintln!("{dtype:?} {name}.{key}: relative max error {err:.2e}");
        worst = worst.max(err);
    }
    worst
}

const CASES: [&str; 6] = [
    "short",
    "negative",
    "clip_skip_1",
    "long",
    "weighted",
    "break",
];

#[test]
fn f32_equals_diffusers() {
    for name in CASES {
        let err = compare_case(WeightDtype::F32, name);
        assert!(
            err <= F32_TOLERANCE,
            "{name}: f32 error {err:.2e} > {F32_TOLERANCE:.0e}"
        );
    }
}

#[test]
fn f16_is_close_to_diffusers() {
    for name in CASES {
        let err = compare_case(WeightDtype::F16, name);
        assert!(
            err <= F16_TOLERANCE,
            "{name}: f16 error {err:.2e} > {F16_TOLERANCE:.0e}"
        );
    }
}

#[test]
fn long_prompt_is_two_chunks_and_negative_is_padded() {
    let case = &reference().cases["long"];
    let c = encode(WeightDtype::F32, &case.prompt, &case.negative, 0).expect("encodes");
    assert_eq!(c.chunks, 2);
    assert_eq!(c.context.dims(), [2, 154, 48]);
    assert_eq!(c.pooled.dims(), [2, 24]);
}

#[test]
fn weight_one_is_exactly_the_plain_prompt() {
    let plain = encode(WeightDtype::F32, "a photo of a cat", "", 0).expect("encodes");
    let weighted = encode(WeightDtype::F32, "a photo of a (cat:1.0)", "", 0).expect("encodes");
    assert_eq!(values(plain.context).1, values(weighted.context).1);
    assert_eq!(values(plain.pooled).1, values(weighted.pooled).1);
}

/// Before mean restoration only the weighted tokens change: after it, every unweighted token is
/// the plain embedding times one factor c per encoder, and each weighted token 1.5 c.
#[test]
fn weight_scales_only_its_tokens_then_restores_the_mean() {
    let plain = values(
        encode(WeightDtype::F32, "a red cat", "", 0)
            .expect("encodes")
            .context
            .slice(1..2),
    );
    let weighted = values(
        encode(WeightDtype::F32, "a (red:1.5) cat", "", 0)
            .expect("encodes")
            .context
            .slice(1..2),
    );
    let (seq, width) = (plain.0[1], plain.0[2]);
    let red = 2; // [BOS, a, red, cat, EOS, ...]
    for (range, encoder) in [(0..16, "CLIP-L"), (16..width, "bigG")] {
        let ratio = |t: usize, ch: usize| weighted.1[t * width + ch] / plain.1[t * width + ch];
        let c = ratio(0, range.start);
        for t in 0..seq {
            let want = if t == red { 1.5 * c } else { c };
            for ch in range.clone() {
                if plain.1[t * width + ch].abs() < 1e-3 {
                    continue;
                }
                let got = ratio(t, ch);
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs(),
                    "{encoder} token {t} channel {ch}: ratio {got} want {want}"
                );
            }
        }
        assert!(
            (c - 1.0).abs() > 1e-6,
            "{encoder}: the mean restoration factor should not be 1"
        );
        let mean = |v: &[f32]| -> f64 {
            let mut sum = 0f64;
            for t in 0..seq {
                for ch in range.clone() {
                    sum += f64::from(v[t * width + ch]);
                }
            }
            sum
        };
        let (m0, m1) = (mean(&plain.1), mean(&weighted.1));
        assert!(
            (m0 - m1).abs() <= 1e-4 * m0.abs(),
            "{encoder}: mean {m1} != {m0}"
        );
    }
}

#[test]
fn pair_equals_each_prompt_alone() {
    let pair = encode(WeightDtype::F32, "1girl, solo", "lowres", 0).expect("encodes");
    let pos = encode(WeightDtype::F32, "1girl, solo", "", 0).expect("encodes");
    let err = relative_error(
        &values(pair.context.slice(1..2)),
        &values(pos.context.slice(1..2)),
        "batched vs alone",
    );
    assert!(err <= 1e-6, "batched vs alone: {err:.2e}");
}

#[test]
fn bad_requests_are_errors_and_change_nothing() {
    let before = values(
        encode(WeightDtype::F32, "1girl", "lowres", 0)
            .expect("encodes")
            .context,
    );
    let err = encode(WeightDtype::F32, "1girl", "lowres", 4).expect_err("4 layers: at most 3");
    assert!(
        matches!(
            err,
            TextError::ClipSkip {
                requested: 4,
                max: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("CLIP skip 4"), "{err}");
    let deep = format!("{}x{}", "(".repeat(2000), ")".repeat(2000));
    let err = encode(WeightDtype::F32, &deep, "", 0).expect_err("weight overflows");
    assert!(matches!(err, TextError::Weight { .. }), "{err}");
    let after = values(
        encode(WeightDtype::F32, "1girl", "lowres", 0)
            .expect("encodes")
            .context,
    );
    assert_eq!(before.1, after.1);
    assert!(encode(WeightDtype::F32, "1girl", "lowres", 3).is_ok());
}
