//! Putting a job in the queue and waiting for its end: what every generating route shares.

use std::sync::Arc;

use super::error::ApiError;
use super::jobs::{IdempotencyKey, Job, Snapshot, Task};
use super::queue::Refused;
use super::state::Shared;

/// Creates a job for `task` and queues it (503 with `Retry-After` when the queue is full); with
/// a known idempotency `key`, the existing job.
pub fn submit(
    shared: &Shared,
    task: Task,
    key: Option<IdempotencyKey>,
) -> Result<Arc<Job>, ApiError> {
    match shared.jobs.create(task, key, |id| shared.queue.push(id)) {
        Ok(job) => Ok(job),
        Err(refused) => {
            shared.metrics.refused();
            Err(match refused {
                Refused::Full { capacity } => ApiError::busy(
                    format!("the queue is full ({capacity} jobs waiting); try again later"),
                    5,
                ),
                Refused::Closed => ApiError::busy("the server is shutting down", 30),
                Refused::KeyReused => key_reused(),
            })
        }
    }
}

/// An idempotency key sent again with another body: 422, as the IETF draft says.
pub fn key_reused() -> ApiError {
    ApiError::invalid(
        "Idempotency-Key: this key was sent with another body; use a new key for a new request",
    )
}

/// Waits until `job` has finished and returns its final state.
pub async fn finished(job: &Job) -> Snapshot {
    let mut watch = job.subscribe();
    loop {
        let snapshot = watch.borrow_and_update().clone();
        if snapshot.status.finished() {
            return snapshot;
        }
        if watch.changed().await.is_err() {
            return job.snapshot();
        }
    }
}
