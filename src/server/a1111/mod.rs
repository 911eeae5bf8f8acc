//! AUTOMATIC1111's `/sdapi/v1` API, so existing clients (bots, UIs, `webuiapi`) work unchanged:
//! generation, progress, interrupt/skip, options, and the listings clients probe at start-up,
//! in A1111's shapes (A1111 v1.10 `modules/api/api.py`, `models.py`).

mod convert;
mod extras;
mod fields;
mod info;
mod listings;
mod samplers;

pub use convert::{checkpoint, decode_image_bytes, Resolver};
pub use extras::ExtrasAsk;
pub use fields::A1111Names;
pub use info::info_json;
pub use listings::{
    device_memory_json, local_routes, loras_json, merge_options, options_json, sd_model,
};

use convert::Converted;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::backend::{JobBackend, Stop};
use super::error::ApiError;
use super::jobs::{Kind, Progress};
use super::state::Shared;

/// Bodies converted at once (each may decode an init image of up to `MAX_INIT_PIXELS`, about
/// 200 MB at the bound): the rest wait their turn, so a burst of large images holds at most this
/// many in memory.
const MAX_CONVERSIONS: usize = 2;

static CONVERSIONS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONVERSIONS);

/// `convert` run off the async threads, when one of [`MAX_CONVERSIONS`] turns is free.
async fn converting<T: Send + 'static>(
    convert: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let _turn = CONVERSIONS
        .acquire()
        .await
        .map_err(|e| ApiError::internal(format!("converting the request: {e}")))?;
    tokio::task::spawn_blocking(convert)
        .await
        .map_err(|e| ApiError::internal(format!("converting the request: {e}")))?
}

/// The checks of an A1111 body that need no server (see [`convert::Precheck`]), off the async
/// threads: a NATS API node's, before it queues the job. The body comes back unchanged.
#[cfg(feature = "nats")]
pub async fn precheck_body(
    kind: Kind,
    map: Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    converting(move || convert::convert(&convert::Precheck, kind, &map).map(|_| map)).await
}

/// The `/sdapi/v1` routes over any job backend (`serve`'s own routes are added by
/// [`local_routes`]).
pub fn routes<B: JobBackend>() -> Router<B> {
    Router::new()
        .route("/txt2img", post(txt2img::<B>))
        .route("/img2img", post(img2img::<B>))
        .route("/progress", get(progress::<B>))
        .route("/interrupt", post(interrupt::<B>))
        .route("/skip", post(skip::<B>))
        .merge(extras::routes())
        .merge(listings::routes())
}

async fn txt2img<B: JobBackend>(
    State(backend): State<B>,
    body: Bytes,
) -> Result<Response, ApiError> {
    generate(&backend, Kind::Txt2img, body).await
}

async fn img2img<B: JobBackend>(
    State(backend): State<B>,
    body: Bytes,
) -> Result<Response, ApiError> {
    generate(&backend, Kind::Img2img, body).await
}

/// A JSON object body, or a 422 saying why not.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("the body must be a JSON object")),
        Err(e) => Err(ApiError::invalid(format!("the body is not JSON: {e}"))),
    }
}

/// An A1111 body as the worker's job, converted off the async threads (init images are decoded
/// there, a bounded number at once); counted as refused when it cannot be.
pub async fn convert_body(
    shared: &Arc<Shared>,
    kind: Kind,
    map: Map<String, Value>,
) -> Result<Converted, ApiError> {
    let converter = shared.clone();
    converting(move || convert::convert(&*converter, kind, &map))
        .await
        .inspect_err(|_| shared.metrics.refused())
}

/// [`object`] off the async threads: a body may be `--max-body-mb` of JSON.
pub async fn read_object(body: Bytes) -> Result<Map<String, Value>, ApiError> {
    tokio::task::spawn_blocking(move || object(&body))
        .await
        .map_err(|e| ApiError::internal(format!("reading the body: {e}")))?
}

/// Queues the job, waits for it and answers `{images, parameters, info}`, with the job's id in
/// an `X-Job-Id` header (the job stays readable at `/v1/jobs/{id}` for its retention time).
async fn generate<B: JobBackend>(
    backend: &B,
    kind: Kind,
    body: Bytes,
) -> Result<Response, ApiError> {
    let generated = backend.generate(kind, read_object(body).await?).await?;
    let images: Vec<String> = generated
        .images
        .iter()
        .map(|png| base64::engine::general_purpose::STANDARD.encode(png.as_slice()))
        .collect();
    let body = json!({
        "images": images,
        "parameters": generated.parameters,
        "info": generated.info,
    });
    Ok(([("x-job-id", generated.id)], Json(body)).into_response())
}

/// `seed + i` over `batch_size x n_iter`, wrapping.
pub fn all_seeds(work: &super::jobs::Work) -> Vec<u64> {
    let n = work.request.batch * work.n_iter;
    (0..n as u64)
        .map(|i| work.request.seed.wrapping_add(i))
        .collect()
}

#[derive(serde::Deserialize)]
struct ProgressQuery {
    #[serde(default)]
    skip_current_image: bool,
    /// Not A1111's: the job to report (default: the current one); API nodes take it.
    #[serde(default)]
    id_task: Option<String>,
}

/// A1111's progress of the running job (idle: zeros).
async fn progress<B: JobBackend>(
    State(backend): State<B>,
    Query(query): Query<ProgressQuery>,
) -> Result<Json<Value>, ApiError> {
    let running = backend
        .running(query.id_task, !query.skip_current_image)
        .await?;
    let Some(r) = running else {
        return Ok(Json(idle_progress()));
    };
    let p = &r.progress;
    let image = r
        .preview
        .map(|png| base64::engine::general_purpose::STANDARD.encode(png.as_slice()));
    Ok(Json(progress_json(
        Some(p.fraction()),
        p.eta().unwrap_or(0.0),
        state_json(r.skipped, r.interrupted, job_name(r.kind), p),
        image,
    )))
}

/// `/progress`'s answer; `fraction` of a running job (which shows at least 1%).
fn progress_json(fraction: Option<f64>, eta: f64, state: Value, image: Option<String>) -> Value {
    json!({
        "progress": fraction.map_or(0.0, |f| f.max(0.01)),
        "eta_relative": eta,
        "state": state,
        "current_image": image,
        "textinfo": null,
    })
}

/// `/progress` with no job running.
fn idle_progress() -> Value {
    let state = state_json(false, false, "", &Progress::default());
    progress_json(None, 0.0, state, None)
}

/// A1111's name of a job of `kind` (`state.job`).
fn job_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Txt2img => "scripts_txt2img",
        Kind::Img2img => "scripts_img2img",
        Kind::Model => "load_model",
        Kind::Extras => "extras",
    }
}

/// `shared.state.dict()` of A1111, in its key order.
fn state_json(skipped: bool, interrupted: bool, job: &str, p: &Progress) -> Value {
    json!({
        "skipped": skipped,
        "interrupted": interrupted,
        "stopping_generation": false,
        "job": job,
        "job_count": p.iterations,
        "job_timestamp": "0",
        "job_no": p.iteration,
        "sampling_step": p.step,
        "sampling_steps": p.steps,
    })
}

/// Stops the running job (A1111: `{}`); the images it finished are returned to its client.
async fn interrupt<B: JobBackend>(State(backend): State<B>) -> Result<Json<Value>, ApiError> {
    backend.stop_current(Stop::Interrupt).await?;
    Ok(Json(json!({})))
}

/// Drops the running job's current iteration (A1111: `null`).
async fn skip<B: JobBackend>(State(backend): State<B>) -> Result<Json<Value>, ApiError> {
    backend.stop_current(Stop::Skip).await?;
    Ok(Json(Value::Null))
}
