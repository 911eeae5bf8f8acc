//! AUTOMATIC1111's `/sdapi/v1` API, so existing clients (bots, UIs, `webuiapi`) work unchanged:
//! generation, progress, interrupt/skip, options, and the listings clients probe at start-up,
//! in A1111's shapes (A1111 v1.10 `modules/api/api.py`, `models.py`).

mod convert;
mod fields;
mod info;
mod listings;
mod samplers;

#[cfg(feature = "nats")]
pub use convert::clip_skip;
pub use convert::decode_image_bytes;
pub use fields::A1111Names;
#[cfg(feature = "nats")]
pub use info::info_json;
#[cfg(feature = "nats")]
pub use listings::{device_memory_json, loras_json, options_json, png_info, ram_json, sd_model};
#[cfg(feature = "nats")]
pub use samplers::{samplers_json, schedulers_json};

use convert::Converted;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::jobs::{Kind, Progress, Status, Task};
use super::state::{lock, Shared};
use super::submit::{finished, submit};

/// The checks of an A1111 body that need no server (see [`convert::Precheck`]), off the async
/// threads: a NATS API node's, before it queues the job. The body comes back unchanged.
#[cfg(feature = "nats")]
pub async fn precheck_body(
    kind: Kind,
    map: Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    tokio::task::spawn_blocking(move || {
        convert::convert(&convert::Precheck, kind, &map).map(|_| map)
    })
    .await
    .map_err(|e| ApiError::internal(format!("checking the request: {e}")))?
}

/// The `/sdapi/v1` routes.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/txt2img", post(txt2img))
        .route("/img2img", post(img2img))
        .route("/progress", get(progress))
        .route("/interrupt", post(interrupt))
        .route("/skip", post(skip))
        .merge(listings::routes())
}

async fn txt2img(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    generate(shared, Kind::Txt2img, body).await
}

async fn img2img(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    generate(shared, Kind::Img2img, body).await
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
/// there); counted as refused when it cannot be.
pub async fn convert_body(
    shared: &Arc<Shared>,
    kind: Kind,
    map: Map<String, Value>,
) -> Result<Converted, ApiError> {
    let converter = shared.clone();
    tokio::task::spawn_blocking(move || convert::convert(&*converter, kind, &map))
        .await
        .map_err(|e| ApiError::internal(format!("converting the request: {e}")))?
        .inspect_err(|_| shared.metrics.refused())
}

/// Converts the body, queues the job, waits for it and answers `{images, parameters, info}`,
/// with the job's id in an `X-Job-Id` header (the job stays readable at `/v1/jobs/{id}` for
/// its retention time).
async fn generate(shared: Arc<Shared>, kind: Kind, body: Bytes) -> Result<Response, ApiError> {
    let converted = convert_body(&shared, kind, object(&body)?).await?;
    let seeds = all_seeds(&converted.work);
    let (send_images, subseed) = (converted.send_images, converted.subseed);
    let parameters = converted.parameters;
    let job = submit(&shared, Task::Generate(Box::new(converted.work)), None)?;
    let end = finished(&job).await;
    let outcome = match (&end.outcome, &end.failure) {
        (Some(outcome), _) => outcome.clone(),
        (None, Some(failure)) => return Err(failure.into()),
        (None, None) => return Err(ApiError::internal("the job ended without a result")),
    };
    let images: Vec<String> = if send_images {
        outcome
            .images
            .iter()
            .map(|png| base64::engine::general_purpose::STANDARD.encode(png.as_slice()))
            .collect()
    } else {
        Vec::new()
    };
    let body = json!({
        "images": images,
        "parameters": parameters,
        "info": info::info_json(&outcome, &seeds, subseed),
    });
    Ok(([("x-job-id", job.id.to_string())], Json(body)).into_response())
}

/// `seed + i` over `batch_size x n_iter`, wrapping.
pub fn all_seeds(work: &super::jobs::Work) -> Vec<u64> {
    let n = work.request.batch * work.n_iter;
    (0..n as u64)
        .map(|i| work.request.seed.wrapping_add(i))
        .collect()
}

#[derive(serde::Deserialize)]
pub(crate) struct ProgressQuery {
    #[serde(default)]
    pub skip_current_image: bool,
    /// Not A1111's: the job to report (default: the current one); API nodes take it.
    #[serde(default)]
    pub id_task: Option<String>,
}

/// A1111's progress of the running job (idle: zeros).
async fn progress(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ProgressQuery>,
) -> Json<Value> {
    let current = match &query.id_task {
        Some(id) => id.parse().ok().and_then(|id| shared.jobs.get(id)),
        None => lock(&shared.current).clone(),
    };
    let running = current.map(|job| (job.snapshot(), job));
    let Some((s, job)) = running.filter(|(s, _)| s.status == Status::Running) else {
        return Json(idle_progress());
    };
    let p = &s.progress;
    let image = p
        .preview
        .as_ref()
        .filter(|_| !query.skip_current_image)
        .map(|(_, png)| base64::engine::general_purpose::STANDARD.encode(png.as_slice()));
    let interrupted = job.cancel.is_cancelled();
    let skipped = job.skipped.load(std::sync::atomic::Ordering::SeqCst);
    Json(progress_json(
        Some(p.fraction()),
        p.eta().unwrap_or(0.0),
        state_json(skipped, interrupted, job_name(job.kind), p),
        image,
    ))
}

/// `/progress`'s answer; `fraction` of a running job (which shows at least 1%).
pub(crate) fn progress_json(
    fraction: Option<f64>,
    eta: f64,
    state: Value,
    image: Option<String>,
) -> Value {
    json!({
        "progress": fraction.map_or(0.0, |f| f.max(0.01)),
        "eta_relative": eta,
        "state": state,
        "current_image": image,
        "textinfo": null,
    })
}

/// `/progress` with no job running.
pub(crate) fn idle_progress() -> Value {
    let state = state_json(false, false, "", &Progress::default());
    progress_json(None, 0.0, state, None)
}

/// A1111's name of a job of `kind` (`state.job`).
pub(crate) fn job_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Txt2img => "scripts_txt2img",
        Kind::Img2img => "scripts_img2img",
        Kind::Model => "load_model",
    }
}

/// `shared.state.dict()` of A1111, in its key order.
pub(crate) fn state_json(skipped: bool, interrupted: bool, job: &str, p: &Progress) -> Value {
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
async fn interrupt(State(shared): State<Arc<Shared>>) -> Json<Value> {
    if let Some(job) = lock(&shared.current).clone() {
        job.stop();
    }
    Json(json!({}))
}

/// Drops the running job's current iteration (A1111: `null`).
async fn skip(State(shared): State<Arc<Shared>>) -> Json<Value> {
    if let Some(job) = lock(&shared.current).clone() {
        job.skip();
    }
    Json(Value::Null)
}
