//! Choosing the GPU: which adapters wgpu sees on each graphics API, what they can do (f16,
//! buffer limits), bringing one up as a burn device with the compiler chosen for it
//! ([`compiler`]) and the runtime configured ([`runtime`]: caches, autotune budget, kernel
//! counts), the self-test verdicts that steer both ([`verdicts`]), and the device's pooled
//! memory.
//!
//! `auto` prefers a hardware GPU on Vulkan, Metal or DX12 and falls back to a software adapter
//! (Mesa lavapipe) with a warning, and to OpenGL only where those APIs have no adapter at all; a
//! named API that has no adapter is an error that lists what was found instead.

mod compiler;
pub mod runtime;
pub mod verdicts;

pub use compiler::{
    vulkan_choice, AttentionKernel, Compiler, Language, ShaderCompiler, FUSED_MAX_HEAD,
};
pub use verdicts::{path_name, PathVerdict};

use burn::tensor::wgpu::WgpuBackend;
use burn::tensor::{Device, DeviceKind};
use serde::Serialize;

use crate::field::{Described, Field, FieldNames, Quantities};

/// The graphics API to run on (spellings and meanings: the `spelled!` table below).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Backend {
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl Backend {
    fn wgpu(self) -> wgpu::Backends {
        match self {
            Backend::Auto => {
                wgpu::Backends::VULKAN
                    | wgpu::Backends::METAL
                    | wgpu::Backends::DX12
                    | wgpu::Backends::GL
            }
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
        }
    }
}

crate::spelled! {
    Backend, "backend",
    (Backend::Auto, "auto",
        "The best adapter on Vulkan, Metal or DX12, hardware before software (GL if none)"),
    (Backend::Vulkan, "vulkan", ""),
    (Backend::Metal, "metal", ""),
    (Backend::Dx12, "dx12", ""),
    (Backend::Gl, "gl", "OpenGL / GLES"),
}

/// The float precision a run computes in (`--precision`; spellings: the table below).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Precision {
    #[default]
    Auto,
    F16,
    F32,
}

impl Precision {
    /// Whether to compute in f16 on `adapter`: `auto` and `f16` both fall back to f32 on an
    /// adapter without f16 shaders (the second with a warning from the caller).
    pub fn use_f16(self, adapter: &AdapterInfo) -> bool {
        self != Precision::F32 && adapter.shader_f16
    }
}

crate::spelled! {
    Precision, "precision",
    (Precision::Auto, "auto", "f16 where the adapter has f16 shaders, else f32"),
    (Precision::F16, "f16", ""),
    (Precision::F32, "f32", ""),
}

/// Why no device came up.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no GPU adapter found on any graphics API (Vulkan, Metal, DX12, GL); install a GPU driver, or Mesa's software Vulkan driver (Debian: apt install mesa-vulkan-drivers)")]
    NoAdapter,
    #[error("{}", unavailable(&Quantities, *.requested, .found))]
    Unavailable { requested: Backend, found: String },
    #[error("cannot start {adapter}: {reason}")]
    Init { adapter: String, reason: String },
    #[error("shader compiler on {adapter}: {reason}")]
    Compiler { adapter: String, reason: String },
    #[error("the GPU failed while running: {0}")]
    Execution(String),
}

fn unavailable(names: &dyn FieldNames, requested: Backend, found: &str) -> String {
    let backend = names.spell(Field::Backend);
    format!("{backend} {requested}: no adapter on that API; found: {found}")
}

impl Described for DeviceError {
    fn describe(&self, names: &dyn FieldNames) -> String {
        match self {
            Self::Unavailable { requested, found } => unavailable(names, *requested, found),
            other => other.to_string(),
        }
    }
}

/// One adapter as wgpu reports it.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterInfo {
    pub name: String,
    /// "Vulkan", "Metal", "Dx12", "Gl".
    pub api: String,
    /// "DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Cpu" (software), "Other".
    pub device_type: String,
    pub driver: String,
    pub shader_f16: bool,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    /// The PCI vendor and device ids (0 where the API gives none).
    pub vendor: u32,
    pub device_id: u32,
    #[serde(skip)]
    backend: wgpu::Backend,
    #[serde(skip)]
    kind: wgpu::DeviceType,
    /// Position among adapters of the same API and type: how burn addresses it.
    #[serde(skip)]
    index: usize,
}

impl AdapterInfo {
    /// A software rasteriser such as lavapipe or llvmpipe.
    pub fn is_software(&self) -> bool {
        self.kind == wgpu::DeviceType::Cpu
    }

    /// The largest single buffer the device can bind: the cap on any one tensor.
    pub fn max_tensor_bytes(&self) -> u64 {
        self.max_buffer_size
            .min(self.max_storage_buffer_binding_size)
    }

    fn rank(&self) -> u8 {
        match self.kind {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        }
    }

    pub fn describe(&self) -> String {
        format!("{} ({}, {})", self.name, self.api, self.device_type)
    }

    /// What tells this adapter and its driver from any other: self-test verdicts and the cache
    /// environment are kept per identity, so a new driver starts afresh.
    pub fn identity(&self) -> String {
        format!(
            "{} | {} | {:04x}:{:04x} | {}",
            self.name, self.api, self.vendor, self.device_id, self.driver
        )
    }

    /// An adapter that was never enumerated, for tests of decisions made from its description.
    #[doc(hidden)]
    pub fn synthetic(name: &str, backend: wgpu::Backend, kind: wgpu::DeviceType) -> AdapterInfo {
        AdapterInfo {
            name: name.into(),
            api: format!("{backend:?}"),
            device_type: format!("{kind:?}"),
            driver: String::new(),
            shader_f16: true,
            max_buffer_size: 1 << 30,
            max_storage_buffer_binding_size: 1 << 30,
            vendor: 0,
            device_id: 0,
            backend,
            kind,
            index: 0,
        }
    }
}

/// Turns off Mesa's `VK_LAYER_MESA_device_select`, an implicit Vulkan layer that, on every
/// instance created with wgpu's surface extensions, connects to a Wayland display to find the
/// "default" GPU; on a headless machine each attempt prints `error: XDG_RUNTIME_DIR is invalid`
/// (two per instance, six before a `generate`). The engine ranks adapters itself, so the layer
/// adds nothing. Left alone when the user set `NODEVICE_SELECT` or steers the layer with
/// `MESA_VK_DEVICE_SELECT`. Changes the environment: call at the start of `main`, before any
/// thread exists.
pub fn quiet_vulkan_layers() {
    let steered = ["NODEVICE_SELECT", "MESA_VK_DEVICE_SELECT"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if !steered {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// The APIs `auto` uses; it falls back to OpenGL only when these have no adapter at all (asking
/// GL's EGL on a headless machine prints warnings of its own; `--backend gl` asks it directly).
const NATIVE_APIS: [wgpu::Backend; 3] = [
    wgpu::Backend::Vulkan,
    wgpu::Backend::Metal,
    wgpu::Backend::Dx12,
];

/// Every adapter wgpu sees on the APIs `backend` covers, in enumeration order per API.
pub fn adapters(backend: Backend) -> Vec<AdapterInfo> {
    let apis = [NATIVE_APIS.as_slice(), &[wgpu::Backend::Gl]].concat();
    adapters_on(
        apis.into_iter()
            .filter(|api| backend.wgpu().contains(wgpu::Backends::from(*api))),
    )
}

fn adapters_on(apis: impl IntoIterator<Item = wgpu::Backend>) -> Vec<AdapterInfo> {
    let mut found = Vec::new();
    for api in apis {
        let backends = wgpu::Backends::from(api);
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let listed = futures_lite::future::block_on(instance.enumerate_adapters(backends));
        let mut per_type: Vec<(wgpu::DeviceType, usize)> = Vec::new();
        for adapter in listed {
            let info = adapter.get_info();
            let limits = adapter.limits();
            let index = match per_type.iter_mut().find(|(t, _)| *t == info.device_type) {
                Some((_, n)) => {
                    *n += 1;
                    *n - 1
                }
                None => {
                    per_type.push((info.device_type, 1));
                    0
                }
            };
            found.push(AdapterInfo {
                name: info.name.clone(),
                api: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: driver(&info),
                shader_f16: adapter.features().contains(wgpu::Features::SHADER_F16),
                max_buffer_size: limits.max_buffer_size,
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                vendor: info.vendor,
                device_id: info.device,
                backend: info.backend,
                kind: info.device_type,
                index,
            });
        }
    }
    found
}

/// The driver's name and version as one string.
fn driver(info: &wgpu::AdapterInfo) -> String {
    format!("{} {}", info.driver, info.driver_info)
        .trim()
        .to_string()
}

/// A device brought up for computing, the adapter behind it, the compiler serving it and
/// what the self-test found on its paths.
#[derive(Clone, Debug)]
pub struct Gpu {
    pub device: Device,
    pub adapter: AdapterInfo,
    pub compiler: Compiler,
    /// How models loaded on it run attention ([`AttentionKernel::for_device`]; a test may set
    /// another before loading).
    pub attention: AttentionKernel,
    /// `doctor --selftest`'s verdicts for this adapter and build (empty: never tested).
    pub verdicts: Vec<PathVerdict>,
    /// What the user should read once about how the device was set up (a compiler the
    /// self-test failed, avoided).
    pub notes: Vec<String>,
}

/// Where an image was made, as its PNG's JSON metadata records it (`"backend"`): the graphics
/// API, the adapter, the shading language kernels were compiled to and the compute precision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MadeOn {
    /// "Vulkan", "Metal", "Dx12", "Gl".
    pub api: String,
    pub adapter: String,
    pub device_type: String,
    pub driver: String,
    /// `WGSL`, `SPIR-V` or `MSL`.
    pub shaders: &'static str,
    /// Cooperative-matrix (tensor-core) kernels were available to the run.
    pub tensor_cores: bool,
    /// `f16` or `f32`: what the UNet and text encoders computed in.
    pub precision: &'static str,
}

impl Gpu {
    /// This device as an image's metadata names it, computing in f16 or not.
    pub fn made_on(&self, f16: bool) -> MadeOn {
        MadeOn {
            api: self.adapter.api.clone(),
            adapter: self.adapter.name.clone(),
            device_type: self.adapter.device_type.clone(),
            driver: self.adapter.driver.clone(),
            shaders: self.compiler.language.name(),
            tensor_cores: self.compiler.cooperative_matrix,
            precision: if f16 { "f16" } else { "f32" },
        }
    }

    /// Waits for the queued work (for timings and progress), surfacing a device failure.
    pub fn sync(&self) -> Result<(), DeviceError> {
        self.device
            .sync()
            .map_err(|e| DeviceError::Execution(format!("{e:?}")))
    }

    /// Submits the queued work without waiting for it, surfacing a failure already known.
    pub fn flush(&self) -> Result<(), DeviceError> {
        self.device
            .flush()
            .map_err(|e| DeviceError::Execution(format!("{e:?}")))
    }

    /// Bytes the device's pools have reserved (what the process holds on the GPU), if known.
    pub fn reserved_bytes(&self) -> Option<u64> {
        memory_in_use(&self.device).map(|(_, reserved)| reserved)
    }

    /// The self-test's failed verdict for this device's compiler in f16 or f32, if it has one.
    pub fn failed(&self, f16: bool) -> Option<&PathVerdict> {
        self.verdicts
            .iter()
            .find(|v| v.compiler == self.compiler && v.f16 == f16 && !v.passed)
    }

    /// Whether to compute in f16 for `precision`, and what to tell the user about it: `auto`
    /// and `f16` fall back to f32 on an adapter without f16 shaders (the second with a
    /// warning); `auto` also where the self-test found f16 wrong on this path, which `f16`
    /// runs anyway, with a warning.
    pub fn use_f16(&self, precision: Precision) -> (bool, Option<String>) {
        if !precision.use_f16(&self.adapter) {
            let warning = (precision == Precision::F16).then(|| {
                format!(
                    "warning: {} has no f16 shaders; computing in f32",
                    self.adapter.name
                )
            });
            return (false, warning);
        }
        let Some(failed) = self.failed(true) else {
            return (true, None);
        };
        let found = format!(
            "f16 failed the self-test on {} ({}: error {:.2e}, limit {:.2e})",
            self.adapter.name,
            failed.path(),
            failed.error,
            failed.limit
        );
        match precision {
            Precision::F16 => (
                true,
                Some(format!("warning: {found}; computing in f16 as asked")),
            ),
            _ => (false, Some(format!("note: {found}; computing in f32"))),
        }
    }
}

/// The adapter `backend` picks: the best hardware GPU, else a software one, with a warning
/// in that case when the user asked for `auto`.
pub fn choose(backend: Backend) -> Result<(AdapterInfo, Option<String>), DeviceError> {
    let native = adapters_on(NATIVE_APIS);
    let candidates = match backend {
        Backend::Auto if !native.is_empty() => native,
        _ => adapters(backend),
    };
    let Some(best) = candidates.iter().min_by_key(|a| a.rank()).cloned() else {
        let others = adapters(Backend::Auto);
        if others.is_empty() {
            return Err(DeviceError::NoAdapter);
        }
        return Err(DeviceError::Unavailable {
            requested: backend,
            found: others
                .iter()
                .map(AdapterInfo::describe)
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let warning = (best.is_software() && backend == Backend::Auto).then(|| {
        format!(
            "no hardware GPU found; using the software adapter {}: expect it to be very slow",
            best.describe()
        )
    });
    Ok((best, warning))
}

/// Brings up the adapter `backend` picks as a burn device, with the compiler `auto` chooses.
/// Call once per adapter and process (the tests run a GL device beside a Vulkan one).
pub fn open(backend: Backend) -> Result<(Gpu, Option<String>), DeviceError> {
    open_with(backend, ShaderCompiler::Auto)
}

/// [`open`] with the compiler `request` asks for ([`compiler::vulkan_choice`]). Configures the
/// runtime first if no device came up before ([`runtime::configure`]).
pub fn open_with(
    backend: Backend,
    request: ShaderCompiler,
) -> Result<(Gpu, Option<String>), DeviceError> {
    let (adapter, warning) = choose(backend)?;
    let env = runtime::configure(&adapter.identity());
    let verdicts = verdicts::load(env, &adapter);
    let mut notes = Vec::new();
    if adapter.backend == wgpu::Backend::Vulkan {
        let choice = vulkan_choice(request, &adapter, &verdicts)?;
        if let Some(note) = compiler::avoided(&adapter, &verdicts, choice) {
            notes.push(note);
        }
        compiler::decide(&adapter, choice);
    } else if matches!(request, ShaderCompiler::Spirv | ShaderCompiler::SpirvPlain) {
        return Err(DeviceError::Compiler {
            adapter: adapter.describe(),
            reason: "SPIR-V kernels run on Vulkan adapters only (--backend vulkan)".into(),
        });
    }
    let (api, kind, runtime_kind) = addresses(&adapter);
    let device = Device::wgpu_options()
        .graphics_api(api)
        .device_kind(kind)
        .init()
        .map_err(|e| DeviceError::Init {
            adapter: adapter.describe(),
            reason: e.to_string(),
        })?;
    // the same device burn registered (burn-tensor's `wgpu_device`: kind, then API)
    let compiler = Compiler::of(&cubecl::wgpu::WgpuDevice::new(runtime_kind).on(api));
    if request == ShaderCompiler::Wgsl && compiler.language != Language::Wgsl {
        return Err(DeviceError::Compiler {
            adapter: adapter.describe(),
            reason: format!("this build compiles to {} here", compiler.language.name()),
        });
    }
    let attention = AttentionKernel::for_device(compiler.cooperative_matrix, adapter.is_software());
    let gpu = Gpu {
        device,
        adapter,
        compiler,
        attention,
        verdicts,
        notes,
    };
    Ok((gpu, warning))
}

/// How burn and cubecl address `adapter`: its API, burn's device kind and cubecl's.
fn addresses(adapter: &AdapterInfo) -> (WgpuBackend, DeviceKind, cubecl::wgpu::WgpuDeviceKind) {
    use cubecl::wgpu::WgpuDeviceKind as Runtime;
    let api = match adapter.backend {
        wgpu::Backend::Metal => WgpuBackend::Metal,
        wgpu::Backend::Dx12 => WgpuBackend::Dx12,
        wgpu::Backend::Gl => WgpuBackend::Gl,
        _ => WgpuBackend::Vulkan,
    };
    let i = adapter.index;
    let (kind, runtime) = match adapter.kind {
        wgpu::DeviceType::DiscreteGpu => (DeviceKind::DiscreteGpu(i), Runtime::DiscreteGpu(i)),
        wgpu::DeviceType::IntegratedGpu => {
            (DeviceKind::IntegratedGpu(i), Runtime::IntegratedGpu(i))
        }
        wgpu::DeviceType::VirtualGpu => (DeviceKind::VirtualGpu(i), Runtime::VirtualGpu(i)),
        wgpu::DeviceType::Cpu => (DeviceKind::Cpu, Runtime::Cpu),
        wgpu::DeviceType::Other => (DeviceKind::DefaultDevice, Runtime::DefaultDevice),
    };
    (api, kind, runtime)
}

/// Bytes the device's memory pools hold for live tensors, and have reserved in all.
pub fn memory_in_use(device: &Device) -> Option<(u64, u64)> {
    device
        .memory_pool_usage()
        .map(|u| (u.bytes_in_use, u.bytes_reserved))
}
