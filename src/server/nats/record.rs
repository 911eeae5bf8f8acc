//! A job's state as one JSON record in the jobs bucket: written by the API node that took the
//! job and by the worker running it, read by any API node. Changes go through compare-and-set
//! on the record's revision, so a late writer never overwrites a newer state (a cancel landing
//! while a worker starts, a dead worker's redelivered job).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bus::{Bus, NatsError};
use crate::server::jobs::{Kind, Status};

/// Why a job failed: the HTTP status it maps to and the message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordError {
    pub status: u16,
    pub message: String,
}

/// Where a running job is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordProgress {
    pub iteration: usize,
    pub iterations: usize,
    pub step: usize,
    pub steps: usize,
}

/// One job, as every node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub kind: Kind,
    /// The model's subject token.
    pub model: String,
    pub status: Status,
    pub queued_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// The worker that runs or ran it (the last one, after a redelivery).
    pub worker: Option<String>,
    /// Deliveries so far.
    pub attempts: i64,
    pub progress: RecordProgress,
    /// The last failure (kept while a redelivery is pending).
    pub error: Option<RecordError>,
    /// A client asked to cancel while it ran (the worker also gets a message; this covers one
    /// sent before it listened).
    pub cancel_requested: bool,
    /// A client asked to skip the running iteration (A1111's `skip`).
    #[serde(default)]
    pub skip_requested: bool,
    /// The step (over the whole job) of the live preview stored under [`preview_key`].
    #[serde(default)]
    pub preview_step: Option<usize>,
    pub seeds: Vec<u64>,
    pub infotexts: Vec<String>,
    /// Images stored as `<id>/<i>.png`.
    pub images: usize,
    /// A1111's response without its images (`parameters`, `info`, `send_images`).
    pub response: Option<Value>,
}

impl JobRecord {
    pub fn queued(id: &str, kind: Kind, model: &str) -> Self {
        JobRecord {
            id: id.into(),
            kind,
            model: model.into(),
            status: Status::Queued,
            queued_at: now(),
            started_at: None,
            finished_at: None,
            worker: None,
            attempts: 0,
            progress: RecordProgress::default(),
            error: None,
            cancel_requested: false,
            skip_requested: false,
            preview_step: None,
            seeds: Vec::new(),
            infotexts: Vec::new(),
            images: 0,
            response: None,
        }
    }

    fn bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a record serialises"))
    }
}

/// Seconds since the Unix epoch, with microseconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_micros() as f64) / 1e6)
}

/// The object names of a job's request body and images.
pub fn request_object(id: &str) -> String {
    format!("{id}/request")
}

pub fn image_object(id: &str, index: usize) -> String {
    format!("{id}/{index}.png")
}

/// The jobs bucket's key of the job a worker started last (A1111's "current job").
pub const CURRENT_KEY: &str = "current";

/// The jobs bucket's key of a running job's latest live preview (a PNG of a few KiB: one
/// message, replaced in place; the object store would cost a message per chunk and metadata).
pub fn preview_key(id: &str) -> String {
    format!("preview-{id}")
}

impl Bus {
    /// Writes a new record; false when one with its id exists already.
    pub async fn create_record(&self, record: &JobRecord) -> Result<bool, NatsError> {
        match self.jobs.create(&record.id, record.bytes()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                Ok(false)
            }
            Err(e) => Err(NatsError::io(e)),
        }
    }

    /// The record of `id` and its revision.
    pub async fn record(&self, id: &str) -> Result<Option<(JobRecord, u64)>, NatsError> {
        if !is_job_id(id) {
            return Ok(None);
        }
        let Some(entry) = self.jobs.entry(id).await.map_err(NatsError::io)? else {
            return Ok(None);
        };
        if entry.operation != async_nats::jetstream::kv::Operation::Put {
            return Ok(None);
        }
        let record = serde_json::from_slice(&entry.value)
            .map_err(|e| NatsError::Io(format!("job record {id}: {e}")))?;
        Ok(Some((record, entry.revision)))
    }

    /// Applies `change` to the current record, retrying on a concurrent write; `change`
    /// returns false to leave the record as it is. The record after, if any.
    pub async fn update_record(
        &self,
        id: &str,
        mut change: impl FnMut(&mut JobRecord) -> bool,
    ) -> Result<Option<JobRecord>, NatsError> {
        loop {
            let Some((mut record, revision)) = self.record(id).await? else {
                return Ok(None);
            };
            if !change(&mut record) {
                return Ok(Some(record));
            }
            match self.jobs.update(id, record.bytes(), revision).await {
                Ok(_) => return Ok(Some(record)),
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::kv::UpdateErrorKind::WrongLastRevision =>
                {
                    continue
                }
                Err(e) => return Err(NatsError::io(e)),
            }
        }
    }

    /// The job a worker started last, if any.
    pub async fn current(&self) -> Result<Option<String>, NatsError> {
        let value = self.jobs.get(CURRENT_KEY).await.map_err(NatsError::io)?;
        Ok(value
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .filter(|id| is_job_id(id)))
    }

    /// The latest live preview of job `id`.
    pub async fn preview(&self, id: &str) -> Result<Option<Vec<u8>>, NatsError> {
        let value = self
            .jobs
            .get(preview_key(id))
            .await
            .map_err(NatsError::io)?;
        Ok(value.map(|v| v.to_vec()))
    }

    pub async fn put_object(&self, name: &str, data: &[u8]) -> Result<(), NatsError> {
        let mut reader = data;
        self.objects
            .put(name, &mut reader)
            .await
            .map(|_| ())
            .map_err(NatsError::io)
    }

    pub async fn object(&self, name: &str) -> Result<Vec<u8>, NatsError> {
        use tokio::io::AsyncReadExt as _;
        let mut object = self.objects.get(name).await.map_err(NatsError::io)?;
        let mut data = Vec::new();
        object.read_to_end(&mut data).await.map_err(NatsError::io)?;
        Ok(data)
    }
}

/// Whether `id` is a job id (16 hex digits): clients' ids come from URLs, and the bucket's
/// other keys (`current`, `key-*`, `preview-*`) are not jobs.
pub fn is_job_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}
