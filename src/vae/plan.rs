//! Whether and how to tile a VAE pass, decided *before* anything is allocated, from the size of
//! the largest activation an untiled pass would create: above the adapter's largest buffer
//! (lavapipe: 128 MiB) or above the memory budget, the pass is tiled, in tiles that fit.

use super::{VaeConfig, VaeError};

/// `--vae-tiling`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaeTiling {
    /// Tile only when an untiled pass would not fit the [`VaeLimits`].
    #[default]
    Auto,
    On,
    Off,
}

crate::spelled! {
    VaeTiling, "VAE tiling",
    (VaeTiling::Auto, "auto",
        "Tile only when an untiled pass would not fit the adapter's buffers or the memory budget"),
    (VaeTiling::On, "on", ""),
    (VaeTiling::Off, "off", ""),
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
pub(super) fn plan(
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

/// Tile spans `[start, end)` along an axis of `len`: stride `tile - overlap`, the last tile
/// moved back to end at `len`.
pub(super) fn spans(len: usize, plan: TilePlan) -> Vec<(usize, usize)> {
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
