//! The command line as users run it: `inspect` text and JSON on the tiny checkpoint, and
//! `devices` listing the adapter the tests run on.

mod common;
use common::{floats, max_pixel_difference, run_cli as run, TINY, TINY_FOLDER};

#[test]
fn inspect_prints_the_detected_architecture() {
    let (code, out, err) = run(&["inspect", TINY]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("single file (SGM/LDM keys)"), "{out}");
    assert!(out.contains("SDXL base-type, epsilon prediction"), "{out}");
    assert!(
        out.contains("levels 32/64/64, 2 resnets per level, transformer depth 0/1/2"),
        "{out}"
    );
    assert!(out.contains("width 32, 4 layers, 4 heads"), "{out}");
    assert!(out.contains("0 unused, 0 missing, 0 mismatched"), "{out}");
}

#[test]
fn inspect_json_parses_for_both_layouts() {
    for path in [TINY, TINY_FOLDER] {
        let (code, out, err) = run(&["inspect", "--json", path]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect --json is JSON");
        assert_eq!(
            v["config"]["unet"]["block_out_channels"],
            serde_json::json!([32, 64, 64])
        );
        assert_eq!(v["config"]["text_encoder_2"]["projection"], 24);
        assert_eq!(v["variant"]["prediction"], "Epsilon");
        assert_eq!(v["report"]["missing"].as_array().map(Vec::len), Some(0));
        assert_eq!(v["components"][0]["component"], "unet");
    }
}

#[test]
fn inspect_scan_reports_non_finite_tensors() {
    let (code, out, err) = run(&["inspect", "--scan", TINY]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("every float tensor is finite"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = std::fs::read(TINY).expect("tiny");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8")) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + header_len]).expect("json");
    let key = "conditioner.embedders.0.transformer.text_model.encoder.layers.3.mlp.fc2.weight";
    let start = header[key]["data_offsets"][0].as_u64().expect("offset") as usize + 8 + header_len;
    bytes[start..start + 2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    let path = dir.path().join("nan.safetensors");
    std::fs::write(&path, bytes).expect("write");
    let (code, out, err) = run(&["inspect", "--scan", path.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{key}: 1 NaN, 0 Inf")), "{out}");
}

#[test]
fn inspect_load_uploads_to_the_device() {
    let (code, out, err) = run(&["inspect", "--load", TINY]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("  load       "), "{out}");
}

#[test]
fn devices_lists_the_adapter() {
    let (code, out, err) = run(&["devices", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("devices --json is JSON");
    let first = &v.as_array().expect("a list")[0];
    assert!(first["max_buffer_size"].as_u64().is_some_and(|b| b > 0));
    let (code, out, err) = run(&["devices"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("--backend auto uses:"), "{out}");
}

#[test]
fn unavailable_backend_is_a_clear_error() {
    // No test machine runs Metal and DX12 at once: one of them is always unavailable.
    let backend = if cfg!(target_os = "macos") {
        "dx12"
    } else {
        "metal"
    };
    let (code, _, err) = run(&["inspect", "--load", "--backend", backend, TINY]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "--backend {backend}: no adapter on that API; found:"
        )),
        "{err}"
    );
}

#[test]
fn tokenize_shows_weights_chunks_and_lora_tags() {
    let (code, out, err) = run(&["tokenize", "a (red:1.5) cat BREAK wow! <lora:detail:0.6>"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("red</w>:1.500"), "{out}");
    assert!(out.contains("chunk 2 (2 tokens): wow</w> !</w>"), "{out}");
    assert!(
        out.contains("tokenizer_2 chunk 2 (2 tokens): wow</w> !"),
        "{out}"
    );
    assert!(
        out.contains(r#"lora "detail": text encoders 0.6, unet 0.6"#),
        "{out}"
    );
    let (code, out, err) = run(&["tokenize", "--json", "((x)) BREAK y"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["parts"][1], "BREAK");
    assert_eq!(v["chunks"].as_array().map(Vec::len), Some(2));
}

/// `encode --precision f32 --output` writes what diffusers' `encode_prompt` gives.
#[test]
fn encode_writes_diffusers_equal_embeddings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("embeds.safetensors");
    let (code, out, err) = run(&[
        "encode",
        TINY,
        "--prompt",
        "1girl, solo, long hair, masterpiece, best quality",
        "--negative",
        "lowres, bad anatomy, worst quality, blurry",
        "--precision",
        "f32",
        "--output",
        path.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("prompt_embeds                  [1, 77, 48]"),
        "{out}"
    );
    let ours = std::fs::read(&path).expect("written");
    let ours = safetensors::SafeTensors::deserialize(&ours).expect("safetensors");
    let reference = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/text_reference.safetensors"
    ))
    .expect("fixture");
    let reference = safetensors::SafeTensors::deserialize(&reference).expect("safetensors");
    for name in [
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
    ] {
        let got = ours.tensor(name).expect(name);
        let want = reference.tensor(&format!("negative.{name}")).expect(name);
        assert_eq!(got.shape(), want.shape(), "{name}");
        let (got, want) = (floats(got.data()), floats(want.data()));
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 2e-6 * scale,
            "{name}: max error {err} (scale {scale})"
        );
    }
}

#[test]
fn encode_rejects_a_clip_skip_beyond_the_layers() {
    let (code, _, err) = run(&["encode", TINY, "--prompt", "x", "--clip-skip", "7"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--clip-skip 7 is out of range"), "{err}");
}

/// `decode --unscaled` on diffusers' latents writes diffusers' image, to the rounding of a pixel.
#[test]
fn decode_writes_the_diffusers_image() {
    let reference = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/unet_vae_reference.safetensors"
    ))
    .expect("fixture");
    let reference = safetensors::SafeTensors::deserialize(&reference).expect("safetensors");
    let latents = reference.tensor("vae_decode.latents").expect("latents");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("latents.safetensors");
    safetensors::serialize_to_file([("latents", latents)], None, &input).expect("written");
    let output = dir.path().join("image.png");
    let (code, out, err) = run(&[
        "decode",
        TINY,
        "--latents",
        input.to_str().expect("utf-8"),
        "--unscaled",
        "--output",
        output.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("decoded 1 x 96x64"), "{out}");
    let png = image::open(&output).expect("a PNG").to_rgb8();
    assert_eq!(png.dimensions(), (96, 64));
    let worst = max_pixel_difference(
        &png,
        &floats(reference.tensor("vae_decode.image").expect("image").data()),
    );
    assert!(worst <= 1, "a pixel differs by {worst}");
}

#[test]
fn decode_rejects_latents_of_the_wrong_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("bad.safetensors");
    let bytes = vec![0u8; 3 * 8 * 8 * 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 3, 8, 8], &bytes)
            .expect("view");
    safetensors::serialize_to_file([("latents", view)], None, &input).expect("written");
    let output = dir.path().join("x.png");
    let (code, _, err) = run(&[
        "decode",
        TINY,
        "--latents",
        input.to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("latents have 3 channels, this VAE takes 4"),
        "{err}"
    );
    assert!(!output.exists());
}

/// A reader that stops early (`| head -c1`): the command ends with 0 and no panic.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let prompt = "a cat, ".repeat(400);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sdxl-wgpu"))
        .args(["tokenize", &prompt])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut first = [0u8; 1];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("one byte");
    // the pipe's read end is closed here
    let out = child.wait_with_output().expect("exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Inputs that are not what they claim end in a message and exit 2 before any work: a FIFO as
/// the model (opening it would block), latents larger than any request, a `--dump` that would
/// overwrite the model.
#[test]
fn hostile_paths_and_sizes_are_refused_up_front() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = common::fifo(dir.path(), "model.safetensors");
    let fifo = fifo.to_str().expect("utf-8");
    let (code, _, err) = run(&["inspect", fifo]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a regular file"), "{err}");

    let latents = dir.path().join("tall.safetensors");
    let zeros = vec![0u8; 4 * 4 * 1100 * 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 4, 1100, 8], &zeros)
            .expect("view");
    safetensors::serialize_to_file([("latents", view)], None, &latents).expect("written");
    let out = dir.path().join("out.png");
    let (code, _, err) = run(&[
        "decode",
        TINY,
        "--latents",
        latents.to_str().expect("utf-8"),
        "--output",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("latents are at most [64, 4, 1024, 1024]"),
        "{err}"
    );

    let model = dir.path().join("tiny.safetensors");
    std::fs::copy(TINY, &model).expect("copy");
    let before = std::fs::read(&model).expect("read");
    let model = model.to_str().expect("utf-8");
    let (code, _, err) = run(&[
        "generate", "--model", model, "--prompt", "x", "--dump", model, "--policy", "off",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("writing it would replace the input"), "{err}");
    assert_eq!(
        std::fs::read(model).expect("read"),
        before,
        "the model is untouched"
    );
}
