//! Why a VAE pass cannot run as asked.

use super::{VaeLimits, WORKING_SET_FACTOR};

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
