//! `serve --nats`: an API node with no model and no GPU. It answers A1111's txt2img/img2img
//! (waiting on the job's record), progress (with live previews), interrupt and skip, the jobs
//! API (with its events), the model listing, and the settings and listings of `listings.rs`
//! from NATS, refusing a body any worker would refuse before it queues it: a job is its
//! body in the object store, its record in the jobs bucket and a message on its model's
//! subject. Any number of API nodes can run side by side; none keeps state of its own.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use futures_lite::StreamExt as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::bus::{Bus, NatsError, ANNOUNCE_EVERY};
use super::listings::{
    answers, get_options, loras, memory, served_model, set_options, stored_options,
};
use super::record::{image_object, now, request_object, JobRecord};
use super::NatsSettings;
use crate::server::a1111::{
    idle_progress, job_name, object, png_info, precheck_body, progress_json, samplers_json,
    schedulers_json, state_json, ProgressQuery,
};
use crate::server::error::ApiError;
use crate::server::job_view::{ErrorView, JobView, Placement, ProgressView};
use crate::server::jobs::{Kind, Progress, Status};
use crate::server::native::{event_name, take_kind, Seen};
use crate::server::{bind, guarded, ServerConfig, ServerError};

/// What the handlers share: the bus and the node's configuration (listen, auth, body limit;
/// `model`'s file stem names the default model).
pub(super) struct Node {
    pub bus: Bus,
    config: ServerConfig,
}

impl Node {
    /// The model of jobs that name none and of an `options` that selected none: the node's
    /// `--model` name, else the one model served.
    pub fn default_model<'a>(&self, served: &'a [(String, Value)]) -> Option<&'a (String, Value)> {
        let named = self.config.model.as_deref().and_then(|m| m.file_stem());
        match named {
            Some(name) => {
                let name = name.to_string_lossy();
                served.iter().find(|(_, card)| answers(card, &name))
            }
            None => match served {
                [only] => Some(only),
                _ => None,
            },
        }
    }
}

/// A started API node.
pub struct ApiNode {
    pub addr: std::net::SocketAddr,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Why an API node did not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiNodeError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl ApiNode {
    pub async fn start(config: ServerConfig, nats: &NatsSettings) -> Result<Self, ApiNodeError> {
        let bus = Bus::connect(nats).await?;
        let (listener, addr) = bind(config.listen).await?;
        let node = Arc::new(Node { bus, config });
        let app = guarded(routes(node.clone()), &node.config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(ApiNode { addr, http, stop })
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.http.await;
    }
}

fn routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/sdapi/v1/txt2img", post(txt2img))
        .route("/sdapi/v1/img2img", post(img2img))
        .route("/sdapi/v1/progress", get(progress))
        .route("/sdapi/v1/interrupt", post(interrupt))
        .route("/sdapi/v1/skip", post(skip))
        .route("/sdapi/v1/sd-models", get(sd_models))
        .route("/sdapi/v1/options", get(get_options).post(set_options))
        .route("/sdapi/v1/loras", get(loras))
        .route("/sdapi/v1/png-info", post(png_info))
        .route("/sdapi/v1/memory", get(memory))
        .route(
            "/sdapi/v1/samplers",
            get(|| async { Json(samplers_json()) }),
        )
        .route(
            "/sdapi/v1/schedulers",
            get(|| async { Json(schedulers_json()) }),
        )
        .route("/v1/jobs", post(create))
        .route("/v1/jobs/{id}", get(show).delete(cancel))
        .route("/v1/jobs/{id}/images/{index}", get(image))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/healthz", get(healthz))
        .with_state(node)
}

pub(super) fn unavailable(e: NatsError) -> ApiError {
    ApiError::busy(e.to_string(), 5)
}

/// The models workers have announced (within the retention time), by subject token.
pub(super) async fn models(bus: &Bus) -> Result<Vec<(String, Value)>, ApiError> {
    let mut keys = bus
        .models
        .keys()
        .await
        .map_err(|e| unavailable(NatsError::io(e)))?;
    let mut found = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| unavailable(NatsError::io(e)))?;
        if let Ok(Some(card)) = bus.models.get(&key).await {
            if let Ok(card) = serde_json::from_slice::<Value>(&card) {
                found.push((key, card));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

async fn sd_models(State(node): State<Arc<Node>>) -> Result<Json<Value>, ApiError> {
    // as `serve` lists them: the workers' LoRAs and memory have routes of their own
    let cards = models(&node.bus)
        .await?
        .into_iter()
        .map(|(_, mut card)| {
            if let Some(card) = card.as_object_mut() {
                card.remove("loras");
                card.remove("memory");
            }
            card
        })
        .collect();
    Ok(Json(Value::Array(cards)))
}

/// The subject token of the model a body asks for: `override_settings.sd_model_checkpoint`
/// (any of A1111's names for it), else the one `options` selected, else the node's `--model`
/// name, else the one model served.
async fn model_of(
    node: &Node,
    body: &Map<String, Value>,
    options: &Map<String, Value>,
) -> Result<String, ApiError> {
    let asked = body
        .get("override_settings")
        .and_then(|o| o.get("sd_model_checkpoint"))
        .or_else(|| options.get("sd_model_checkpoint"))
        .and_then(Value::as_str);
    let served = models(&node.bus).await?;
    if let Some(name) = asked {
        return served_model(&served, name).map(|(token, _)| token.clone());
    }
    if let Some((token, _)) = node.default_model(&served) {
        return Ok(token.clone());
    }
    match served.as_slice() {
        [] => Err(ApiError::busy("no worker has served any model yet", 5)),
        _ => Err(ApiError::invalid(
            "several models are served: name one in override_settings.sd_model_checkpoint",
        )),
    }
}

/// The options every job gets unless it overrides them (CLIP skip), folded into its
/// `override_settings`, so the worker that runs it applies them as `serve` would.
fn fold_options(options: &Map<String, Value>, body: &mut Map<String, Value>) {
    let Some(clip) = options.get("CLIP_stop_at_last_layers") else {
        return;
    };
    let overrides = body.entry("override_settings").or_insert_with(|| json!({}));
    if overrides.is_null() {
        *overrides = json!({});
    }
    if let Some(map) = overrides.as_object_mut() {
        map.entry("CLIP_stop_at_last_layers")
            .or_insert_with(|| clip.clone());
    }
}

/// A new job id: 16 hex digits from the clock and the process, unique across nodes.
fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::new()
        .chain_update(nanos.to_le_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .chain_update(NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes())
        .finalize();
    hex(&digest[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Queues `body` as a `kind` job (with an idempotency `key` seen before: that job instead),
/// after the checks that need no worker: a body any worker would refuse is a 422 here, before
/// anything reaches NATS.
async fn submit(
    node: &Node,
    kind: Kind,
    body: Map<String, Value>,
    key: Option<&str>,
) -> Result<JobRecord, ApiError> {
    let bus = &node.bus;
    let mut body = precheck_body(kind, body).await?;
    let options = stored_options(node).await?;
    let model = model_of(node, &body, &options).await?;
    fold_options(&options, &mut body);
    let mut id = new_id();
    if let Some(key) = key {
        let key_name = format!("key-{}", hex(&Sha256::digest(key.as_bytes())[..16]));
        let taken = bus.jobs.create(&key_name, id.clone().into()).await;
        if taken.is_err() {
            let existing = bus
                .jobs
                .get(&key_name)
                .await
                .map_err(|e| unavailable(NatsError::io(e)))?;
            id = existing
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or(id);
            if let Some((record, _)) = bus.record(&id).await.map_err(unavailable)? {
                return Ok(record);
            }
        }
    }
    let record = JobRecord::queued(&id, kind, &model);
    let bytes = serde_json::to_vec(&body).expect("a JSON map serialises");
    bus.put_object(&request_object(&id), &bytes)
        .await
        .map_err(unavailable)?;
    bus.create_record(&record).await.map_err(unavailable)?;
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(id.clone().into())
        .message_id(&id);
    let ack = bus
        .js
        .send_publish(bus.settings.jobs_subject(&model), publish)
        .await
        .map_err(|e| unavailable(NatsError::io(e)))?;
    ack.await.map_err(|e| unavailable(NatsError::io(e)))?;
    Ok(record)
}

/// The record once it has finished.
async fn finished(bus: &Bus, id: &str) -> Result<JobRecord, ApiError> {
    let mut watch = bus
        .jobs
        .watch(id)
        .await
        .map_err(|e| unavailable(NatsError::io(e)))?;
    loop {
        match bus.record(id).await.map_err(unavailable)? {
            Some((record, _)) if record.status.finished() => return Ok(record),
            Some(_) => {}
            None => return Err(ApiError::not_found(format!("job {id} is gone"))),
        }
        if watch.next().await.is_none() {
            return Err(ApiError::busy("lost the connection to NATS", 5));
        }
    }
}

async fn txt2img(State(node): State<Arc<Node>>, body: Bytes) -> Result<Response, ApiError> {
    generate(node, Kind::Txt2img, body).await
}

async fn img2img(State(node): State<Arc<Node>>, body: Bytes) -> Result<Response, ApiError> {
    generate(node, Kind::Img2img, body).await
}

/// A1111's synchronous answer: queue, wait, `{images, parameters, info}` as `serve` gives.
async fn generate(node: Arc<Node>, kind: Kind, body: Bytes) -> Result<Response, ApiError> {
    let record = submit(&node, kind, object(&body)?, None).await?;
    let record = finished(&node.bus, &record.id).await?;
    let Some(response) = record.response.clone() else {
        let error = record.error.clone();
        return Err(error.map_or_else(
            || ApiError::internal("the job ended without a result"),
            |e| ApiError::new(status(e.status), e.message),
        ));
    };
    let mut images = Vec::new();
    if response["send_images"].as_bool().unwrap_or(true) {
        for i in 0..record.images {
            let png = node
                .bus
                .object(&image_object(&record.id, i))
                .await
                .map_err(unavailable)?;
            images.push(base64::engine::general_purpose::STANDARD.encode(png));
        }
    }
    let body = json!({
        "images": images,
        "parameters": response["parameters"],
        "info": response["info"],
    });
    Ok(([("x-job-id", record.id)], Json(body)).into_response())
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `POST /v1/jobs`: as `serve`'s, 202 with the poll URL.
async fn create(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut map = object(&body)?;
    let kind = take_kind(&mut map)?;
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let record = submit(&node, kind, map, key).await?;
    let url = format!("/v1/jobs/{}", record.id);
    let body = json!({"id": record.id, "status": record.status, "poll_url": url});
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, url)], Json(body)).into_response())
}

async fn record(node: &Node, id: &str) -> Result<JobRecord, ApiError> {
    node.bus
        .record(id)
        .await
        .map_err(unavailable)?
        .map(|(r, _)| r)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// The record's progress as the local server counts it (its start on this node's clock).
fn progress_of(r: &JobRecord) -> Progress {
    let p = &r.progress;
    let since = |t: f64| Duration::try_from_secs_f64((now() - t).max(0.0)).ok();
    Progress {
        iteration: p.iteration,
        iterations: p.iterations,
        step: p.step,
        steps: p.steps,
        started: r
            .started_at
            .and_then(since)
            .and_then(|elapsed| Instant::now().checked_sub(elapsed)),
        preview: None,
    }
}

/// The record in the jobs API's shape (`serve`'s fields, plus `worker`, `attempts`, `model`).
fn describe(r: &JobRecord) -> Value {
    let p = &r.progress;
    let fraction = match r.status {
        Status::Succeeded => 1.0,
        _ => progress_of(r).fraction(),
    };
    let finished = r.status.finished();
    JobView {
        id: r.id.clone(),
        kind: r.kind,
        status: r.status,
        placement: Some(Placement {
            model: r.model.clone(),
            worker: r.worker.clone(),
            attempts: r.attempts,
        }),
        queue_position: None,
        progress: ProgressView {
            fraction,
            iteration: p.iteration,
            iterations: p.iterations,
            step: p.step,
            steps: p.steps,
            eta_seconds: None,
        },
        queued_at: r.queued_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        error: r.error.as_ref().map(|e| ErrorView {
            status: e.status,
            message: e.message.clone(),
        }),
        seeds: finished.then(|| r.seeds.clone()),
        infotexts: finished.then(|| r.infotexts.clone()),
        images: JobView::image_urls(&r.id, r.images),
    }
    .json()
}

async fn show(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(describe(&record(&node, &id).await?)))
}

/// Queued: cancelled here (its worker skips it); running: its worker is told and stops within
/// one step; finished: 409.
async fn cancel(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    record(&node, &id).await?;
    let was = stop(&node.bus, &id, Stop::Cancel).await?;
    if was.finished() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} has already finished ({was:?})"),
        ));
    }
    Ok(Json(json!({"id": id, "status": "cancelled"})))
}

/// What a client asks of a job.
#[derive(Clone, Copy)]
enum Stop {
    /// Cancel it (queued: here; running: on its worker, within one step).
    Cancel,
    /// Interrupt it if it runs (A1111's `interrupt`; a queued job stays).
    Interrupt,
    /// End its running iteration (A1111's `skip`).
    Skip,
}

/// Records the request and tells the job's worker (which also reads the record, for a message
/// sent before it listened). The status the job had.
async fn stop(bus: &Bus, id: &str, how: Stop) -> Result<Status, ApiError> {
    let (mut was, mut asked) = (Status::Queued, false);
    bus.update_record(id, |r| {
        was = r.status;
        match (r.status, how) {
            (Status::Queued, Stop::Cancel) => {
                r.status = Status::Cancelled;
                r.finished_at = Some(now());
            }
            (Status::Running, Stop::Skip) => r.skip_requested = true,
            (Status::Running, _) => r.cancel_requested = true,
            _ => return false,
        }
        asked = true;
        true
    })
    .await
    .map_err(unavailable)?;
    if asked {
        let subject = match how {
            Stop::Skip => bus.settings.skip_subject(id),
            _ => bus.settings.cancel_subject(id),
        };
        bus.client
            .publish(subject, Bytes::new())
            .await
            .map_err(|e| unavailable(NatsError::io(e)))?;
    }
    Ok(was)
}

/// The job `/progress`, `/interrupt` and `/skip` act on: the one asked for, else the one a
/// worker started last (with many workers, "the current job" is only that).
async fn current(node: &Node, asked: Option<String>) -> Result<Option<JobRecord>, ApiError> {
    let id = match asked {
        Some(id) => Some(id),
        None => node.bus.current().await.map_err(unavailable)?,
    };
    match id {
        Some(id) => Ok(node
            .bus
            .record(&id)
            .await
            .map_err(unavailable)?
            .map(|r| r.0)),
        None => Ok(None),
    }
}

/// A1111's `/progress` from the record (and the latest preview) of the current job.
async fn progress(
    State(node): State<Arc<Node>>,
    Query(query): Query<ProgressQuery>,
) -> Result<Json<Value>, ApiError> {
    let running = current(&node, query.id_task).await?;
    let Some(r) = running.filter(|r| r.status == Status::Running) else {
        return Ok(Json(idle_progress()));
    };
    let p = progress_of(&r);
    let image = match r.preview_step.filter(|_| !query.skip_current_image) {
        Some(_) => node.bus.preview(&r.id).await.map_err(unavailable)?,
        None => None,
    };
    let image = image.map(|png| base64::engine::general_purpose::STANDARD.encode(png));
    let state = state_json(r.skip_requested, r.cancel_requested, job_name(r.kind), &p);
    Ok(Json(progress_json(
        Some(p.fraction()),
        p.eta().unwrap_or(0.0),
        state,
        image,
    )))
}

/// Interrupts the current job (A1111: `{}`); the images it finished are its result.
async fn interrupt(State(node): State<Arc<Node>>) -> Result<Json<Value>, ApiError> {
    if let Some(r) = current(&node, None).await? {
        stop(&node.bus, &r.id, Stop::Interrupt).await?;
    }
    Ok(Json(json!({})))
}

/// Ends the current job's running iteration (A1111: `null`).
async fn skip(State(node): State<Arc<Node>>) -> Result<Json<Value>, ApiError> {
    if let Some(r) = current(&node, None).await? {
        stop(&node.bus, &r.id, Stop::Skip).await?;
    }
    Ok(Json(Value::Null))
}

async fn image(
    State(node): State<Arc<Node>>,
    Path((id, index)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    let r = record(&node, &id).await?;
    if index >= r.images {
        return Err(ApiError::not_found(format!(
            "job {id} has no image {index}"
        )));
    }
    let png = node
        .bus
        .object(&image_object(&id, index))
        .await
        .map_err(unavailable)?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// Server-sent events as `serve` sends them (`queued`, `started`, `step`, then `done` or
/// `failed`; no `preview`), from the record's changes.
async fn events(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Sse<impl futures_lite::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // watching before reading: no change falls between the two
    let watch = node
        .bus
        .jobs
        .watch(&id)
        .await
        .map_err(|e| unavailable(NatsError::io(e)))?;
    let first = record(&node, &id).await?;
    let follow = (Some(first), watch, None::<Seen>, false);
    let stream = futures_lite::stream::unfold(
        follow,
        |(mut next, mut watch, mut last, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let r = match next.take() {
                    Some(r) => r,
                    None => {
                        let entry = watch.next().await?.ok()?;
                        match serde_json::from_slice::<JobRecord>(&entry.value) {
                            Ok(r) => r,
                            Err(_) => continue,
                        }
                    }
                };
                let p = &r.progress;
                let seen = Seen {
                    status: r.status,
                    iteration: p.iteration,
                    step: p.step,
                    preview: None,
                };
                let Some(name) = event_name(last.replace(seen), seen) else {
                    continue;
                };
                let data = match name {
                    "step" => json!({"iteration": p.iteration, "step": p.step, "steps": p.steps}),
                    _ => describe(&r),
                };
                let event = Event::default().event(name).data(data.to_string());
                return Some((Ok(event), (None, watch, last, r.status.finished())));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Ready when NATS answers; lists the models known and those with a worker up now.
async fn healthz(State(node): State<Arc<Node>>) -> Response {
    let served = match models(&node.bus).await {
        Ok(served) => served,
        Err(e) => return e.into_response(),
    };
    let recent = now() - 3.0 * ANNOUNCE_EVERY.as_secs_f64();
    let up = |card: &Value| card["last_seen"].as_f64().is_some_and(|t| t >= recent);
    let known: Vec<&str> = served.iter().map(|(t, _)| t.as_str()).collect();
    let working: Vec<&str> = served
        .iter()
        .filter(|(_, card)| up(card))
        .map(|(t, _)| t.as_str())
        .collect();
    Json(json!({"status": "ok", "models": known, "models_with_workers": working})).into_response()
}

#[cfg(test)]
mod tests {
    use super::super::subject_token;
    use super::*;

    #[test]
    fn ids_are_keys_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert_eq!(subject_token(&a), a);
    }
}
