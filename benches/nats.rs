//! What NATS JetStream adds per job, over loopback: an A1111 `/sdapi/v1/txt2img` round trip
//! through an API node and a worker against the same request on the single-process server, the
//! job record's submit -> start and finish -> visible-to-the-client times, and jobs per second
//! with one and with two workers (in this process, on one device).
//!
//! `cargo bench --bench nats` needs `nats-server` (Debian: `apt-get install nats-server`); it
//! starts one on a free loopback port with a temporary store. The model and sizes as in
//! `benches/server.rs` (`SDXL_BENCH_CHECKPOINT`, `SDXL_BENCH_SIZES`, `SDXL_BENCH_STEPS`,
//! `SDXL_BENCH_RUNS`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sdxl_wgpu::policy::PolicyName;
use sdxl_wgpu::server::nats::{run_worker, ApiNode, NatsSettings, WorkerConfig};
use sdxl_wgpu::server::{Server, ServerConfig};
use serde_json::{json, Value};

mod common;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let Some(nats_server) = ["/usr/bin/nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
    else {
        println!("skipped: no nats-server (Debian: apt-get install nats-server)");
        return Ok(());
    };
    let (gpu, dtype, path) = common::model_bench()?;
    let software = gpu.adapter.is_software();
    let size = common::env_usize("SDXL_BENCH_SIZES", if software { 64 } else { 1024 });
    let steps = common::env_usize("SDXL_BENCH_STEPS", if software { 2 } else { 20 });
    let runs = common::runs(8);
    println!(
        "adapter: {} ({}), model {}, {size}x{size}, {steps} steps",
        gpu.adapter.name,
        gpu.adapter.api,
        path.display()
    );
    let store = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new(nats_server)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = |seed: u64| {
        json!({"prompt": "1girl, solo, masterpiece", "seed": seed, "steps": steps,
               "width": size, "height": size, "cfg_scale": 7, "sampler_name": "Euler"})
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let server_config = ServerConfig {
        model: Some(path.clone()),
        listen: "127.0.0.1:0".parse()?,
        policy: Some(PolicyName::Off),
        preview_every: 0,
        queue_size: 256,
        ..ServerConfig::default()
    };
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    // seconds, and the job's id (`X-Job-Id`)
    let timed = |base: &str, seed: u64| -> anyhow::Result<(f64, String)> {
        let start = Instant::now();
        let r = http
            .post(format!("{base}/sdapi/v1/txt2img"))
            .json(&body(seed))
            .send()?;
        let id = r
            .headers()
            .get("x-job-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        anyhow::ensure!(r.status().is_success(), "{}", r.text()?);
        r.bytes()?;
        Ok((start.elapsed().as_secs_f64(), id))
    };
    let round_trip = |base: &str, seed: u64| timed(base, seed).map(|(s, _)| s);

    let server = runtime.block_on(Server::start(server_config.clone(), gpu.clone(), dtype))?;
    let base = format!("http://{}", server.addr);
    round_trip(&base, 0)?; // compiles the kernels
    let single: Vec<f64> = (0..runs as u64)
        .map(|i| round_trip(&base, i))
        .collect::<Result<_, _>>()?;
    runtime.block_on(server.shutdown());

    let settings = NatsSettings::new(format!("nats://127.0.0.1:{port}"));
    let node = runtime.block_on(ApiNode::start(server_config.clone(), &settings))?;
    let api = format!("http://{}", node.addr);
    let worker = |name: &str| {
        let config = WorkerConfig {
            server: ServerConfig {
                queue_size: 1,
                ..server_config.clone()
            },
            nats: settings.clone(),
            name: name.into(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let gpu = gpu.clone();
        let task = runtime.spawn(async move {
            let stop = async {
                let _ = stopped.await;
            };
            run_worker(config, gpu, dtype, stop, |m| eprintln!("worker: {m}")).await
        });
        (stop, task)
    };
    let first = worker("w1");
    while http.get(format!("{api}/healthz")).send()?.json::<Value>()?["models_with_workers"]
        .as_array()
        .is_none_or(|m| m.is_empty())
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    round_trip(&api, 0)?;
    let (mut queued, mut visible, mut through) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs as u64 {
        let (seconds, id) = timed(&api, i)?;
        let seen = unix_now();
        let job: Value = http.get(format!("{api}/v1/jobs/{id}")).send()?.json()?;
        through.push(seconds);
        queued.push(
            job["started_at"].as_f64().unwrap_or(0.0) - job["queued_at"].as_f64().unwrap_or(0.0),
        );
        visible.push(seen - job["finished_at"].as_f64().unwrap_or(seen));
    }
    println!(
        "txt2img round trip: single process {:.3} s/job, through NATS {:.3} s/job: {:+.1} ms per \
         job; submit -> start {:.1} ms, finish -> answered {:.1} ms (medians of {runs})",
        median(single.clone()),
        median(through.clone()),
        (median(through) - median(single)) * 1e3,
        median(queued) * 1e3,
        median(visible) * 1e3,
    );
    for workers in [1, 2] {
        let extra = (workers == 2).then(|| worker("w2"));
        let jobs = runs * 2;
        let start = Instant::now();
        let ids: Vec<String> = (0..jobs as u64)
            .map(|i| {
                let mut b = body(100 + i);
                b["kind"] = "txt2img".into();
                let r: Value = http
                    .post(format!("{api}/v1/jobs"))
                    .json(&b)
                    .send()?
                    .json()?;
                Ok(r["id"].as_str().unwrap_or_default().to_string())
            })
            .collect::<anyhow::Result<_>>()?;
        for id in &ids {
            loop {
                let job: Value = http.get(format!("{api}/v1/jobs/{id}")).send()?.json()?;
                if job["status"] != "queued" && job["status"] != "running" {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let took = start.elapsed().as_secs_f64();
        println!(
            "{workers} worker(s): {jobs} jobs in {took:.2} s: {:.2} jobs/s",
            jobs as f64 / took
        );
        if let Some((stop, task)) = extra {
            let _ = stop.send(());
            runtime.block_on(task)??;
        }
    }
    let (stop, task) = first;
    let _ = stop.send(());
    runtime.block_on(task)??;
    runtime.block_on(node.shutdown());
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}
