//! Bringing up the device for a command, with the warnings a user should see printed.

use sdxl_wgpu::device::{self, Backend, Gpu, Precision};
use sdxl_wgpu::weights::WeightDtype;

/// The adapter `backend` picks; warns when it is a software one.
pub fn open(backend: Backend) -> anyhow::Result<Gpu> {
    let (gpu, warning) = device::open(backend)?;
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    Ok(gpu)
}

/// The weights' dtype for `precision` on `gpu`; warns when f16 was asked for and is missing.
pub fn weight_dtype(gpu: &Gpu, precision: Precision) -> WeightDtype {
    let dtype = WeightDtype::for_precision(precision, &gpu.adapter);
    if precision == Precision::F16 && dtype != WeightDtype::F16 {
        eprintln!(
            "warning: {} has no f16 shaders; computing in f32",
            gpu.adapter.name
        );
    }
    dtype
}
