//! `sdxl-wgpu serve`: the long-running server (AUTOMATIC1111's `/sdapi/v1` and the `/v1/jobs`
//! API) until SIGINT or SIGTERM, which stop accepting, cancel the running job and exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::say;
use super::values::spelled;
use sdxl_wgpu::device::{Backend, Precision};
use sdxl_wgpu::pipeline::LoadOptions;
use sdxl_wgpu::policy::PolicyName;
use sdxl_wgpu::sampling::Prediction;
use sdxl_wgpu::server::{self, parse_credentials, Retention, Server, ServerConfig};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The checkpoint to load at start (a single file or a diffusers folder). With --nats:
    /// the name of the model jobs run on unless they name one (default: the one served).
    #[cfg_attr(feature = "nats", arg(long, required_unless_present_any = ["models_dir", "nats"]))]
    #[cfg_attr(
        not(feature = "nats"),
        arg(long, required_unless_present = "models_dir")
    )]
    model: Option<PathBuf>,
    #[cfg(feature = "nats")]
    #[command(flatten)]
    nats: super::nats::ApiNodeArgs,
    /// A folder of checkpoints clients may switch between (`sd_model_checkpoint`).
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Where `<lora:NAME:W>` prompt tags are looked up (by file stem or `ss_output_name`).
    #[arg(long)]
    lora_dir: Option<PathBuf>,
    /// Where model upscalers are (`.pth`, `.safetensors`): `hr_upscaler` names them by file
    /// stem, `GET /sdapi/v1/upscalers` lists them.
    #[arg(long)]
    upscalers_dir: Option<PathBuf>,
    /// Address to listen on; anything but loopback without --api-auth starts with a warning.
    #[arg(long, default_value = "127.0.0.1:7860")]
    listen: SocketAddr,
    /// HTTP Basic credentials, `user:pass[,user:pass...]`.
    #[arg(long, value_name = "USER:PASS[,...]")]
    api_auth: Option<String>,
    /// Jobs that may wait; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    queue_size: usize,
    /// The largest request body, in MiB (413 past it).
    #[arg(long, default_value_t = 64)]
    max_body_mb: usize,
    /// Where requests with `save_images: true` write their PNGs.
    #[arg(long)]
    outputs: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Finished jobs kept for polling, at most this many ...
    #[arg(long, default_value_t = 256)]
    keep_jobs: usize,
    /// ... and at most this many seconds.
    #[arg(long, default_value_t = 3600)]
    keep_seconds: u64,
    /// Seconds the last job's activation memory stays pooled for a next job of the same shape
    /// (0: released after every job).
    #[arg(long, default_value_t = 60)]
    keep_warm: u64,
    /// Seconds a client may take to send a request's head, or pause while sending its body;
    /// then its connection is closed.
    #[arg(long, default_value_t = 30)]
    client_timeout: u64,
}

/// How each job runs: shared by `serve` and `worker`.
#[derive(Args, Debug)]
pub struct EngineArgs {
    /// The quality policy's profile for every request (off disables it); default: each
    /// checkpoint's own (vpred for v-prediction checkpoints, else anime).
    #[arg(long, value_parser = spelled::<PolicyName>())]
    pub policy: Option<PolicyName>,
    #[arg(long, value_parser = spelled::<Precision>(), default_value_t = Precision::Auto)]
    pub precision: Precision,
    #[arg(long, value_parser = spelled::<Backend>(), default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// A live preview (`/sdapi/v1/progress` current_image; on API nodes, stored by the worker)
    /// every N steps; 0 turns it off.
    #[arg(long, default_value_t = 5)]
    pub preview_every: usize,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// What a checkpoint loads with instead of its markers (`generate`, `serve`, `worker`).
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// Override the checkpoint's detected prediction type.
    #[arg(long, value_parser = spelled::<Prediction>())]
    pub prediction: Option<Prediction>,
    /// Run the zero-terminal-SNR schedule (rescaled betas, trailing timesteps, CFG rescale 0.7
    /// by default) though the checkpoint carries no `ztsnr` marker.
    #[arg(long)]
    pub ztsnr: bool,
}

impl LoadArgs {
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            prediction: self.prediction,
            zero_terminal_snr: self.ztsnr.then_some(true),
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    if !config.listen.ip().is_loopback() && config.auth.is_empty() {
        eprintln!(
            "warning: listening on {} without --api-auth: anyone who can reach it can use the GPU",
            config.listen
        );
    }
    if let Some(dir) = &config.outputs {
        anyhow::ensure!(dir.is_dir(), "--outputs {}: no such folder", dir.display());
    }
    // a panic inside a job is that job's 500, not the end of the server
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal failure (a bug in sdxl-wgpu; please report it): {info}");
    }));
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    #[cfg(feature = "nats")]
    if let Some(settings) = args.nats.settings()? {
        return runtime.block_on(super::nats::serve_api(config, settings));
    }
    runtime.block_on(serve(config))
}

fn config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let auth = match &args.api_auth {
        Some(text) => parse_credentials(text).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    anyhow::ensure!(args.queue_size > 0, "--queue-size must be 1 or more");
    anyhow::ensure!(args.max_body_mb > 0, "--max-body-mb must be 1 or more");
    Ok(ServerConfig {
        model: args.model.clone(),
        models_dir: args.models_dir.clone(),
        lora_dir: args.lora_dir.clone(),
        upscalers_dir: args.upscalers_dir.clone(),
        listen: args.listen,
        auth,
        queue_size: args.queue_size,
        max_body_bytes: args.max_body_mb << 20,
        outputs: args.outputs.clone(),
        policy: args.engine.policy,
        precision: args.engine.precision,
        backend: args.engine.backend,
        shader_compiler: super::global().shader_compiler,
        preview_every: args.engine.preview_every,
        retention: Retention {
            count: args.keep_jobs,
            time: Duration::from_secs(args.keep_seconds),
        },
        keep_warm: Duration::from_secs(args.keep_warm),
        client_timeout: Duration::from_secs(args.client_timeout.max(1)),
        load: args.engine.load.options(),
    })
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let (gpu, dtype, messages) = server::open_device(&config)?;
    for message in messages {
        eprintln!("{message}");
    }
    eprintln!("loading the model on {} ...", gpu.adapter.describe());
    let server = Server::start(config, gpu, dtype).await?;
    say!("ready: listening on http://{}", server.addr)?;
    shutdown_signal().await;
    eprintln!("stopping: cancelling the running job");
    server.shutdown().await;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
