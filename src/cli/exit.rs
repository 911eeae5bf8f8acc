//! The command line's exit status: 0 success, 2 for anything the input caused (a bad flag, file,
//! request or LoRA), 1 when `doctor` found a failing check or the machine failed (no adapter at all, a device lost or failing
//! mid-run, an output that cannot be written, an internal inconsistency). A closed stdout (the
//! reader went away, `| head`) ends the command quietly with 0. Panics never reach the user as
//! 101: `main` reports them as internal failures (1).

use std::error::Error as StdError;
use std::io;

use sdxl_wgpu::checkpoint::CheckpointError;
use sdxl_wgpu::device::DeviceError;
use sdxl_wgpu::image_io::ImageError;
use sdxl_wgpu::upscaler::UpscalerError;
use sdxl_wgpu::vae::VaeError;
use sdxl_wgpu::weights::WeightError;

/// Exit status of a failed command.
pub fn code(error: &anyhow::Error) -> u8 {
    let checks_failed = error
        .downcast_ref::<super::doctor::ChecksFailed>()
        .is_some();
    if checks_failed || error.chain().any(machine_failed) {
        1
    } else {
        2
    }
}

/// Whether the command failed because stdout was closed under it.
pub fn broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Whether `cause` is the machine's failure rather than the input's. The library's crate error
/// forwards to the subsystem error it wraps, so both are looked at.
fn machine_failed(cause: &(dyn StdError + 'static)) -> bool {
    use sdxl_wgpu::Error;
    let device = |e: &DeviceError| {
        !matches!(
            e,
            DeviceError::Unavailable { .. } | DeviceError::Compiler { .. }
        )
    };
    let weights = |e: &WeightError| matches!(e, WeightError::Model { .. });
    let checkpoint = |e: &CheckpointError| matches!(e, CheckpointError::Weights(w) if weights(w));
    let image = |e: &ImageError| matches!(e, ImageError::Write { .. } | ImageError::Device(_));
    let vae = |e: &VaeError| matches!(e, VaeError::Device(_));
    let upscaler = |e: &UpscalerError| match e {
        UpscalerError::Device(_) => true,
        UpscalerError::Weights(w) => weights(w),
        _ => false,
    };
    if let Some(e) = cause.downcast_ref::<Error>() {
        return match e {
            Error::Device(d) => device(d),
            Error::Checkpoint(c) => checkpoint(c),
            Error::Image(i) => image(i),
            Error::Vae(v) => vae(v),
            Error::Upscaler(u) => upscaler(u),
            _ => false,
        };
    }
    if let Some(sdxl_wgpu::server::ServerError::Device(d)) = cause.downcast_ref() {
        return device(d);
    }
    cause.downcast_ref::<DeviceError>().is_some_and(device)
        || cause
            .downcast_ref::<CheckpointError>()
            .is_some_and(checkpoint)
        || cause.downcast_ref::<WeightError>().is_some_and(weights)
        || cause.downcast_ref::<ImageError>().is_some_and(image)
        || cause.downcast_ref::<VaeError>().is_some_and(vae)
        || cause.downcast_ref::<UpscalerError>().is_some_and(upscaler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_are_2_machine_errors_1() {
        let input = anyhow::Error::new(DeviceError::Unavailable {
            requested: sdxl_wgpu::Backend::Metal,
            found: "lavapipe".into(),
        });
        assert_eq!(code(&input), 2);
        let lost = anyhow::Error::new(sdxl_wgpu::Error::Device(DeviceError::Execution(
            "lost".into(),
        )));
        assert_eq!(code(&lost), 1);
        let disk = anyhow::Error::new(ImageError::Write {
            path: "a.png".into(),
            reason: "no space".into(),
        })
        .context("writing the outputs");
        assert_eq!(code(&disk), 1);
        let bad_file = anyhow::Error::new(CheckpointError::NotFound { path: "x".into() });
        assert_eq!(code(&bad_file), 2);
        let pipe = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(broken_pipe(&pipe) && !broken_pipe(&bad_file));
    }
}
