//! The one thread that owns the device: it takes jobs from the queue in order, keeps one
//! checkpoint loaded (switching when a job names another), makes each job's LoRAs the active
//! set for that job only, runs the engine with the job's stop signals, and turns the results
//! into PNGs carrying their infotext. HTTP handlers never touch the engine.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::a1111::A1111Names;
use super::jobs::{Done, Failure, Job, Outcome, Status, Task, Work};
use super::preview::preview_png;
use super::queue::Pop;
use super::state::{lock, DeviceMemory, Shared};
use super::upscaling::{run_extras, WarmUpscaler};
use crate::checkpoint::Checkpoint;
use crate::device::{memory_in_use, Gpu};
use crate::field::Described;
use crate::image_io;
use crate::infotext::{self, ModelInfo};
use crate::lora::LoraSpec;
use crate::pipeline::{Cancel, Controls, Engine, Error, Event, PipelineError, Preview, Request};
use crate::upscaler::UpscalerError;
use crate::weights::{WeightDtype, WeightError};

/// The engine and the checkpoint it holds.
struct Loaded {
    path: PathBuf,
    engine: Engine,
    info: ModelInfo,
}

/// What a job's activations are shaped by: jobs with the same key reuse one warm pool.
#[derive(Clone, Debug, PartialEq)]
struct PoolKey {
    model: PathBuf,
    width: usize,
    height: usize,
    batch: usize,
    img2img: bool,
    loras: Vec<LoraSpec>,
}

impl PoolKey {
    fn of(work: &Work) -> Self {
        let r = &work.request;
        PoolKey {
            model: work.model.clone(),
            width: r.width,
            height: r.height,
            batch: r.batch,
            img2img: r.init.is_some(),
            loras: r.loras.clone(),
        }
    }
}

/// The worker's own state: the device and what is on it.
pub struct Worker {
    shared: Arc<Shared>,
    gpu: Gpu,
    dtype: WeightDtype,
    loaded: Option<Loaded>,
    /// The shape whose activation memory is still pooled from the last job, kept for a next
    /// job of the same shape until the server has been idle `keep_warm`.
    warm: Option<PoolKey>,
    /// The model upscaler of the last Extras job, until a generation or the idle timer.
    extras_upscaler: WarmUpscaler,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, gpu: Gpu, dtype: WeightDtype) -> Self {
        Worker {
            shared,
            gpu,
            dtype,
            loaded: None,
            warm: None,
            extras_upscaler: None,
        }
    }

    /// Runs jobs until the queue closes, then releases the model. A warm pool is released
    /// once no job has come for `keep_warm`.
    pub fn run(mut self) {
        loop {
            let holding = self.warm.is_some() || self.extras_upscaler.is_some();
            let wait = holding.then_some(self.shared.config.keep_warm);
            match self.shared.queue.pop(wait) {
                Pop::Job(id) => {
                    if let Some(job) = self.shared.jobs.get(id) {
                        self.take(&job);
                    }
                }
                Pop::Idle => {
                    self.cool();
                    self.note_memory();
                }
                Pop::Closed => break,
            }
        }
        self.loaded = None;
    }

    /// Releases the activation memory kept warm and the Extras upscaler (the checkpoint's
    /// weights and adapters stay).
    fn cool(&mut self) {
        let upscaler = self.extras_upscaler.take().is_some();
        if self.warm.take().is_some() || upscaler {
            self.gpu.device.memory_cleanup();
        }
    }

    /// Runs one job start to end and records how it ended. A panic inside is a 500 for this
    /// job and drops the engine, so the next job starts from a fresh load.
    fn take(&mut self, job: &Arc<Job>) {
        let Some(task) = job.take_task() else {
            return;
        };
        let clock = Instant::now();
        *lock(&self.shared.current) = Some(job.clone());
        job.update(|s| {
            s.status = Status::Running;
            s.progress.started = Some(clock);
            s.times.started = Some(SystemTime::now());
        });
        let result = if job.cancel.is_cancelled() {
            Err(cancelled())
        } else {
            catch_unwind(AssertUnwindSafe(|| self.perform(job, task))).unwrap_or_else(|_| {
                self.release();
                Err(Failure::internal(
                    "internal error: the job panicked; the model will be reloaded".into(),
                ))
            })
        };
        self.note_memory();
        *lock(&self.shared.current) = None;
        let status = job.finish(result);
        self.shared.metrics.job(status, clock.elapsed());
        self.shared.jobs.finished(job.id);
    }

    fn perform(&mut self, job: &Job, task: Task) -> Result<Option<Done>, Failure> {
        match task {
            Task::Generate(work) => self
                .generate(job, &work)
                .map(|o| Some(Done::Generated(Box::new(o)))),
            Task::Extras(work) => {
                if self.warm.take().is_some() {
                    self.gpu.device.memory_cleanup(); // a generation's pool beside the tiles
                }
                let (gpu, dtype) = (&self.gpu, self.dtype);
                let done = run_extras(gpu, dtype, &mut self.extras_upscaler, job, &work);
                self.gpu.device.memory_cleanup();
                done.map(|u| Some(Done::Upscaled(u)))
            }
            Task::LoadModel(path) => {
                self.ensure_model(&path)?;
                Ok(None)
            }
            Task::UnloadModel => {
                self.release();
                Ok(None)
            }
        }
    }

    /// Drops the engine and its pooled memory; no checkpoint is loaded after.
    fn release(&mut self) {
        self.loaded = None;
        self.warm = None;
        self.extras_upscaler = None;
        self.gpu.device.memory_cleanup();
        lock(&self.shared.catalogue).loaded = None;
    }

    /// The engine holding `path`, loading it first. The file is opened and checked before the
    /// loaded checkpoint is released (a broken file leaves it serving); the previous one is
    /// released before the next loads (two would not fit many GPUs) and loaded again when the
    /// next fails.
    fn ensure_model(&mut self, path: &Path) -> Result<&mut Loaded, Failure> {
        if self.loaded.as_ref().is_some_and(|l| l.path == path) {
            return Ok(self.loaded.as_mut().expect("checked"));
        }
        let checkpoint = Checkpoint::open(path).map_err(|e| cannot_load(path, e.into()))?;
        let previous = self.loaded.as_ref().map(|l| l.path.clone());
        self.release();
        match self.load(path, checkpoint) {
            Ok(()) => Ok(self.loaded.as_mut().expect("just loaded")),
            Err(failure) => {
                if let Some(previous) = previous {
                    if let Ok(checkpoint) = Checkpoint::open(&previous) {
                        let _ = self.load(&previous, checkpoint);
                    }
                }
                Err(failure)
            }
        }
    }

    /// Loads `checkpoint` (the file at `path`) as the engine.
    fn load(&mut self, path: &Path, checkpoint: Checkpoint) -> Result<(), Failure> {
        let clock = Instant::now();
        let options = self.shared.config.load;
        let engine = Engine::load_with(self.gpu.clone(), checkpoint, self.dtype, options)
            .and_then(|e| e.gpu().sync().map(|()| e).map_err(Error::from))
            .map_err(|e| cannot_load(path, e))?;
        self.shared.metrics.model_load(clock.elapsed());
        let (info, _) = ModelInfo::of(path);
        {
            let mut catalogue = lock(&self.shared.catalogue);
            catalogue.loaded = Some(path.to_path_buf());
            catalogue.learn_hash(path);
        }
        self.loaded = Some(Loaded {
            path: path.to_path_buf(),
            engine,
            info,
        });
        Ok(())
    }

    /// `work.n_iter` runs with the job's LoRAs, seeds advancing by the batch size; `skip`
    /// drops the run in progress, `interrupt` ends the job keeping what is done.
    fn generate(&mut self, job: &Job, work: &Work) -> Result<Outcome, Failure> {
        let shared = self.shared.clone();
        let key = PoolKey::of(work);
        if self.warm.as_ref() != Some(&key) || self.extras_upscaler.is_some() {
            self.cool(); // another shape: its pages would only sit beside this job's
        }
        self.warm = None; // until this job has succeeded
        let keep = !shared.config.keep_warm.is_zero();
        let loaded = self.ensure_model(&work.model)?;
        loaded
            .engine
            .set_loras(&work.request.loras)
            .map_err(classify)?;
        let mut resolved = work.request.clone();
        loaded.engine.resolve(&mut resolved);
        let mut outcome = Outcome {
            images: Vec::new(),
            seeds: Vec::new(),
            infotexts: Vec::new(),
            fields: Vec::new(),
            request: resolved.clone(),
            model: loaded.info.clone(),
            made_on: loaded.engine.made_on(),
            timestamp: timestamp(),
        };
        for iteration in 0..work.n_iter {
            job.update(|s| {
                s.progress.iteration = iteration;
                s.progress.step = 0;
            });
            let first_seed = work
                .request
                .seed
                .wrapping_add((iteration * work.request.batch) as u64);
            let request = Request {
                seed: first_seed,
                ..resolved.clone()
            };
            match run_once(&shared, loaded, job, &request, keep) {
                Ok(images) => add_images(&mut outcome, work, &request, images)?,
                Err(e) if is_cancel(&e) && job.cancel.is_cancelled() => break, // kept: what is done
                Err(e) if is_cancel(&e) => continue, // skipped: on with the next iteration
                Err(e) => return Err(classify(e)),
            }
        }
        if let Some(dir) = &work.save_to {
            save(dir, job, &outcome)?;
        }
        self.warm = keep.then_some(key);
        Ok(outcome)
    }

    fn note_memory(&self) {
        let mut memory = lock(&self.shared.memory);
        if let Some((in_use, reserved)) = memory_in_use(&self.gpu.device) {
            *memory = DeviceMemory {
                in_use,
                reserved,
                peak_reserved: memory.peak_reserved.max(reserved),
                warm: self.warm.is_some(),
            };
        }
    }
}

/// One engine run of `request` under the job's stop signals, reporting steps and previews.
fn run_once(
    shared: &Shared,
    loaded: &Loaded,
    job: &Job,
    request: &Request,
    keep_memory: bool,
) -> Result<Vec<image::RgbImage>, Error> {
    let cancel = Cancel::new();
    *lock(&job.run_cancel) = cancel.clone();
    if job.cancel.is_cancelled() {
        cancel.cancel(); // a stop that came before the signal was in place
    }
    let mut on_event = |event: Event| {
        if let Event::Step { done, total } = event {
            job.update(|s| {
                s.progress.step = done;
                s.progress.steps = total;
            });
        }
    };
    let mut show = |done: usize, x0| {
        if let Some(png) = preview_png(x0) {
            job.update(|s| {
                let step = s.progress.iteration * s.progress.steps + done;
                s.progress.preview = Some((step, Arc::new(png)));
            });
        }
    };
    let every = shared.config.preview_every;
    let controls = Controls {
        cancel: Some(&cancel),
        on_event: &mut on_event,
        preview: (every > 0).then_some(Preview {
            every,
            show: &mut show,
        }),
        keep_memory,
    };
    let generated = loaded.engine.generate_with(request, controls)?;
    let stats = generated.stats;
    shared.metrics.steps(stats.steps, stats.denoise);
    Ok(generated.pictures()?)
}

/// The run's images as PNGs with their infotext, appended to `outcome`.
fn add_images(
    outcome: &mut Outcome,
    work: &Work,
    request: &Request,
    images: Vec<image::RgbImage>,
) -> Result<(), Failure> {
    for (i, image) in images.iter().enumerate() {
        let seed = request.seed.wrapping_add(i as u64);
        let (text, metadata) = infotext::image_metadata(
            request,
            &work.corrections,
            &outcome.model,
            &outcome.made_on,
            &work.record,
            seed,
        )
        .map_err(|e| Failure::internal(format!("hashing a LoRA for the infotext: {e}")))?;
        let mut png = Vec::new();
        image_io::metadata::write_png(image, &mut png, Some(&metadata))
            .map_err(|e| Failure::internal(format!("encoding a PNG: {e}")))?;
        outcome.images.push(Arc::new(png));
        outcome.seeds.push(seed);
        outcome.infotexts.push(metadata.parameters);
        if outcome.fields.is_empty() {
            outcome.fields = text.fields;
        }
    }
    Ok(())
}

/// `save_images`: the PNGs into `dir` as `TIMESTAMP-JOB-I.png`.
fn save(dir: &Path, job: &Job, outcome: &Outcome) -> Result<(), Failure> {
    for (i, png) in outcome.images.iter().enumerate() {
        let path = dir.join(format!("{}-{}-{i}.png", outcome.timestamp, job.id));
        std::fs::write(&path, png.as_slice())
            .map_err(|e| Failure::internal(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

fn is_cancel(e: &Error) -> bool {
    matches!(e, Error::Pipeline(PipelineError::Cancelled { .. }))
}

fn cancelled() -> Failure {
    Failure {
        status: 409,
        message: "cancelled before it started".into(),
    }
}

/// A checkpoint that did not load: the machine's failure (500), naming the file.
fn cannot_load(path: &Path, e: Error) -> Failure {
    Failure {
        status: 500,
        message: format!("cannot load {}: {e}", path.display()),
    }
}

/// The status an engine error maps to: the request's fault (4xx) or the machine's (500).
pub(super) fn classify(e: Error) -> Failure {
    let status = match &e {
        Error::Device(_) | Error::Checkpoint(_) => 500,
        // a broken file is the request's (as a checkpoint named in options is not): 422
        Error::Upscaler(u) => match u {
            UpscalerError::Device(_) | UpscalerError::Weights(WeightError::Model { .. }) => 500,
            _ => 422,
        },
        Error::Text(_)
        | Error::Vae(_)
        | Error::Schedule(_)
        | Error::Pipeline(_)
        | Error::Image(_)
        | Error::Lora(_) => 422,
    };
    Failure {
        status,
        message: e.describe(&A1111Names),
    }
}

impl Failure {
    pub fn internal(message: String) -> Self {
        Failure {
            status: 500,
            message,
        }
    }
}

/// Now as `%Y%m%d%H%M%S` (UTC), A1111's `job_timestamp`.
pub fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 -> (year, month, day), Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>): the one date
/// conversion the server needs, not worth a calendar crate.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_787), (2026, 11, 30));
    }
}
