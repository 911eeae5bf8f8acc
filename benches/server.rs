//! What `sdxl-wgpu serve` adds over the engine: per image, the PNG (with its infotext) and the
//! base64 of the response at 64x64 and 1024x1024 (synthetic images); per job, an A1111
//! `/sdapi/v1/txt2img` round trip over loopback against the same request run on the engine
//! directly; and sustained jobs per second under concurrent clients, with the activation pool
//! kept warm between jobs of one shape and released after every job.
//!
//! `cargo bench --bench server` uses the tiny reference model at 64x64 (2 steps) on a software
//! adapter and the synthetic full-size SDXL checkpoint at 1024x1024 (20 steps) on a hardware
//! one; `SDXL_BENCH_CHECKPOINT`, `SDXL_BENCH_BACKEND`, `SDXL_BENCH_PRECISION=f32`,
//! `SDXL_BENCH_SIZES=N`, `SDXL_BENCH_STEPS=N` and `SDXL_BENCH_RUNS=N` (sequential jobs timed,
//! default 8) apply.

use std::time::{Duration, Instant};

use base64::Engine as _;
use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::image_io::{metadata::write_png, ImageMetadata};
use sdxl_wgpu::pipeline::{Controls, Engine, Request};
use sdxl_wgpu::policy::PolicyName;
use sdxl_wgpu::sampling::Sampler;
use sdxl_wgpu::server::{Server, ServerConfig};
use serde_json::{json, Value};

mod common;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> anyhow::Result<()> {
    encoding();
    let (gpu, dtype, path) = common::model_bench()?;
    let software = gpu.adapter.is_software();
    let size = common::env_usize("SDXL_BENCH_SIZES", if software { 64 } else { 1024 });
    let steps = common::env_usize("SDXL_BENCH_STEPS", if software { 2 } else { 20 });
    let runs = common::runs(8);
    println!(
        "adapter: {} ({}), {dtype:?} weights, model {}, {size}x{size}, {steps} steps",
        gpu.adapter.name,
        gpu.adapter.api,
        path.display()
    );
    let body = json!({"prompt": "1girl, solo, masterpiece", "negative_prompt": "lowres",
        "seed": 1, "steps": steps, "width": size, "height": size, "cfg_scale": 7,
        "sampler_name": "Euler"});
    let request = Request {
        prompt: "1girl, solo, masterpiece".into(),
        negative: "lowres".into(),
        width: size,
        height: size,
        steps,
        cfg: 7.0,
        seed: 1,
        sampler: Sampler::Euler,
        ..Request::default()
    };

    let engine = Engine::load(gpu.clone(), Checkpoint::open(&path)?, dtype)?;
    let [warm_s, released_s] = engine_seconds(&engine, &request, runs)?;
    println!(
        "engine back to back: {warm_s:.3} s/job with the pool kept warm, {released_s:.3} s/job \
         released after each (interleaved runs)"
    );
    drop(engine);
    let runtime = tokio::runtime::Runtime::new()?;
    for keep_warm in [Duration::from_secs(60), Duration::ZERO] {
        let engine_s = if keep_warm.is_zero() {
            released_s
        } else {
            warm_s
        };
        let config = ServerConfig {
            model: Some(path.clone()),
            listen: "127.0.0.1:0".parse()?,
            policy: Some(PolicyName::Off),
            preview_every: 0,
            queue_size: 256,
            keep_warm,
            ..ServerConfig::default()
        };
        let server = runtime.block_on(Server::start(config, gpu.clone(), dtype))?;
        let base = format!("http://{}", server.addr);
        let api = api_seconds(&base, &body, runs)?;
        let label = if keep_warm.is_zero() {
            "released after every job"
        } else {
            "pool kept warm"
        };
        println!(
            "{label}: API round trip {:.3} s/job (engine alone {engine_s:.3}); outside the \
             worker (HTTP, JSON, conversion, base64) {:.1} ms, queue hand-off {:.2} ms",
            api.round_trip,
            api.outside * 1e3,
            api.hand_off * 1e3
        );
        let clients = 8;
        let (jobs, took) = sustained(&base, &body, clients, runs * 2)?;
        println!(
            "{label}: {clients} concurrent clients, {jobs} jobs in {took:.2} s: {:.2} jobs/s \
             (the engine alone: {:.2} jobs/s)",
            jobs as f64 / took,
            1.0 / engine_s
        );
        runtime.block_on(server.shutdown());
    }
    Ok(())
}

/// PNG with infotext and base64, per image, at the sizes a tiny test and a real SDXL image have.
fn encoding() {
    let parameters = "1girl, solo\nNegative prompt: lowres\nSteps: 28, Sampler: Euler, CFG \
                      scale: 7, Seed: 1, Size: 1024x1024, Model: x, Version: sdxl-wgpu";
    let metadata = ImageMetadata {
        parameters: parameters.into(),
        json: json!({"seed": 1}).to_string(),
    };
    for side in [64u32, 1024] {
        // a smooth gradient with noise: compresses like a rendered image, not like a flat one
        let mut state = 0x2545_f491_u32;
        let image = image::RgbImage::from_fn(side, side, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let n = (state & 15) as u8;
            image::Rgb([
                (x * 255 / side) as u8 ^ n,
                (y * 255 / side) as u8 ^ n,
                ((x + y) * 127 / side) as u8 ^ n,
            ])
        });
        let reps = if side == 64 { 200 } else { 5 };
        let (mut png_s, mut b64_s, mut bytes) = (Vec::new(), Vec::new(), 0);
        for _ in 0..reps {
            let start = Instant::now();
            let mut png = Vec::new();
            write_png(&image, &mut png, Some(&metadata)).expect("PNG");
            png_s.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            let text = base64::engine::general_purpose::STANDARD.encode(&png);
            b64_s.push(start.elapsed().as_secs_f64());
            bytes = text.len();
        }
        println!(
            "{side}x{side} image: PNG + infotext {:.2} ms, base64 {:.3} ms ({} KiB in the response)",
            median(png_s) * 1e3,
            median(b64_s) * 1e3,
            bytes / 1024
        );
    }
}

/// The request run on the engine directly, back to back (after one warm-up run), keeping the
/// activation pool between runs and releasing it, interleaved so drift hits both alike; median
/// seconds of each.
fn engine_seconds(engine: &Engine, request: &Request, runs: usize) -> anyhow::Result<[f64; 2]> {
    let run = |keep| {
        let start = Instant::now();
        let controls = Controls {
            cancel: None,
            on_event: &mut |_| {},
            preview: None,
            keep_memory: keep,
        };
        engine.generate_with(request, controls).map(drop)?;
        anyhow::Ok(start.elapsed().as_secs_f64())
    };
    run(false)?;
    let (mut warm, mut released) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        warm.push(run(true)?);
        released.push(run(false)?);
    }
    Ok([median(warm), median(released)])
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()
        .expect("client")
}

/// Posts a txt2img body to `base` and returns the job id the answer names.
fn post(client: &reqwest::blocking::Client, base: &str, body: &Value) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/sdapi/v1/txt2img"))
        .json(body)
        .send()?;
    anyhow::ensure!(response.status().is_success(), "{}", response.text()?);
    let id = response.headers()["x-job-id"].to_str()?.to_string();
    let r: Value = response.json()?;
    anyhow::ensure!(r["images"].as_array().is_some_and(|i| i.len() == 1));
    Ok(id)
}

/// Medians of one client's sequential jobs through the API: the round trip, the part outside
/// the worker (round trip less queued-to-finished) and the wait between queueing and start.
struct Api {
    round_trip: f64,
    outside: f64,
    hand_off: f64,
}

fn api_seconds(base: &str, body: &Value, runs: usize) -> anyhow::Result<Api> {
    let client = client();
    post(&client, base, body)?;
    let (mut round_trip, mut outside, mut hand_off) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        let id = post(&client, base, body)?;
        let took = start.elapsed().as_secs_f64();
        let job: Value = client.get(format!("{base}/v1/jobs/{id}")).send()?.json()?;
        let at = |k: &str| job[k].as_f64().unwrap_or(f64::NAN);
        round_trip.push(took);
        outside.push(took - (at("finished_at") - at("queued_at")));
        hand_off.push(at("started_at") - at("queued_at"));
    }
    Ok(Api {
        round_trip: median(round_trip),
        outside: median(outside),
        hand_off: median(hand_off),
    })
}

/// `jobs` jobs from `clients` threads at once: (jobs, seconds from first send to last answer).
fn sustained(
    base: &str,
    body: &Value,
    clients: usize,
    jobs: usize,
) -> anyhow::Result<(usize, f64)> {
    let per_client = jobs.div_ceil(clients);
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (base, body) = (base.to_string(), body.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let client = client();
                for _ in 0..per_client {
                    post(&client, &base, &body)?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread")?;
    }
    Ok((per_client * clients, start.elapsed().as_secs_f64()))
}
