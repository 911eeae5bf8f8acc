//! PyTorch's `F.interpolate` on `[B, C, H, W]` tensors (`align_corners=False`, output size
//! given), for the latent upscalers of A1111's hires fix, which call it with each of these modes.
//!
//! Each mode is a separable linear map, so it runs as two matrix products with weight matrices
//! built on the host, once per shape, with PyTorch's own index and weight rules in f32 (the
//! CPU kernels of `aten/src/ATen/native/UpSample.h` and `cpu/UpSampleKernel.cpp`,
//! <https://github.com/pytorch/pytorch/blob/v2.8.0/aten/src/ATen/native/UpSample.h>): one
//! implementation for every mode, antialiased or not, where burn's `interpolate` has neither
//! the antialiased modes nor `nearest-exact`.

use burn::tensor::{Tensor, TensorData};

/// The resampling rule (`mode=` of `F.interpolate`), and whether `antialias=True`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// `nearest`: source index `floor(i * in / out)` (in f32).
    Nearest,
    /// `nearest-exact`: source index `floor((i + 0.5) * in / out)` (in f32).
    NearestExact,
    /// `bilinear`, with `antialias` or not.
    Bilinear { antialias: bool },
    /// `bicubic` (Keys' cubic, A = -0.75; antialiased: A = -0.5 over the widened support).
    Bicubic { antialias: bool },
}

impl Interpolation {
    /// The mode `F.interpolate(mode=mode, antialias=antialias)` runs (PyTorch's names), if this
    /// module has it.
    pub fn from_torch(mode: &str, antialias: bool) -> Option<Self> {
        match (mode, antialias) {
            ("nearest", false) => Some(Self::Nearest),
            ("nearest-exact", false) => Some(Self::NearestExact),
            ("bilinear", antialias) => Some(Self::Bilinear { antialias }),
            ("bicubic", antialias) => Some(Self::Bicubic { antialias }),
            _ => None,
        }
    }
}

/// `x` `[B, C, H, W]` resampled to `[B, C, height, width]`.
pub fn interpolate(x: Tensor<4>, height: usize, width: usize, mode: Interpolation) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let device = x.device();
    let matrix = |input: usize, output: usize| {
        // [input, output]: the transposed weights, so rows of x times it resample them
        let weights = transpose(&weights(mode, input, output), output, input);
        Tensor::<2>::from_data(TensorData::new(weights, [input, output]), &device)
    };
    let x = x.reshape([b * c * h, w]).matmul(matrix(w, width)); // [B*C*H, width]
    let x = x.reshape([b * c, h, width]).swap_dims(1, 2); // [B*C, width, H]
    let x = x.reshape([b * c * width, h]).matmul(matrix(h, height)); // [B*C*width, height]
    x.reshape([b * c, width, height])
        .swap_dims(1, 2) // [B*C, height, width]
        .reshape([b, c, height, width])
}

/// The `[output, input]` matrix (row-major) whose rows are the weights of each output index
/// over the input indices along one axis.
pub fn weights(mode: Interpolation, input: usize, output: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; output * input];
    let scale = input as f32 / output as f32; // `area_pixel_compute_scale`, no scale_factor
    for i in 0..output {
        let row = &mut m[i * input..(i + 1) * input];
        match mode {
            Interpolation::Nearest => row[nearest(i, input, output, scale, 0.0)] = 1.0,
            Interpolation::NearestExact => row[nearest(i, input, output, scale, 0.5)] = 1.0,
            Interpolation::Bilinear { antialias: false } => bilinear(row, i, scale),
            Interpolation::Bicubic { antialias: false } => bicubic(row, i, scale),
            Interpolation::Bilinear { antialias: true } => antialiased(row, i, scale, 2, triangle),
            Interpolation::Bicubic { antialias: true } => antialiased(row, i, scale, 4, cubic_aa),
        }
    }
    m
}

/// `nearest_idx` / `nearest_exact_idx`: the same size and exactly twice it are special-cased
/// as PyTorch does (there the float rule could round differently).
fn nearest(i: usize, input: usize, output: usize, scale: f32, offset: f32) -> usize {
    if output == input {
        i
    } else if output == 2 * input {
        i >> 1
    } else {
        (((i as f32 + offset) * scale).floor() as usize).min(input - 1)
    }
}

/// `compute_indices_weights_linear`: the source position, clamped at 0, between two inputs.
fn bilinear(row: &mut [f32], i: usize, scale: f32) {
    let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
    let i0 = real as usize;
    let next = usize::from(i0 + 1 < row.len());
    let lambda1 = (real - i0 as f32).clamp(0.0, 1.0);
    row[i0] += 1.0 - lambda1;
    row[i0 + next] += lambda1;
}

/// Keys' cubic convolution with A = -0.75 (`get_cubic_upsample_coefficients`), the four
/// inputs around the source position clamped to the edges (`upsample_get_value_bounded`).
fn bicubic(row: &mut [f32], i: usize, scale: f32) {
    const A: f32 = -0.75;
    let real = scale * (i as f32 + 0.5) - 0.5;
    let base = real.floor();
    let t = real - base;
    let coefficients = [
        cubic_far(t + 1.0, A),
        cubic_near(t, A),
        cubic_near(1.0 - t, A),
        cubic_far(2.0 - t, A),
    ];
    let last = row.len() as i64 - 1;
    for (k, c) in coefficients.into_iter().enumerate() {
        let index = (base as i64 - 1 + k as i64).clamp(0, last) as usize;
        row[index] += c;
    }
}

/// `cubic_convolution1`: the kernel for |x| <= 1.
fn cubic_near(x: f32, a: f32) -> f32 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

/// `cubic_convolution2`: the kernel for 1 < |x| < 2.
fn cubic_far(x: f32, a: f32) -> f32 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

/// The bilinear antialias filter (`HelperInterpLinear::aa_filter`).
fn triangle(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// The bicubic antialias filter (`HelperInterpCubic::aa_filter`): A = -0.5, as PIL.
fn cubic_aa(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        cubic_near(x, A)
    } else if x < 2.0 {
        cubic_far(x, A)
    } else {
        0.0
    }
}

/// `_compute_indices_min_size_weights_aa`: the filter widened by the downscale factor (a
/// downscale averages all the inputs it covers), normalised to sum to 1.
fn antialiased(row: &mut [f32], i: usize, scale: f32, size: usize, filter: fn(f32) -> f32) {
    let half = size as f32 * 0.5;
    let (support, invscale) = match scale >= 1.0 {
        true => (half * scale, 1.0 / scale),
        false => (half, 1.0),
    };
    let center = scale * (i as f32 + 0.5);
    // C++ casts truncate toward zero
    let min = ((center - support + 0.5) as i64).max(0) as usize;
    let end = ((center + support + 0.5) as i64)
        .min(row.len() as i64)
        .max(0) as usize;
    let start = min.min(end);
    let mut total = 0.0;
    for (j, w) in row.iter_mut().enumerate().take(end).skip(start) {
        *w = filter((j as f32 - center + 0.5) * invscale);
        total += *w;
    }
    if total != 0.0 {
        for w in &mut row[start..end] {
            *w /= total;
        }
    }
}

/// `m` `[rows, cols]` as `[cols, rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `torch.nn.functional.interpolate`'s outputs (`tests/reference/make_interpolate_fixtures.py`)
    /// for every mode, from the matrices applied on the host.
    #[test]
    fn equals_torch() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/interpolate.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
        let cases = fixture["cases"].as_array().expect("cases");
        assert_eq!(cases.len(), 36);
        for case in cases {
            let size = |k: &str| -> [usize; 2] {
                let v = case[k].as_array().unwrap();
                [
                    v[0].as_u64().unwrap() as usize,
                    v[1].as_u64().unwrap() as usize,
                ]
            };
            let values = |k: &str| -> Vec<f64> {
                case[k]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            };
            let ([h, w], [oh, ow]) = (size("input"), size("output"));
            let antialias = case["antialias"].as_bool().unwrap();
            let mode = Interpolation::from_torch(case["mode"].as_str().unwrap(), antialias)
                .expect("a mode");
            let (rows, cols) = (weights(mode, h, oh), weights(mode, w, ow));
            let (x, expected) = (values("x"), values("y"));
            for i in 0..oh {
                for j in 0..ow {
                    let mut y = 0.0;
                    for p in 0..h {
                        for q in 0..w {
                            y += f64::from(rows[i * h + p] * cols[j * w + q]) * x[p * w + q];
                        }
                    }
                    let want = expected[i * ow + j];
                    assert!(
                        (y - want).abs() < 1e-5,
                        "{mode:?} {h}x{w} -> {oh}x{ow} at ({i}, {j}): {y} vs torch's {want}"
                    );
                }
            }
        }
    }

    /// Every mode keeps a constant constant: each output's weights sum to 1.
    #[test]
    fn rows_sum_to_one() {
        let modes = [
            Interpolation::Nearest,
            Interpolation::NearestExact,
            Interpolation::Bilinear { antialias: false },
            Interpolation::Bilinear { antialias: true },
            Interpolation::Bicubic { antialias: false },
            Interpolation::Bicubic { antialias: true },
        ];
        for mode in modes {
            for (input, output) in [(1, 3), (5, 10), (7, 16), (16, 5), (128, 192), (3, 3)] {
                let m = weights(mode, input, output);
                for (i, row) in m.chunks(input).enumerate() {
                    let sum: f32 = row.iter().sum();
                    assert!(
                        (sum - 1.0).abs() < 1e-5,
                        "{mode:?} {input}->{output} row {i}: {sum}"
                    );
                }
            }
        }
    }
}
