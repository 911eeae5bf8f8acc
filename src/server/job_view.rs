//! A job as the jobs API shows it (`GET /v1/jobs/{id}`, the `done`/`failed` events), written
//! once for `serve` (from a local job) and a NATS API node (from a job record, which adds the
//! model, the worker and its runs).

use serde::Serialize;
use serde_json::Value;

use super::jobs::{Kind, Progress, Status};

/// The jobs API's job.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub id: String,
    pub kind: Kind,
    pub status: Status,
    /// NATS only: the model's subject token, the worker that ran it, its runs.
    #[serde(flatten)]
    pub placement: Option<Placement>,
    pub queue_position: Option<usize>,
    pub progress: ProgressView,
    pub queued_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub error: Option<ErrorView>,
    /// Once finished.
    pub seeds: Option<Vec<u64>>,
    pub infotexts: Option<Vec<String>>,
    /// `/v1/jobs/{id}/images/{i}` of each image made.
    pub images: Vec<String>,
}

/// Where a NATS job ran.
#[derive(Debug, Serialize)]
pub struct Placement {
    pub model: String,
    pub worker: Option<String>,
    pub attempts: i64,
}

#[derive(Debug, Serialize)]
pub struct ProgressView {
    pub fraction: f64,
    pub iteration: usize,
    pub iterations: usize,
    pub step: usize,
    pub steps: usize,
    pub eta_seconds: Option<f64>,
}

impl ProgressView {
    /// A local job's progress (ETA from its start).
    pub fn of(p: &Progress) -> Self {
        ProgressView {
            fraction: p.fraction(),
            iteration: p.iteration,
            iterations: p.iterations,
            step: p.step,
            steps: p.steps,
            eta_seconds: p.eta(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorView {
    pub status: u16,
    pub message: String,
}

impl JobView {
    /// The image URLs of job `id`'s `count` images.
    pub fn image_urls(id: &str, count: usize) -> Vec<String> {
        (0..count)
            .map(|i| format!("/v1/jobs/{id}/images/{i}"))
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::to_value(self).expect("plain data serialises")
    }
}
