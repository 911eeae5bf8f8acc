//! How a failed command reads: the chain of causes joined by ": " (anyhow's `{:#}`), with the
//! library's fields spelled as this command line's flags (`--cfg -1: ...`).

use sdxl_wgpu::device::DeviceError;
use sdxl_wgpu::field::{Described, Field, FieldNames};
use sdxl_wgpu::intake::IntakeError;
use sdxl_wgpu::pipeline::PipelineError;
use sdxl_wgpu::sampling::ScheduleError;
use sdxl_wgpu::text_encoder::TextError;

/// The library's fields as the flags of `generate` (and jobs files) spell them.
pub struct FlagNames;

impl FieldNames for FlagNames {
    fn spell(&self, field: Field) -> &'static str {
        match field {
            Field::Width => "--width",
            Field::Height => "--height",
            Field::Cfg => "--cfg",
            Field::CfgRescale => "--cfg-rescale",
            Field::Batch => "--batch",
            Field::Strength => "--strength",
            Field::Steps => "--steps",
            Field::HiresScale => "--hires-scale",
            Field::HiresSteps => "--hires-steps",
            Field::HiresDenoise => "--hires-denoise",
            Field::HiresUpscaler => "--hires-upscaler",
            Field::Schedule => "--schedule",
            Field::ClipSkip => "--clip-skip",
            Field::InitNoise => "--init-noise",
            Field::Backend => "--backend",
            Field::LoraFolder => "--lora-dir",
            Field::UpscalerFolder => "--upscalers-dir",
            Field::Mask => "--mask",
            Field::MaskBlur => "--mask-blur",
        }
    }
}

/// `error` and its causes, as `{error:#}` writes them, fields spelled as flags.
pub fn message(error: &anyhow::Error) -> String {
    let parts: Vec<String> = error
        .chain()
        .map(|cause| {
            if let Some(e) = cause.downcast_ref::<sdxl_wgpu::Error>() {
                e.describe(&FlagNames)
            } else if let Some(e) = cause.downcast_ref::<PipelineError>() {
                e.describe(&FlagNames)
            } else if let Some(e) = cause.downcast_ref::<ScheduleError>() {
                e.describe(&FlagNames)
            } else if let Some(e) = cause.downcast_ref::<DeviceError>() {
                e.describe(&FlagNames)
            } else if let Some(e) = cause.downcast_ref::<TextError>() {
                e.describe(&FlagNames)
            } else if let Some(e) = cause.downcast_ref::<IntakeError>() {
                e.describe(&FlagNames)
            } else {
                cause.to_string()
            }
        })
        .collect();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_fields_read_as_flags() {
        let e = anyhow::Error::new(sdxl_wgpu::Error::Pipeline(PipelineError::Guidance(-1.0)))
            .context("job 2");
        assert_eq!(
            message(&e),
            "job 2: --cfg -1: the guidance scale must be a finite number, 0 or more"
        );
        let plain = sdxl_wgpu::Error::Pipeline(PipelineError::Guidance(-1.0)).to_string();
        assert!(plain.starts_with("guidance scale -1:"), "{plain}");
    }
}
