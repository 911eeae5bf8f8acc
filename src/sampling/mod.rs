//! Sampling in four small pieces: the parameterisation (eps / v, `prediction.rs`), the sigma
//! schedule (`schedule.rs`), the stepping rule (`sampler.rs`) and, in the pipeline, guidance. Noise is
//! drawn on the CPU by PyTorch's generator (`torch_rng.rs`) and uploaded, so a seed gives the
//! same latents on every GPU and backend, and the same as diffusers with a CPU generator.

mod names;
mod prediction;
mod sampler;
mod schedule;
mod torch_rng;

pub use names::{SamplerChoice, UnknownSampler};
pub use prediction::Prediction;
pub use sampler::{noise, SamplingRun};
pub use schedule::{schedule, Sampler, Schedule, ScheduleError, ScheduleKind, TrainSchedule};
pub use torch_rng::TorchRng;
