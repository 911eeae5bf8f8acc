//! The NATS side of the command line (the `nats` feature): `sdxl-wgpu worker`, one GPU machine
//! behind `serve --nats` API nodes, which loads one model, serves that model's jobs from NATS
//! JetStream until SIGINT or SIGTERM (the job running then is finished first) and exits 0; and
//! `serve --nats`, an API node with no model and no GPU.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::say;
use super::serve::{shutdown_signal, EngineArgs};
use sdxl_wgpu::server::nats::{run_worker, ApiNode, NatsSettings, WorkerConfig};
use sdxl_wgpu::server::{self, ServerConfig};

/// Where the jobs live on NATS: shared by `serve --nats` and `worker` (they must agree).
#[derive(Args, Debug, Clone)]
pub struct NatsArgs {
    /// The work-queue stream of queued jobs.
    #[arg(long, default_value = "SDXL_JOBS")]
    nats_stream: String,
    /// Subjects: `<prefix>.jobs.<model>`, `<prefix>.cancel.<job>`, `<prefix>.skip.<job>`.
    #[arg(long, default_value = "sdxl")]
    nats_prefix: String,
    /// The key-value bucket of job records.
    #[arg(long, default_value = "sdxl_jobs")]
    nats_jobs_bucket: String,
    /// The object store of request bodies and images.
    #[arg(long, default_value = "sdxl_objects")]
    nats_objects_bucket: String,
    /// The key-value bucket where workers announce their models.
    #[arg(long, default_value = "sdxl_models")]
    nats_models_bucket: String,
    /// Seconds without an acknowledgement or heartbeat before a job goes to another worker.
    #[arg(long, default_value_t = 30)]
    ack_wait: u64,
    /// Runs before a job failing on the device side is failed for good.
    #[arg(long, default_value_t = 3)]
    max_deliver: i64,
    /// Hours job records, request bodies and images are kept.
    #[arg(long, default_value_t = 24)]
    keep_hours: u64,
}

impl NatsArgs {
    pub fn settings(&self, url: &str) -> anyhow::Result<NatsSettings> {
        anyhow::ensure!(self.ack_wait >= 3, "--ack-wait must be 3 seconds or more");
        anyhow::ensure!(self.max_deliver >= 1, "--max-deliver must be 1 or more");
        anyhow::ensure!(self.keep_hours >= 1, "--keep-hours must be 1 or more");
        Ok(NatsSettings {
            url: url.into(),
            stream: self.nats_stream.clone(),
            prefix: self.nats_prefix.clone(),
            jobs_bucket: self.nats_jobs_bucket.clone(),
            objects_bucket: self.nats_objects_bucket.clone(),
            models_bucket: self.nats_models_bucket.clone(),
            ack_wait: Duration::from_secs(self.ack_wait),
            max_deliver: self.max_deliver,
            retention: Duration::from_secs(self.keep_hours * 3600),
        })
    }
}

/// `serve`'s NATS flags.
#[derive(Args, Debug)]
pub struct ApiNodeArgs {
    /// No model and no GPU here: queue jobs on NATS JetStream for `sdxl-wgpu worker`s
    /// (`nats://host:4222`).
    #[arg(long)]
    nats: Option<String>,
    #[command(flatten)]
    queue: NatsArgs,
}

impl ApiNodeArgs {
    /// The settings when `--nats` is given.
    pub fn settings(&self) -> anyhow::Result<Option<NatsSettings>> {
        self.nats
            .as_deref()
            .map(|url| self.queue.settings(url))
            .transpose()
    }
}

/// An API node: the HTTP API, jobs on NATS.
pub async fn serve_api(config: ServerConfig, nats: NatsSettings) -> anyhow::Result<()> {
    let node = ApiNode::start(config, &nats).await?;
    say!(
        "ready: listening on http://{} (jobs on {})",
        node.addr,
        nats.url
    )?;
    shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The NATS server(s), `nats://host:4222`.
    #[arg(long)]
    nats: String,
    /// The checkpoint this worker serves (its file stem names it to clients).
    #[arg(long)]
    model: PathBuf,
    /// Where `<lora:NAME:W>` prompt tags are looked up.
    #[arg(long)]
    lora_dir: Option<PathBuf>,
    /// Where model upscalers (`hr_upscaler` names) are.
    #[arg(long)]
    upscalers_dir: Option<PathBuf>,
    /// Where jobs with `save_images: true` write their PNGs (on this machine).
    #[arg(long)]
    outputs: Option<PathBuf>,
    /// This worker's name in job records (default: host name and process id).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    queue: NatsArgs,
}

pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let name = args.name.clone().unwrap_or_else(default_name);
    let config = WorkerConfig {
        server: ServerConfig {
            model: Some(args.model.clone()),
            lora_dir: args.lora_dir.clone(),
            upscalers_dir: args.upscalers_dir.clone(),
            outputs: args.outputs.clone(),
            policy: args.engine.policy,
            precision: args.engine.precision,
            backend: args.engine.backend,
            shader_compiler: super::global().shader_compiler,
            preview_every: args.engine.preview_every,
            load: args.engine.load.options(),
            queue_size: 1,
            ..ServerConfig::default()
        },
        nats: args.queue.settings(&args.nats)?,
        name,
    };
    if let Some(dir) = &args.outputs {
        anyhow::ensure!(dir.is_dir(), "--outputs {}: no such folder", dir.display());
    }
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal failure (a bug in sdxl-wgpu; please report it): {info}");
    }));
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let (gpu, dtype, messages) = server::open_device(&config.server)?;
        for message in messages {
            eprintln!("{message}");
        }
        eprintln!(
            "worker {}: loading {} on {} ...",
            config.name,
            args.model.display(),
            gpu.adapter.describe()
        );
        let stop = async {
            shutdown_signal().await;
            eprintln!("stopping: finishing the running job");
        };
        run_worker(config, gpu, dtype, stop, |m| eprintln!("warning: {m}")).await?;
        Ok(())
    })
}

/// `host-pid`.
fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}
