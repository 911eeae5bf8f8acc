//! LoRA files against the tiny model: every module of the reference script's kohya (both
//! spellings, LoCon), PEFT files finds its layer with the right shape; SD 1.5-shaped, corrupt,
//! mis-shaped, non-finite and empty files fail with a message naming the file and the cause;
//! a built set holds each LoRA's deltas with `weight * alpha / rank` folded in. And
//! `inspect LORA --model`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::FloatDType;
use sdxl_wgpu::checkpoint::{Checkpoint, Component};
use sdxl_wgpu::lora::{AdapterSet, LayerId, LoraError, LoraSpec, LoraTable};
use sdxl_wgpu::nn::LowRankDelta;
use sdxl_wgpu::pipeline::{Engine, Noise, Request};
use sdxl_wgpu::sampling::Sampler;
use sdxl_wgpu::weights::WeightDtype;

mod common;
use common::{assert_close, fixture, gpu, run_cli, values, TINY};

fn lora(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/lora/{name}.safetensors"))
}

fn spec(path: PathBuf, weight: f32) -> LoraSpec {
    LoraSpec {
        path,
        unet_weight: weight,
        text_encoder_weight: weight,
    }
}

fn table() -> LoraTable {
    LoraTable::new(&Checkpoint::open(TINY).expect("fixture").config)
}

#[test]
fn every_module_of_every_format_finds_its_layer() {
    let table = table();
    let expect: [(&str, &[(Component, usize)]); 3] = [
        (
            "style_kohya",
            &[
                (Component::Unet, 192),
                (Component::TextEncoder, 24),
                (Component::TextEncoder2, 24),
            ],
        ),
        ("detail_locon", &[(Component::Unet, 68)]),
        (
            "peft",
            &[
                (Component::Unet, 68),
                (Component::TextEncoder, 8),
                (Component::TextEncoder2, 8),
            ],
        ),
    ];
    for (name, counts) in expect {
        let report = AdapterSet::check(&spec(lora(name), 1.0), &table).expect(name);
        let want: BTreeMap<Component, usize> = counts.iter().copied().collect();
        assert_eq!(report.matched, want, "{name}");
        assert!(
            report.unmatched.is_empty(),
            "{name}: {:?}",
            report.unmatched
        );
        assert!(report.unrecognised.is_empty(), "{name}");
    }
}

/// Writes a safetensors file of f32 tensors.
fn write(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                    .expect("view");
            (name.to_string(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("written");
}

#[test]
fn bad_files_fail_naming_file_and_cause() {
    let table = table();
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |path: &Path| AdapterSet::check(&spec(path.to_path_buf(), 1.0), &table);

    let err = check(&lora("sd15")).expect_err("SD 1.5");
    assert!(matches!(err, LoraError::NoMatch { .. }), "{err}");
    assert!(err.to_string().contains("SD 1.x/2.x"), "{err}");

    let truncated = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(lora("style_kohya")).expect("fixture");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let err = check(&truncated).expect_err("truncated");
    assert!(matches!(err, LoraError::File(_)), "{err}");
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");

    let missing = dir.path().join("missing.safetensors");
    assert!(matches!(check(&missing), Err(LoraError::File(_))));

    let to_q = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q";
    // one layer in two spellings (LDM and diffusers names): refused, naming both
    let twice = dir.path().join("twice.safetensors");
    let diffusers_q = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q";
    let pair = |module: &str| {
        [
            (
                format!("{module}.lora_down.weight"),
                vec![4, 64],
                vec![0.0; 256],
            ),
            (
                format!("{module}.lora_up.weight"),
                vec![64, 4],
                vec![0.0; 256],
            ),
        ]
    };
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> =
        pair(to_q).into_iter().chain(pair(diffusers_q)).collect();
    let named: Vec<(&str, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.clone(), v.clone()))
        .collect();
    write(&twice, &named);
    let err = check(&twice).expect_err("one layer twice");
    assert!(matches!(err, LoraError::Collision { .. }), "{err}");
    assert!(err.to_string().contains(diffusers_q), "{err}");
    let wrong = dir.path().join("wrong_shape.safetensors");
    write(
        &wrong,
        &[
            (
                &format!("{to_q}.lora_down.weight"),
                vec![4, 65],
                vec![0.0; 260],
            ),
            (
                &format!("{to_q}.lora_up.weight"),
                vec![64, 4],
                vec![0.0; 256],
            ),
        ],
    );
    let err = check(&wrong).expect_err("shape");
    assert!(matches!(err, LoraError::Shape { .. }), "{err}");
    assert!(
        err.to_string().contains(to_q) && err.to_string().contains("[64, 64]"),
        "{err}"
    );

    let rank = dir.path().join("rank.safetensors");
    write(
        &rank,
        &[
            (
                &format!("{to_q}.lora_down.weight"),
                vec![4, 64],
                vec![0.0; 256],
            ),
            (
                &format!("{to_q}.lora_up.weight"),
                vec![64, 2],
                vec![0.0; 128],
            ),
        ],
    );
    assert!(matches!(check(&rank), Err(LoraError::Shape { .. })));

    let nan = dir.path().join("nan.safetensors");
    let mut down = vec![0.0; 256];
    down[7] = f32::NAN;
    write(
        &nan,
        &[
            (&format!("{to_q}.lora_down.weight"), vec![4, 64], down),
            (
                &format!("{to_q}.lora_up.weight"),
                vec![64, 4],
                vec![0.0; 256],
            ),
        ],
    );
    let err = check(&nan).expect_err("NaN");
    assert!(
        matches!(err, LoraError::Tensor { .. }) && err.to_string().contains("NaN"),
        "{err}"
    );

    let empty = dir.path().join("empty.safetensors");
    write(&empty, &[("something", vec![2], vec![1.0, 2.0])]);
    assert!(matches!(check(&empty), Err(LoraError::Empty { .. })));

    let err = AdapterSet::check(
        &LoraSpec {
            unet_weight: f32::NAN,
            ..spec(lora("style_kohya"), 1.0)
        },
        &table,
    );
    assert!(matches!(err, Err(LoraError::Weight { .. })));
    let built = AdapterSet::build(
        &[LoraSpec {
            unet_weight: f32::INFINITY,
            ..spec(lora("style_kohya"), 1.0)
        }],
        &table,
        &gpu().device,
        FloatDType::F32,
    );
    assert!(matches!(built, Err(LoraError::Weight { .. })));
    // past the stated bound: refused before the file is read
    let err = AdapterSet::check(&spec(lora("style_kohya"), 10.5), &table);
    assert!(
        matches!(err, Err(LoraError::Weight { .. }))
            && err.as_ref().unwrap_err().to_string().contains("-10 to 10"),
        "{err:?}"
    );
    // finite in the file, but past f16 once scaled: refused for an f16 model, fine in f32
    let loud = dir.path().join("loud.safetensors");
    write(
        &loud,
        &[
            (
                &format!("{to_q}.lora_down.weight"),
                vec![4, 64],
                vec![0.5; 256],
            ),
            (
                &format!("{to_q}.lora_up.weight"),
                vec![64, 4],
                vec![2e4; 256],
            ),
        ],
    );
    let build = |dtype| AdapterSet::build(&[spec(loud.clone(), 4.0)], &table, &gpu().device, dtype);
    let err = build(FloatDType::F16).expect_err("overflows f16");
    assert!(
        matches!(err, LoraError::Overflow { dtype: "f16", .. })
            && err.to_string().contains("80000"),
        "{err}"
    );
    assert!(build(FloatDType::F32).is_ok());

    // one good module and one unknown: built, the unknown one reported
    let partly = dir.path().join("partly.safetensors");
    write(
        &partly,
        &[
            (
                &format!("{to_q}.lora_down.weight"),
                vec![4, 64],
                vec![0.5; 256],
            ),
            (
                &format!("{to_q}.lora_up.weight"),
                vec![64, 4],
                vec![0.5; 256],
            ),
            (
                "lora_unet_nowhere.lora_down.weight",
                vec![4, 64],
                vec![0.0; 256],
            ),
            (
                "lora_unet_nowhere.lora_up.weight",
                vec![64, 4],
                vec![0.0; 256],
            ),
            ("lora_unet_x.hada_w1_a", vec![2], vec![0.0; 2]),
        ],
    );
    let report = check(&partly).expect("partly matches");
    assert_eq!(report.unmatched, ["lora_unet_nowhere"]);
    assert_eq!(report.unrecognised, ["lora_unet_x.hada_w1_a"]);
    // inspect says which component the unmatched module belongs to
    let (code, out, err) = run_cli(&["inspect", partly.to_str().expect("utf-8"), "--model", TINY]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("2 modules (0 conv, 1 match no layer)"),
        "{out}"
    );
    assert!(
        out.contains("ignored: 1 (UNet 1; e.g. `lora_unet_nowhere`)"),
        "{out}"
    );
}

#[test]
fn a_built_set_holds_scaled_deltas_per_layer() {
    let table = table();
    let specs = [
        spec(lora("style_kohya"), 0.8),
        spec(lora("detail_locon"), 0.5),
    ];
    let (set, report) =
        AdapterSet::build(&specs, &table, &gpu().device, FloatDType::F32).expect("builds");
    assert_eq!(report.files.len(), 2);
    // style adapts 240 layers, detail 68 of which 34 self-attention q/v layers style adapts too
    assert_eq!(set.len(), 240 + 68 - 34);
    let to_q = LayerId {
        component: Component::Unet,
        path: "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q".into(),
    };
    // both LoRAs on this layer joined into one delta of rank 4 + detail's rank
    let deltas = set.deltas(&to_q);
    assert_eq!(deltas.len(), 1);
    let file = std::fs::read(lora("style_kohya")).expect("fixture");
    let st = safetensors::SafeTensors::deserialize(&file).expect("safetensors");
    let f16s = |name: &str, scale: f32| -> Vec<f32> {
        let t = st.tensor(name).expect(name);
        let v = t.data().chunks_exact(2);
        v.map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32() * scale)
            .collect()
    };
    let module = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q";
    // style: f16 up x 0.8 x alpha 2 / rank 4, in the first 4 columns of each row
    let style_up = f16s(&format!("{module}.lora_up.weight"), 0.8 * 2.0 / 4.0);
    let style_down = f16s(&format!("{module}.lora_down.weight"), 1.0);
    match &deltas[0] {
        LowRankDelta::Linear { down, up } => {
            let [rank, inputs] = down.dims();
            assert!(rank > 4 && inputs == 64, "{:?}", down.dims());
            assert_eq!(up.dims(), [64, rank]);
            let (up, down) = (values(up.clone()).1, values(down.clone()).1);
            let firsts: Vec<f32> = up
                .chunks_exact(rank)
                .flat_map(|row| row[..4].to_vec())
                .collect();
            assert_eq!(firsts, style_up);
            assert_eq!(down[..4 * 64], style_down[..]);
        }
        other => panic!("a linear delta, got {other:?}"),
    }
    let conv1 = LayerId {
        component: Component::Unet,
        path: "down_blocks.0.resnets.0.conv1".into(),
    };
    match set.deltas(&conv1) {
        [LowRankDelta::Conv { down, up }] => {
            assert_eq!(down.dims(), [2, 32, 3, 3]);
            assert_eq!(up.dims(), [32, 2, 1, 1]);
        }
        other => panic!("one conv delta, got {other:?}"),
    }
    assert!(AdapterSet::none().is_empty());

    // a part at weight 0 is checked but never uploaded: no per-step work for it
    let text_only = LoraSpec {
        path: lora("style_kohya"),
        unet_weight: 0.0,
        text_encoder_weight: 0.8,
    };
    let (set, report) =
        AdapterSet::build(&[text_only], &table, &gpu().device, FloatDType::F32).expect("builds");
    let matched = &report.files[0].matched;
    let text: usize = matched
        .iter()
        .filter(|(c, _)| **c != Component::Unet)
        .map(|(_, n)| n)
        .sum();
    assert!(matched[&Component::Unet] > 0 && text > 0, "{matched:?}");
    assert_eq!(set.len(), text);
    assert!(set.deltas(&to_q).is_empty());
    let (set, _) = AdapterSet::build(
        &[spec(lora("style_kohya"), 0.0)],
        &table,
        &gpu().device,
        FloatDType::F32,
    )
    .expect("builds");
    assert!(set.is_empty());
    assert_eq!(set.specs().len(), 1, "still the set asked for");
}

#[test]
fn inspect_reports_format_groups_and_the_verdict() {
    let (code, out, err) = run_cli(&[
        "inspect",
        lora("detail_locon").to_str().expect("utf-8"),
        "--model",
        TINY,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("format: Kohya (68 modules)"), "{out}");
    assert!(
        out.contains("68 modules (34 conv, 0 match no layer), rank {2}"),
        "{out}"
    );
    assert!(out.contains("compatible: adapts 68 UNet layers"), "{out}");
    assert!(
        out.contains("ss_base_model_version: sdxl_base_v1-0"),
        "{out}"
    );

    let (code, out, _) = run_cli(&["inspect", "--json", lora("peft").to_str().expect("utf-8")]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["formats"][0], "peft");
    assert_eq!(v["groups"]["UNet"]["modules"], 68);

    let (code, _, err) = run_cli(&[
        "inspect",
        lora("sd15").to_str().expect("utf-8"),
        "--model",
        TINY,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("incompatible") && err.contains("SD 1.x/2.x"),
        "{err}"
    );
}

#[derive(serde::Deserialize)]
struct LoraRequestFixture {
    prompt: String,
    negative: String,
    width: usize,
    height: usize,
    steps: usize,
    cfg: f32,
}

/// Measured on lavapipe (max |error| / max |reference|): final latents ≤ 4.0e-6, image ≤ 5.4e-6.
const TOLERANCE: f32 = 2e-5;

/// diffusers' `load_lora_weights` + `set_adapters(names, weights)` runs
/// (`tests/fixtures/lora_reference.safetensors`): no LoRA, the kohya style LoRA at 0.8 (UNet and
/// both text encoders), style 0.8 + LoCon 0.5, the UNet-only LoCon alone, and the PEFT file at
/// 0.7, in one engine that swaps between them (and back to none at the end).
#[test]
fn generation_with_loras_equals_diffusers() {
    let f = fixture("lora_reference.safetensors");
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lora_reference.safetensors"
    ))
    .expect("fixture");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let meta = meta.metadata().as_ref().expect("metadata");
    let r: LoraRequestFixture = serde_json::from_str(&meta["request"]).expect("request");
    let cases: BTreeMap<String, Vec<(String, f32)>> =
        serde_json::from_str(&f.cases).expect("cases");
    let (noise_shape, noise) = f.tensors["noise"].clone();
    let request = Request {
        prompt: r.prompt.into(),
        negative: r.negative.into(),
        width: r.width,
        height: r.height,
        steps: r.steps,
        cfg: r.cfg,
        sampler: Sampler::Euler,
        init_noise: Some(Noise {
            shape: [
                noise_shape[0],
                noise_shape[1],
                noise_shape[2],
                noise_shape[3],
            ],
            values: noise,
        }),
        ..Request::default()
    };
    let checkpoint = Checkpoint::open(TINY).expect("fixture");
    let engine = Engine::load(gpu().clone(), checkpoint, WeightDtype::F32).expect("loads");
    let mut order: Vec<&String> = cases.keys().collect();
    order.push(order[0]); // back to the first set after the others
    for name in order {
        let specs: Vec<LoraSpec> = cases[name]
            .iter()
            .map(|(file, weight)| spec(lora(file), *weight))
            .collect();
        let request = Request {
            loras: specs,
            ..request.clone()
        };
        let out = engine.generate(&request, &mut |_| {}).expect("generates");
        assert_close(
            &f,
            name,
            vec![
                (values(out.final_latents), "final_latents"),
                (values(out.images), "image"),
            ],
            TOLERANCE,
        )
    }
}
