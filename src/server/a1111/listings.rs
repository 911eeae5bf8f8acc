//! A1111's settings and listing routes: options (the checkpoint and CLIP skip acted on, the
//! rest kept for clients that read back what they wrote), checkpoints and LoRAs, samplers and
//! schedulers, PNG info, memory, and the listings of features we do not have, empty in A1111's
//! shapes so clients that probe them at start-up carry on.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::convert::clip_skip;
use super::samplers::{samplers_json, schedulers_json};
use super::{decode_image_bytes, object};
use crate::image_io::metadata::{self, parse_parameters};
use crate::intake::LoraFolder;
use crate::pipeline::hires::Method;
use crate::pipeline::HiresUpscaler;
use crate::server::backend::JobBackend;
use crate::server::error::ApiError;
use crate::server::jobs::Task;
use crate::server::local::run_model_task;
use crate::server::models::CheckpointEntry;
use crate::server::state::{lock, Shared};

pub fn routes<B: JobBackend>() -> Router<B> {
    let empty_list = || get(|| async { Json(json!([])) });
    Router::new()
        .route("/options", get(get_options::<B>).post(set_options::<B>))
        .route("/sd-models", get(sd_models::<B>))
        .route("/samplers", get(|| async { Json(samplers_json()) }))
        .route("/schedulers", get(|| async { Json(schedulers_json()) }))
        .route("/loras", get(loras::<B>))
        .route("/png-info", post(png_info))
        .route("/memory", get(memory::<B>))
        .route(
            "/scripts",
            get(|| async { Json(json!({"txt2img": [], "img2img": []})) }),
        )
        .route(
            "/embeddings",
            get(|| async { Json(json!({"loaded": {}, "skipped": {}})) }),
        )
        .route("/upscalers", get(upscalers::<B>))
        .route(
            "/latent-upscale-modes",
            get(|| async { Json(latent_upscale_modes()) }),
        )
        .route("/sd-vae", empty_list())
        .route("/hypernetworks", empty_list())
        .route("/face-restorers", empty_list())
        .route("/realesrgan-models", empty_list())
        .route("/prompt-styles", empty_list())
}

/// `GET latent-upscale-modes`: the latent upscalers a hires pass's `hr_upscaler` may name.
fn latent_upscale_modes() -> Value {
    let listed = HiresUpscaler::all()
        .filter(|u| matches!(u.method(), Method::Latent(_)))
        .map(|u| json!({"name": u.a1111_name()}));
    Value::Array(listed.collect())
}

/// `GET upscalers`: the pixel upscalers as A1111 lists its built-in ones, then the model
/// upscalers by file stem, as A1111 lists its ESRGAN folder (scale 4 for every model, as A1111
/// writes it without reading the file).
async fn upscalers<B: JobBackend>(State(backend): State<B>) -> Result<Json<Value>, ApiError> {
    let builtin = HiresUpscaler::all()
        .filter(|u| !matches!(u.method(), Method::Latent(_)))
        .map(|u| {
            json!({"name": u.a1111_name(), "model_name": null, "model_path": null,
                   "model_url": null, "scale": 4})
        });
    let models = backend.upscaler_models().await?.into_iter().map(|e| {
        json!({"name": e.name, "model_name": "ESRGAN", "model_path": e.path.display().to_string(),
               "model_url": null, "scale": 4})
    });
    Ok(Json(Value::Array(builtin.chain(models).collect())))
}

/// The routes only `serve` has: its checkpoints and LoRA folder on this machine, its flags.
pub fn local_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/refresh-checkpoints", post(refresh_checkpoints))
        .route("/unload-checkpoint", post(unload))
        .route("/reload-checkpoint", post(reload))
        .route("/refresh-loras", post(refresh_loras))
        .route("/cmd-flags", get(cmd_flags))
}

async fn get_options<B: JobBackend>(State(backend): State<B>) -> Result<Json<Value>, ApiError> {
    Ok(Json(backend.options().await?))
}

/// `GET /sdapi/v1/options`: the options set over A1111's defaults, with the selected
/// checkpoint's title and hash (`serve`'s and a NATS API node's).
pub fn options_json(mut options: Map<String, Value>, title: Value, hash: Value) -> Value {
    options.insert("sd_model_checkpoint".into(), title);
    options.insert("sd_checkpoint_hash".into(), hash);
    options
        .entry("CLIP_stop_at_last_layers")
        .or_insert_with(|| json!(1));
    options
        .entry("samples_format")
        .or_insert_with(|| json!("png"));
    Value::Object(options)
}

/// The most A1111 options a server keeps for clients to read back, as JSON: A1111's own are
/// about 20 KiB.
pub const MAX_OPTIONS_BYTES: usize = 256 << 10;

/// `stored` with `new`'s options over it, unless together they pass [`MAX_OPTIONS_BYTES`] (a
/// 413, and nothing changes).
pub fn merge_options(
    stored: &Map<String, Value>,
    new: Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut merged = stored.clone();
    merged.extend(new);
    let size = serde_json::to_vec(&merged).map_or(usize::MAX, |b| b.len());
    if size > MAX_OPTIONS_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("the options would hold {size} bytes; at most {MAX_OPTIONS_BYTES} are kept"),
        ));
    }
    Ok(merged)
}

/// Sets options: CLIP skip out of range and a checkpoint the backend cannot load are 422s; a
/// body past what is kept is a 413 before it is parsed.
async fn set_options<B: JobBackend>(
    State(backend): State<B>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if body.len() > MAX_OPTIONS_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "options of {} bytes; at most {MAX_OPTIONS_BYTES} are kept",
                body.len()
            ),
        ));
    }
    let map = object(&body)?;
    if let Some(v) = map.get("CLIP_stop_at_last_layers") {
        clip_skip("CLIP_stop_at_last_layers", v)?;
    }
    backend.set_options(map).await?;
    Ok(Json(Value::Null))
}

async fn sd_models<B: JobBackend>(State(backend): State<B>) -> Result<Json<Value>, ApiError> {
    Ok(Json(backend.models().await?))
}

/// One checkpoint as `sd-models` lists it (also what a NATS worker announces). Locks the
/// catalogue: call it without holding that lock.
pub fn sd_model(shared: &Shared, e: &CheckpointEntry) -> Value {
    json!({
        "title": e.title(),
        "model_name": e.model_name,
        "hash": e.hash(),
        "sha256": e.sha256,
        "filename": e.path.display().to_string(),
        "config": null,
        "prediction": shared.config.load.prediction.or(e.prediction).map(|p| p.to_string()),
        "quality_policy": shared.policy_for(&e.path).to_string(),
    })
}

async fn refresh_checkpoints(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, ApiError> {
    let config = &shared.config;
    lock(&shared.catalogue)
        .refresh(config.model.as_deref(), config.models_dir.as_deref())
        .map_err(|e| ApiError::internal(format!("reading the models folder: {e}")))?;
    Ok(Json(Value::Null))
}

async fn unload(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, ApiError> {
    run_model_task(&shared, Task::UnloadModel).await?;
    Ok(Json(json!({})))
}

async fn reload(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, ApiError> {
    let selected = lock(&shared.catalogue).selected.clone();
    if let Some(path) = selected {
        run_model_task(&shared, Task::LoadModel(path)).await?;
    }
    Ok(Json(json!({})))
}

async fn loras<B: JobBackend>(State(backend): State<B>) -> Result<Json<Value>, ApiError> {
    Ok(Json(backend.loras().await?))
}

/// The LoRA folder as `/loras` lists it; a NATS worker announces it without the metadata.
pub fn loras_json(shared: &Shared, metadata: bool) -> Value {
    let folder = lock(&shared.loras).clone();
    let list: Vec<Value> = folder
        .entries()
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "alias": e.alias,
                "path": e.path.display().to_string(),
                "metadata": if metadata { Value::Object(e.metadata.clone()) } else { json!({}) },
            })
        })
        .collect();
    Value::Array(list)
}

async fn refresh_loras(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let dir = shared.config.lora_dir.clone();
    let folder = tokio::task::spawn_blocking(move || LoraFolder::scan(dir.as_deref()))
        .await
        .unwrap_or_default();
    *lock(&shared.loras) = Arc::new(folder);
    Json(Value::Null)
}

/// The infotext of a PNG (base64 or data URL): `{info, items, parameters}`, read off the async
/// threads.
async fn png_info(body: Bytes) -> Result<Json<Value>, ApiError> {
    tokio::task::spawn_blocking(move || png_info_of(&body))
        .await
        .map_err(|e| ApiError::internal(format!("reading the image: {e}")))?
        .map(Json)
}

fn png_info_of(body: &[u8]) -> Result<Value, ApiError> {
    let map = object(body)?;
    let Some(text) = map.get("image").and_then(Value::as_str) else {
        return Err(ApiError::not_found("Image not found"));
    };
    let bytes = decode_image_bytes(text).map_err(|e| ApiError::invalid(format!("image: {e}")))?;
    // another format has no PNG text: empty, as A1111 answers; a PNG's bad text is a 422
    let mut chunks = match metadata::is_png(&bytes) {
        true => metadata::png_text(&bytes).map_err(|e| ApiError::invalid(format!("image: {e}")))?,
        false => Default::default(),
    };
    let info = chunks.remove("parameters").unwrap_or_default();
    let items: Map<String, Value> = chunks.into_iter().map(|(k, v)| (k, v.into())).collect();
    let parameters: Map<String, Value> = parse_parameters(&info)
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    Ok(json!({"info": info, "items": items, "parameters": parameters}))
}

/// Host RAM (this process's resident set) in A1111's shape, and the device memory (`serve`:
/// its pools as `device`; an API node: each served model's as its workers announced it, as
/// `workers`).
async fn memory<B: JobBackend>(State(backend): State<B>) -> Result<Json<Value>, ApiError> {
    let (key, device) = backend.device_memory().await?;
    let mut body = json!({"ram": ram_json(), "cuda": {"error": "unavailable"}});
    body[key] = device;
    Ok(Json(body))
}

/// A1111's `ram`: this process's resident set and the machine's total.
fn ram_json() -> Value {
    match (resident_bytes(), total_ram_bytes()) {
        (Some(used), Some(total)) => {
            json!({"free": total.saturating_sub(used), "used": used, "total": total})
        }
        _ => json!({"error": "unavailable"}),
    }
}

/// The device's memory pools as `/memory` shows them (and a NATS worker announces them).
pub fn device_memory_json(shared: &Shared) -> Value {
    let m = *lock(&shared.memory);
    json!({
        "adapter": shared.adapter,
        "in_use": m.in_use,
        "reserved": m.reserved,
        "peak_reserved": m.peak_reserved,
        "warm_pool": m.warm,
    })
}

/// This process's resident set size (Linux `/proc/self/statm`).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn total_ram_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

async fn cmd_flags(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let c = &shared.config;
    Json(json!({
        "ckpt": c.model.as_ref().map(|p| p.display().to_string()),
        "ckpt_dir": c.models_dir.as_ref().map(|p| p.display().to_string()),
        "lora_dir": c.lora_dir.as_ref().map(|p| p.display().to_string()),
        "api": true,
        "api_auth": null,
        "listen": !c.listen.ip().is_loopback(),
        "port": c.listen.port(),
    }))
}
