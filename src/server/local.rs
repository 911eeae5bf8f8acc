//! `serve`'s job backend: bodies converted here, jobs queued for this process's GPU worker and
//! read from its job table; options, checkpoints, LoRAs and memory from the state it shares with
//! the worker.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use futures_lite::StreamExt as _;
use serde_json::{json, Map, Value};

use super::a1111::{
    all_seeds, checkpoint, convert_body, device_memory_json, info_json, loras_json, merge_options,
    options_json, sd_model, ExtrasAsk, Resolver,
};
use super::backend::{Generated, JobBackend, Png, Running, Stop, Submitted, Update, Updates};
use super::error::ApiError;
use super::job_view::{ErrorView, JobView, ProgressView};
use super::jobs::{
    ExtrasWork, Failure, IdempotencyKey, Job, JobId, Kind, Snapshot, Status, Task, Upscaled,
};
use super::queue::JobQueue;
use super::state::{lock, Shared};
use super::submit::{finished, submit};
use crate::intake::UpscalerEntry;

impl JobBackend for Arc<Shared> {
    async fn submit(
        &self,
        kind: Kind,
        body: Map<String, Value>,
        key: Option<IdempotencyKey>,
    ) -> Result<Submitted, ApiError> {
        let converted = convert_body(self, kind, body).await?;
        let job = submit(self, Task::Generate(Box::new(converted.work)), key)?;
        let status = job.snapshot().status;
        Ok(Submitted {
            id: job.id.to_string(),
            status,
        })
    }

    async fn generate(&self, kind: Kind, body: Map<String, Value>) -> Result<Generated, ApiError> {
        let converted = convert_body(self, kind, body).await?;
        let seeds = all_seeds(&converted.work);
        let (send_images, subseed) = (converted.send_images, converted.subseed);
        let parameters = Value::Object(converted.parameters);
        let job = submit(self, Task::Generate(Box::new(converted.work)), None)?;
        let end = finished(&job).await;
        let outcome = match (&end.outcome, &end.failure) {
            (Some(outcome), _) => outcome.clone(),
            (None, Some(failure)) => return Err(failure.into()),
            (None, None) => return Err(ApiError::internal("the job ended without a result")),
        };
        Ok(Generated {
            id: job.id.to_string(),
            images: match send_images {
                true => outcome.images.clone(),
                false => Vec::new(),
            },
            parameters,
            info: info_json(&outcome, &seeds, subseed).into(),
        })
    }

    async fn extras(&self, ask: ExtrasAsk) -> Result<Upscaled, ApiError> {
        let upscale = ask.upscale(|name| Resolver::upscaler(&**self, name))?;
        if ask.images.is_empty() {
            return Ok(Upscaled {
                images: Vec::new(),
                infotext: String::new(),
            });
        }
        let images = ask.images.into_iter().map(|(bytes, _)| bytes).collect();
        let work = ExtrasWork { upscale, images };
        let job = submit(self, Task::Extras(Box::new(work)), None)?;
        let end = finished(&job).await;
        match (&end.upscaled, &end.failure) {
            (Some(done), _) => Ok((**done).clone()),
            (None, Some(failure)) => Err(failure.into()),
            (None, None) => Err(ApiError::internal("the job ended without a result")),
        }
    }

    async fn describe(&self, id: &str) -> Result<Value, ApiError> {
        let job = job(self, id)?;
        Ok(describe(&*self.queue, &job, &job.snapshot()))
    }

    async fn cancel(&self, id: &str) -> Result<Status, ApiError> {
        let job = job(self, id)?;
        let status = job.snapshot().status;
        if status.finished() {
            return Ok(status);
        }
        job.stop();
        if self.queue.remove(job.id) {
            job.finish(Err(Failure {
                status: 409,
                message: "cancelled while queued".into(),
            }));
            self.jobs.finished(job.id);
        }
        Ok(status)
    }

    async fn image(&self, id: &str, index: usize) -> Result<Png, ApiError> {
        job(self, id)?
            .snapshot()
            .outcome
            .and_then(|o| o.images.get(index).cloned())
            .ok_or_else(|| ApiError::not_found(format!("job {id} has no image {index}")))
    }

    async fn follow(&self, id: &str) -> Result<Updates, ApiError> {
        let job = job(self, id)?;
        let queue = self.queue.clone();
        let start = (job.subscribe(), true, false);
        let updates = futures_lite::stream::unfold(start, |(mut watch, first, ended)| async move {
            if ended || (!first && watch.changed().await.is_err()) {
                return None;
            }
            let s = watch.borrow_and_update().clone();
            let ended = s.status.finished();
            Some((s, (watch, false, ended)))
        });
        Ok(Box::pin(updates.map(move |s| update(&*queue, &job, &s))))
    }

    async fn running(
        &self,
        id: Option<String>,
        preview: bool,
    ) -> Result<Option<Running>, ApiError> {
        let current = match &id {
            Some(id) => id.parse().ok().and_then(|id| self.jobs.get(id)),
            None => lock(&self.current).clone(),
        };
        let Some(job) = current else {
            return Ok(None);
        };
        let s = job.snapshot();
        if s.status != Status::Running {
            return Ok(None);
        }
        let shown = s.progress.preview.as_ref().filter(|_| preview);
        Ok(Some(Running {
            kind: job.kind,
            preview: shown.map(|(_, png)| png.clone()),
            progress: s.progress,
            skipped: job.skipped.load(Ordering::SeqCst),
            interrupted: job.cancel.is_cancelled(),
        }))
    }

    async fn stop_current(&self, how: Stop) -> Result<(), ApiError> {
        if let Some(job) = lock(&self.current).clone() {
            match how {
                Stop::Interrupt => job.stop(),
                Stop::Skip => job.skip(),
            }
        }
        Ok(())
    }

    async fn options(&self) -> Result<Value, ApiError> {
        let options = lock(&self.options).clone();
        let catalogue = lock(&self.catalogue);
        let selected = catalogue
            .selected
            .as_deref()
            .and_then(|p| catalogue.entry(p));
        let hash = selected.and_then(|e| e.sha256.clone());
        Ok(options_json(
            options,
            catalogue.selected_title().into(),
            hash.into(),
        ))
    }

    /// A checkpoint is loaded (after the running job) before this answers; one that fails
    /// leaves the selection as it was.
    async fn set_options(&self, mut options: Map<String, Value>) -> Result<(), ApiError> {
        let model = options.remove("sd_model_checkpoint");
        // refused before a checkpoint loads; merged again after it, over what others set since
        merge_options(&lock(&self.options), options.clone())?;
        if let Some(name) = model {
            let path = checkpoint(self, "sd_model_checkpoint", &name)?;
            run_model_task(self, Task::LoadModel(path.clone())).await?;
            lock(&self.catalogue).selected = Some(path);
        }
        let mut stored = lock(&self.options);
        *stored = merge_options(&stored, options)?;
        Ok(())
    }

    async fn models(&self) -> Result<Value, ApiError> {
        let entries = lock(&self.catalogue).entries.clone();
        Ok(entries.iter().map(|e| sd_model(self, e)).collect())
    }

    async fn loras(&self) -> Result<Value, ApiError> {
        Ok(loras_json(self, true))
    }

    async fn upscaler_models(&self) -> Result<Vec<UpscalerEntry>, ApiError> {
        Ok(self.upscalers.entries().to_vec())
    }

    async fn device_memory(&self) -> Result<(&'static str, Value), ApiError> {
        Ok(("device", device_memory_json(self)))
    }

    /// Ready (a model loaded) or not, and what is loaded.
    async fn health(&self) -> Result<(StatusCode, Value), ApiError> {
        let catalogue = lock(&self.catalogue);
        let loaded = catalogue
            .loaded
            .as_deref()
            .and_then(|p| catalogue.entry(p))
            .map(|e| e.title());
        let status = match loaded {
            Some(_) => StatusCode::OK,
            None => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = json!({
            "status": if loaded.is_some() { "ok" } else { "no model loaded" },
            "model": loaded,
            "queue_depth": self.queue.len(),
            "running": lock(&self.current).is_some(),
        });
        Ok((status, body))
    }
}

/// Runs a model task through the queue (in order with the jobs) and waits for it.
pub(super) async fn run_model_task(shared: &Shared, task: Task) -> Result<(), ApiError> {
    let job = submit(shared, task, None)?;
    let end = finished(&job).await;
    match end.failure {
        Some(failure) => Err((&failure).into()),
        None => Ok(()),
    }
}

fn job(shared: &Shared, id: &str) -> Result<Arc<Job>, ApiError> {
    id.parse::<JobId>()
        .ok()
        .and_then(|id| shared.jobs.get(id))
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// One state of a followed job.
fn update(queue: &dyn JobQueue, job: &Job, s: &Snapshot) -> Update {
    let p = &s.progress;
    Update {
        status: s.status,
        iteration: p.iteration,
        step: p.step,
        steps: p.steps,
        preview: p.preview.clone(),
        view: describe(queue, job, s),
    }
}

/// The job's state in the jobs API's shape.
fn describe(queue: &dyn JobQueue, job: &Job, s: &Snapshot) -> Value {
    let id = job.id.to_string();
    let images = s.outcome.as_ref().map_or(0, |o| o.images.len());
    JobView {
        images: JobView::image_urls(&id, images),
        id,
        kind: job.kind,
        status: s.status,
        placement: None,
        queue_position: queue.position(job.id),
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
