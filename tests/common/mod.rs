//! What the GPU tests share: one device per test process, the tiny model's path, reading f32
//! reference fixtures and device tensors.

#![allow(dead_code)] // each test file uses part of this

pub mod hostile;
pub mod pipeline_cases;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use burn::tensor::Tensor;
use sdxl_wgpu::device::{self, Backend, Gpu};
use sdxl_wgpu::weights::Dtype;

pub const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tiny-sdxl.safetensors"
);

/// The adapter `--backend auto` picks (lavapipe in CI), brought up once per test process.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let (gpu, _) = device::open(Backend::Auto)
            .expect("a wgpu adapter: install a GPU driver or mesa-vulkan-drivers (lavapipe)");
        gpu
    })
}

/// An f32 reference fixture: its `cases` metadata (JSON) and tensors (name -> shape, values).
pub struct Fixture {
    pub cases: String,
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Reads `tests/fixtures/{name}`, every tensor f32.
pub fn fixture(name: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("fixture");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let cases = meta.metadata().as_ref().expect("metadata")["cases"].clone();
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parses");
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let values = floats(t.data());
            (name, (t.shape().to_vec(), values))
        })
        .collect();
    Fixture { cases, tensors }
}

/// A device tensor's shape and values as f32.
pub fn values<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims().to_vec();
    let data = t.into_data().convert::<f32>();
    (dims, data.try_to_vec::<f32>().expect("f32"))
}

/// Max |got - want| / max |want| (the absolute error where `want` is all zeros); panics on a
/// shape mismatch or a non-finite value.
pub fn relative_error(
    got: &(Vec<usize>, Vec<f32>),
    want: &(Vec<usize>, Vec<f32>),
    what: &str,
) -> f32 {
    assert_eq!(got.0, want.0, "{what}: shape");
    assert!(
        got.1.iter().all(|v| v.is_finite()),
        "{what}: non-finite values"
    );
    let scale = want.1.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got
        .1
        .iter()
        .zip(&want.1)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    if scale == 0.0 {
        err
    } else {
        err / scale
    }
}

/// A tensor's shape and values, as [`values`] reads them.
pub type Values = (Vec<usize>, Vec<f32>);

/// Each output `(values, key)` of case `name` within `tolerance` of the fixture's tensor
/// `{name}.{key}` ([`relative_error`], printed).
pub fn assert_close(f: &Fixture, name: &str, outputs: Vec<(Values, &str)>, tolerance: f32) {
    for (got, key) in outputs {
        let err = relative_error(&got, &f.tensors[&format!("{name}.{key}")], key);
        eprintln!("{name}.{key}: relative max error {err:.2e}");
        assert!(err <= tolerance, "{name}.{key}: {err:.2e}");
    }
}

/// The smallest `generate` of the tiny model (64x64, 2 steps, no quality policy); add
/// `--output` and what the test varies.
pub const TINY_GENERATE: [&str; 14] = [
    "generate", "--model", TINY, "--prompt", "a fox", "--width", "64", "--height", "64", "--steps",
    "2", "--policy", "off", "--quiet",
];

/// The tiny model as a diffusers folder.
pub const TINY_FOLDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-sdxl");

/// Runs the `sdxl-wgpu` binary: exit code, stdout, stderr.
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    run_cli_env(args, &[])
}

/// [`run_cli`] with environment variables set for the run (a cache folder of its own, ...).
pub fn run_cli_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sdxl-wgpu"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Little-endian f32 values, through the library's one dtype decoder.
pub fn floats(bytes: &[u8]) -> Vec<f32> {
    Dtype::F32.to_f32(bytes).expect("a float dtype")
}

/// The largest difference, in 8-bit levels, between `png` and a `[1, 3, H, W]` VAE output in
/// [-1, 1] quantised the way images are written.
pub fn max_pixel_difference(png: &image::RgbImage, want: &[f32]) -> i32 {
    let (w, h) = (png.width() as usize, png.height() as usize);
    let mut worst = 0i32;
    for (x, y, p) in png.enumerate_pixels() {
        for ch in 0..3 {
            let v = want[(ch * h + y as usize) * w + x as usize];
            let expected = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as i32;
            worst = worst.max((i32::from(p[ch]) - expected).abs());
        }
    }
    worst
}

/// A FIFO named `name` in `dir` (coreutils' `mkfifo`): a path that blocks whoever opens it for
/// reading until a writer comes.
pub fn fifo(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(made.success(), "mkfifo {}", path.display());
    path
}

/// Copies the checkpoint `from` to `to` with empty marker tensors named `markers` added (the
/// `v_pred` / `ztsnr` keys v-prediction checkpoints carry), metadata kept.
pub fn with_markers(from: &str, to: &std::path::Path, markers: &[&str]) {
    use safetensors::tensor::TensorView;
    let bytes = std::fs::read(from).expect("checkpoint");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parses");
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let mut views: Vec<(String, TensorView)> = st.tensors();
    for &m in markers {
        views.push((
            m.to_string(),
            TensorView::new(safetensors::Dtype::F32, vec![0], &[]).expect("empty"),
        ));
    }
    safetensors::serialize_to_file(views, header.metadata().clone(), to).expect("written");
}
