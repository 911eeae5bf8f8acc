//! Scaled dot-product attention that never asks for a score matrix larger than a budget.
//!
//! It calls `burn::tensor::module::attention` (default `1/sqrt(head_dim)` scale, so CubeCL may
//! pick its flash kernels under autotune). Those never materialise `[B*heads, Nq, Nk]` scores,
//! but the unfused fallback does, and autotune may try it; so when the full score matrix would
//! exceed [`SCORE_BUDGET_BYTES`] the queries are cut into slices whose scores fit, and each
//! slice is attended on its own (keys and values whole). Results are the same either way.

use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{module, Tensor};

/// The most bytes one slice's score matrix may take (f32): well under the 128 MiB buffer
/// limit of the smallest adapters (lavapipe).
pub const SCORE_BUDGET_BYTES: usize = 32 << 20;

/// `q` `[B, heads, Nq, d]`, `k`/`v` `[B, heads, Nk, d]` -> `[B, heads, Nq, d]`.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
    let [b, heads, nq, _] = q.dims();
    let nk = k.dims()[2];
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    let row_bytes = b * heads * nk * 4;
    let rows = (SCORE_BUDGET_BYTES / row_bytes.max(1)).max(1);
    if rows >= nq || causal {
        // Causal masks are only used by the text encoders (77 tokens).
        return module::attention(q, k, v, None, None, options);
    }
    let slices: Vec<Tensor<4>> = (0..nq)
        .step_by(rows)
        .map(|start| {
            let end = (start + rows).min(nq);
            let q = q.clone().slice([0..b, 0..heads, start..end]); // [B, heads, rows, d]
            module::attention(q, k.clone(), v.clone(), None, None, options)
        })
        .collect();
    Tensor::cat(slices, 2) // [B, heads, Nq, d]
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
