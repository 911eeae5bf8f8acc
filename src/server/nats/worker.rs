//! `sdxl-wgpu worker`: a GPU machine serving one model's jobs from NATS. It runs the same
//! worker thread as `serve` (a [`Core`]); this bridge pulls one job at a time from the model's
//! durable consumer, converts its body as `serve` would, mirrors the local job's progress into
//! the job's record, heartbeats so a long job is not redelivered, and settles the message:
//! acknowledged on success and on failures the request caused (final), negatively acknowledged
//! with a back-off on the machine's failures until the maximum deliveries.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::{AckKind, Message};
use futures_lite::StreamExt as _;
use serde_json::{json, Value};

use super::bus::{Bus, NatsError, ANNOUNCE_EVERY};
use super::record::{
    image_object, now, preview_key, request_object, JobRecord, RecordError, CURRENT_KEY,
};
use super::{subject_token, NatsSettings};
use crate::device::Gpu;
use crate::server::a1111::{
    all_seeds, convert_body, device_memory_json, info_json, loras_json, object, sd_model,
};
use crate::server::jobs::{Job, Kind, Snapshot, Status, Task};
use crate::server::state::{lock, Shared};
use crate::server::submit::submit;
use crate::server::{Core, ServerConfig, ServerError};
use crate::weights::WeightDtype;

/// How a worker runs (the flags of `sdxl-wgpu worker`).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The model (`model`), LoRA folder, policy, precision, backend; the HTTP fields unused.
    pub server: ServerConfig,
    pub nats: NatsSettings,
    /// How this worker is named in job records (default: host name and process id).
    pub name: String,
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Loads the model, then serves its jobs until `stop` resolves; the job running then is
/// finished first. NATS going away does not stop it: `warn` hears of each failed exchange, the
/// worker retries, and a job it could not settle is redelivered after the acknowledgement
/// timeout.
pub async fn run_worker(
    config: WorkerConfig,
    gpu: Gpu,
    dtype: WeightDtype,
    stop: impl std::future::Future<Output = ()>,
    warn: impl Fn(String),
) -> Result<(), WorkerError> {
    let bus = Bus::connect(&config.nats).await?;
    let mut core = Core::start(config.server.clone(), gpu, dtype).await?;
    let result = serve_jobs(&bus, &core.shared, &config.name, stop, warn).await;
    core.stop().await;
    result.map_err(WorkerError::from)
}

/// The loaded model's subject token and its announcement: the model as `sd-models` lists it,
/// with the worker's LoRAs (as `/loras` lists them, without their metadata; API nodes list
/// them) and, at each announcement, its device memory.
fn model_card(shared: &Shared) -> (String, Value) {
    let entry = {
        let catalogue = lock(&shared.catalogue);
        let selected = catalogue.selected.as_deref();
        selected.and_then(|p| catalogue.entry(p)).cloned()
    };
    let entry = entry.expect("a started core has a selected model");
    let mut card = sd_model(shared, &entry);
    card["loras"] = loras_json(shared, false);
    (subject_token(&entry.model_name), card)
}

async fn serve_jobs(
    bus: &Bus,
    shared: &Arc<Shared>,
    name: &str,
    stop: impl std::future::Future<Output = ()>,
    warn: impl Fn(String),
) -> Result<(), NatsError> {
    let (token, card) = model_card(shared);
    let announce = announce(bus.clone(), shared.clone(), token.clone(), card);
    let settings = &bus.settings;
    let stream = bus
        .js
        .get_stream(&settings.stream)
        .await
        .map_err(NatsError::io)?;
    let durable = format!("workers-{token}");
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: settings.jobs_subject(&token),
                ack_policy: AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                // past the maximum runs: a job whose worker died on its last run is still seen
                // (and recorded as failed), and a delivery lost on the way (a pull request
                // expiring as the server sends) does not cost the job a run
                max_deliver: settings.max_deliver + DELIVERY_SLACK,
                ..Default::default()
            },
        )
        .await
        .map_err(NatsError::io)?;
    tokio::pin!(stop);
    loop {
        let batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(1))
            .messages();
        let mut messages = tokio::select! {
            _ = &mut stop => break,
            batch = batch => match batch {
                Ok(messages) => messages,
                Err(e) => {
                    warn(format!("pulling a job: {e}; retrying"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        while let Some(Ok(message)) = messages.next().await {
            if let Err(e) = run_job(bus, shared, name, message).await {
                warn(format!("{e}; the job will be delivered again"));
            }
        }
    }
    announce.abort();
    Ok(())
}

/// Puts `card` under `token` in the models bucket, with the time and the device's memory,
/// while the worker runs.
fn announce(
    bus: Bus,
    shared: Arc<Shared>,
    token: String,
    mut card: Value,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            card["last_seen"] = now().into();
            card["memory"] = device_memory_json(&shared);
            let _ = bus.models.put(&token, card.to_string().into()).await;
            tokio::time::sleep(ANNOUNCE_EVERY).await;
        }
    })
}

/// Deliveries the consumer allows beyond `max_deliver` runs. A run is counted in the record
/// when it starts, so deliveries that never reached a worker do not count against the job.
const DELIVERY_SLACK: i64 = 3;

/// How one delivery ended, for the record and the acknowledgement.
enum Ending {
    /// Recorded final (succeeded, cancelled, failed for good): acknowledge.
    Final,
    /// The machine failed: deliver again after this long.
    Retry(Duration),
}

/// Runs the job of one delivery and settles the message.
async fn run_job(
    bus: &Bus,
    shared: &Arc<Shared>,
    name: &str,
    message: Message,
) -> Result<(), NatsError> {
    let id = String::from_utf8_lossy(&message.payload).into_owned();
    let delivered = message.info().map_or(1, |i| i.delivered);
    let ending = match start(bus, &id, name, delivered).await? {
        Some((kind, run)) => {
            // best effort: A1111's progress shows the job started last
            let _ = bus.jobs.put(CURRENT_KEY, id.clone().into()).await;
            let ending = execute(bus, shared, &id, kind, run, &message).await;
            if shared.config.preview_every > 0 {
                let _ = bus.jobs.purge(preview_key(&id)).await;
            }
            ending?
        }
        None => Ending::Final,
    };
    let ack = match ending {
        Ending::Final => AckKind::Ack,
        Ending::Retry(after) => AckKind::Nak(Some(after)),
    };
    message.ack_with(ack).await.map_err(NatsError::io)
}

/// Marks the record running on this worker and counts the run; `None` when there is nothing
/// to run: the record is gone or finished (cancelled while queued, or a result recorded before
/// an acknowledgement was lost), or the runs ran out (a worker died during the last one) or
/// this is the consumer's last delivery (both recorded as failed here). `Some((kind, run))`
/// numbers the run from 1.
async fn start(
    bus: &Bus,
    id: &str,
    name: &str,
    delivered: i64,
) -> Result<Option<(Kind, i64)>, NatsError> {
    let max = bus.settings.max_deliver;
    let mut run = None;
    bus.update_record(id, |r| {
        run = None;
        if r.status.finished() {
            return false;
        }
        if r.attempts >= max || delivered >= max + DELIVERY_SLACK {
            let last = r
                .error
                .take()
                .map_or("the worker stopped".into(), |e| e.message);
            finish(r, Status::Failed);
            r.error = Some(RecordError {
                status: 500,
                message: format!("gave up after {} runs: {last}", r.attempts),
            });
            return true;
        }
        r.attempts += 1;
        r.status = Status::Running;
        r.worker = Some(name.into());
        r.started_at = Some(now());
        run = Some((r.kind, r.attempts));
        true
    })
    .await?;
    Ok(run)
}

fn finish(r: &mut JobRecord, status: Status) {
    r.status = status;
    r.finished_at = Some(now());
    r.preview_step = None;
}

/// Converts the body, runs it on the local worker thread and records how it ended.
async fn execute(
    bus: &Bus,
    shared: &Arc<Shared>,
    id: &str,
    kind: Kind,
    run: i64,
    message: &Message,
) -> Result<Ending, NatsError> {
    let body = bus.object(&request_object(id)).await?;
    let converted = match object(&body) {
        Ok(map) => convert_body(shared, kind, map).await,
        Err(e) => Err(e),
    };
    let converted = match converted {
        Ok(converted) => converted,
        Err(e) => return fail(bus, id, e.status.as_u16(), e.detail, run).await,
    };
    let seeds = all_seeds(&converted.work);
    let (parameters, send_images, subseed) = (
        converted.parameters,
        converted.send_images,
        converted.subseed,
    );
    let job = match submit(shared, Task::Generate(Box::new(converted.work)), None) {
        Ok(job) => job,
        Err(e) => return fail(bus, id, 503, e.detail, run).await,
    };
    let end = follow(bus, id, &job, message).await?;
    if let Some(failure) = end.failure.filter(|_| end.status == Status::Failed) {
        return fail(bus, id, failure.status, failure.message, run).await;
    }
    let outcome = end.outcome.clone();
    let images = outcome.as_ref().map_or(0, |o| o.images.len());
    for (i, png) in outcome.iter().flat_map(|o| o.images.iter()).enumerate() {
        bus.put_object(&image_object(id, i), png).await?;
    }
    let response = outcome.as_ref().map(|o| {
        json!({
            "parameters": parameters,
            "info": info_json(o, &seeds, subseed),
            "send_images": send_images,
        })
    });
    bus.update_record(id, |r| {
        finish(r, end.status);
        r.error = None;
        r.images = images;
        r.seeds = outcome
            .as_ref()
            .map(|o| o.seeds.clone())
            .unwrap_or_default();
        r.infotexts = outcome
            .as_ref()
            .map(|o| o.infotexts.clone())
            .unwrap_or_default();
        r.response = response.clone();
        true
    })
    .await?;
    Ok(Ending::Final)
}

/// Records a failure: final when the request caused it (4xx) or the runs are spent, else
/// kept as the last error while the job waits for its next delivery.
async fn fail(
    bus: &Bus,
    id: &str,
    status: u16,
    message: String,
    run: i64,
) -> Result<Ending, NatsError> {
    let last = run >= bus.settings.max_deliver;
    let is_final = status < 500 || last;
    bus.update_record(id, |r| {
        r.error = Some(RecordError {
            status,
            message: message.clone(),
        });
        match is_final {
            true => finish(r, Status::Failed),
            false => {
                r.status = Status::Queued;
                r.preview_step = None;
            }
        }
        true
    })
    .await?;
    Ok(match is_final {
        true => Ending::Final,
        // 2, 4, 8 ... seconds, at most 30
        false => Ending::Retry(Duration::from_secs((1u64 << run.clamp(1, 5)).min(30))),
    })
}

/// Waits for the local job to end, mirroring its progress and previews into the record,
/// heartbeating the message and stopping (or skipping in) the job when a client asks.
async fn follow(
    bus: &Bus,
    id: &str,
    job: &Arc<Job>,
    message: &Message,
) -> Result<Snapshot, NatsError> {
    let subscribe = |subject| async { bus.client.subscribe(subject).await.map_err(NatsError::io) };
    let mut cancels = subscribe(bus.settings.cancel_subject(id)).await?;
    let mut skips = subscribe(bus.settings.skip_subject(id)).await?;
    let mut watch = job.subscribe();
    let mut heartbeat = tokio::time::interval(bus.settings.ack_wait / 3);
    let mut reported = None;
    loop {
        let s = watch.borrow_and_update().clone();
        if s.status.finished() {
            return Ok(s);
        }
        let preview = s.progress.preview.clone();
        let now = (
            s.progress.iteration,
            s.progress.step,
            preview.as_ref().map(|p| p.0),
        );
        if reported != Some(now) && s.status == Status::Running {
            let stored = reported.and_then(|(_, _, step)| step);
            reported = Some(now);
            if let Some((_, png)) = preview.filter(|(step, _)| stored != Some(*step)) {
                // the image first: a reader who sees the step finds it
                bus.jobs
                    .put(preview_key(id), png.as_slice().to_vec().into())
                    .await
                    .map_err(NatsError::io)?;
            }
            let record = bus
                .update_record(id, |r| {
                    r.progress.iteration = s.progress.iteration;
                    r.progress.iterations = s.progress.iterations;
                    r.progress.step = s.progress.step;
                    r.progress.steps = s.progress.steps;
                    r.preview_step = now.2;
                    true
                })
                .await?;
            if record.is_some_and(|r| r.cancel_requested) {
                job.stop();
            }
        }
        tokio::select! {
            changed = watch.changed() => if changed.is_err() { return Ok(job.snapshot()) },
            _ = cancels.next() => job.stop(),
            _ = skips.next() => job.skip(),
            _ = heartbeat.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}
