//! The device's checks: adapters found and the one chosen (and why), f16, buffer limits, the
//! shader compiler and cooperative-matrix kernels, and pooled memory being released.

use super::{mib, Check, Report};
use crate::device::{self, AdapterInfo, Backend, Gpu, Language, ShaderCompiler};

const INSTALL_DRIVER: &str = "install the GPU's Vulkan driver (Debian: mesa-vulkan-drivers for \
     AMD/Intel, nvidia-driver for NVIDIA; Windows: the vendor's driver; macOS uses Metal)";

/// Lists the adapters, opens the one `backend` picks with the compiler `request` asks for and
/// says what it can do. `None` when no device came up (the failure is in the report).
pub fn check(
    backend: Backend,
    request: ShaderCompiler,
    report: &mut Report,
) -> std::io::Result<Option<Gpu>> {
    let found = device::adapters(backend);
    if found.is_empty() {
        report.add(Check::fail(
            "adapters",
            format!("no adapter on --backend {backend}"),
            INSTALL_DRIVER,
        ))?;
        return Ok(None);
    }
    let listed: Vec<String> = found.iter().map(AdapterInfo::describe).collect();
    report.add(Check::pass("adapters", listed.join("; ")))?;
    // the adapter `open` chose is the one it brought up (its failure names the adapter)
    let gpu = match device::open_with(backend, request) {
        Ok((gpu, _)) => gpu,
        Err(e) => {
            report.add(Check::fail("device", e.to_string(), INSTALL_DRIVER))?;
            return Ok(None);
        }
    };
    let chosen = &gpu.adapter;
    report.add(chosen_adapter(chosen, backend))?;
    report.add(f16(chosen))?;
    report.add(Check::pass(
        "buffer limits",
        format!(
            "largest buffer {} MiB, largest binding {} MiB: a tensor over {} MiB is split (VAE \
             tiles, attention slices)",
            chosen.max_buffer_size >> 20,
            chosen.max_storage_buffer_binding_size >> 20,
            chosen.max_tensor_bytes() >> 20
        ),
    ))?;
    report.add(compiler(&gpu))?;
    report.add(Check::pass(
        "device memory",
        format!("{} reserved at start", mib(gpu.reserved_bytes())),
    ))?;
    Ok(Some(gpu))
}

/// The adapter `--backend` picks, and why.
fn chosen_adapter(chosen: &AdapterInfo, backend: Backend) -> Check {
    let why = if backend != Backend::Auto {
        format!("the best adapter on --backend {backend}")
    } else if chosen.is_software() {
        "no hardware adapter on Vulkan, Metal or DX12, so the software one".to_string()
    } else {
        "the best hardware adapter (discrete before integrated) on Vulkan, Metal or DX12"
            .to_string()
    };
    let detail = format!("{}, driver {}: {why}", chosen.describe(), chosen.driver);
    if chosen.is_software() {
        Check::warn(
            "adapter",
            format!("{detail}; a software adapter runs SDXL very slowly"),
            INSTALL_DRIVER,
        )
    } else {
        Check::pass("adapter", detail)
    }
}

fn f16(adapter: &AdapterInfo) -> Check {
    if adapter.shader_f16 {
        Check::pass(
            "f16",
            "shader f16 supported: the UNet and text encoders compute in f16",
        )
    } else if adapter.api == "Gl" {
        Check::warn(
            "f16",
            "no shader f16 on OpenGL: everything computes in f32 (twice the memory, slower)",
            "use --backend vulkan, metal or dx12 where the GPU has one",
        )
    } else {
        Check::warn(
            "f16",
            "no shader f16: everything computes in f32 (twice the memory, slower)",
            "update the GPU driver; on Windows, DX12 needs the DXC compiler (dxcompiler.dll) for \
             f16, or use --backend vulkan",
        )
    }
}

/// Which compiler turns kernels into shaders, whether tensor-core kernels are there, and how
/// attention runs.
fn compiler(gpu: &Gpu) -> Check {
    let c = &gpu.compiler;
    let attention = match gpu.attention.fused_up_to {
        0 => "sliced matmul -> softmax -> matmul".to_string(),
        usize::MAX => "burn's fused kernels".to_string(),
        n => format!("burn's fused kernels for heads up to {n} wide, sliced beyond"),
    };
    let detail = format!(
        "{} (cooperative-matrix kernels {}); attention: {attention}",
        c.language.name(),
        if c.cooperative_matrix {
            "available"
        } else {
            "unavailable"
        }
    );
    if c.cooperative_matrix || gpu.adapter.is_software() {
        return Check::pass("compiler", detail);
    }
    let fix = if gpu.adapter.api == "Vulkan" && c.language == Language::Wgsl {
        "on a Vulkan GPU, --shader-compiler auto or spirv compiles to SPIR-V (with tensor-core \
         kernels where the driver offers VK_KHR_cooperative_matrix); a self-test failure makes \
         auto avoid it"
    } else {
        "a newer driver may expose cooperative-matrix support"
    };
    Check::warn("compiler", detail, fix)
}

/// Where the caches kept between runs are, and what they hold.
pub fn check_cache(report: &mut Report) -> std::io::Result<()> {
    let Some(root) = crate::cache::root() else {
        return report.add(Check::warn(
            "cache",
            "no user cache directory: every run compiles its kernels and tunes them again",
            "set SDXL_WGPU_CACHE_DIR to a writable folder",
        ));
    };
    let usage = crate::cache::usage(&root);
    let kept = if cfg!(feature = "persistent-cache") {
        "compiled SPIR-V kernels, autotune results, throughput probes and self-test verdicts"
    } else {
        "self-test verdicts only (this build has no persistent-cache feature)"
    };
    report.add(Check::pass(
        "cache",
        format!(
            "{}: {} environment(s), {} ({kept}; `sdxl-wgpu cache clear` empties it)",
            root.display(),
            usage.environments,
            mib(Some(usage.bytes))
        ),
    ))
}

/// Pooled memory is given back when asked (an idle engine must not hold a run's activations).
pub fn check_memory_release(gpu: Option<&Gpu>, report: &mut Report) -> std::io::Result<()> {
    let Some(gpu) = gpu else {
        return Ok(());
    };
    let before = gpu.reserved_bytes();
    gpu.device.memory_cleanup();
    let after = gpu.reserved_bytes();
    let detail = format!(
        "{} reserved before releasing pooled memory, {} after",
        mib(before),
        mib(after)
    );
    let check = match (before, after) {
        (Some(b), Some(a)) if a > b => Check::fail(
            "memory release",
            detail,
            "report it: releasing pooled memory should never grow it",
        ),
        (None, _) | (_, None) => Check::warn(
            "memory release",
            "the device does not report its pooled memory",
            "nothing to do: memory figures are unavailable on this backend",
        ),
        _ => Check::pass("memory release", detail),
    };
    report.add(check)
}
