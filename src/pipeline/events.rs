//! What a run reports while it works. The library only emits these; the CLI draws progress bars
//! from them (and a server could stream them).

use std::time::Duration;

/// One progress event of [`super::Engine::generate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// Both prompts are encoded.
    Encoded { elapsed: Duration },
    /// img2img: the init image is encoded.
    ImageEncoded { elapsed: Duration },
    /// `done` of `total` denoising steps are recorded and submitted to the device, which may
    /// still be running the last of them (the loop waits for it once, at its end); `done: 0`
    /// is sent as denoising starts, so a rate can be measured from there.
    Step { done: usize, total: usize },
    /// The VAE starts decoding `images` images.
    Decoding { images: usize },
}

/// Where the time of one run went, measured with the GPU synchronised at each stage's end.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunStats {
    pub encode: Duration,
    /// img2img's VAE encode (zero for txt2img).
    pub image_encode: Duration,
    pub denoise: Duration,
    /// Host time spent recording the denoising steps (building and submitting their kernels),
    /// excluding the wait for the device: what the CPU costs per step.
    pub record: Duration,
    /// Denoising steps run (img2img: `steps x strength`).
    pub steps: usize,
    /// The UNet's batch per step: twice the images with classifier-free guidance, the images
    /// alone at CFG <= 1 (no unconditional half, as diffusers).
    pub unet_batch: usize,
    pub decode: Duration,
    /// The most the device's memory pools held at any boundary of the run, if the device says.
    pub peak_reserved_bytes: Option<u64>,
}

impl RunStats {
    /// Denoising steps per second.
    pub fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.denoise.as_secs_f64().max(1e-9)
    }
}
