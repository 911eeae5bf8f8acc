//! How much arithmetic one UNet forward pass is, from the detected architecture (not a constant
//! of SDXL base): the convolutions, linears and attention products of diffusers'
//! `UNet2DConditionModel` with SDXL's layout, counted as 2 FLOPs per multiply-add. Norms,
//! activations and the timestep embeddings are left out (well under 1% of the total). It turns
//! a measured step time into achieved TFLOP/s (`sdxl-wgpu bench`).

use super::UnetConfig;

/// FLOPs of a `k` x `k` convolution from `cin` to `cout` channels with an `h` x `w` output.
fn conv(h: usize, w: usize, k: usize, cin: usize, cout: usize) -> f64 {
    2.0 * (h * w * k * k * cin * cout) as f64
}

/// FLOPs of a linear layer from `cin` to `cout` over `rows` rows.
fn linear(rows: usize, cin: usize, cout: usize) -> f64 {
    2.0 * (rows * cin * cout) as f64
}

impl UnetConfig {
    /// FLOPs of one forward pass on `batch` latents of `h` x `w` (the latent size: image / 8)
    /// with a text context of `context_tokens` tokens (77 per prompt chunk).
    pub fn forward_flops(&self, batch: usize, h: usize, w: usize, context_tokens: usize) -> f64 {
        let c0 = self.block_out_channels[0];
        let mut total = conv(h, w, 3, self.in_channels, c0);
        // down: resnets (+ transformers) per level, a stride-2 conv between levels
        for level in 0..self.levels() {
            let (lh, lw) = (h >> level, w >> level);
            let c = self.block_out_channels[level];
            for j in 0..self.layers_per_block {
                let cin = if j == 0 {
                    self.down_in_channels(level)
                } else {
                    c
                };
                total += self.resnet(lh, lw, cin, c);
                total += self.transformer(lh, lw, c, self.transformer_depth[level], context_tokens);
            }
            if level + 1 < self.levels() {
                total += conv(lh >> 1, lw >> 1, 3, c, c);
            }
        }
        // mid: resnet, transformer, resnet at the deepest level
        let deepest = self.levels() - 1;
        let (dh, dw, dc) = (h >> deepest, w >> deepest, self.block_out_channels[deepest]);
        total += 2.0 * self.resnet(dh, dw, dc, dc);
        total += self.transformer(dh, dw, dc, self.mid_transformer_depth, context_tokens);
        // up: one more resnet per level than down, each with the skip concatenated; a conv after
        // a 2x upsample between levels
        for level in 0..self.levels() {
            let depth = self.levels() - 1 - level;
            let (lh, lw) = (h >> depth, w >> depth);
            let c = self.up_channels(level);
            for j in 0..=self.layers_per_block {
                total += self.resnet(lh, lw, self.up_resnet_in_channels(level, j), c);
                let blocks = self.transformer_depth_up[level];
                total += self.transformer(lh, lw, c, blocks, context_tokens);
            }
            if level + 1 < self.levels() {
                total += conv(lh << 1, lw << 1, 3, c, c);
            }
        }
        total += conv(h, w, 3, c0, self.out_channels);
        total * batch as f64
    }

    /// A resnet: two 3x3 convs, a 1x1 shortcut when the width changes.
    fn resnet(&self, h: usize, w: usize, cin: usize, cout: usize) -> f64 {
        let shortcut = if cin != cout {
            conv(h, w, 1, cin, cout)
        } else {
            0.0
        };
        conv(h, w, 3, cin, cout) + conv(h, w, 3, cout, cout) + shortcut
    }

    /// A `Transformer2DModel` of `blocks` blocks, `c` wide, on `h x w` tokens: linear in/out
    /// projections; per block self-attention (q, k, v, out; two `n x n` products), cross-attention
    /// (q, out on the image; k, v on the context; two `n x m` products) and a GEGLU feed-forward
    /// (`c -> 2 x 4c`, `4c -> c`).
    fn transformer(&self, h: usize, w: usize, c: usize, blocks: usize, m: usize) -> f64 {
        if blocks == 0 {
            return 0.0;
        }
        let n = h * w;
        let self_attention = 4.0 * linear(n, c, c) + 2.0 * 2.0 * (n * n * c) as f64;
        let cross_attention = 2.0 * linear(n, c, c)
            + 2.0 * linear(m, self.context_dim, c)
            + 2.0 * 2.0 * (n * m * c) as f64;
        let feed_forward = linear(n, c, 8 * c) + linear(n, 4 * c, c);
        2.0 * linear(n, c, c) + blocks as f64 * (self_attention + cross_attention + feed_forward)
    }
}
