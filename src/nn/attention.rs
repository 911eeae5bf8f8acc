//! Scaled dot-product attention that never asks for a score matrix larger than a buffer holds,
//! and keeps burn's flash kernels eligible.
//!
//! It calls `burn::tensor::module::attention` (default `1/sqrt(head_dim)` scale), under which
//! autotune picks among CubeCL's kernels (burn-cubecl 0.22.1 `kernel/attention`, cubek-attention
//! 0.3.1): flash kernels that never materialise the `[B, heads, Nq, Nk]` scores, and an unfused
//! fallback that does (scores plus a softmax temporary, each one buffer). So:
//! - only when the scores would exceed [`SCORE_BUDGET_BYTES`] (in the queries' dtype) are the
//!   queries cut into slices, keys and values whole, each slice as many whole multiples of
//!   [`SLICE_ROWS`] rows as fit (fewer only where not even that many fit; SDXL at 1024x1024 in f16: 8 slices of 512 rows at the 64x64
//!   level, where a fixed 32 MiB f32 budget made 41 of 102);
//! - queries longer than [`QUERY_TILE`] are padded with zero rows to a multiple of it (their
//!   outputs dropped; keys untouched, so no mask): the cooperative-matrix flash kernel only
//!   takes such lengths, and autotune, which keys shapes by powers of two, would otherwise
//!   reuse a winner tuned at 4096 rows for 4032 (1152x896) and fall back at full size.
//!
//! Results are the same either way (`tests/unet_vae.rs`).

use burn::tensor::ops::{AttentionModuleOptions, PadMode};
use burn::tensor::{module, Tensor};

/// The most bytes one slice's score matrix may take: under the 128 MiB that every adapter
/// binds in one buffer (wgpu's default limit; lavapipe's largest binding).
pub const SCORE_BUDGET_BYTES: usize = 96 << 20;
/// Query rows the cooperative-matrix flash kernel tiles by (tile rows x planes): padded query
/// lengths are multiples of it.
pub const QUERY_TILE: usize = 128;
/// Slices are whole multiples of this many rows: multiples of [`QUERY_TILE`], and longer than
/// any head (the VAE's single 512-wide head), whose length autotune mis-ranks the fallback at.
pub const SLICE_ROWS: usize = 256;

/// `q` `[B, heads, Nq, d]`, `k`/`v` `[B, heads, Nk, d]` -> `[B, heads, Nq, d]`.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
    attention_within(q, k, v, causal, SCORE_BUDGET_BYTES)
}

/// [`attention`] with scores of at most `budget` bytes per call.
pub fn attention_within(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    causal: bool,
    budget: usize,
) -> Tensor<4> {
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
    let row_bytes = b * heads * k.dims()[2] * q.dtype().size();
    let fit = budget / row_bytes.max(1);
    let out = if fit >= padded {
        module::attention(q, k, v, None, None, options)
    } else {
        // whole multiples of SLICE_ROWS; fewer rows only where not even that many fit
        let rows = match fit / SLICE_ROWS {
            0 => fit.max(1),
            n => n * SLICE_ROWS,
        };
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
