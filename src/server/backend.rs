//! What the HTTP routes need from whatever runs the jobs: `serve`'s own GPU worker
//! (`local.rs`) or the NATS workers behind an API node (`nats/api.rs`). A1111's routes
//! (`a1111/`) and the jobs API (`native.rs`) are written once, over this trait; a new route is
//! one handler there and, where it needs state, one method here with its two answers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::StatusCode;
use futures_lite::Stream;
use serde_json::{Map, Value};

use super::a1111::ExtrasAsk;
use super::error::ApiError;
use super::jobs::{IdempotencyKey, Kind, Progress, Status, Upscaled};
use crate::intake::UpscalerEntry;

/// A PNG file's bytes, shared without copying.
pub type Png = Arc<Vec<u8>>;

/// A job just queued.
pub struct Submitted {
    pub id: String,
    pub status: Status,
}

/// A finished synchronous generation, as A1111's `{images, parameters, info}` carries it.
pub struct Generated {
    pub id: String,
    /// Empty when the body asked `send_images: false`.
    pub images: Vec<Png>,
    pub parameters: Value,
    pub info: Value,
}

/// The running job, as `/progress` reports it.
pub struct Running {
    pub kind: Kind,
    pub progress: Progress,
    pub skipped: bool,
    pub interrupted: bool,
    /// The latest live preview, when one was asked for and there is one.
    pub preview: Option<Png>,
}

/// One state of a followed job, for its server-sent events.
pub struct Update {
    pub status: Status,
    pub iteration: usize,
    pub step: usize,
    pub steps: usize,
    /// The latest preview and the step it shows.
    pub preview: Option<(usize, Png)>,
    /// The job in the jobs API's shape.
    pub view: Value,
}

/// A job's states from now until it finishes.
pub type Updates = Pin<Box<dyn Stream<Item = Update> + Send>>;

/// What A1111's `interrupt` and `skip` ask of the running job.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// End it; the images it finished are its result.
    Interrupt,
    /// End its running iteration.
    Skip,
}

/// The jobs and settings behind the routes: a cheap handle (an `Arc`), the routes' state. Each
/// method's future is `Send` (axum runs handlers on any thread).
pub trait JobBackend: Clone + Send + Sync + 'static {
    /// Checks an A1111 `body` and queues it as a `kind` job; with an idempotency `key` seen
    /// before, the job it named (another body with it: a 422).
    fn submit(
        &self,
        kind: Kind,
        body: Map<String, Value>,
        key: Option<IdempotencyKey>,
    ) -> impl Future<Output = Result<Submitted, ApiError>> + Send;

    /// A1111's synchronous generation: checks and queues `body`, waits for its end.
    fn generate(
        &self,
        kind: Kind,
        body: Map<String, Value>,
    ) -> impl Future<Output = Result<Generated, ApiError>> + Send;

    /// A1111's Extras upscale of `ask`'s images, waited for.
    fn extras(&self, ask: ExtrasAsk) -> impl Future<Output = Result<Upscaled, ApiError>> + Send;

    /// The job `id` in the jobs API's shape (404: no such job).
    fn describe(&self, id: &str) -> impl Future<Output = Result<Value, ApiError>> + Send;

    /// Cancels job `id` (queued: dropped; running: stopped within one step); the status it had
    /// (a finished one is left as it was).
    fn cancel(&self, id: &str) -> impl Future<Output = Result<Status, ApiError>> + Send;

    /// Image `index` of finished job `id` (404: none).
    fn image(&self, id: &str, index: usize) -> impl Future<Output = Result<Png, ApiError>> + Send;

    /// Job `id`'s states, from its present one until it finishes.
    fn follow(&self, id: &str) -> impl Future<Output = Result<Updates, ApiError>> + Send;

    /// The job `/progress` reports: `id` (A1111's `id_task`), else the current one; `None` when
    /// it is not running. `preview`: whether to fetch its latest preview.
    fn running(
        &self,
        id: Option<String>,
        preview: bool,
    ) -> impl Future<Output = Result<Option<Running>, ApiError>> + Send;

    /// Interrupts or skips the current job, if one runs.
    fn stop_current(&self, how: Stop) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// A1111's options as `GET /options` answers them.
    fn options(&self) -> impl Future<Output = Result<Value, ApiError>> + Send;

    /// Sets options (CLIP skip already checked); a checkpoint no one can load is a 422.
    fn set_options(
        &self,
        options: Map<String, Value>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// The checkpoints, as `sd-models` lists them.
    fn models(&self) -> impl Future<Output = Result<Value, ApiError>> + Send;

    /// The LoRAs, as `loras` lists them.
    fn loras(&self) -> impl Future<Output = Result<Value, ApiError>> + Send;

    /// The model upscalers (`upscalers` lists them after the built-in ones).
    fn upscaler_models(&self) -> impl Future<Output = Result<Vec<UpscalerEntry>, ApiError>> + Send;

    /// The device memory part of `/memory` (the key and its value).
    fn device_memory(&self)
        -> impl Future<Output = Result<(&'static str, Value), ApiError>> + Send;

    /// `/healthz`: ready or not (the status, and the body's `status`), and what serves.
    fn health(&self) -> impl Future<Output = Result<(StatusCode, Value), ApiError>> + Send;
}
