//! `sdxl-wgpu worker`: one GPU machine behind `serve --nats` API nodes. It loads one model,
//! serves that model's jobs from NATS JetStream until SIGINT or SIGTERM (the job running then
//! is finished first), and exits 0.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::serve::shutdown_signal;
use super::values::spelled;
use sdxl_wgpu::device::{Backend, Precision};
use sdxl_wgpu::policy::PolicyName;
use sdxl_wgpu::server::nats::{run_worker, NatsSettings, WorkerConfig};
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
    /// Deliveries before a job failing on the device side is failed for good.
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
    /// Where jobs with `save_images: true` write their PNGs (on this machine).
    #[arg(long)]
    outputs: Option<PathBuf>,
    /// This worker's name in job records (default: host name and process id).
    #[arg(long)]
    name: Option<String>,
    /// The quality policy's profile for every job; default: the checkpoint's own.
    #[arg(long, value_parser = spelled::<PolicyName>())]
    policy: Option<PolicyName>,
    #[arg(long, value_parser = spelled::<Precision>(), default_value_t = Precision::Auto)]
    precision: Precision,
    #[arg(long, value_parser = spelled::<Backend>(), default_value_t = Backend::Auto)]
    backend: Backend,
    /// A live preview (the API nodes' `/sdapi/v1/progress` current_image) every N steps; 0
    /// turns it off.
    #[arg(long, default_value_t = 5)]
    preview_every: usize,
    #[command(flatten)]
    queue: NatsArgs,
}

pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let name = args.name.clone().unwrap_or_else(default_name);
    let config = WorkerConfig {
        server: ServerConfig {
            model: Some(args.model.clone()),
            lora_dir: args.lora_dir.clone(),
            outputs: args.outputs.clone(),
            policy: args.policy,
            precision: args.precision,
            backend: args.backend,
            preview_every: args.preview_every,
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
        let (gpu, dtype, warning) = server::open_device(&config.server)?;
        if let Some(warning) = warning {
            eprintln!("warning: {warning}");
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
