//! Which compiler turns the engine's kernels into a device's shaders, chosen per adapter at run
//! time in one binary: SPIR-V with cooperative-matrix (tensor-core) matmul and attention on a
//! Vulkan GPU whose driver offers it, WGSL through naga elsewhere (OpenGL, DX12, Vulkan without
//! the SPIR-V compiler's features) and always on a software adapter, whose driver crashes on the
//! SPIR-V kernels (lavapipe: inside `vkCreateComputePipelines`), and MSL on Metal in a `metal`
//! build. `--shader-compiler` overrides the choice; a path `doctor --selftest` found wrong on
//! this adapter is avoided under `auto`.
//!
//! cubecl-wgpu makes the choice when a device is brought up, through the hook the vendored copy
//! adds (`vendor/cubecl-wgpu/PATCHED.md`): [`decide`] records the choice for the adapter about
//! to be opened, and the hook reads it back.

use std::sync::{Mutex, Once};

use cubecl::wgpu::VulkanCompiler;
use serde::{Deserialize, Serialize};

use super::verdicts::PathVerdict;
use super::{AdapterInfo, DeviceError};

/// The compiler a user asks for (`--shader-compiler`; spellings: the table below).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum ShaderCompiler {
    #[default]
    Auto,
    Wgsl,
    Spirv,
    SpirvPlain,
}

crate::spelled! {
    ShaderCompiler, "shader compiler",
    (ShaderCompiler::Auto, "auto",
        "SPIR-V with tensor-core kernels on a Vulkan GPU that has them, else WGSL (always WGSL on a \
         software adapter); avoids a path `doctor --selftest` found wrong"),
    (ShaderCompiler::Wgsl, "wgsl", "WGSL through naga, on every API"),
    (ShaderCompiler::Spirv, "spirv", "SPIR-V (Vulkan GPUs only), with cooperative-matrix kernels \
         where the driver has them"),
    (ShaderCompiler::SpirvPlain, "spirv-plain", "SPIR-V without cooperative-matrix (tensor-core) \
         kernels"),
}

/// A shading language kernels are compiled to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Language {
    #[serde(rename = "WGSL")]
    Wgsl,
    #[serde(rename = "SPIR-V")]
    Spirv,
    #[serde(rename = "MSL")]
    Msl,
}

impl Language {
    pub fn name(self) -> &'static str {
        match self {
            Language::Wgsl => "WGSL",
            Language::Spirv => "SPIR-V",
            Language::Msl => "MSL",
        }
    }
}

/// What turns the engine's kernels into the device's shaders, as the runtime set it up for one
/// device: a language, and whether cooperative-matrix (tensor-core) kernels are registered. A
/// self-test verdict names a path by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Compiler {
    pub language: Language,
    /// Cooperative-matrix instructions are available to matmul, convolution and attention.
    pub cooperative_matrix: bool,
}

impl Compiler {
    /// Asks the runtime that serves `device` (already brought up by burn: the lookup finds the
    /// registered client and opens nothing new).
    pub(super) fn of(device: &cubecl::wgpu::WgpuDevice) -> Compiler {
        let client = cubecl::Device::Wgpu(device.clone()).client();
        let language = match client.name() {
            "wgpu<spirv>" => Language::Spirv,
            "wgpu<msl>" => Language::Msl,
            _ => Language::Wgsl,
        };
        Compiler {
            language,
            cooperative_matrix: !client.features().matmul.cmma.is_empty(),
        }
    }

    /// `SPIR-V + tensor cores`, `WGSL`, ...
    pub fn describe(&self) -> String {
        let cores = if self.cooperative_matrix {
            " + tensor cores"
        } else {
            ""
        };
        format!("{}{cores}", self.language.name())
    }
}

/// Heads at most this wide run the fused kernels where the device has cooperative-matrix
/// flash attention (cubek's accelerated flash tiles head widths up to 128).
pub const FUSED_MAX_HEAD: usize = 128;

/// Which way attention runs on a device (`nn::attention`): heads up to `fused_up_to` wide on burn's fused
/// kernels, wider ones sliced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionKernel {
    pub fused_up_to: usize,
}

impl AttentionKernel {
    /// Always burn's fused kernels.
    pub const FUSED: AttentionKernel = AttentionKernel {
        fused_up_to: usize::MAX,
    };
    /// Always sliced matmul -> softmax -> matmul.
    pub const SLICED: AttentionKernel = AttentionKernel { fused_up_to: 0 };

    /// The kernels for a device: fused for heads up to [`FUSED_MAX_HEAD`] where
    /// cooperative-matrix flash attention exists, and on a software adapter, whose few threads
    /// the unit flash kernel's small grids do not starve (lavapipe, SDXL's 512x512 UNet shapes:
    /// fused 2.6 to 5.4 times faster than sliced, `benches/unet_vae.rs`); sliced for wider
    /// heads (the VAE's 512: there the unit flash kernel took over 16 minutes on lavapipe) and
    /// for every head on other GPUs.
    pub fn for_device(cooperative_matrix: bool, software: bool) -> AttentionKernel {
        if cooperative_matrix || software {
            AttentionKernel {
                fused_up_to: FUSED_MAX_HEAD,
            }
        } else {
            AttentionKernel::SLICED
        }
    }

    /// Whether heads `head_dim` wide run on the fused kernels.
    pub fn fuses(self, head_dim: usize) -> bool {
        head_dim <= self.fused_up_to
    }
}

/// The compilers a Vulkan adapter can run, best first: what `auto` tries, skipping a path the
/// self-test failed.
const VULKAN_PREFERENCE: [VulkanCompiler; 3] = [
    VulkanCompiler::Spirv,
    VulkanCompiler::SpirvWithoutCooperativeMatrix,
    VulkanCompiler::Wgsl,
];

/// Whether a self-test verdict is about what `choice` runs (`Spirv` may register no
/// cooperative matrix where the driver has none: its verdicts then read `SPIR-V` alone).
fn runs(choice: VulkanCompiler, verdict: &PathVerdict) -> bool {
    let c = verdict.compiler;
    match choice {
        VulkanCompiler::Spirv => c.language == Language::Spirv && c.cooperative_matrix,
        VulkanCompiler::SpirvWithoutCooperativeMatrix => {
            c.language == Language::Spirv && !c.cooperative_matrix
        }
        VulkanCompiler::Wgsl => c.language == Language::Wgsl,
    }
}

/// The compiler a Vulkan adapter gets for `request`, given its self-test `verdicts`: WGSL on a
/// software adapter whatever the request (asking for SPIR-V there is an error); under `auto`,
/// the best compiler none of whose tested paths failed.
pub fn vulkan_choice(
    request: ShaderCompiler,
    adapter: &AdapterInfo,
    verdicts: &[PathVerdict],
) -> Result<VulkanCompiler, DeviceError> {
    let spirv_built = cfg!(not(target_os = "macos"));
    let spirv = matches!(request, ShaderCompiler::Spirv | ShaderCompiler::SpirvPlain);
    match request {
        _ if spirv && adapter.is_software() => Err(DeviceError::Compiler {
            adapter: adapter.describe(),
            reason: "SPIR-V kernels crash inside software Vulkan drivers such as lavapipe; this \
                     adapter runs WGSL (--shader-compiler auto or wgsl)"
                .into(),
        }),
        _ if spirv && !spirv_built => Err(DeviceError::Compiler {
            adapter: adapter.describe(),
            reason: "this build has no SPIR-V compiler (macOS builds compile to MSL or WGSL)"
                .into(),
        }),
        ShaderCompiler::Spirv => Ok(VulkanCompiler::Spirv),
        ShaderCompiler::SpirvPlain => Ok(VulkanCompiler::SpirvWithoutCooperativeMatrix),
        ShaderCompiler::Wgsl => Ok(VulkanCompiler::Wgsl),
        ShaderCompiler::Auto if adapter.is_software() || !spirv_built => Ok(VulkanCompiler::Wgsl),
        ShaderCompiler::Auto => Ok(VULKAN_PREFERENCE
            .into_iter()
            .find(|&choice| !verdicts.iter().any(|v| runs(choice, v) && !v.passed))
            .unwrap_or(VulkanCompiler::Wgsl)),
    }
}

/// What `auto` passed over on `adapter` to reach `choice`, as a note for the user.
pub(super) fn avoided(
    adapter: &AdapterInfo,
    verdicts: &[PathVerdict],
    choice: VulkanCompiler,
) -> Option<String> {
    let failed: Vec<String> = VULKAN_PREFERENCE
        .iter()
        .take_while(|&&c| c != choice)
        .flat_map(|&c| verdicts.iter().filter(move |v| runs(c, v) && !v.passed))
        .map(|v| {
            format!(
                "{} (error {:.2e}, limit {:.2e})",
                v.path(),
                v.error,
                v.limit
            )
        })
        .collect();
    (!failed.is_empty()).then(|| {
        format!(
            "note: the self-test failed {} on {}; not using it (doctor --selftest tests again)",
            failed.join(", "),
            adapter.name
        )
    })
}

/// The adapter a choice is for: name, ids and driver, as [`super::AdapterInfo`] has them.
type AdapterKey = (String, u32, u32, String);

static DECIDED: Mutex<Vec<(AdapterKey, VulkanCompiler)>> = Mutex::new(Vec::new());

/// Records `choice` for `adapter`, for the device about to be brought up on it.
pub(super) fn decide(adapter: &AdapterInfo, choice: VulkanCompiler) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| cubecl::wgpu::set_vulkan_compiler_choice(hook));
    let key = (
        adapter.name.clone(),
        adapter.vendor,
        adapter.device_id,
        adapter.driver.clone(),
    );
    let mut decided = DECIDED.lock().unwrap_or_else(|e| e.into_inner());
    decided.retain(|(k, _)| *k != key);
    decided.push((key, choice));
}

/// The hook cubecl-wgpu calls when it brings up a Vulkan device: the recorded choice, never
/// SPIR-V on a software adapter, SPIR-V (upstream's behaviour) on a GPU nobody decided for.
fn hook(info: &wgpu::AdapterInfo) -> VulkanCompiler {
    if info.device_type == wgpu::DeviceType::Cpu {
        return VulkanCompiler::Wgsl;
    }
    let key = (
        info.name.clone(),
        info.vendor,
        info.device,
        super::driver(info),
    );
    let decided = DECIDED.lock().unwrap_or_else(|e| e.into_inner());
    decided
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(VulkanCompiler::Spirv, |(_, choice)| *choice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::verdicts::PathVerdict;

    fn adapter(kind: wgpu::DeviceType) -> AdapterInfo {
        AdapterInfo::synthetic("test adapter", wgpu::Backend::Vulkan, kind)
    }

    fn verdict(language: Language, cooperative_matrix: bool, passed: bool) -> PathVerdict {
        PathVerdict {
            compiler: Compiler {
                language,
                cooperative_matrix,
            },
            f16: true,
            passed,
            error: if passed { 1e-3 } else { 0.5 },
            limit: 2e-2,
            detail: String::new(),
        }
    }

    #[test]
    fn a_software_adapter_never_gets_spirv() {
        let cpu = adapter(wgpu::DeviceType::Cpu);
        for request in [ShaderCompiler::Auto, ShaderCompiler::Wgsl] {
            assert_eq!(
                vulkan_choice(request, &cpu, &[]).unwrap(),
                VulkanCompiler::Wgsl
            );
        }
        assert!(matches!(
            vulkan_choice(ShaderCompiler::Spirv, &cpu, &[]),
            Err(DeviceError::Compiler { .. })
        ));
        let info = wgpu::AdapterInfo {
            name: "test adapter".into(),
            device_type: wgpu::DeviceType::Cpu,
            ..synthetic_wgpu_info()
        };
        decide(&cpu, VulkanCompiler::Spirv); // even a recorded SPIR-V choice
        assert_eq!(hook(&info), VulkanCompiler::Wgsl);
    }

    #[test]
    fn auto_takes_the_best_compiler_without_a_failed_path() {
        let gpu = adapter(wgpu::DeviceType::DiscreteGpu);
        let choose = |verdicts: &[PathVerdict]| vulkan_choice(ShaderCompiler::Auto, &gpu, verdicts);
        if cfg!(target_os = "macos") {
            return;
        }
        assert_eq!(choose(&[]).unwrap(), VulkanCompiler::Spirv);
        let cmma_failed = [verdict(Language::Spirv, true, false)];
        assert_eq!(
            choose(&cmma_failed).unwrap(),
            VulkanCompiler::SpirvWithoutCooperativeMatrix
        );
        let spirv_failed = [
            verdict(Language::Spirv, true, false),
            verdict(Language::Spirv, false, false),
            verdict(Language::Wgsl, false, true),
        ];
        assert_eq!(choose(&spirv_failed).unwrap(), VulkanCompiler::Wgsl);
        // an explicit request is kept
        assert_eq!(
            vulkan_choice(ShaderCompiler::Spirv, &gpu, &spirv_failed).unwrap(),
            VulkanCompiler::Spirv
        );
    }

    fn synthetic_wgpu_info() -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            vendor: 0,
            device: 0,
            ..wgpu::AdapterInfo::new(wgpu::DeviceType::DiscreteGpu, wgpu::Backend::Vulkan)
        }
    }
}
