//! The jobs the server knows: each has an id, the work to run (taken by the worker), a state
//! that handlers watch (queued, running, succeeded, failed, cancelled, with progress and the
//! result), and its stop signals. Finished jobs are kept for a bounded time and count.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::queue::Refused;
use super::state::lock;
use crate::device::MadeOn;
use crate::infotext::ModelInfo;
use crate::pipeline::extras::ExtrasUpscale;
use crate::pipeline::{Cancel, Request};
use crate::policy::Correction;

/// A job's id, unique within one server process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:012x}", self.0)
    }
}

impl std::str::FromStr for JobId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(JobId)
    }
}

/// txt2img or img2img (A1111's two endpoints; the native API's `kind`), a model change, or an
/// Extras upscale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Txt2img,
    Img2img,
    Model,
    Extras,
}

/// What a job asks of the worker.
#[derive(Clone, Debug)]
pub enum Task {
    Generate(Box<Work>),
    /// Make this checkpoint the one on the device.
    LoadModel(PathBuf),
    /// Release the checkpoint on the device.
    UnloadModel,
    /// A1111's Extras upscale of some images.
    Extras(Box<ExtrasWork>),
}

impl Task {
    pub fn kind(&self) -> Kind {
        match self {
            Task::Generate(work) => work.kind,
            Task::LoadModel(_) | Task::UnloadModel => Kind::Model,
            Task::Extras(_) => Kind::Extras,
        }
    }

    fn iterations(&self) -> usize {
        match self {
            Task::Generate(work) => work.n_iter,
            Task::Extras(work) => work.images.len(),
            _ => 1,
        }
    }
}

/// What the worker runs for one job: `n_iter` engine runs of `request` (seeds advancing by the
/// batch size; its LoRAs active for this job only), on `model`.
#[derive(Clone, Debug)]
pub struct Work {
    pub kind: Kind,
    pub request: Request,
    pub n_iter: usize,
    pub corrections: Vec<Correction>,
    pub model: PathBuf,
    /// `save_images`: also write the images into this folder (the server's `--outputs`).
    pub save_to: Option<PathBuf>,
    /// The body's fields with defaults filled, images left out: the images' JSON record.
    pub record: Map<String, Value>,
}

/// An Extras job: the upscale, and the images as uploaded (PNG, JPEG or WebP bytes whose
/// headers were checked; each is decoded when its turn comes, so a batch holds one decoded
/// image at a time).
#[derive(Clone, Debug)]
pub struct ExtrasWork {
    pub upscale: ExtrasUpscale,
    pub images: Vec<Arc<Vec<u8>>>,
}

/// A finished Extras job: the upscaled PNGs (carrying their input's PNG text and the
/// `postprocessing` infotext) and the last image's infotext (A1111's `html_info`).
#[derive(Clone, Debug)]
pub struct Upscaled {
    pub images: Vec<Arc<Vec<u8>>>,
    pub infotext: String,
}

/// What a successful job leaves.
#[derive(Clone, Debug)]
pub enum Done {
    Generated(Box<Outcome>),
    Upscaled(Upscaled),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub fn finished(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }
}

/// Where a running job is.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Engine runs done (A1111's `job_no`) of `iterations` (`n_iter`).
    pub iteration: usize,
    pub iterations: usize,
    /// Denoising steps done in the current run, of `steps`.
    pub step: usize,
    pub steps: usize,
    pub started: Option<Instant>,
    /// The latest live preview: the step it shows (counted over the whole job) and a PNG.
    pub preview: Option<(usize, Arc<Vec<u8>>)>,
}

impl Progress {
    /// Done fraction of the whole job, in [0, 1].
    pub fn fraction(&self) -> f64 {
        if self.iterations == 0 {
            return 0.0;
        }
        let within = if self.steps > 0 {
            self.step as f64 / self.steps as f64
        } else {
            0.0
        };
        ((self.iteration as f64 + within) / self.iterations as f64).min(1.0)
    }

    /// Seconds left, extrapolated from the time so far (A1111's `eta_relative`).
    pub fn eta(&self) -> Option<f64> {
        let elapsed = self.started?.elapsed().as_secs_f64();
        let done = self.fraction();
        (done > 0.0).then(|| elapsed / done - elapsed)
    }
}

/// A finished job's images and what produced them.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// PNGs carrying their infotext, in seed order (fewer than asked when interrupted).
    pub images: Vec<Arc<Vec<u8>>>,
    pub seeds: Vec<u64>,
    pub infotexts: Vec<String>,
    /// The first image's infotext fields (`(key, value)` after the prompts), which A1111's
    /// `info` repeats.
    pub fields: Vec<(String, String)>,
    /// The request as run (after the policy).
    pub request: Request,
    pub model: ModelInfo,
    /// The device and precision the images were made with.
    pub made_on: MadeOn,
    /// `%Y%m%d%H%M%S` of the start, A1111's `job_timestamp`.
    pub timestamp: String,
}

/// Why a job failed: the HTTP status it maps to (4xx: the request; 500: the machine) and the
/// message.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub status: u16,
    pub message: String,
}

/// When a job entered the queue, started and finished (wall clock, for clients and logs).
#[derive(Clone, Copy, Debug)]
pub struct Times {
    pub queued: SystemTime,
    pub started: Option<SystemTime>,
    pub finished: Option<SystemTime>,
}

/// What handlers see of a job at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub status: Status,
    pub progress: Progress,
    pub times: Times,
    pub outcome: Option<Arc<Outcome>>,
    pub upscaled: Option<Arc<Upscaled>>,
    pub failure: Option<Failure>,
}

/// One job: its work (until the worker takes it), its state, its stop signals.
pub struct Job {
    pub id: JobId,
    pub kind: Kind,
    task: Mutex<Option<Task>>,
    state: watch::Sender<Snapshot>,
    /// Stops the whole job (DELETE, `interrupt`).
    pub cancel: Cancel,
    /// Set by `skip`: the run in progress stops, the job goes on with its next iteration.
    pub skipped: AtomicBool,
    /// The current run's stop signal (the worker replaces it per run).
    pub run_cancel: Mutex<Cancel>,
}

impl Job {
    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.state.subscribe()
    }

    /// The task, once: the worker takes it when it starts the job.
    pub fn take_task(&self) -> Option<Task> {
        lock(&self.task).take()
    }

    pub fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        self.state.send_modify(change);
    }

    /// Stops the job: queued jobs never start, a running one stops within one step.
    pub fn stop(&self) {
        self.cancel.cancel();
        lock(&self.run_cancel).cancel();
    }

    /// Stops the current run only (A1111's `skip`).
    pub fn skip(&self) {
        self.skipped.store(true, Ordering::SeqCst);
        lock(&self.run_cancel).cancel();
    }

    /// Records the end: cancelled once stopped (an interrupted job keeps the images it made),
    /// else succeeded or failed. Returns the final status.
    pub fn finish(&self, result: Result<Option<Done>, Failure>) -> Status {
        let status = match (self.cancel.is_cancelled(), &result) {
            (true, _) => Status::Cancelled,
            (false, Ok(_)) => Status::Succeeded,
            (false, Err(_)) => Status::Failed,
        };
        self.update(|s| {
            s.status = status;
            match result {
                Ok(Some(Done::Generated(outcome))) => s.outcome = Some(Arc::new(*outcome)),
                Ok(Some(Done::Upscaled(upscaled))) => s.upscaled = Some(Arc::new(upscaled)),
                Ok(None) => {}
                Err(failure) => s.failure = Some(failure),
            }
            s.progress.preview = None;
            s.times.finished = Some(SystemTime::now());
        });
        status
    }
}

/// How long and how many finished jobs are kept for polling.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub count: usize,
    pub time: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            count: 256,
            time: Duration::from_secs(3600),
        }
    }
}

/// A client's `Idempotency-Key` and the digest of the body it came with: the key names the job
/// of that body only (IETF draft `httpapi-idempotency-key-header`: the same key with another body
/// is a 422).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    /// The body's SHA-256, hex.
    pub body: String,
}

impl IdempotencyKey {
    pub fn new(key: &str, body: &[u8]) -> Self {
        use sha2::Digest as _;
        IdempotencyKey {
            key: key.to_string(),
            body: crate::model_hash::hex(&sha2::Sha256::digest(body)),
        }
    }
}

/// Every job the server knows, by id, and idempotency keys.
pub struct Jobs {
    inner: Mutex<Table>,
    retention: Retention,
}

#[derive(Default)]
struct Table {
    jobs: HashMap<JobId, Arc<Job>>,
    /// Finished jobs, oldest first, with when they finished.
    finished: VecDeque<(JobId, Instant)>,
    keys: HashMap<String, (String, JobId)>,
    /// The next id to issue.
    next: u64,
}

impl Jobs {
    pub fn new(retention: Retention) -> Self {
        Jobs {
            inner: Mutex::new(Table {
                next: 1,
                ..Table::default()
            }),
            retention,
        }
    }

    /// A new job for `task`, handed to `enqueue` under the table's lock, so ids are issued in
    /// queue order; with an idempotency `key` already seen, the existing job instead. A job the
    /// queue refuses is never recorded.
    pub fn create(
        &self,
        task: Task,
        key: Option<IdempotencyKey>,
        enqueue: impl FnOnce(JobId) -> Result<(), Refused>,
    ) -> Result<Arc<Job>, Refused> {
        let mut table = lock(&self.inner);
        self.prune(&mut table);
        if let Some((body, existing)) = key.as_ref().and_then(|k| table.keys.get(&k.key)) {
            if let Some(job) = table.jobs.get(existing) {
                if key.as_ref().is_some_and(|k| &k.body != body) {
                    return Err(Refused::KeyReused);
                }
                return Ok(job.clone());
            }
        }
        let id = JobId(table.next);
        enqueue(id)?;
        table.next += 1;
        let (state, _) = watch::channel(Snapshot {
            status: Status::Queued,
            progress: Progress {
                iterations: task.iterations(),
                ..Progress::default()
            },
            times: Times {
                queued: SystemTime::now(),
                started: None,
                finished: None,
            },
            outcome: None,
            upscaled: None,
            failure: None,
        });
        let job = Arc::new(Job {
            id,
            kind: task.kind(),
            task: Mutex::new(Some(task)),
            state,
            cancel: Cancel::new(),
            skipped: AtomicBool::new(false),
            run_cancel: Mutex::new(Cancel::new()),
        });
        table.jobs.insert(id, job.clone());
        if let Some(key) = key {
            table.keys.insert(key.key, (key.body, id));
        }
        Ok(job)
    }

    pub fn get(&self, id: JobId) -> Option<Arc<Job>> {
        lock(&self.inner).jobs.get(&id).cloned()
    }

    /// Records that `id` finished, for retention.
    pub fn finished(&self, id: JobId) {
        let mut table = lock(&self.inner);
        table.finished.push_back((id, Instant::now()));
        self.prune(&mut table);
    }

    fn prune(&self, table: &mut Table) {
        let Retention { count, time } = self.retention;
        while let Some(&(id, at)) = table.finished.front() {
            if table.finished.len() <= count && at.elapsed() < time {
                break;
            }
            table.finished.pop_front();
            table.jobs.remove(&id);
            table.keys.retain(|_, (_, v)| *v != id);
        }
    }
}
