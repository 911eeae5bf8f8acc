//! Blending overlapping tiles on the host: each tile is read back (f32) and added to a canvas
//! weighted by linear ramps over the overlaps, so no seam shows; the blended result is uploaded
//! again. Keeps device memory at one tile's working set.

use burn::tensor::{Device, FloatDType, Tensor, TensorData};

use super::VaeError;

/// Blend weights along one axis for a tile at `[start, end)` of `len`: 1 inside, rising from
/// near 0 over `ramp` pixels at an edge shared with another tile.
fn ramp(start: usize, end: usize, len: usize, ramp: usize) -> Vec<f32> {
    let ramp = ramp.max(1) as f32;
    (start..end)
        .map(|i| {
            let rise = if start > 0 {
                ((i - start) as f32 + 0.5) / ramp
            } else {
                1.0
            };
            let fall = if end < len {
                ((end - i) as f32 - 0.5) / ramp
            } else {
                1.0
            };
            rise.min(fall).min(1.0)
        })
        .collect()
}

/// Host accumulator of weighted tiles.
pub(super) struct Canvas {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    sum: Vec<f32>,
    weight: Vec<f32>,
}

impl Canvas {
    /// `c == 0`: take the channel count from the first tile.
    pub(super) fn new(b: usize, c: usize, h: usize, w: usize) -> Self {
        Canvas {
            b,
            c,
            h,
            w,
            sum: Vec::new(),
            weight: vec![0.0; h * w],
        }
    }

    /// Adds `tile` (`[B, C, th, tw]`, placed at rows `ys`, columns `xs` of a `size` canvas)
    /// weighted by ramps over `overlap` pixels at its inner edges.
    pub(super) fn add(
        &mut self,
        tile: Tensor<4>,
        ys: [usize; 2],
        xs: [usize; 2],
        overlap: usize,
        size: [usize; 2],
    ) -> Result<(), VaeError> {
        let [_, c, th, tw] = tile.dims();
        if self.sum.is_empty() {
            self.c = c;
            self.sum = vec![0.0; self.b * c * self.h * self.w];
        }
        let values = tile
            .cast(FloatDType::F32)
            .try_into_data()
            .map_err(|e| VaeError::Device(format!("{e:?}")))?
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| VaeError::Device(format!("{e:?}")))?;
        let wy = ramp(ys[0], ys[1], size[0], overlap);
        let wx = ramp(xs[0], xs[1], size[1], overlap);
        for y in 0..th {
            for x in 0..tw {
                let weight = wy[y] * wx[x];
                let at = (ys[0] + y) * self.w + xs[0] + x;
                self.weight[at] += weight;
                for plane in 0..self.b * c {
                    self.sum[plane * self.h * self.w + at] +=
                        weight * values[(plane * th + y) * tw + x];
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish(self, device: &Device) -> Tensor<4> {
        let plane = self.h * self.w;
        let values: Vec<f32> = self
            .sum
            .iter()
            .enumerate()
            .map(|(i, v)| v / self.weight[i % plane])
            .collect();
        Tensor::from_data(
            TensorData::new(values, [self.b, self.c, self.h, self.w]),
            device,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vae::plan::{spans, TilePlan};

    #[test]
    fn ramps_sum_to_a_positive_weight_everywhere() {
        let plan = TilePlan {
            tile: 16,
            overlap: 4,
        };
        let len = 40;
        let mut total = vec![0f32; len];
        for (s, e) in spans(len, plan) {
            for (i, w) in ramp(s, e, len, plan.overlap).into_iter().enumerate() {
                assert!(w > 0.0 && w <= 1.0);
                total[s + i] += w;
            }
        }
        assert!(total.iter().all(|&t| t >= 0.99), "{total:?}");
    }
}
