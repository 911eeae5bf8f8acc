//! Sampling in small pieces, after stable-diffusion.cpp's split: the training noise schedule
//! (`train.rs`), how the model's output is read (eps / v, `prediction.rs`), the timesteps and
//! sigmas of a run (`schedule.rs`) and the table of schedule types (`schedule_kinds.rs`), one
//! stepping rule per sampler family and the table of samplers (`samplers/`), and the run that
//! drives them (`run.rs`); guidance is the pipeline's. Noise is drawn on the CPU by PyTorch's
//! generator (`torch_rng.rs`) and uploaded, so a seed gives the same latents on every GPU and
//! backend, and the same as diffusers with a CPU generator.

mod names;
mod prediction;
mod run;
mod samplers;
mod schedule;
mod schedule_kinds;
mod torch_rng;
mod train;

pub use names::{parse_sampler_name, SamplerChoice, UnknownSampler};
pub use prediction::Prediction;
pub use run::{noise, SamplingRun};
pub use samplers::{Sampler, SamplerSpec, SAMPLERS};
pub use schedule::{schedule, Schedule, ScheduleError};
pub use schedule_kinds::{ScheduleKind, ScheduleSpec, SCHEDULES};
pub use torch_rng::TorchRng;
pub use train::{Spacing, TrainSchedule};
