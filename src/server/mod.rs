//! `sdxl-wgpu serve`: one process that keeps a checkpoint on the GPU and serves txt2img and
//! img2img all day, each request with its own LoRA set, over AUTOMATIC1111's HTTP API (so
//! existing clients work unchanged) and an asynchronous jobs API. One worker thread owns the
//! engine; handlers only queue jobs and read their state (`docs/ARCHITECTURE.md`).

mod a1111;
mod auth;
mod backend;
mod error;
mod http;
mod job_view;
mod jobs;
mod local;
mod metrics;
mod models;
mod native;
#[cfg(feature = "nats")]
pub mod nats;
mod preview;
mod queue;
mod state;
mod submit;
mod upscaling;
mod worker;

pub use auth::parse_credentials;
pub use jobs::Retention;
pub use queue::{JobQueue, LocalQueue, Refused};
pub use state::ServerConfig;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tower_http::limit::RequestBodyLimitLayer;

use crate::device::{self, Gpu};
use crate::intake::{LoraFolder, UpscalerFolder};
use crate::weights::WeightDtype;
use backend::JobBackend;
use error::ApiError;
use jobs::{Jobs, Task};
use metrics::{Gauges, Metrics};
use models::Catalogue;
use state::{lock, DeviceMemory, Shared};
use worker::Worker;

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("no checkpoint: the server was given no model file, and no models folder holding one")]
    NoModel,
    #[error("reading {0}: {1}")]
    Folder(std::path::PathBuf, std::io::Error),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error("{0}")]
    Load(String),
    #[error("listening on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// The GPU worker thread and the state it shares with whoever feeds it jobs: the HTTP
/// handlers of `serve`, or a NATS worker's bridge.
struct Core {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Core {
    /// Scans the checkpoints, starts the worker and loads the selected checkpoint on it.
    async fn start(
        config: ServerConfig,
        gpu: Gpu,
        dtype: WeightDtype,
    ) -> Result<Core, ServerError> {
        let catalogue = Catalogue::scan(config.model.as_deref(), config.models_dir.as_deref())
            .map_err(|e| ServerError::Folder(config.models_dir.clone().unwrap_or_default(), e))?;
        let Some(selected) = catalogue.selected.clone() else {
            return Err(ServerError::NoModel);
        };
        let shared = Arc::new(Shared {
            jobs: Jobs::new(config.retention),
            queue: Arc::new(LocalQueue::new(config.queue_size)),
            current: Mutex::new(None),
            catalogue: Mutex::new(catalogue),
            loras: Mutex::new(Arc::new(LoraFolder::scan(config.lora_dir.as_deref()))),
            upscalers: UpscalerFolder::new(config.upscalers_dir.as_deref()),
            options: Mutex::new(Map::new()),
            metrics: Metrics::default(),
            memory: Mutex::new(DeviceMemory::default()),
            adapter: gpu.adapter.describe(),
            config,
        });
        let worker = Worker::new(shared.clone(), gpu, dtype);
        let worker = std::thread::Builder::new()
            .name("sdxl-gpu-worker".into())
            .spawn(move || worker.run())
            .map_err(|e| ServerError::Load(format!("starting the worker: {e}")))?;
        let mut core = Core {
            shared,
            worker: Some(worker),
        };
        let first = submit::submit(&core.shared, Task::LoadModel(selected), None)
            .map_err(|e| ServerError::Load(e.detail))?;
        if let Some(failure) = submit::finished(&first).await.failure {
            core.stop().await;
            return Err(ServerError::Load(failure.message));
        }
        Ok(core)
    }

    /// Cancels the running job and the queued ones, waits for the worker to release the
    /// device.
    async fn stop(&mut self) {
        for id in self.shared.queue.close() {
            if let Some(job) = self.shared.jobs.get(id) {
                job.stop();
                job.finish(Err(jobs::Failure {
                    status: 503,
                    message: "the server is shutting down".into(),
                }));
            }
        }
        if let Some(job) = lock(&self.shared.current).clone() {
            job.stop();
        }
        if let Some(worker) = self.worker.take() {
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        }
    }
}

/// A started server: its address, and the way to stop it.
pub struct Server {
    pub addr: SocketAddr,
    core: Core,
    http: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Brings up the device, loads the selected checkpoint on the worker and binds `listen`;
    /// returns once requests are served. Must be called inside a tokio runtime.
    pub async fn start(
        config: ServerConfig,
        gpu: Gpu,
        dtype: WeightDtype,
    ) -> Result<Self, ServerError> {
        let mut core = Core::start(config, gpu, dtype).await?;
        let listen = core.shared.config.listen;
        let bound = bind(listen).await;
        let (listener, addr) = match bound {
            Ok(bound) => bound,
            Err(e) => {
                core.stop().await;
                return Err(e);
            }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(core.shared.clone());
        let timeout = core.shared.config.client_timeout;
        let http = tokio::spawn(http::serve(listener, app, timeout, stopped));
        Ok(Server {
            addr,
            core,
            http: Some(http),
            stop: Some(stop),
        })
    }

    /// Stops accepting requests, cancels the running job and the queued ones, waits for the
    /// worker to release the device.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.core.stop().await;
        if let Some(http) = self.http.take() {
            let _ = http.await;
        }
    }
}

/// A listener on `listen` and the address it got.
async fn bind(listen: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServerError::Listen(listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Listen(listen, e))?;
    Ok((listener, addr))
}

/// Every route of `serve`, behind authentication and the body limit.
fn router(shared: Arc<Shared>) -> Router {
    let routes = api_routes(a1111::local_routes())
        .route("/metrics", get(render_metrics))
        .with_state(shared.clone());
    guarded(routes, &shared.config)
}

/// The routes `serve` and a NATS API node share: A1111's (with the backend's `own` ones), the
/// jobs API and `/healthz`.
fn api_routes<B: JobBackend>(own: Router<B>) -> Router<B> {
    Router::new()
        .nest("/sdapi/v1", a1111::routes().merge(own))
        .merge(native::routes())
        .route("/healthz", get(healthz::<B>))
}

/// `routes` behind `config`'s authentication and body limit, with A1111's 404 and 413.
fn guarded(routes: Router, config: &ServerConfig) -> Router {
    routes
        .fallback(|| async { ApiError::not_found("Not Found") })
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.auth.clone()),
            auth::require,
        ))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(axum::middleware::map_response(a1111_errors))
}

/// The largest plain-text error body (an extractor's rejection) carried into A1111's shape.
const MAX_REJECTION_BYTES: usize = 4096;

/// Errors axum and tower-http answer themselves (413, 405, an extractor's rejection of a path or
/// query value) carry plain text: answer in A1111's error shape instead, keeping their headers
/// (`Allow` on a 405).
async fn a1111_errors(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_string(),
        _ => {
            let text = axum::body::to_bytes(body, MAX_REJECTION_BYTES).await;
            let text = text.map(|b| String::from_utf8_lossy(&b).trim().to_string());
            match text {
                Ok(text) if !text.is_empty() => text,
                _ => status.canonical_reason().unwrap_or("error").to_string(),
            }
        }
    };
    let mut shaped = ApiError::new(status, detail).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name, value.clone());
        }
    }
    shaped
}

/// Ready or not; with credentials (or on a server that needs none), what serves too.
async fn healthz<B: JobBackend>(
    State(backend): State<B>,
    anonymous: Option<axum::Extension<auth::Anonymous>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (status, body) = backend.health().await?;
    let body = match anonymous {
        Some(_) => json!({"status": body["status"]}),
        None => body,
    };
    Ok((status, Json(body)))
}

async fn render_metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let memory = *lock(&shared.memory);
    let gauges = Gauges {
        queue_depth: shared.queue.len(),
        running: lock(&shared.current).is_some(),
        device_in_use: memory.in_use,
        device_reserved: memory.reserved,
        device_peak_reserved: memory.peak_reserved,
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        shared.metrics.render(&gauges),
    )
}

/// Brings up the device for `config` (weights in the precision it asks, where the adapter can
/// and the self-test did not find it wrong), and what the operator should read about it: a
/// software adapter, a path the self-test failed and the engine avoids.
pub fn open_device(config: &ServerConfig) -> Result<(Gpu, WeightDtype, Vec<String>), ServerError> {
    let (gpu, warning) = device::open_with(config.backend, config.shader_compiler)?;
    let (dtype, note) = WeightDtype::for_gpu(config.precision, &gpu);
    let messages = warning
        .map(|w| format!("warning: {w}"))
        .into_iter()
        .chain(gpu.notes.iter().cloned())
        .chain(note)
        .collect();
    Ok((gpu, dtype, messages))
}
