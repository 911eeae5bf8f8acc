//! The API node's A1111 settings and listings, as `serve` answers them: `options` (kept in the
//! jobs bucket, so every API node reads what one was sent; the selected checkpoint routes jobs
//! that name none, CLIP skip reaches the workers inside each job's `override_settings`),
//! `loras` (what the workers announced), `png-info`, and `memory` (this node's RAM and each
//! model's device memory as its workers announce it).

use serde_json::{Map, Value};

use super::api::{models, unavailable, Node};
use super::bus::NatsError;
use crate::server::a1111::{merge_options, options_json};
use crate::server::error::ApiError;

/// The jobs bucket's key of the options set with `POST /sdapi/v1/options`.
const OPTIONS_KEY: &str = "options";

/// The options `POST /sdapi/v1/options` stored (none: empty).
pub async fn stored_options(node: &Node) -> Result<Map<String, Value>, ApiError> {
    let stored = node
        .bus
        .jobs
        .get(OPTIONS_KEY)
        .await
        .map_err(|e| unavailable(NatsError::io(e)))?;
    Ok(stored
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .unwrap_or_default())
}

/// Whether a model `card` answers to `name` (any of A1111's names for a checkpoint).
pub fn answers(card: &Value, name: &str) -> bool {
    let field = |k: &str| card.get(k).and_then(Value::as_str);
    ["title", "model_name", "filename", "hash", "sha256"]
        .iter()
        .any(|k| field(k) == Some(name.trim()))
}

/// The served model (subject token, card) a client's `sd_model_checkpoint` names; a 422 when
/// no worker serves it.
pub fn served_model<'a>(
    served: &'a [(String, Value)],
    name: &str,
) -> Result<&'a (String, Value), ApiError> {
    served
        .iter()
        .find(|(_, card)| answers(card, name))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "sd_model_checkpoint: no worker serves {name:?}; see GET /sdapi/v1/sd-models"
            ))
        })
}

/// `GET /sdapi/v1/options`: the stored options over A1111's defaults, with the checkpoint jobs
/// run on unless they name one.
pub async fn get_options(node: &Node) -> Result<Value, ApiError> {
    let options = stored_options(node).await?;
    let served = models(&node.bus).await?;
    let selected = match options.get("sd_model_checkpoint").and_then(Value::as_str) {
        Some(name) => served_model(&served, name).ok(),
        None => node.default_model(&served),
    };
    let card = |key: &str| selected.map_or(Value::Null, |(_, c)| c[key].clone());
    Ok(options_json(options, card("title"), card("sha256")))
}

/// `POST /sdapi/v1/options`: a checkpoint no worker serves is a 422; the rest is stored for
/// every API node.
pub async fn set_options(node: &Node, mut map: Map<String, Value>) -> Result<(), ApiError> {
    if let Some(v) = map.get_mut("sd_model_checkpoint") {
        let name = v.as_str().unwrap_or_default().to_string();
        let served = models(&node.bus).await?;
        *v = served_model(&served, &name)?.1["title"].clone();
    }
    let options = merge_options(&stored_options(node).await?, map)?;
    let bytes = serde_json::to_vec(&options).expect("a JSON map serialises");
    node.bus
        .jobs
        .put(OPTIONS_KEY, bytes.into())
        .await
        .map_err(|e| unavailable(NatsError::io(e)))?;
    Ok(())
}

/// `GET /sdapi/v1/loras`: the LoRAs the workers of every served model announced (by name, each
/// once; without their training metadata, which stays on the workers).
pub async fn loras(node: &Node) -> Result<Value, ApiError> {
    let mut list: Vec<Value> = Vec::new();
    for (_, card) in models(&node.bus).await? {
        for lora in card["loras"].as_array().into_iter().flatten() {
            if !list.iter().any(|l| l["name"] == lora["name"]) {
                list.push(lora.clone());
            }
        }
    }
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Value::Array(list))
}

/// `GET /sdapi/v1/memory`'s `workers`: the device memory each served model's workers last
/// announced.
pub async fn memory(node: &Node) -> Result<Value, ApiError> {
    let workers: Map<String, Value> = models(&node.bus)
        .await?
        .into_iter()
        .map(|(token, card)| (token, card["memory"].clone()))
        .collect();
    Ok(Value::Object(workers))
}
