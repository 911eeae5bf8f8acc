//! Tiled VAE decode and encode: the latents (or the image) cut into overlapping tiles, each
//! tile run on its own, the results blended with linear ramps over the overlaps so no seam
//! shows. Whether to tile is decided *before* anything is allocated, from the size of the
//! largest activation an untiled pass would create: above the adapter's largest buffer
//! (lavapipe: 128 MiB) or above the memory budget, the pass is tiled.
//!
//! The tiles are read back and blended on the host (f32), which keeps device memory at one
//! tile's working set; the blended result is uploaded again.
//! diffusers does the same with fixed 512-pixel tiles and a 25% overlap
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/models/autoencoders/autoencoder_kl.py>).

use burn::tensor::{Device, FloatDType, Tensor, TensorData};

use super::{AutoencoderKl, LatentDistribution, VaeConfig};

/// `--vae-tiling`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum VaeTiling {
    /// Tile only when an untiled pass would not fit ([`VaeLimits`]).
    #[default]
    Auto,
    On,
    Off,
}

/// What an untiled pass must fit in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaeLimits {
    /// The adapter's largest buffer: no single activation may be larger.
    pub max_tensor_bytes: u64,
    /// Device memory the VAE may use for activations, estimated as
    /// [`WORKING_SET_FACTOR`] times the largest one.
    pub memory_budget: u64,
}

/// Live activations at the peak of a pass, in units of the largest one (input, normalised
/// copy in f32, convolution output, residual).
pub const WORKING_SET_FACTOR: u64 = 4;
/// Default activation budget: 4 GiB, so 1024x1024 decodes untiled and larger images tile.
pub const DEFAULT_MEMORY_BUDGET: u64 = 4 << 30;
/// Preferred tile edge in latent pixels (512 image pixels), shrunk until a tile fits.
pub const TILE_LATENTS: usize = 64;

impl VaeLimits {
    /// The limits of an adapter whose largest buffer is `max_tensor_bytes`, default budget.
    pub fn for_adapter(max_tensor_bytes: u64) -> Self {
        VaeLimits {
            max_tensor_bytes,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        }
    }

    fn fits(&self, peak_bytes: u64) -> bool {
        peak_bytes <= self.max_tensor_bytes
            && peak_bytes.saturating_mul(WORKING_SET_FACTOR) <= self.memory_budget
    }
}

/// How a pass is cut, in latent pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TilePlan {
    /// Tile edge (latent pixels).
    pub tile: usize,
    /// Overlap between neighbouring tiles (latent pixels).
    pub overlap: usize,
}

/// Why a VAE pass cannot run as asked.
#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    #[error(
        "an untiled VAE pass at {width}x{height} needs a {} MiB activation, more than this \
         adapter's {} MiB buffer or the {} MiB budget allows: use --vae-tiling auto or on",
        peak >> 20,
        limits.max_tensor_bytes >> 20,
        (limits.memory_budget / WORKING_SET_FACTOR) >> 20
    )]
    TooLarge {
        width: usize,
        height: usize,
        peak: u64,
        limits: VaeLimits,
    },
    #[error("even a {tile}x{tile}-latent VAE tile needs a {} MiB activation, more than the limits allow", peak >> 20)]
    TileTooLarge { tile: usize, peak: u64 },
    #[error("reading a VAE tile back from the device failed: {0}")]
    Device(String),
}

/// Bytes of the largest activation of an untiled decode of `[b, _, h, w]` latents (norms
/// work in f32, so 4 bytes per value whatever the dtype).
pub fn decode_peak_bytes(cfg: &VaeConfig, b: usize, h: usize, w: usize) -> u64 {
    let mut prev = cfg.decoder_channels(0);
    let mut peak = 0;
    for level in 0..cfg.levels() {
        // level `level` runs at 2^level times the latent size on the upsampled input
        let channels = prev.max(cfg.decoder_channels(level));
        peak = peak.max(b * channels * (h << level) * (w << level) * 4);
        prev = cfg.decoder_channels(level);
    }
    peak as u64
}

/// Bytes of the largest activation of an untiled encode of a `[b, _, h, w]` image.
pub fn encode_peak_bytes(cfg: &VaeConfig, b: usize, h: usize, w: usize) -> u64 {
    let mut prev = cfg.block_out_channels[0];
    let mut peak = 0;
    for (level, &channels) in cfg.block_out_channels.iter().enumerate() {
        let c = prev.max(channels);
        peak = peak.max(b * c * (h >> level).max(1) * (w >> level).max(1) * 4);
        prev = channels;
    }
    peak as u64
}

/// The plan for a pass over `h x w` latents whose untiled peak is `peak(h, w)`: `None` to run
/// untiled; a tile size that fits otherwise.
fn plan(
    tiling: VaeTiling,
    limits: &VaeLimits,
    h: usize,
    w: usize,
    peak: impl Fn(usize, usize) -> u64,
) -> Result<Option<TilePlan>, VaeError> {
    let untiled = peak(h, w);
    match tiling {
        VaeTiling::Off if !limits.fits(untiled) => Err(VaeError::TooLarge {
            width: w * 8,
            height: h * 8,
            peak: untiled,
            limits: *limits,
        }),
        VaeTiling::Off => Ok(None),
        VaeTiling::Auto if limits.fits(untiled) => Ok(None),
        VaeTiling::Auto | VaeTiling::On => {
            let mut tile = TILE_LATENTS.min(h.max(w));
            while !limits.fits(peak(tile.min(h), tile.min(w))) {
                if tile <= 8 {
                    return Err(VaeError::TileTooLarge {
                        tile,
                        peak: peak(tile, tile),
                    });
                }
                tile /= 2;
            }
            Ok(Some(TilePlan {
                tile,
                overlap: tile / 4,
            }))
        }
    }
}

impl AutoencoderKl {
    /// [`AutoencoderKl::decode`], tiled when `tiling` and `limits` say so; decided before any
    /// allocation. Returns the image and the plan used (`None`: untiled).
    pub fn decode_tiled(
        &self,
        cfg: &VaeConfig,
        z: Tensor<4>,
        dtype: FloatDType,
        tiling: VaeTiling,
        limits: &VaeLimits,
    ) -> Result<(Tensor<4>, Option<TilePlan>), VaeError> {
        let [b, _, h, w] = z.dims();
        let peak = |th: usize, tw: usize| decode_peak_bytes(cfg, b, th, tw);
        match plan(tiling, limits, h, w, peak)? {
            None => Ok((self.decode(z, dtype), None)),
            Some(p) => Ok((self.decode_with_plan(z, dtype, p)?, Some(p))),
        }
    }

    /// Decodes tile by tile with `plan` and blends the tiles.
    pub fn decode_with_plan(
        &self,
        z: Tensor<4>,
        dtype: FloatDType,
        plan: TilePlan,
    ) -> Result<Tensor<4>, VaeError> {
        let [b, c, h, w] = z.dims();
        let device = z.device();
        let mut canvas = Canvas::new(b, 0, h * 8, w * 8);
        for (ys, ye) in spans(h, plan) {
            for (xs, xe) in spans(w, plan) {
                let tile = z.clone().slice([0..b, 0..c, ys..ye, xs..xe]); // [B, 4, th, tw]
                let image = self.decode(tile, dtype); // [B, 3, 8 th, 8 tw]
                canvas.add(
                    image,
                    [ys * 8, ye * 8],
                    [xs * 8, xe * 8],
                    plan.overlap * 8,
                    [h * 8, w * 8],
                )?;
            }
        }
        Ok(canvas.finish(&device))
    }

    /// [`AutoencoderKl::encode`], tiled when `tiling` and `limits` say so. The moments (mean,
    /// logvar before clamping) are blended across tiles.
    pub fn encode_tiled(
        &self,
        cfg: &VaeConfig,
        x: Tensor<4>,
        dtype: FloatDType,
        tiling: VaeTiling,
        limits: &VaeLimits,
    ) -> Result<(LatentDistribution, Option<TilePlan>), VaeError> {
        let [b, _, h, w] = x.dims();
        let peak = |th: usize, tw: usize| encode_peak_bytes(cfg, b, th * 8, tw * 8);
        match plan(tiling, limits, h / 8, w / 8, peak)? {
            None => Ok((self.encode(x, dtype), None)),
            Some(p) => Ok((self.encode_with_plan(x, dtype, p)?, Some(p))),
        }
    }

    /// Encodes tile by tile with `plan` (in latent pixels) and blends the moments.
    pub fn encode_with_plan(
        &self,
        x: Tensor<4>,
        dtype: FloatDType,
        plan: TilePlan,
    ) -> Result<LatentDistribution, VaeError> {
        let [b, c, h, w] = x.dims();
        let (lh, lw) = (h / 8, w / 8);
        let device = x.device();
        let mut canvas = None;
        for (ys, ye) in spans(lh, plan) {
            for (xs, xe) in spans(lw, plan) {
                let tile = x
                    .clone()
                    .slice([0..b, 0..c, ys * 8..ye * 8, xs * 8..xe * 8]);
                let d = self.encode(tile, dtype);
                let moments = Tensor::cat(vec![d.mean, d.logvar], 1); // [B, 8, th, tw]
                let channels = moments.dims()[1];
                canvas
                    .get_or_insert_with(|| Canvas::new(b, channels, lh, lw))
                    .add(moments, [ys, ye], [xs, xe], plan.overlap, [lh, lw])?;
            }
        }
        let moments = canvas.expect("at least one tile").finish(&device);
        let half = moments.dims()[1] / 2;
        Ok(LatentDistribution {
            mean: moments.clone().slice([0..b, 0..half, 0..lh, 0..lw]),
            logvar: moments.slice([0..b, half..2 * half, 0..lh, 0..lw]),
        })
    }
}

/// Tile spans `[start, end)` along an axis of `len`: stride `tile - overlap`, the last tile
/// moved back to end at `len`.
fn spans(len: usize, plan: TilePlan) -> Vec<(usize, usize)> {
    if len <= plan.tile {
        return vec![(0, len)];
    }
    let stride = (plan.tile - plan.overlap).max(1);
    let mut spans = Vec::new();
    let mut start = 0;
    loop {
        if start + plan.tile >= len {
            spans.push((len - plan.tile, len));
            break;
        }
        spans.push((start, start + plan.tile));
        start += stride;
    }
    spans
}

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
struct Canvas {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    sum: Vec<f32>,
    weight: Vec<f32>,
}

impl Canvas {
    /// `c == 0`: take the channel count from the first tile.
    fn new(b: usize, c: usize, h: usize, w: usize) -> Self {
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
    fn add(
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

    fn finish(self, device: &Device) -> Tensor<4> {
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

    #[test]
    fn spans_cover_the_axis_with_overlap() {
        let plan = TilePlan {
            tile: 16,
            overlap: 4,
        };
        assert_eq!(spans(10, plan), vec![(0, 10)]);
        assert_eq!(spans(16, plan), vec![(0, 16)]);
        assert_eq!(spans(40, plan), vec![(0, 16), (12, 28), (24, 40)]);
        assert_eq!(spans(30, plan), vec![(0, 16), (12, 28), (14, 30)]);
    }

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

    fn sdxl() -> VaeConfig {
        VaeConfig {
            in_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            norm_groups: 32,
            scaling_factor: 0.13025,
        }
    }

    #[test]
    fn sdxl_decode_peak_is_the_full_resolution_input() {
        // 1024x1024: 256 channels upsampled to full resolution, f32 = 1 GiB
        assert_eq!(
            decode_peak_bytes(&sdxl(), 1, 128, 128),
            256 * 1024 * 1024 * 4
        );
        assert_eq!(
            encode_peak_bytes(&sdxl(), 1, 1024, 1024),
            128 * 1024 * 1024 * 4
        );
    }

    #[test]
    fn plans_follow_the_limits() {
        let cfg = sdxl();
        let lavapipe = VaeLimits::for_adapter(128 << 20);
        let peak = |h, w| decode_peak_bytes(&cfg, 1, h, w);
        let big = VaeLimits::for_adapter(u64::MAX);
        assert_eq!(plan(VaeTiling::Auto, &big, 128, 128, peak).unwrap(), None);
        assert!(plan(VaeTiling::Auto, &big, 192, 192, peak)
            .unwrap()
            .is_some());
        let p = plan(VaeTiling::Auto, &lavapipe, 128, 128, peak)
            .unwrap()
            .unwrap();
        assert!(peak(p.tile, p.tile) <= 128 << 20, "{p:?}");
        assert!(matches!(
            plan(VaeTiling::Off, &lavapipe, 128, 128, peak),
            Err(VaeError::TooLarge { .. })
        ));
        assert_eq!(
            plan(VaeTiling::On, &big, 128, 128, peak).unwrap(),
            Some(TilePlan {
                tile: 64,
                overlap: 16
            })
        );
    }
}
