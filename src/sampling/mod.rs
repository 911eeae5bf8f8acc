//! Sampling: the initial noise and (with the generate issue) sigma schedules, samplers and
//! guidance. Noise is drawn on the CPU and uploaded, so a seed gives the same latents on every
//! GPU and backend.

mod torch_rng;

pub use torch_rng::TorchRng;
