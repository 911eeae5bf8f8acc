//! PATCH (sdxl-wgpu): the application chooses, per adapter, the compiler a Vulkan adapter gets.
//!
//! Upstream compiles to SPIR-V on every Vulkan adapter that has the SPIR-V compiler's required
//! features whenever the `spirv` feature is built in, with no way to ask for WGSL on one of them
//! (software drivers such as lavapipe crash on the SPIR-V kernels) or to run SPIR-V without the
//! cooperative-matrix kernels. An application registers a [`VulkanCompilerChoice`] before it
//! brings up a device; without one the behaviour is upstream's.

use std::sync::RwLock;

/// What a Vulkan adapter's kernels are compiled to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VulkanCompiler {
    /// SPIR-V with every extension the device has, cooperative matrix included (upstream).
    Spirv,
    /// SPIR-V, without registering cooperative-matrix (tensor-core) instructions.
    SpirvWithoutCooperativeMatrix,
    /// WGSL through naga, as on every other graphics API.
    Wgsl,
}

/// Decides the compiler of one Vulkan adapter from what wgpu reports of it. Called twice per
/// device brought up (when the device is requested and when its features are registered): it
/// must give the same answer both times.
pub type VulkanCompilerChoice = fn(&wgpu::AdapterInfo) -> VulkanCompiler;

static CHOICE: RwLock<Option<VulkanCompilerChoice>> = RwLock::new(None);

/// Registers the choice for every Vulkan device brought up afterwards.
pub fn set_vulkan_compiler_choice(choice: VulkanCompilerChoice) {
    *CHOICE.write().unwrap_or_else(|e| e.into_inner()) = Some(choice);
}

/// The compiler `adapter` gets: the registered choice's, else [`VulkanCompiler::Spirv`].
#[cfg_attr(not(feature = "spirv"), allow(dead_code))]
pub(crate) fn vulkan_compiler(adapter: &wgpu::Adapter) -> VulkanCompiler {
    let choice = *CHOICE.read().unwrap_or_else(|e| e.into_inner());
    choice.map_or(VulkanCompiler::Spirv, |choose| choose(&adapter.get_info()))
}
