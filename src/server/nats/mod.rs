//! Many GPU machines behind one API on NATS JetStream (`serve --nats`, `sdxl-wgpu worker`):
//! no scheduler of our own. Jobs are messages on a work-queue stream, one subject per model,
//! pulled by the workers of that model from one durable consumer (acknowledged when done,
//! redelivered when a worker dies or asks); each job's state is a JSON record in a key-value
//! bucket, so any API node answers for any job; request bodies and images go through an object
//! store, so messages stay small; live previews are a key per running job; cancellation and
//! skips are plain messages per job. The JetStream
//! concepts: <https://docs.nats.io/nats-concepts/jetstream>.

mod api;
mod bus;
mod listings;
mod record;
mod worker;

pub use api::{ApiNode, ApiNodeError};
pub use bus::{Bus, NatsError};
pub use worker::{run_worker, WorkerConfig, WorkerError};

use std::time::Duration;

/// Where the jobs live on NATS and how they are delivered (`--nats-*` flags; defaults below).
#[derive(Clone, Debug, PartialEq)]
pub struct NatsSettings {
    /// The server(s), `nats://host:4222[,nats://...]`.
    pub url: String,
    /// The work-queue stream holding queued jobs.
    pub stream: String,
    /// Subjects are `<prefix>.jobs.<model>`, `<prefix>.cancel.<job>` and `<prefix>.skip.<job>`.
    pub prefix: String,
    /// The key-value bucket of job records (and idempotency keys).
    pub jobs_bucket: String,
    /// The object store of request bodies and images.
    pub objects_bucket: String,
    /// The key-value bucket where workers announce the models they serve.
    pub models_bucket: String,
    /// A job not acknowledged (nor heartbeaten) for this long is given to another worker.
    pub ack_wait: Duration,
    /// Runs (deliveries that reached a worker) before a job failing on the device side is
    /// `failed` for good.
    pub max_deliver: i64,
    /// How long job records, bodies and images are kept (queued or finished).
    pub retention: Duration,
}

impl NatsSettings {
    pub fn new(url: impl Into<String>) -> Self {
        NatsSettings {
            url: url.into(),
            stream: "SDXL_JOBS".into(),
            prefix: "sdxl".into(),
            jobs_bucket: "sdxl_jobs".into(),
            objects_bucket: "sdxl_objects".into(),
            models_bucket: "sdxl_models".into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 3,
            retention: Duration::from_secs(24 * 3600),
        }
    }

    /// The subject of `model`'s jobs.
    fn jobs_subject(&self, model: &str) -> String {
        format!("{}.jobs.{}", self.prefix, subject_token(model))
    }

    fn cancel_subject(&self, job: &str) -> String {
        format!("{}.cancel.{job}", self.prefix)
    }

    fn skip_subject(&self, job: &str) -> String {
        format!("{}.skip.{job}", self.prefix)
    }
}

/// A model name as one subject token and key: NATS subjects split on `.` and reserve `*`, `>`
/// and whitespace; keys allow `[-_=/.A-Za-z0-9]`. Everything else becomes `_`.
pub fn subject_token(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_become_one_token() {
        assert_eq!(
            subject_token("anime-xl v2.safetensors"),
            "anime-xl_v2_safetensors"
        );
        assert_eq!(subject_token("a.b*c>d"), "a_b_c_d");
        let s = NatsSettings::new("nats://127.0.0.1:4222");
        assert_eq!(s.jobs_subject("tiny.x"), "sdxl.jobs.tiny_x");
    }
}
