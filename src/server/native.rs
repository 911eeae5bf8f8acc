//! The asynchronous jobs API, for clients that should not hold a connection for a whole
//! render: submit (202 with a poll URL; `Idempotency-Key` returns the existing job), poll,
//! fetch images, cancel, and follow a job's events as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use futures_lite::Stream;
use serde_json::{json, Map, Value};

use super::a1111::{convert_body, object};
use super::error::ApiError;
use super::job_view::{ErrorView, JobView, ProgressView};
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
    let kind = take_kind(&mut map)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let converted = convert_body(&shared, kind, map).await?;
    let job = submit(&shared, Task::Generate(Box::new(converted.work)), key)?;
    let url = format!("/v1/jobs/{}", job.id);
    let body = json!({"id": job.id.to_string(), "status": job.snapshot().status, "poll_url": url});
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, url)], Json(body)).into_response())
}

/// The jobs API's `kind` field, taken out of an A1111 body (default txt2img).
pub fn take_kind(map: &mut Map<String, Value>) -> Result<Kind, ApiError> {
    match map.remove("kind").as_ref().and_then(Value::as_str) {
        Some("txt2img") | None => Ok(Kind::Txt2img),
        Some("img2img") => Ok(Kind::Img2img),
        Some(other) => Err(ApiError::invalid(format!(
            "kind: {other:?} is not txt2img or img2img"
        ))),
    }
}

fn job(shared: &Shared, id: &str) -> Result<Arc<Job>, ApiError> {
    id.parse::<JobId>()
        .ok()
        .and_then(|id| shared.jobs.get(id))
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// The job's state as JSON.
fn describe(shared: &Shared, job: &Job, s: &Snapshot) -> Value {
    let id = job.id.to_string();
    let images = s.outcome.as_ref().map_or(0, |o| o.images.len());
    JobView {
        images: JobView::image_urls(&id, images),
        id,
        kind: job.kind,
        status: s.status,
        placement: None,
        queue_position: shared.queue.position(job.id),
        progress: ProgressView::of(&s.progress),
        queued_at: unix(s.times.queued),
        started_at: s.times.started.map(unix),
        finished_at: s.times.finished.map(unix),
        error: s.failure.as_ref().map(|f| ErrorView {
            status: f.status,
            message: f.message.clone(),
        }),
        seeds: s.outcome.as_ref().map(|o| o.seeds.clone()),
        infotexts: s.outcome.as_ref().map(|o| o.infotexts.clone()),
    }
    .json()
}

/// Seconds since the Unix epoch, with microseconds.
fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_micros() as f64) / 1e6)
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
        job.finish(Err(super::jobs::Failure {
            status: 409,
            message: "cancelled while queued".into(),
        }));
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
    let follow = Follow {
        watch: job.subscribe(),
        last: None,
        ended: false,
        shared,
        job,
    };
    let stream = futures_lite::stream::unfold(follow, |mut follow| async move {
        if follow.ended {
            return None;
        }
        loop {
            let s = follow.watch.borrow_and_update().clone();
            if let Some((name, data)) = follow.event(&s) {
                let event = Event::default().event(name).data(data.to_string());
                follow.ended = s.status.finished();
                return Some((Ok(event), follow));
            }
            follow.watch.changed().await.ok()?;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One client following a job: the job's state and what it was last told.
struct Follow {
    watch: tokio::sync::watch::Receiver<Snapshot>,
    last: Option<Seen>,
    ended: bool,
    shared: Arc<Shared>,
    job: Arc<Job>,
}

/// What an event reported, so each change is sent once.
#[derive(Clone, Copy, PartialEq)]
pub struct Seen {
    pub status: Status,
    pub iteration: usize,
    pub step: usize,
    /// The step the latest preview shows.
    pub preview: Option<usize>,
}

/// The event a change from `last` to `now` is: `None` when nothing changed.
pub fn event_name(last: Option<Seen>, now: Seen) -> Option<&'static str> {
    if last == Some(now) {
        return None;
    }
    Some(match now.status {
        Status::Queued => "queued",
        Status::Running if last.map(|l| l.status) != Some(Status::Running) => "started",
        Status::Running if last.is_some_and(|l| l.preview != now.preview) => "preview",
        Status::Running => "step",
        Status::Succeeded | Status::Cancelled => "done",
        Status::Failed => "failed",
    })
}

impl Follow {
    /// The event for `s`, if it changed anything since the last one.
    fn event(&mut self, s: &Snapshot) -> Option<(&'static str, Value)> {
        let p = &s.progress;
        let seen = Seen {
            status: s.status,
            iteration: p.iteration,
            step: p.step,
            preview: p.preview.as_ref().map(|(step, _)| *step),
        };
        let name = event_name(self.last.replace(seen), seen)?;
        let step = json!({"iteration": p.iteration, "step": p.step, "steps": p.steps});
        let data = match name {
            "step" => step,
            "preview" => {
                let image = p.preview.as_ref().map(|(_, png)| {
                    base64::engine::general_purpose::STANDARD.encode(png.as_slice())
                });
                json!({"progress": step, "image": image})
            }
            _ => describe(&self.shared, &self.job, s),
        };
        Some((name, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_one_event() {
        let at = |status, step, preview| Seen {
            status,
            iteration: 0,
            step,
            preview,
        };
        let run = [
            at(Status::Queued, 0, None),
            at(Status::Running, 0, None),
            at(Status::Running, 0, None),
            at(Status::Running, 1, None),
            at(Status::Running, 1, Some(1)),
            at(Status::Running, 2, Some(1)),
            at(Status::Running, 2, Some(2)),
            at(Status::Succeeded, 2, None),
        ];
        let mut last = None;
        let names: Vec<Option<&str>> = run
            .iter()
            .map(|&now| event_name(last.replace(now), now))
            .collect();
        let want = [
            Some("queued"),
            Some("started"),
            None,
            Some("step"),
            Some("preview"),
            Some("step"),
            Some("preview"),
            Some("done"),
        ];
        assert_eq!(names, want);
    }
}
