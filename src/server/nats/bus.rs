//! The connection to NATS and the JetStream stream and buckets the jobs live in: created when
//! missing (by whichever node comes first), checked when present, so two deployments with
//! different settings never share them silently.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};

use super::NatsSettings;

/// Why NATS cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("connecting to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("setting up {what} on NATS: {message} (is JetStream enabled: nats-server -js?)")]
    Setup { what: String, message: String },
    #[error("{what} exists on NATS with another configuration ({difference}); remove it or use other names")]
    Mismatch { what: String, difference: String },
    #[error("NATS: {0}")]
    Io(String),
}

impl NatsError {
    pub fn io(e: impl std::fmt::Display) -> Self {
        NatsError::Io(e.to_string())
    }
}

/// A connection and handles to the jobs stream and the buckets.
#[derive(Clone)]
pub struct Bus {
    pub settings: NatsSettings,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// Job records by id, and `key-<hash>` -> id for idempotency keys.
    pub jobs: kv::Store,
    /// Request bodies (`<id>/request`) and images (`<id>/<i>.png`).
    pub objects: object_store::ObjectStore,
    /// `<model token>` -> the model's description and when a worker last announced it.
    pub models: kv::Store,
}

/// How often a worker announces its model; one not announced for three times this has no
/// worker up (its jobs still queue, for when one comes).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);

impl Bus {
    /// Connects and makes sure the stream and buckets exist with `settings`' configuration.
    pub async fn connect(settings: &NatsSettings) -> Result<Bus, NatsError> {
        let client = async_nats::ConnectOptions::new()
            .name("sdxl-wgpu")
            .connect(settings.url.as_str())
            .await
            .map_err(|e| NatsError::Connect {
                url: settings.url.clone(),
                message: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        ensure_stream(&js, jobs_stream(settings), false).await?;
        let jobs = ensure_kv(&js, &settings.jobs_bucket, settings.retention).await?;
        let models = ensure_kv(&js, &settings.models_bucket, settings.retention).await?;
        let objects = ensure_objects(&js, settings).await?;
        Ok(Bus {
            settings: settings.clone(),
            client,
            js,
            jobs,
            objects,
            models,
        })
    }
}

/// The work-queue stream: each job message is delivered to one worker and removed once
/// acknowledged; a publish with the same message id within two minutes is dropped.
fn jobs_stream(s: &NatsSettings) -> stream::Config {
    stream::Config {
        name: s.stream.clone(),
        subjects: vec![format!("{}.jobs.>", s.prefix)],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        max_age: s.retention,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// Creates `want` when missing; when present, checks what a node relies on (retention,
/// subjects, age limit). `age_only` checks the age alone (the buckets' own streams).
async fn ensure_stream(
    js: &jetstream::Context,
    want: stream::Config,
    age_only: bool,
) -> Result<(), NatsError> {
    if let Ok(existing) = js.get_stream(&want.name).await {
        let have = &existing.cached_info().config;
        let mut differences = Vec::new();
        if have.max_age != want.max_age {
            differences.push(format!(
                "max age {:?}, not {:?}",
                have.max_age, want.max_age
            ));
        }
        if !age_only && have.retention != want.retention {
            differences.push(format!("retention {:?}, not work queue", have.retention));
        }
        if !age_only && have.subjects != want.subjects {
            differences.push(format!(
                "subjects {:?}, not {:?}",
                have.subjects, want.subjects
            ));
        }
        return match differences.is_empty() {
            true => Ok(()),
            false => Err(NatsError::Mismatch {
                what: format!("the stream {}", want.name),
                difference: differences.join(", "),
            }),
        };
    }
    match js.create_stream(want.clone()).await {
        Ok(_) => Ok(()),
        // another node created it in the meantime
        Err(_) if js.get_stream(&want.name).await.is_ok() => Ok(()),
        Err(e) => Err(NatsError::Setup {
            what: format!("the stream {}", want.name),
            message: e.to_string(),
        }),
    }
}

async fn ensure_kv(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
) -> Result<kv::Store, NatsError> {
    let own_stream = format!("KV_{bucket}");
    if js.get_stream(&own_stream).await.is_ok() {
        let want = stream::Config {
            name: own_stream,
            max_age,
            ..Default::default()
        };
        ensure_stream(js, want, true).await?;
        return js.get_key_value(bucket).await.map_err(NatsError::io);
    }
    // The bucket's stream as async-nats' `create_key_value` makes it, created directly: that
    // call first asks for the account's limits, whose reply from a 2.9 server (Debian 12's)
    // async-nats 0.46 cannot parse.
    let config = stream::Config {
        name: own_stream,
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    match js.create_stream(config).await {
        Ok(_) => js.get_key_value(bucket).await.map_err(NatsError::io),
        Err(e) => js
            .get_key_value(bucket)
            .await
            .map_err(|_| NatsError::Setup {
                what: format!("the key-value bucket {bucket}"),
                message: e.to_string(),
            }),
    }
}

async fn ensure_objects(
    js: &jetstream::Context,
    s: &NatsSettings,
) -> Result<object_store::ObjectStore, NatsError> {
    let bucket = &s.objects_bucket;
    let own_stream = format!("OBJ_{bucket}");
    if js.get_stream(&own_stream).await.is_ok() {
        let want = stream::Config {
            name: own_stream,
            max_age: s.retention,
            ..Default::default()
        };
        ensure_stream(js, want, true).await?;
        return js.get_object_store(bucket).await.map_err(NatsError::io);
    }
    let config = object_store::Config {
        bucket: bucket.clone(),
        max_age: s.retention,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    match js.create_object_store(config).await {
        Ok(store) => Ok(store),
        Err(e) => js
            .get_object_store(bucket)
            .await
            .map_err(|_| NatsError::Setup {
                what: format!("the object store {bucket}"),
                message: e.to_string(),
            }),
    }
}
