//! The asynchronous jobs API, for clients that should not hold a connection for a whole
//! render: submit (202 with a poll URL; `Idempotency-Key` returns the existing job), poll,
//! fetch images, cancel, and follow a job's events as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_lite::Stream;
use serde_json::{json, Value};

use super::a1111::{convert_body, object};
use super::error::ApiError;
use super::jobs::{Job, JobId, Kind, Snapshot, Status, Task};
use super::state::Shared;
use super::submit::submit;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/jobs", axum::routing::post(create))
        .route("/v1/jobs/{id}", get(show).delete(cancel))
        .route("/v1/jobs/{id}/images/{index}", get(image))
        .route("/v1/jobs/{id}/events", get(events))
}

/// `POST /v1/jobs`: an A1111 body plus `"kind": "txt2img" | "img2img"` -> 202.
async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut map = object(&body)?;
    let kind = match map.remove("kind").as_ref().and_then(Value::as_str) {
        Some("txt2img") | None => Kind::Txt2img,
        Some("img2img") => Kind::Img2img,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "kind: {other:?} is not txt2img or img2img"
            )))
        }
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let converter = shared.clone();
    let converted = tokio::task::spawn_blocking(move || convert_body(&converter, kind, &map))
        .await
        .map_err(|e| ApiError::internal(format!("converting the request: {e}")))??;
    let job = submit(&shared, Task::Generate(Box::new(converted.work)), key)?;
    let url = format!("/v1/jobs/{}", job.id);
    let body = json!({"id": job.id.to_string(), "status": job.snapshot().status, "poll_url": url});
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, url)], Json(body)).into_response())
}

fn job(shared: &Shared, id: &str) -> Result<Arc<Job>, ApiError> {
    id.parse::<JobId>()
        .ok()
        .and_then(|id| shared.jobs.get(id))
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// The job's state as JSON.
fn describe(shared: &Shared, job: &Job, s: &Snapshot) -> Value {
    let p = &s.progress;
    let images: Vec<String> = s
        .outcome
        .as_ref()
        .map(|o| {
            (0..o.images.len())
                .map(|i| format!("/v1/jobs/{}/images/{i}", job.id))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": job.id.to_string(),
        "kind": job.kind,
        "status": s.status,
        "queue_position": shared.queue.position(job.id),
        "progress": {
            "fraction": p.fraction(),
            "iteration": p.iteration,
            "iterations": p.iterations,
            "step": p.step,
            "steps": p.steps,
            "eta_seconds": p.eta(),
        },
        "error": s.failure.as_ref().map(|f| json!({"status": f.status, "message": f.message})),
        "seeds": s.outcome.as_ref().map(|o| o.seeds.clone()),
        "infotexts": s.outcome.as_ref().map(|o| o.infotexts.clone()),
        "images": images,
    })
}

async fn show(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = job(&shared, &id)?;
    let snapshot = job.snapshot();
    Ok(Json(describe(&shared, &job, &snapshot)))
}

/// Queued: removed; running: stopped within one step; finished: 409.
async fn cancel(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = job(&shared, &id)?;
    let status = job.snapshot().status;
    if status.finished() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} has already finished ({status:?})"),
        ));
    }
    job.stop();
    if shared.queue.remove(job.id) {
        job.finish(
            Err(super::jobs::Failure {
                status: 409,
                message: "cancelled while queued".into(),
            }),
            true,
        );
        shared.jobs.finished(job.id);
    }
    Ok(Json(json!({"id": id, "status": "cancelled"})))
}

async fn image(
    State(shared): State<Arc<Shared>>,
    Path((id, index)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    let job = job(&shared, &id)?;
    let png = job
        .snapshot()
        .outcome
        .and_then(|o| o.images.get(index).cloned())
        .ok_or_else(|| ApiError::not_found(format!("job {id} has no image {index}")))?;
    Ok((
        [(header::CONTENT_TYPE, "image/png")],
        png.as_slice().to_vec(),
    )
        .into_response())
}

/// Server-sent events: `queued`, `started`, `step`, `preview`, then `done` or `failed`.
async fn events(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let job = job(&shared, &id)?;
    let watch = job.subscribe();
    let state = (watch, None::<(Status, usize, bool)>, false, shared, job);
    let stream = futures_lite::stream::unfold(
        state,
        |(mut watch, last, ended, shared, job)| async move {
            if ended {
                return None;
            }
            loop {
                let s = watch.borrow_and_update().clone();
                let now = (
                    s.status,
                    s.progress.step + 1000 * s.progress.iteration,
                    s.progress.preview.is_some(),
                );
                if last != Some(now) {
                    let (name, data) = match s.status {
                        Status::Queued => ("queued", describe(&shared, &job, &s)),
                        Status::Running if last.map(|l| l.0) != Some(Status::Running) => {
                            ("started", describe(&shared, &job, &s))
                        }
                        Status::Running if now.2 && last.is_some_and(|l| l.1 == now.1) => (
                            "preview",
                            json!({
                                "step": s.progress.step,
                                "image": s.progress.preview.as_ref().map(|p| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, p.as_slice())),
                            }),
                        ),
                        Status::Running => (
                            "step",
                            json!({"iteration": s.progress.iteration, "step": s.progress.step, "steps": s.progress.steps}),
                        ),
                        Status::Succeeded | Status::Cancelled => {
                            ("done", describe(&shared, &job, &s))
                        }
                        Status::Failed => ("failed", describe(&shared, &job, &s)),
                    };
                    let event = Event::default().event(name).data(data.to_string());
                    let ended = s.status.finished();
                    return Some((Ok(event), (watch, Some(now), ended, shared, job)));
                }
                if watch.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
