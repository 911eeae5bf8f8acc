//! `serve --nats`: an API node with no model and no GPU. It serves the routes `serve` does (the
//! same handlers, over this [`JobBackend`]) from NATS: A1111's txt2img/img2img waiting on the
//! job's record, progress with live previews, interrupt and skip, the jobs API with its events,
//! the model listing, and the settings and listings of `listings.rs`, refusing a body any worker
//! would refuse before it queues it: a job is its body in the object store, its record in the
//! jobs bucket and a message on its model's subject. Any number of API nodes can run side by
//! side; none keeps state of its own.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::Router;
use futures_lite::{Stream, StreamExt as _};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::bus::{Bus, NatsError, ANNOUNCE_EVERY};
use super::listings::{
    answers, get_options, loras, memory, served_model, set_options, stored_options,
};
use super::record::{image_object, now, request_object, JobRecord};
use super::NatsSettings;
use crate::intake::UpscalerEntry;
use crate::model_hash::hex;
use crate::server::a1111::{precheck_body, ExtrasAsk};
use crate::server::backend::{
    Generated, JobBackend, Png, Running, Stop, Submitted, Update, Updates,
};
use crate::server::error::ApiError;
use crate::server::job_view::{ErrorView, JobView, Placement, ProgressView};
use crate::server::jobs::{IdempotencyKey, Kind, Progress, Status, Upscaled};
use crate::server::submit::key_reused;
use crate::server::{api_routes, bind, guarded, ServerConfig, ServerError};

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
    http: tokio::task::JoinHandle<()>,
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
        let app = guarded(
            api_routes(Router::new()).with_state(node.clone()),
            &node.config,
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let timeout = node.config.client_timeout;
        let http = tokio::spawn(crate::server::http::serve(listener, app, timeout, stopped));
        Ok(ApiNode { addr, http, stop })
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.http.await;
    }
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

/// The served models as `serve` lists its checkpoints (the workers' LoRAs and memory have
/// routes of their own).
async fn sd_models(node: &Node) -> Result<Value, ApiError> {
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
    Ok(Value::Array(cards))
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

/// Queues `body` as a `kind` job (with an idempotency `key` seen before: that job instead, or a
/// 422 when it came with another body), after the checks that need no worker: a body any worker
/// would refuse is a 422 here, before anything reaches NATS.
async fn submit(
    node: &Node,
    kind: Kind,
    body: Map<String, Value>,
    key: Option<&IdempotencyKey>,
) -> Result<JobRecord, ApiError> {
    let bus = &node.bus;
    let mut body = precheck_body(kind, body).await?;
    let options = stored_options(node).await?;
    let model = model_of(node, &body, &options).await?;
    fold_options(&options, &mut body);
    let mut id = new_id();
    if let Some(key) = key {
        // the key's entry: the job's id and its body's digest
        let key_name = format!("key-{}", hex(&Sha256::digest(key.key.as_bytes())[..16]));
        let entry = format!("{id} {}", key.body);
        let taken = bus.jobs.create(&key_name, entry.into()).await;
        if taken.is_err() {
            let existing = bus
                .jobs
                .get(&key_name)
                .await
                .map_err(|e| unavailable(NatsError::io(e)))?
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            let (existing_id, body) = existing.split_once(' ').unwrap_or((&existing, ""));
            if body != key.body {
                return Err(key_reused());
            }
            id = existing_id.to_string();
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

impl JobBackend for Arc<Node> {
    async fn submit(
        &self,
        kind: Kind,
        body: Map<String, Value>,
        key: Option<IdempotencyKey>,
    ) -> Result<Submitted, ApiError> {
        let record = submit(self, kind, body, key.as_ref()).await?;
        Ok(Submitted {
            id: record.id,
            status: record.status,
        })
    }

    /// Waits on the job's record; the images come from the object store.
    async fn generate(&self, kind: Kind, body: Map<String, Value>) -> Result<Generated, ApiError> {
        let record = submit(self, kind, body, None).await?;
        let record = finished(&self.bus, &record.id).await?;
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
                let png = self.bus.object(&image_object(&record.id, i)).await;
                images.push(Arc::new(png.map_err(unavailable)?));
            }
        }
        Ok(Generated {
            id: record.id,
            images,
            parameters: response["parameters"].clone(),
            info: response["info"].clone(),
        })
    }

    async fn describe(&self, id: &str) -> Result<Value, ApiError> {
        Ok(describe(&record(self, id).await?))
    }

    /// Queued: cancelled here (its worker skips it); running: its worker is told and stops
    /// within one step.
    async fn cancel(&self, id: &str) -> Result<Status, ApiError> {
        record(self, id).await?;
        halt(&self.bus, id, Halt::Cancel).await
    }

    async fn image(&self, id: &str, index: usize) -> Result<Png, ApiError> {
        let r = record(self, id).await?;
        if index >= r.images {
            return Err(ApiError::not_found(format!(
                "job {id} has no image {index}"
            )));
        }
        let png = self.bus.object(&image_object(id, index)).await;
        Ok(Arc::new(png.map_err(unavailable)?))
    }

    /// The record's changes (no previews: those stay in the object store).
    async fn follow(&self, id: &str) -> Result<Updates, ApiError> {
        // watching before reading: no change falls between the two
        let watch = self
            .bus
            .jobs
            .watch(id)
            .await
            .map_err(|e| unavailable(NatsError::io(e)))?;
        let first = record(self, id).await?;
        let later = watch.filter_map(|entry| serde_json::from_slice(&entry.ok()?.value).ok());
        let records: Pin<Box<dyn Stream<Item = JobRecord> + Send>> =
            Box::pin(futures_lite::stream::once(first).chain(later));
        let updates =
            futures_lite::stream::unfold((records, false), |(mut records, ended)| async move {
                if ended {
                    return None;
                }
                let r = records.next().await?;
                let ended = r.status.finished();
                Some((update(&r), (records, ended)))
            });
        Ok(Box::pin(updates))
    }

    async fn running(
        &self,
        id: Option<String>,
        preview: bool,
    ) -> Result<Option<Running>, ApiError> {
        let current = current(self, id).await?;
        let Some(r) = current.filter(|r| r.status == Status::Running) else {
            return Ok(None);
        };
        let image = match r.preview_step.filter(|_| preview) {
            Some(_) => self.bus.preview(&r.id).await.map_err(unavailable)?,
            None => None,
        };
        Ok(Some(Running {
            kind: r.kind,
            progress: progress_of(&r),
            skipped: r.skip_requested,
            interrupted: r.cancel_requested,
            preview: image.map(Arc::new),
        }))
    }

    async fn stop_current(&self, how: Stop) -> Result<(), ApiError> {
        if let Some(r) = current(self, None).await? {
            let how = match how {
                Stop::Interrupt => Halt::Interrupt,
                Stop::Skip => Halt::Skip,
            };
            halt(&self.bus, &r.id, how).await?;
        }
        Ok(())
    }

    async fn options(&self) -> Result<Value, ApiError> {
        get_options(self).await
    }

    async fn set_options(&self, options: Map<String, Value>) -> Result<(), ApiError> {
        set_options(self, options).await
    }

    async fn models(&self) -> Result<Value, ApiError> {
        sd_models(self).await
    }

    async fn loras(&self) -> Result<Value, ApiError> {
        loras(self).await
    }

    /// Extras jobs are not sent to workers (their record carries generations only).
    async fn extras(&self, _: ExtrasAsk) -> Result<Upscaled, ApiError> {
        Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "Extras upscaling runs on `serve`'s own worker; an API node does not send it to \
             NATS workers",
        ))
    }

    /// Workers do not announce their upscaler folders: the built-in ones only.
    async fn upscaler_models(&self) -> Result<Vec<UpscalerEntry>, ApiError> {
        Ok(Vec::new())
    }

    async fn device_memory(&self) -> Result<(&'static str, Value), ApiError> {
        Ok(("workers", memory(self).await?))
    }

    /// Ready when NATS answers; lists the models known and those with a worker up now.
    async fn health(&self) -> Result<(StatusCode, Value), ApiError> {
        let served = models(&self.bus).await?;
        let recent = now() - 3.0 * ANNOUNCE_EVERY.as_secs_f64();
        let up = |card: &Value| card["last_seen"].as_f64().is_some_and(|t| t >= recent);
        let known: Vec<&str> = served.iter().map(|(t, _)| t.as_str()).collect();
        let working: Vec<&str> = served
            .iter()
            .filter(|(_, card)| up(card))
            .map(|(t, _)| t.as_str())
            .collect();
        let body = json!({"status": "ok", "models": known, "models_with_workers": working});
        Ok((StatusCode::OK, body))
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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

/// One state of a followed job.
fn update(r: &JobRecord) -> Update {
    let p = &r.progress;
    Update {
        status: r.status,
        iteration: p.iteration,
        step: p.step,
        steps: p.steps,
        preview: None,
        view: describe(r),
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

/// What a client asks of a job.
#[derive(Clone, Copy)]
enum Halt {
    /// Cancel it (queued: here; running: on its worker, within one step).
    Cancel,
    /// Interrupt it if it runs (A1111's `interrupt`; a queued job stays).
    Interrupt,
    /// End its running iteration (A1111's `skip`).
    Skip,
}

/// Records the request and tells the job's worker (which also reads the record, for a message
/// sent before it listened). The status the job had.
async fn halt(bus: &Bus, id: &str, how: Halt) -> Result<Status, ApiError> {
    let (mut was, mut asked) = (Status::Queued, false);
    bus.update_record(id, |r| {
        was = r.status;
        match (r.status, how) {
            (Status::Queued, Halt::Cancel) => {
                r.status = Status::Cancelled;
                r.finished_at = Some(now());
            }
            (Status::Running, Halt::Skip) => r.skip_requested = true,
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
            Halt::Skip => bus.settings.skip_subject(id),
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
