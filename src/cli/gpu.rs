//! Bringing up the device for a command, with the warnings and notes a user should see
//! printed: the compiler the global `--shader-compiler` asks for, a software adapter, a path the
//! self-test failed and the engine avoids.

use sdxl_wgpu::device::{self, Backend, Gpu, Precision};
use sdxl_wgpu::weights::WeightDtype;

/// The adapter `backend` picks, with the global `--shader-compiler`; warns when it is a
/// software one, and says what the self-test's verdicts made it avoid.
pub fn open(backend: Backend) -> anyhow::Result<Gpu> {
    let (gpu, warning) = device::open_with(backend, super::global().shader_compiler)?;
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    for note in &gpu.notes {
        eprintln!("{note}");
    }
    Ok(gpu)
}

/// The weights' dtype for `precision` on `gpu`; says so when f16 was asked for and is missing,
/// or when the self-test found it wrong here.
pub fn weight_dtype(gpu: &Gpu, precision: Precision) -> WeightDtype {
    let (dtype, note) = WeightDtype::for_gpu(precision, gpu);
    if let Some(note) = note {
        eprintln!("{note}");
    }
    dtype
}
