//! Every way a user's file can be wrong gives its typed error with a message naming the file and
//! the cause; none panics, and a good file opens normally afterwards. No GPU needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype as StDtype;
use sdxl_wgpu::checkpoint::{Checkpoint, CheckpointError};
use sdxl_wgpu::weights::WeightError;

use crate::common::{run_cli, TINY, TINY_FOLDER};

/// A stored tensor: dtype, shape, bytes.
type Stored = (StDtype, Vec<usize>, Vec<u8>);

fn tiny_tensors() -> Vec<(String, Stored)> {
    let bytes = std::fs::read(TINY).expect("tiny fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("tiny fixture parses");
    let mut out: Vec<(String, Stored)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| (name, (t.dtype(), t.shape().to_vec(), t.data().to_vec())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn write(path: &Path, tensors: &[(String, Stored)]) {
    // The tiny model's heads are 8 wide, as its metadata says.
    write_with_head_dim(path, tensors, "8");
}

fn write_with_head_dim(path: &Path, tensors: &[(String, Stored)], head_dim: &str) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).expect("view")))
        .collect();
    let metadata = HashMap::from([("sdxl_wgpu.head_dim".to_string(), head_dim.to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).expect("write");
}

/// A file whose 8-byte header length, header text and data we write by hand.
fn raw(dir: &Path, header: &str, data: &[u8]) -> PathBuf {
    let path = dir.join("raw.safetensors");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn f16(shape: &[usize]) -> Stored {
    let n: usize = shape.iter().product();
    (StDtype::F16, shape.to_vec(), vec![0; 2 * n])
}

fn open_err(path: &Path) -> CheckpointError {
    match Checkpoint::open(path) {
        Ok(_) => panic!("{} opened, expected an error", path.display()),
        Err(e) => e,
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Keeps the tiny checkpoint's tensors that `keep` accepts, renaming or changing them by `edit`.
fn tiny_variant(
    dir: &Path,
    keep: impl Fn(&str) -> bool,
    edit: impl Fn(&str, Stored) -> Stored,
) -> PathBuf {
    let tensors: Vec<(String, Stored)> = tiny_tensors()
        .into_iter()
        .filter(|(n, _)| keep(n))
        .map(|(n, t)| {
            let t = edit(&n, t);
            (n, t)
        })
        .collect();
    let path = dir.join("variant.safetensors");
    write(&path, &tensors);
    path
}

#[test]
fn missing_path() {
    let e = open_err(Path::new("/no/such/model.safetensors"));
    assert!(matches!(e, CheckpointError::NotFound { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("/no/such/model.safetensors: no such file"),
        "{e}"
    );
}

#[test]
fn directory_without_model_index() {
    let dir = tmp();
    let e = open_err(dir.path());
    assert!(
        matches!(e, CheckpointError::NotADiffusersFolder { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("no model_index.json"), "{e}");
}

/// A diffusers folder whose `unet/` holds only the file `name`.
fn folder_with_unet_file(name: &str, contents: &[u8]) -> tempfile::TempDir {
    let dir = tmp();
    let index = Path::new(TINY_FOLDER).join("model_index.json");
    std::fs::copy(index, dir.path().join("model_index.json")).expect("copy");
    std::fs::create_dir(dir.path().join("unet")).expect("mkdir");
    std::fs::write(dir.path().join("unet").join(name), contents).expect("write");
    dir
}

#[test]
fn folder_with_only_bin_weights() {
    let dir = folder_with_unet_file("diffusion_pytorch_model.bin", b"pickle");
    let e = open_err(dir.path());
    assert!(matches!(e, CheckpointError::BadFolder { .. }), "{e:?}");
    assert!(
        e.to_string().contains("only .safetensors weights are read"),
        "{e}"
    );
}

#[test]
fn folder_with_sharded_weights() {
    let index = "diffusion_pytorch_model.safetensors.index.json";
    let dir = folder_with_unet_file(index, b"{\"weight_map\": {}}");
    let e = open_err(dir.path());
    assert!(matches!(e, CheckpointError::BadFolder { .. }), "{e:?}");
    assert!(e.to_string().contains("sharded weights"), "{e}");
}

#[test]
fn file_too_short_for_a_header() {
    let dir = tmp();
    let path = dir.path().join("short.safetensors");
    std::fs::write(&path, b"abc").expect("write");
    let e = open_err(&path);
    assert!(
        matches!(
            e,
            CheckpointError::Weights(WeightError::TooShort { len: 3, .. })
        ),
        "{e:?}"
    );
}

#[test]
fn truncated_file() {
    let dir = tmp();
    let path = dir.path().join("half.safetensors");
    let bytes = std::fs::read(TINY).expect("tiny");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
    let e = open_err(&path);
    assert!(
        matches!(e, CheckpointError::Weights(WeightError::Truncated { .. })),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("half.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn header_length_larger_than_the_file() {
    let dir = tmp();
    let path = dir.path().join("huge-header.safetensors");
    let mut bytes = 1_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, bytes).expect("write");
    let e = open_err(&path);
    assert!(
        matches!(
            e,
            CheckpointError::Weights(WeightError::HeaderTooLong {
                header_len: 1_000_000,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("larger than the file"), "{e}");
}

#[test]
fn invalid_header_json() {
    let dir = tmp();
    let e = open_err(&raw(dir.path(), "{\"a\": [1, 2", &[]));
    assert!(
        matches!(
            e,
            CheckpointError::Weights(WeightError::InvalidHeader { .. })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("not valid safetensors JSON"), "{e}");
}

#[test]
fn tensor_offsets_outside_the_data() {
    let dir = tmp();
    let header = r#"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#;
    let e = open_err(&raw(dir.path(), header, &[0; 8]));
    assert!(
        matches!(
            e,
            CheckpointError::Weights(WeightError::Truncated {
                end: 16,
                data_len: 8,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("tensor `w` ends at byte 16"), "{e}");
}

#[test]
fn tensor_offsets_running_backwards() {
    let dir = tmp();
    let header = r#"{"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}"#;
    let e = open_err(&raw(dir.path(), header, &[0; 8]));
    assert!(
        matches!(
            e,
            CheckpointError::Weights(WeightError::InvalidOffsets { .. })
        ),
        "{e:?}"
    );
}

#[test]
fn overlapping_tensors() {
    let dir = tmp();
    let header = r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                     "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#;
    let e = open_err(&raw(dir.path(), header, &[0; 12]));
    assert!(
        matches!(e, CheckpointError::Weights(WeightError::Overlap { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("`a` and `b` overlap"), "{e}");
}

#[test]
fn shape_times_dtype_not_equal_to_byte_length() {
    let dir = tmp();
    let header = r#"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#;
    let e = open_err(&raw(dir.path(), header, &[0; 8]));
    assert!(
        matches!(
            e,
            CheckpointError::Weights(WeightError::SizeMismatch {
                expected: 12,
                actual: 8,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("needs 12 bytes"), "{e}");
}

#[test]
fn unknown_dtype() {
    let dir = tmp();
    let header = r#"{"w": {"dtype": "F12", "shape": [1], "data_offsets": [0, 2]}}"#;
    let e = open_err(&raw(dir.path(), header, &[0; 2]));
    assert!(
        matches!(
            e,
            CheckpointError::Weights(WeightError::UnknownDtype { .. })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("unknown dtype `F12`"), "{e}");
}

#[test]
fn lora_given_as_checkpoint() {
    let dir = tmp();
    let path = dir.path().join("style-lora.safetensors");
    let k = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q";
    write(
        &path,
        &[
            (format!("{k}.lora_down.weight"), f16(&[8, 640])),
            (format!("{k}.lora_up.weight"), f16(&[640, 8])),
        ],
    );
    let e = open_err(&path);
    assert!(
        matches!(e, CheckpointError::NotACheckpoint { kind: "a LoRA", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("--lora"), "{e}");
}

#[test]
fn vae_only_file_given_as_checkpoint() {
    let dir = tmp();
    let path = tiny_variant(
        dir.path(),
        |n| n.starts_with("first_stage_model."),
        |_, t| t,
    );
    let e = open_err(&path);
    assert!(
        matches!(
            e,
            CheckpointError::NotACheckpoint {
                kind: "a VAE-only file",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn unet_only_file_given_as_checkpoint() {
    let dir = tmp();
    let path = tiny_variant(
        dir.path(),
        |n| n.starts_with("model.diffusion_model."),
        |_, t| t,
    );
    let e = open_err(&path);
    assert!(
        matches!(
            e,
            CheckpointError::NotACheckpoint {
                kind: "a UNet-only file",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn sd15_checkpoint_is_refused() {
    let dir = tmp();
    let path = dir.path().join("sd15.safetensors");
    write(
        &path,
        &[
            (
                "model.diffusion_model.input_blocks.0.0.weight".into(),
                f16(&[320, 4, 3, 3]),
            ),
            (
                "cond_stage_model.transformer.text_model.final_layer_norm.weight".into(),
                f16(&[768]),
            ),
            (
                "first_stage_model.decoder.conv_in.weight".into(),
                f16(&[512, 4, 3, 3]),
            ),
        ],
    );
    let e = open_err(&path);
    assert!(matches!(e, CheckpointError::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("Stable Diffusion 1.x"), "{e}");
}

#[test]
fn sd2_checkpoint_is_refused() {
    let dir = tmp();
    let path = dir.path().join("sd21.safetensors");
    write(
        &path,
        &[
            (
                "model.diffusion_model.input_blocks.0.0.weight".into(),
                f16(&[320, 4, 3, 3]),
            ),
            (
                "cond_stage_model.model.ln_final.weight".into(),
                f16(&[1024]),
            ),
        ],
    );
    let e = open_err(&path);
    assert!(e.to_string().contains("Stable Diffusion 2.x"), "{e}");
}

#[test]
fn sdxl_refiner_is_refused() {
    let dir = tmp();
    let path = dir.path().join("refiner.safetensors");
    // The refiner's only text encoder is bigG, at index 0.
    let renamed: Vec<(String, Stored)> = tiny_tensors()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("conditioner.embedders.0."))
        .map(|(n, t)| {
            (
                n.replace("conditioner.embedders.1.", "conditioner.embedders.0."),
                t,
            )
        })
        .collect();
    write(&path, &renamed);
    let e = open_err(&path);
    assert!(e.to_string().contains("the SDXL refiner"), "{e}");
}

#[test]
fn inpainting_model_is_refused() {
    let dir = tmp();
    let path = tiny_variant(
        dir.path(),
        |_| true,
        |n, t| {
            if n == "model.diffusion_model.input_blocks.0.0.weight" {
                f16(&[t.1[0], 9, 3, 3])
            } else {
                t
            }
        },
    );
    let e = open_err(&path);
    assert!(matches!(e, CheckpointError::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("9 input channels"), "{e}");
}

#[test]
fn unknown_file_is_refused() {
    let dir = tmp();
    let path = dir.path().join("resnet50.safetensors");
    write(&path, &[("fc.weight".into(), f16(&[10, 20]))]);
    let e = open_err(&path);
    assert!(matches!(e, CheckpointError::Unknown { .. }), "{e:?}");
}

#[test]
fn missing_tensor_is_an_error_naming_it() {
    let dir = tmp();
    let gone = "model.diffusion_model.middle_block.1.proj_out.weight";
    let path = tiny_variant(dir.path(), |n| n != gone, |_, t| t);
    let ckpt = Checkpoint::open(&path).expect("opens: the architecture is still detectable");
    assert_eq!(ckpt.report().missing.len(), 1);
    assert_eq!(
        ckpt.report().missing[0].canonical,
        "mid_block.attentions.0.proj_out.weight"
    );
    let e = ckpt.ensure_complete().expect_err("incomplete");
    assert!(
        matches!(e, CheckpointError::MissingTensors { count: 1, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains(gone), "{e}");
}

#[test]
fn wrong_shape_is_an_error_naming_it() {
    let dir = tmp();
    let bad = "model.diffusion_model.output_blocks.3.1.transformer_blocks.0.ff.net.2.weight";
    let path = tiny_variant(
        dir.path(),
        |_| true,
        |n, t| {
            if n == bad {
                f16(&[t.1[0], t.1[1] / 2])
            } else {
                t
            }
        },
    );
    let ckpt = Checkpoint::open(&path).expect("opens");
    let e = ckpt.ensure_complete().expect_err("mismatched");
    assert!(
        matches!(e, CheckpointError::ShapeMismatch { count: 1, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains(bad), "{e}");
}

#[test]
fn unexplained_tensors_are_reported_as_unused() {
    let dir = tmp();
    let mut tensors = tiny_tensors();
    tensors.push(("conditioner.embedders.2.extra.weight".into(), f16(&[3])));
    tensors.push(("model_ema.decay".into(), (StDtype::F32, vec![], vec![0; 4])));
    let path = dir.path().join("extra.safetensors");
    write(&path, &tensors);
    let ckpt = Checkpoint::open(&path).expect("opens");
    assert_eq!(
        ckpt.report().unused,
        ["conditioner.embedders.2.extra.weight"]
    );
    assert!(ckpt
        .report()
        .ignored
        .iter()
        .any(|t| t.key == "model_ema.decay"));
    ckpt.ensure_complete()
        .expect("unused tensors are reported, not fatal");
}

/// The architecture error of a file, with its message.
fn architecture_err(path: &Path) -> String {
    let e = open_err(path);
    assert!(matches!(e, CheckpointError::Architecture { .. }), "{e:?}");
    e.to_string()
}

/// The tiny checkpoint with one tensor's shape replaced (zero-filled, f16).
fn reshaped(dir: &Path, name: &str, shape: &[usize]) -> PathBuf {
    tiny_variant(dir, |_| true, |n, t| if n == name { f16(shape) } else { t })
}

#[test]
fn zero_head_width_is_refused_before_detection_divides_by_it() {
    let dir = tmp();
    let path = dir.path().join("zero-heads.safetensors");
    write_with_head_dim(&path, &tiny_tensors(), "0");
    let msg = architecture_err(&path);
    assert!(msg.contains("attention head width is 0"), "{msg}");
}

#[test]
fn a_unet_without_down_levels_is_an_error_not_an_index_out_of_bounds() {
    let dir = tmp();
    // the downsamplers stay, so the resnet count is found; level 0's first resnet is gone
    let path = tiny_variant(
        dir.path(),
        |n| !n.starts_with("model.diffusion_model.input_blocks.1.0."),
        |_, t| t,
    );
    let msg = architecture_err(&path);
    assert!(
        msg.contains(
            "tensor `model.diffusion_model.input_blocks.1.0.in_layers.2.weight` is missing"
        ),
        "{msg}"
    );
}

#[test]
fn widths_the_norm_groups_do_not_divide_are_refused() {
    let dir = tmp();
    let name = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight";
    let msg = architecture_err(&reshaped(dir.path(), name, &[40, 32, 3, 3]));
    assert!(
        msg.contains("width 40 does not split into the 32 normalisation groups"),
        "{msg}"
    );
}

#[test]
fn text_tables_smaller_than_the_tokenizer_are_refused() {
    let dir = tmp();
    let te = "conditioner.embedders.0.transformer.text_model.embeddings.";
    let positions = format!("{te}position_embedding.weight");
    let msg = architecture_err(&reshaped(dir.path(), &positions, &[76, 16]));
    assert!(
        msg.contains("76 position embeddings, fewer than the 77"),
        "{msg}"
    );
    let vocabulary = format!("{te}token_embedding.weight");
    let msg = architecture_err(&reshaped(dir.path(), &vocabulary, &[1000, 16]));
    assert!(
        msg.contains("vocabulary of 1000 tokens, fewer than CLIP's 49408"),
        "{msg}"
    );
}

#[test]
fn a_unet_giving_other_than_four_latent_channels_is_refused() {
    let dir = tmp();
    let path = tiny_variant(
        dir.path(),
        |_| true,
        |n, t| match n {
            "model.diffusion_model.out.2.weight" => f16(&[8, 32, 3, 3]),
            "model.diffusion_model.out.2.bias" => f16(&[8]),
            _ => t,
        },
    );
    let msg = architecture_err(&path);
    assert!(msg.contains("gives 8 latent channels"), "{msg}");
}

#[test]
fn layer_counts_past_the_bounds_are_refused_before_any_table() {
    let dir = tmp();
    let mut tensors = tiny_tensors();
    let layer = "conditioner.embedders.0.transformer.text_model.encoder.layers.";
    let first: Vec<(String, Stored)> = tensors
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("{layer}0.")))
        .cloned()
        .collect();
    for l in 4..80 {
        for (n, t) in &first {
            tensors.push((
                n.replacen(&format!("{layer}0."), &format!("{layer}{l}."), 1),
                t.clone(),
            ));
        }
    }
    let path = dir.path().join("deep.safetensors");
    write(&path, &tensors);
    let msg = architecture_err(&path);
    assert!(msg.contains("80 layers, more than the 64"), "{msg}");
}

#[test]
fn a_name_given_twice_is_refused() {
    let dir = tmp();
    let header = r#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                     "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#;
    let e = open_err(&raw(dir.path(), header, &[0; 8]));
    assert!(
        matches!(
            e,
            CheckpointError::Weights(WeightError::DuplicateName { .. })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("names `w` twice"), "{e}");
}

#[test]
fn a_header_over_100_mb_is_refused_without_reading_it() {
    let dir = tmp();
    let path = dir.path().join("big-header.safetensors");
    let mut bytes = 200_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, bytes).expect("write");
    let e = open_err(&path);
    assert!(
        matches!(
            e,
            CheckpointError::Weights(WeightError::HeaderTooLarge { .. })
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("over the format's 100000000-byte limit"),
        "{e}"
    );
}

#[test]
fn a_good_file_opens_after_failures() {
    let dir = tmp();
    let _ = open_err(&raw(dir.path(), "{", &[]));
    let _ = open_err(Path::new("/no/such/file"));
    let ckpt = Checkpoint::open(TINY).expect("tiny opens");
    assert!(ckpt.report().is_clean());
}

#[test]
fn cli_exits_2_with_the_message_and_no_panic() {
    let dir = tmp();
    let path = dir.path().join("half.safetensors");
    let bytes = std::fs::read(TINY).expect("tiny");
    std::fs::write(&path, &bytes[..bytes.len() / 3]).expect("write");
    let (code, _, stderr) = run_cli(&["inspect", path.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("truncated") && stderr.contains("half.safetensors"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
