//! The asynchronous jobs API, for clients that should not hold a connection for a whole
//! render: submit (202 with a poll URL; `Idempotency-Key` returns the existing job), poll,
//! fetch images, cancel, and follow a job's events as server-sent events.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use futures_lite::{Stream, StreamExt as _};
use serde_json::{json, Map, Value};

use super::a1111::read_object;
use super::backend::{JobBackend, Update};
use super::error::ApiError;
use super::jobs::{IdempotencyKey, Kind, Status};

pub fn routes<B: JobBackend>() -> Router<B> {
    Router::new()
        .route("/v1/jobs", axum::routing::post(create::<B>))
        .route("/v1/jobs/{id}", get(show::<B>).delete(cancel::<B>))
        .route("/v1/jobs/{id}/images/{index}", get(image::<B>))
        .route("/v1/jobs/{id}/events", get(events::<B>))
}

/// `POST /v1/jobs`: an A1111 body plus `"kind": "txt2img" | "img2img"` -> 202 with the poll URL.
async fn create<B: JobBackend>(
    State(backend): State<B>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut map = read_object(body.clone()).await?;
    let kind = take_kind(&mut map)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|key| IdempotencyKey::new(key, &body));
    let job = backend.submit(kind, map, key).await?;
    let url = format!("/v1/jobs/{}", job.id);
    let body = json!({"id": job.id, "status": job.status, "poll_url": url});
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, url)], Json(body)).into_response())
}

/// The jobs API's `kind` field, taken out of an A1111 body (default txt2img).
fn take_kind(map: &mut Map<String, Value>) -> Result<Kind, ApiError> {
    match map.remove("kind").as_ref().and_then(Value::as_str) {
        Some("txt2img") | None => Ok(Kind::Txt2img),
        Some("img2img") => Ok(Kind::Img2img),
        Some(other) => Err(ApiError::invalid(format!(
            "kind: {other:?} is not txt2img or img2img"
        ))),
    }
}

async fn show<B: JobBackend>(
    State(backend): State<B>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(backend.describe(&id).await?))
}

/// Queued: removed; running: stopped within one step; finished: 409.
async fn cancel<B: JobBackend>(
    State(backend): State<B>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let was = backend.cancel(&id).await?;
    if was.finished() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} has already finished ({was:?})"),
        ));
    }
    Ok(Json(json!({"id": id, "status": "cancelled"})))
}

async fn image<B: JobBackend>(
    State(backend): State<B>,
    Path((id, index)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    let png = backend.image(&id, index).await?;
    Ok((
        [(header::CONTENT_TYPE, "image/png")],
        png.as_slice().to_vec(),
    )
        .into_response())
}

/// Server-sent events: `queued`, `started`, `step`, `preview`, then `done` or `failed`.
async fn events<B: JobBackend>(
    State(backend): State<B>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let updates = backend.follow(&id).await?;
    let mut last = None;
    let events = updates.filter_map(move |u| {
        let (name, data) = event(&mut last, &u)?;
        Some(Ok(Event::default().event(name).data(data.to_string())))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The event for `u`, if it changed anything since the `last` one.
fn event(last: &mut Option<Seen>, u: &Update) -> Option<(&'static str, Value)> {
    let seen = Seen {
        status: u.status,
        iteration: u.iteration,
        step: u.step,
        preview: u.preview.as_ref().map(|(step, _)| *step),
    };
    let name = event_name(last.replace(seen), seen)?;
    let step = json!({"iteration": u.iteration, "step": u.step, "steps": u.steps});
    let data = match name {
        "step" => step,
        "preview" => {
            let image = u
                .preview
                .as_ref()
                .map(|(_, png)| base64::engine::general_purpose::STANDARD.encode(png.as_slice()));
            json!({"progress": step, "image": image})
        }
        _ => u.view.clone(),
    };
    Some((name, data))
}

/// What an event reported, so each change is sent once.
#[derive(Clone, Copy, PartialEq)]
struct Seen {
    status: Status,
    iteration: usize,
    step: usize,
    /// The step the latest preview shows.
    preview: Option<usize>,
}

/// The event a change from `last` to `now` is: `None` when nothing changed.
fn event_name(last: Option<Seen>, now: Seen) -> Option<&'static str> {
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
