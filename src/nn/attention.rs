//! Scaled dot-product attention that never asks for a score matrix larger than a buffer holds,
//! on the kernels that suit the device ([`AttentionKernel`], chosen once per device at load).
//!
//! Two ways to compute it:
//! - **fused**: `burn::tensor::module::attention` (default `1/sqrt(head_dim)` scale), under which
//!   autotune picks among CubeCL's kernels (burn-cubecl 0.22.1 `kernel/attention`,
//!   cubek-attention 0.3.1): flash kernels that never materialise the `[B, heads, Nq, Nk]`
//!   scores, and an unfused fallback that does. Without cooperative matrix only the "unit"
//!   flash kernel can win (autotune never measures the fallback once a flash kernel works),
//!   and it gives each 32-thread cube 256 query rows: a few hundred threads for the VAE's one
//!   head, far too few for a GPU;
//! - **sliced**: `softmax(q k^T / sqrt(d)) v` as two batched matmuls around a softmax, the
//!   queries cut into slices whose scores fit [`SCORE_BUDGET_BYTES`]: every kernel a full grid,
//!   on tuned matmuls (what diffusers' sliced attention processor does).
//!
//! For the fused path only the scores that would exceed the budget are sliced (keys and values
//! whole, each slice as many whole multiples of [`SLICE_ROWS`] rows as fit; SDXL at 1024x1024
//! in f16: 8 slices of 512 rows at the 64x64 level), and queries longer than [`QUERY_TILE`] are
//! padded with zero rows to a multiple of it (their outputs dropped; keys untouched, so no
//! mask): the cooperative-matrix flash kernel only takes such lengths, and autotune, which keys
//! shapes by powers of two, would otherwise reuse a winner tuned at 4096 rows for 4032
//! (1152x896) and fall back at full size.
//!
//! Both ways give the same results (`tests/unet_vae.rs`); `benches/unet_vae.rs` times them at
//! SDXL's shapes.

use burn::tensor::activation::softmax;
use burn::tensor::ops::{AttentionModuleOptions, PadMode};
use burn::tensor::{module, Bool, Tensor};

/// The most bytes one slice's score matrix may take: under the 128 MiB that every adapter
/// binds in one buffer (wgpu's default limit; lavapipe's largest binding).
pub const SCORE_BUDGET_BYTES: usize = 96 << 20;
/// Query rows the cooperative-matrix flash kernel tiles by (tile rows x planes): padded query
/// lengths are multiples of it.
pub const QUERY_TILE: usize = 128;
/// Slices are whole multiples of this many rows: multiples of [`QUERY_TILE`], and longer than
/// any head (the VAE's single 512-wide head), whose length autotune mis-ranks the fallback at.
pub const SLICE_ROWS: usize = 256;

pub use crate::device::{AttentionKernel, FUSED_MAX_HEAD};

/// `q` `[B, heads, Nq, d]`, `k`/`v` `[B, heads, Nk, d]` -> `[B, heads, Nq, d]`.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    causal: bool,
    kernel: AttentionKernel,
) -> Tensor<4> {
    attention_within(q, k, v, causal, kernel, SCORE_BUDGET_BYTES)
}

/// [`attention`] with scores of at most `budget` bytes per call.
pub fn attention_within(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    causal: bool,
    kernel: AttentionKernel,
    budget: usize,
) -> Tensor<4> {
    if kernel.fuses(q.dims()[3]) {
        fused(q, k, v, causal, budget)
    } else {
        sliced(q, k, v, causal, budget)
    }
}

/// Query rows per slice whose scores, `row_bytes` each, fit `budget`: whole multiples of
/// [`SLICE_ROWS`], fewer only where not even that many fit.
fn slice_rows(budget: usize, row_bytes: usize) -> usize {
    let fit = budget / row_bytes.max(1);
    match fit / SLICE_ROWS {
        0 => fit.max(1),
        n => n * SLICE_ROWS,
    }
}

/// `softmax(q k^T / sqrt(d) [+ causal mask]) v`, the queries in slices whose scores fit
/// `budget` (in the queries' dtype; the softmax sums f16 rows in f32).
fn sliced(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool, budget: usize) -> Tensor<4> {
    let [b, heads, nq, d] = q.dims();
    let nk = k.dims()[2];
    let q = q * (d as f64).powf(-0.5); // scaled before the product, as diffusers' baddbmm
    let kt = k.swap_dims(2, 3); // [B, heads, d, Nk]
    let rows = slice_rows(budget, b * heads * nk * q.dtype().size()).min(nq);
    let device = q.device();
    let slices: Vec<Tensor<4>> = (0..nq)
        .step_by(rows)
        .map(|start| {
            let end = (start + rows).min(nq);
            let q = q.clone().slice([0..b, 0..heads, start..end]); // [B, heads, rows, d]
            let mut scores = q.matmul(kt.clone()); // [B, heads, rows, Nk]
            if causal {
                // true where key j comes after query i: masked out
                let mask = Tensor::<2, Bool>::tril_mask([nq, nk], 0, &device)
                    .slice([start..end, 0..nk])
                    .reshape([1, 1, end - start, nk]) // [1, 1, rows, Nk]
                    .expand([b, heads, end - start, nk]);
                scores = scores.mask_fill(mask, f32::NEG_INFINITY);
            }
            softmax(scores, 3).matmul(v.clone()) // [B, heads, rows, d]
        })
        .collect();
    Tensor::cat(slices, 2) // [B, heads, Nq, d]
}

/// burn's fused attention, the queries padded to [`QUERY_TILE`] and sliced only where the
/// scores a fallback would materialise exceed `budget`.
fn fused(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool, budget: usize) -> Tensor<4> {
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    if causal {
        // causal masks are only used by the text encoders (77 tokens): neither rule applies
        return module::attention(q, k, v, None, None, options);
    }
    let [b, heads, nq, _] = q.dims();
    let padded = if nq > QUERY_TILE {
        nq.next_multiple_of(QUERY_TILE)
    } else {
        nq
    };
    let q = if padded > nq {
        q.pad([(0, padded - nq), (0, 0)], PadMode::Constant(0.0)) // [B, heads, padded, d]
    } else {
        q
    };
    let rows = slice_rows(budget, b * heads * k.dims()[2] * q.dtype().size());
    let out = if rows >= padded {
        module::attention(q, k, v, None, None, options)
    } else {
        let slices: Vec<Tensor<4>> = (0..padded)
            .step_by(rows)
            .map(|start| {
                let end = (start + rows).min(padded);
                let q = q.clone().slice([0..b, 0..heads, start..end]); // [B, heads, rows, d]
                module::attention(q, k.clone(), v.clone(), None, None, options)
            })
            .collect();
        Tensor::cat(slices, 2) // [B, heads, padded, d]
    };
    if padded > nq {
        out.slice([0..b, 0..heads, 0..nq]) // [B, heads, Nq, d]
    } else {
        out
    }
}

/// `[B, N, heads * d]` -> `[B, heads, N, d]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, n, width] = x.dims();
    x.reshape([b, n, heads, width / heads]).swap_dims(1, 2)
}

/// `[B, heads, N, d]` -> `[B, N, heads * d]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, heads, n, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, n, heads * d])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4,096 tokens and 4 heads in f32: 256 MiB of scores whole, twice the largest buffer every
    /// adapter binds; sliced, each slice's scores fit the budget, in whole multiples of
    /// [`SLICE_ROWS`] (`tests/unet_vae.rs` runs that size on the device).
    #[test]
    fn slices_keep_long_sequences_within_a_buffer() {
        let row_bytes = 4 * 4096 * 4;
        assert!(4096 * row_bytes > 128 << 20);
        let rows = slice_rows(SCORE_BUDGET_BYTES, row_bytes);
        assert!(rows * row_bytes <= SCORE_BUDGET_BYTES && SCORE_BUDGET_BYTES <= 128 << 20);
        assert_eq!((rows % SLICE_ROWS, rows), (0, 1536));
        // rows wider than a whole slice's budget go a few (or one) at a time
        assert_eq!(slice_rows(10_000, 1000), 10);
        assert_eq!(slice_rows(100, 1000), 1);
    }
}
