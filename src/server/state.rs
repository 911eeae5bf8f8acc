//! What the HTTP handlers and the GPU worker share: the configuration, the jobs and their
//! queue, the running job, the checkpoint catalogue, the LoRA index, A1111's options and the
//! figures the metrics report. No device handle is here: only the worker owns the engine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value};

use super::jobs::{Job, Jobs, Retention};
use super::metrics::Metrics;
use super::models::Catalogue;
use super::queue::JobQueue;
use crate::device::{Backend, Precision, ShaderCompiler};
use crate::intake::{LoraFolder, UpscalerFolder};
use crate::pipeline::LoadOptions;
use crate::policy::PolicyName;
use crate::sampling::Prediction;

/// How a server runs (the flags of `sdxl-wgpu serve`).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The checkpoint loaded at start (else the first of `models_dir`).
    pub model: Option<PathBuf>,
    /// Checkpoints clients may switch to.
    pub models_dir: Option<PathBuf>,
    /// Where `<lora:NAME:W>` tags are looked up.
    pub lora_dir: Option<PathBuf>,
    /// Where model upscalers (`hr_upscaler` names, `GET upscalers`) are.
    pub upscalers_dir: Option<PathBuf>,
    pub listen: SocketAddr,
    /// HTTP Basic credentials; empty: no authentication.
    pub auth: Vec<(String, String)>,
    /// Jobs waiting at most (the running one not counted).
    pub queue_size: usize,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// Where `save_images: true` writes.
    pub outputs: Option<PathBuf>,
    /// The quality policy for every request; `None`: each checkpoint's own
    /// ([`PolicyName::for_model`]).
    pub policy: Option<PolicyName>,
    pub precision: Precision,
    pub backend: Backend,
    /// The compiler a Vulkan adapter's kernels go through.
    pub shader_compiler: ShaderCompiler,
    /// A live preview every this many steps (0: none).
    pub preview_every: usize,
    pub retention: Retention,
    /// How long the activation memory of the last job's shape stays pooled for a next job of
    /// the same shape (zero: released after every job).
    pub keep_warm: Duration,
    /// How long a client may take to send a request's head, or pause while sending its body.
    pub client_timeout: Duration,
    /// What every checkpoint loads with instead of its markers (prediction type, zero terminal
    /// SNR); default: as each checkpoint says.
    pub load: LoadOptions,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model: None,
            models_dir: None,
            lora_dir: None,
            upscalers_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7860)),
            auth: Vec::new(),
            queue_size: 64,
            max_body_bytes: 64 << 20,
            outputs: None,
            policy: None,
            precision: Precision::Auto,
            backend: Backend::Auto,
            shader_compiler: ShaderCompiler::Auto,
            preview_every: 5,
            retention: Retention::default(),
            keep_warm: Duration::from_secs(60),
            client_timeout: Duration::from_secs(30),
            load: LoadOptions::default(),
        }
    }
}

/// Device memory as the worker last read it (after a job or a load).
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceMemory {
    pub in_use: u64,
    pub reserved: u64,
    pub peak_reserved: u64,
    /// Whether the last job's activation memory is being kept for a next of its shape.
    pub warm: bool,
}

/// Everything behind the handlers.
pub struct Shared {
    pub config: ServerConfig,
    pub jobs: Jobs,
    pub queue: Arc<dyn JobQueue>,
    /// The job the worker runs now.
    pub current: Mutex<Option<Arc<Job>>>,
    pub catalogue: Mutex<Catalogue>,
    pub loras: Mutex<Arc<LoraFolder>>,
    pub upscalers: UpscalerFolder,
    /// A1111 options clients set and read back (`POST/GET options`), beyond the ones we act on.
    pub options: Mutex<Map<String, Value>>,
    pub metrics: Metrics,
    pub memory: Mutex<DeviceMemory>,
    /// The adapter the worker computes on (name, API).
    pub adapter: String,
}

impl Shared {
    /// The quality policy of jobs on `model`: `--policy`, else the checkpoint's own.
    pub fn policy_for(&self, model: &Path) -> PolicyName {
        self.config.policy.unwrap_or_else(|| {
            let catalogue = lock(&self.catalogue);
            let detected = catalogue.entry(model).and_then(|e| e.prediction);
            let prediction = self.config.load.prediction.or(detected);
            PolicyName::for_model(prediction.unwrap_or(Prediction::Epsilon)).0
        })
    }
}

/// Locks `m`, whatever a panicking holder left (every guarded value stays consistent between
/// statements).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
