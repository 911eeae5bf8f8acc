//! Many workers behind one API on a real `nats-server` with JetStream, started here on loopback
//! ports (Debian: `apt-get install nats-server`; `scripts/test.sh` installs it): jobs spread over
//! two workers with the single-process server's results, idempotency keys, a bad request failed
//! once, a body checked at the API node before it is queued, A1111's settings and listings
//! there, a machine-side failure failed after the maximum deliveries, cancellation through
//! another API node, A1111's progress (with previews), interrupt and skip through any API
//! node, a worker killed with SIGKILL mid-job, and API node and nats-server
//! restarts. Each check has its own stream and buckets (or its own
//! nats-server), so they run side by side; the in-process workers share one device, so their
//! kernels compile once.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use sdxl_wgpu::policy::PolicyName;
use sdxl_wgpu::server::nats::{run_worker, ApiNode, NatsSettings, WorkerConfig};
use sdxl_wgpu::server::{Server, ServerConfig};
use sdxl_wgpu::weights::WeightDtype;
use serde_json::{json, Value};
use tokio::sync::oneshot;

mod common;
use common::{gpu, hostile, TINY};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().expect("runtime"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `nats-server -js` on a loopback port, storing in `dir`; killed (SIGKILL) when dropped or
/// when this process ends, however it ends: a shell holds it and kills it once its stdin, a pipe
/// only this process writes, closes (the shared server lives in a static, which is never
/// dropped).
struct NatsServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn nats_server_binary() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
    {
        let path = PathBuf::from(dir).join("nats-server");
        if path.is_file() {
            return path;
        }
    }
    panic!("nats-server not found: install it (Debian/Ubuntu: apt-get install nats-server; scripts/test.sh does)");
}

impl NatsServer {
    fn start(dir: PathBuf, port: u16) -> Self {
        let child = Command::new("sh")
            .args([
                "-c",
                r#""$0" "$@" & server=$!; read -r _; kill -9 "$server"; wait "$server""#,
            ])
            .arg(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        NatsServer { child, port, dir }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, then the same port and store again.
    fn restart(&mut self) {
        self.kill();
        *self = NatsServer::start(self.dir.clone(), self.port);
    }

    /// SIGKILL, and waits until it is gone.
    fn kill(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nats-server the checks share.
fn shared_nats() -> &'static str {
    static SERVER: OnceLock<(NatsServer, String, tempfile::TempDir)> = OnceLock::new();
    let (_, url, _) = SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a store folder");
        let server = NatsServer::start(dir.path().into(), free_port());
        let url = server.url();
        (server, url, dir)
    });
    url
}

/// Settings of their own for one check: stream, subjects and buckets named after `name`.
fn settings(url: &str, name: &str) -> NatsSettings {
    NatsSettings {
        stream: format!("JOBS_{name}"),
        prefix: format!("t_{name}"),
        jobs_bucket: format!("jobs_{name}"),
        objects_bucket: format!("objects_{name}"),
        models_bucket: format!("models_{name}"),
        ack_wait: Duration::from_secs(3),
        max_deliver: 3,
        ..NatsSettings::new(url)
    }
}

fn api_node(settings: &NatsSettings) -> (ApiNode, String) {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let node = runtime()
        .block_on(ApiNode::start(config, settings))
        .expect("the API node starts");
    let url = format!("http://{}", node.addr);
    (node, url)
}

/// An in-process worker of the tiny model; stopped (after its job) by sending on the handle.
struct InProcessWorker {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

fn worker(settings: &NatsSettings, name: &str) -> InProcessWorker {
    worker_with(settings, name, ServerConfig::default())
}

/// A worker of the tiny model with `server`'s `outputs` and `preview_every`.
fn worker_with(settings: &NatsSettings, name: &str, server: ServerConfig) -> InProcessWorker {
    let config = WorkerConfig {
        server: ServerConfig {
            model: Some(TINY.into()),
            policy: Some(PolicyName::Off),
            queue_size: 1,
            ..server
        },
        nats: settings.clone(),
        name: name.into(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let done = runtime().spawn(async move {
        let stop = async {
            let _ = stopped.await;
        };
        run_worker(config, gpu().clone(), WeightDtype::F32, stop, |m| {
            eprintln!("worker: {m}")
        })
        .await
        .expect("the worker runs");
    });
    InProcessWorker { stop, done }
}

impl InProcessWorker {
    fn stop(self) {
        let _ = self.stop.send(());
        runtime().block_on(self.done).expect("the worker stops");
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client")
}

fn post(url: &str, body: &Value, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = client().post(url).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().expect("request");
    (response.status(), response.json().unwrap_or(Value::Null))
}

fn get_json(url: &str) -> (StatusCode, Value) {
    match client().get(url).send() {
        Ok(r) => (r.status(), r.json().unwrap_or(Value::Null)),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
    }
}

fn small(prompt: &str, seed: u64, steps: usize) -> Value {
    json!({"prompt": prompt, "seed": seed, "steps": steps, "width": 64, "height": 64,
           "cfg_scale": 5, "sampler_name": "Euler"})
}

/// Polls `/v1/jobs/{id}` until `done` holds (NATS or the node may be restarting meanwhile).
fn wait_for(api: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let job = || get_json(&format!("{api}/v1/jobs/{id}"));
    poll(job, |(status, job)| *status == StatusCode::OK && done(job)).1
}

fn finished(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// Waits until a worker of the tiny model has announced itself to `api`.
fn wait_worker_up(api: &str) {
    poll(
        || get_json(&format!("{api}/healthz")).1,
        |health| {
            health["models_with_workers"]
                .as_array()
                .is_some_and(|m| !m.is_empty())
        },
    );
}

fn submit(api: &str, body: &Value, key: Option<&str>) -> String {
    let (status, r) = post(&format!("{api}/v1/jobs"), body, key);
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    r["id"].as_str().expect("an id").to_string()
}

fn image(api: &str, id: &str) -> Vec<u8> {
    let r = client()
        .get(format!("{api}/v1/jobs/{id}/images/0"))
        .send()
        .expect("image");
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().expect("bytes").to_vec()
}

/// The single-process server's image for `body`.
fn single_process_image(body: &Value) -> Vec<u8> {
    let url = single_process_url();
    let (status, r) = post(&format!("{url}/sdapi/v1/txt2img"), body, None);
    assert_eq!(status, StatusCode::OK, "{r}");
    base64::engine::general_purpose::STANDARD
        .decode(r["images"][0].as_str().unwrap())
        .unwrap()
}

/// A single-process server of the tiny model, started once.
fn single_process_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let config = ServerConfig {
            model: Some(TINY.into()),
            listen: "127.0.0.1:0".parse().unwrap(),
            policy: Some(PolicyName::Off),
            preview_every: 0,
            ..ServerConfig::default()
        };
        let server = runtime()
            .block_on(Server::start(config, gpu().clone(), WeightDtype::F32))
            .expect("server starts");
        let url = format!("http://{}", server.addr);
        std::mem::forget(server); // serves until the process ends
        url
    })
}

/// The LoRA fixtures' folder.
const LORAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lora");

/// Messages ever stored in a check's stream (queued jobs, taken or not).
/// The pixels of a base64 PNG.
fn pixels(b64: &Value) -> image::RgbImage {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().expect("an image"))
        .expect("base64");
    image::load_from_memory(&bytes).expect("PNG").to_rgb8()
}

fn stream_messages(settings: &NatsSettings) -> u64 {
    runtime().block_on(async {
        let bus = sdxl_wgpu::server::nats::Bus::connect(settings)
            .await
            .expect("connects");
        let mut stream = bus.js.get_stream(&settings.stream).await.expect("stream");
        stream
            .info()
            .await
            .expect("stream info")
            .state
            .last_sequence
    })
}

/// An API node checks a body before anything is queued (422 naming the field, with no worker
/// up and nothing in the stream) and answers A1111's options (GET and POST: the selection and
/// the CLIP skip reach the workers), loras, png-info and memory like `serve`.
#[test]
fn an_api_node_checks_bodies_and_answers_options_loras_png_info_and_memory() {
    let settings = settings(shared_nats(), "listings");
    let (_node, api) = api_node(&settings);
    let bad = json!({"prompt": "x", "cfg_scale": -1, "steps": 2, "width": 64, "height": 64});
    for route in ["sdapi/v1/txt2img", "v1/jobs"] {
        let (status, r) = post(&format!("{api}/{route}"), &bad, None);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{route}: {r}");
        assert!(
            r["detail"].as_str().unwrap().contains("cfg_scale -1:"),
            "{r}"
        );
    }
    assert_eq!(stream_messages(&settings), 0, "nothing reached the stream");

    let lister = ServerConfig {
        lora_dir: Some(LORAS.into()),
        ..ServerConfig::default()
    };
    let w = worker_with(&settings, "lister", lister);
    wait_worker_up(&api);
    let (_, models) = get_json(&format!("{api}/sdapi/v1/sd-models"));
    let title = models[0]["title"].clone();
    let (status, options) = get_json(&format!("{api}/sdapi/v1/options"));
    assert_eq!(status, StatusCode::OK, "{options}");
    assert_eq!(options["sd_model_checkpoint"], title, "{options}");
    assert_eq!(options["CLIP_stop_at_last_layers"], 1, "{options}");
    let options_url = format!("{api}/sdapi/v1/options");
    for refused in [
        json!({"CLIP_stop_at_last_layers": 40}),
        json!({"sd_model_checkpoint": "not served.safetensors"}),
    ] {
        let (status, r) = post(&options_url, &refused, None);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}: {r}");
    }
    let set = json!({"CLIP_stop_at_last_layers": 2, "sd_model_checkpoint": title});
    let (status, r) = post(&options_url, &set, None);
    assert_eq!((status, r), (StatusCode::OK, Value::Null));
    let (_, options) = get_json(&options_url);
    assert_eq!(options["CLIP_stop_at_last_layers"], 2, "{options}");

    let (_, loras) = get_json(&format!("{api}/sdapi/v1/loras"));
    let names: Vec<&str> = loras
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"style_kohya"), "{loras}");

    // the options' CLIP skip reached the worker; png-info reads the image as serve does
    let (status, r) = post(
        &format!("{api}/sdapi/v1/txt2img"),
        &small("fox", 4, 2),
        None,
    );
    assert_eq!(status, StatusCode::OK, "{r}");
    let png = json!({"image": r["images"][0]});
    let (status, info) = post(&format!("{api}/sdapi/v1/png-info"), &png, None);
    assert_eq!(status, StatusCode::OK, "{info}");
    assert!(
        info["info"].as_str().unwrap().contains("Clip skip: 2"),
        "{info}"
    );
    let served = single_process_url();
    let (_, from_serve) = post(&format!("{served}/sdapi/v1/png-info"), &png, None);
    assert_eq!(info, from_serve);
    // every class of hostile request as on serve; then the same request, the same image
    hostile::assert_refused(&api, &hostile::attacks());
    let (status, again) = post(
        &format!("{api}/sdapi/v1/txt2img"),
        &small("fox", 4, 2),
        None,
    );
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(pixels(&again["images"][0]), pixels(&r["images"][0]));
    // the listings clients probe at start-up answer as serve's: one set of routes for both
    for route in [
        "scripts",
        "embeddings",
        "upscalers",
        "sd-vae",
        "prompt-styles",
    ] {
        let (status, here) = get_json(&format!("{api}/sdapi/v1/{route}"));
        let (_, there) = get_json(&format!("{served}/sdapi/v1/{route}"));
        assert_eq!((status, here), (StatusCode::OK, there), "{route}");
    }

    let (status, memory) = get_json(&format!("{api}/sdapi/v1/memory"));
    assert_eq!(status, StatusCode::OK, "{memory}");
    assert!(memory["ram"]["total"].as_u64() > Some(0), "{memory}");
    let workers = memory["workers"].as_object().unwrap();
    assert!(
        workers
            .values()
            .any(|m| m["adapter"] == gpu().adapter.describe()),
        "{memory}"
    );
    w.stop();
}

/// Two workers share 20 jobs, each image byte-equal to `serve`'s; an idempotency key twice is
/// one job; a bad request fails once (422, no redelivery); a cancel through a second API node
/// stops a running job within a step or two.
#[test]
fn two_workers_share_jobs_equal_to_serve() {
    let settings = settings(shared_nats(), "share");
    let (_node, api) = api_node(&settings);
    let workers = [worker(&settings, "w1"), worker(&settings, "w2")];
    wait_worker_up(&api);
    let bodies: Vec<Value> = (0..20).map(|i| small(&format!("job {i}"), i, 2)).collect();
    let ids: Vec<String> = bodies.iter().map(|b| submit(&api, b, None)).collect();
    let mut by_worker = std::collections::BTreeMap::<String, usize>::new();
    for (id, body) in ids.iter().zip(&bodies) {
        let job = wait_for(&api, id, finished);
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempts"], 1, "{job}");
        *by_worker
            .entry(job["worker"].as_str().unwrap().into())
            .or_default() += 1;
        assert_eq!(
            image(&api, id),
            single_process_image(body),
            "job {id}: {body}"
        );
    }
    assert_eq!(by_worker.len(), 2, "both workers took jobs: {by_worker:?}");

    // an idempotency key twice: one job
    let body = small("once", 77, 2);
    let first = submit(&api, &body, Some("key-1"));
    assert_eq!(submit(&api, &body, Some("key-1")), first);
    // the key with another body: refused, as on serve
    let other = small("another", 78, 2);
    let (status, r) = post(&format!("{api}/v1/jobs"), &other, Some("key-1"));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    let job = wait_for(&api, &first, finished);
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_i64()),
        (Some("succeeded"), Some(1))
    );
    let events = client()
        .get(format!("{api}/v1/jobs/{first}/events"))
        .send()
        .and_then(|r| r.text())
        .unwrap();
    assert!(
        events.contains("event: done"),
        "a finished job's events end: {events}"
    );

    // a bad request: 422 to the waiting client, failed once
    let mut bad = small("bad", 1, 2);
    bad["sampler_name"] = "no such sampler".into();
    let (status, r) = post(&format!("{api}/sdapi/v1/txt2img"), &bad, None);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r["detail"].as_str().unwrap().contains("sampler"), "{r}");
    // one only the worker can refuse (the API node cannot see its LoRA folder) is queued
    let bad = small("bad <lora:not_on_the_worker:1>", 1, 2);
    let id = submit(&api, &bad, None);
    let job = wait_for(&api, &id, finished);
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "no redelivery: {job}");
    assert_eq!(job["error"]["status"], 422, "{job}");

    // cancel through another API node
    let (_other, other) = api_node(&settings);
    let id = submit(&api, &small("long", 5, 40), None);
    let follower = {
        let url = format!("{other}/v1/jobs/{id}/events");
        std::thread::spawn(move || client().get(url).send().and_then(|r| r.text()).unwrap())
    };
    let running = wait_for(&api, &id, |j| j["progress"]["step"].as_u64() >= Some(1));
    let (status, r) = client()
        .delete(format!("{other}/v1/jobs/{id}"))
        .send()
        .map(|r| (r.status(), r.text().unwrap_or_default()))
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{r}");
    let job = wait_for(&api, &id, finished);
    assert_eq!(job["status"], "cancelled", "{job}");
    let at_cancel = running["progress"]["step"].as_u64().unwrap();
    let last = job["progress"]["step"].as_u64().unwrap();
    assert!(last < 40, "stopped early: {job}");
    eprintln!("cancel: seen at step {at_cancel}, stopped at step {last}");
    let events = follower.join().unwrap();
    for name in ["event: started", "event: step", "event: done"] {
        assert!(events.contains(name), "{name} in {events}");
    }
    for w in workers {
        w.stop();
    }
}

/// A1111's progress, interrupt and skip through an API node other than the one that took the
/// job: the running job's steps and live preview, a skip ending its first iteration, an
/// interrupt ending the job; idle before and after.
#[test]
fn a1111_progress_previews_interrupt_and_skip_through_any_api_node() {
    let settings = settings(shared_nats(), "progress");
    let (_node, api) = api_node(&settings);
    let (_other, other) = api_node(&settings);
    let previews = ServerConfig {
        preview_every: 1,
        ..ServerConfig::default()
    };
    let w = worker_with(&settings, "previewing", previews);
    wait_worker_up(&api);
    let progress = || get_json(&format!("{other}/sdapi/v1/progress")).1;
    assert_eq!(progress()["state"]["job"], "", "idle: {}", progress());

    let mut body = small("watched", 4, 50);
    body["n_iter"] = 2.into();
    let waiting = {
        let url = format!("{api}/sdapi/v1/txt2img");
        std::thread::spawn(move || {
            let r = client().post(url).json(&body).send().expect("txt2img");
            let id = r.headers()["x-job-id"].to_str().unwrap().to_string();
            (r.status(), id)
        })
    };
    let seen = poll(progress, |p| {
        p["state"]["sampling_step"].as_u64() >= Some(1) && p["current_image"].is_string()
    });
    assert_eq!(seen["state"]["job"], "scripts_txt2img", "{seen}");
    assert_eq!(seen["state"]["sampling_steps"], 50, "{seen}");
    assert_eq!(seen["state"]["job_count"], 2, "{seen}");
    assert!(seen["progress"].as_f64().unwrap() > 0.0, "{seen}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(seen["current_image"].as_str().unwrap())
        .unwrap();
    let preview = image::load_from_memory(&png).expect("a PNG preview");
    assert_eq!((preview.width(), preview.height()), (8, 8), "latent-sized");

    let (status, _) = post(&format!("{other}/sdapi/v1/skip"), &json!({}), None);
    assert_eq!(status, StatusCode::OK);
    let second = poll(progress, |p| p["state"]["job_no"] == 1);
    assert_eq!(second["state"]["skipped"], true, "{second}");
    let (status, r) = post(&format!("{other}/sdapi/v1/interrupt"), &json!({}), None);
    assert_eq!((status, r), (StatusCode::OK, json!({})));
    let (status, id) = waiting.join().unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "an interrupted job answers its client"
    );
    let job = wait_for(&api, &id, finished);
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(
        job["progress"]["step"].as_u64() < Some(50),
        "stopped early: {job}"
    );
    assert_eq!(progress()["progress"], 0.0, "idle again: {}", progress());
    w.stop();
}

/// Polls `read` until `done` holds (for at most ten minutes).
fn poll<T: std::fmt::Debug>(read: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let value = read();
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "still {value:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A worker process killed with SIGKILL in the middle of a job: after the acknowledgement
/// timeout the job is delivered to another worker and completes there, once.
#[test]
fn a_killed_worker_s_job_completes_once_on_another() {
    let settings = settings(shared_nats(), "kill");
    let (_node, api) = api_node(&settings);
    let mut doomed = Command::new(env!("CARGO_BIN_EXE_sdxl-wgpu"))
        .args([
            "worker",
            "--nats",
            &settings.url,
            "--model",
            TINY,
            "--policy",
            "off",
        ])
        .args(["--name", "doomed", "--ack-wait", "3"])
        .args([
            "--nats-stream",
            &settings.stream,
            "--nats-prefix",
            &settings.prefix,
        ])
        .args(["--nats-jobs-bucket", &settings.jobs_bucket])
        .args(["--nats-objects-bucket", &settings.objects_bucket])
        .args(["--nats-models-bucket", &settings.models_bucket])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("a worker process");
    wait_worker_up(&api);
    let body = small("survives", 9, 2);
    let id = submit(&api, &body, None);
    // a fresh process compiles its kernels during its first job: it is mid-job for a while
    wait_for(&api, &id, |j| {
        j["status"] == "running" && j["worker"] == "doomed"
    });
    doomed.kill().expect("SIGKILL");
    let _ = doomed.wait();
    let survivor = worker(&settings, "survivor");
    let job = wait_for(&api, &id, finished);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["worker"], "survivor", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["images"].as_array().unwrap().len(), 1, "{job}");
    assert_eq!(image(&api, &id), single_process_image(&body));
    survivor.stop();
}

/// Queued and finished jobs survive a restart of the API node and then of nats-server (same
/// store); the queued one runs once a worker is back.
#[test]
fn jobs_survive_api_node_and_nats_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(dir.path().into(), free_port());
    let settings = settings(&nats.url(), "restart");
    let (node, api) = api_node(&settings);
    let w = worker(&settings, "before");
    wait_worker_up(&api);
    let done = submit(&api, &small("finished before", 1, 2), None);
    wait_for(&api, &done, |j| j["status"] == "succeeded");
    let png = image(&api, &done);
    w.stop();
    let queued = submit(&api, &small("queued across restarts", 2, 2), None);
    runtime().block_on(node.shutdown());

    let (_node, api) = api_node(&settings);
    wait_for(&api, &done, |j| j["status"] == "succeeded");
    wait_for(&api, &queued, |j| j["status"] == "queued");
    nats.restart();
    wait_for(&api, &done, |j| j["status"] == "succeeded");
    wait_for(&api, &queued, |j| j["status"] == "queued");
    assert_eq!(image(&api, &done), png);

    let w = worker(&settings, "after");
    let job = wait_for(&api, &queued, finished);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["worker"], "after", "{job}");
    w.stop();
}

/// A job that fails on the machine's side every time (here: its worker cannot write the
/// `save_images` folder) runs `max_deliver` times, then is `failed` with its last error.
#[test]
fn a_job_failing_on_the_machine_fails_after_the_maximum_deliveries() {
    // Its runs after the first come from the worker's backoff; an acknowledgement wait longer
    // than the job keeps a slow, loaded machine from adding a redelivery (which would be a run
    // too), and the record counts runs, so a delivery lost on the way adds none.
    let settings = NatsSettings {
        ack_wait: Duration::from_secs(30),
        ..settings(shared_nats(), "poison")
    };
    let (_node, api) = api_node(&settings);
    let dir = tempfile::tempdir().unwrap();
    let not_a_folder = dir.path().join("a-file");
    std::fs::write(&not_a_folder, b"").unwrap();
    let outputs = ServerConfig {
        outputs: Some(not_a_folder),
        ..ServerConfig::default()
    };
    let w = worker_with(&settings, "unlucky", outputs);
    wait_worker_up(&api);
    let mut body = small("poison", 3, 2);
    body["save_images"] = true.into();
    let id = submit(&api, &body, None);
    let job = wait_for(&api, &id, finished);
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 3, "{job}");
    assert_eq!(job["error"]["status"], 500, "{job}");
    assert!(
        job["error"]["message"].as_str().unwrap().contains("a-file"),
        "{job}"
    );
    w.stop();
}
