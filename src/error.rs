//! The crate's error: one typed error per subsystem, wrapped here for callers that touch several.

use crate::checkpoint::CheckpointError;
use crate::device::DeviceError;
use crate::image_io::ImageError;
use crate::lora::LoraError;
use crate::pipeline::PipelineError;
use crate::sampling::ScheduleError;
use crate::text_encoder::TextError;
use crate::vae::VaeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    Vae(#[from] VaeError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Lora(#[from] LoraError),
}
