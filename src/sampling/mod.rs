//! Sampling: the initial noise and (with the generate issue) sigma schedules, samplers and
//! guidance. Noise is drawn on the CPU and uploaded, so a seed gives the same latents on every
//! GPU and backend.

mod schedule;
mod torch_rng;

pub use schedule::{schedule, Sampler, Schedule, ScheduleError, ScheduleKind, TrainSchedule};
pub use torch_rng::TorchRng;
