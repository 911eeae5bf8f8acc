//! What kind of file this is, before any architecture is detected: an SDXL base-type checkpoint
//! (our target, eps or v-prediction), or one of the files users mistake for one (SD 1.x / 2.x,
//! the SDXL refiner, inpainting models, LoRAs, VAE-only and UNet-only files), each refused with
//! the evidence that gave it away.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::error::CheckpointError;
use crate::sampling::Prediction;
use crate::weights::TensorInfo;

/// The verdict on an SDXL base-type checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub prediction: Prediction,
    /// Trained with a zero-terminal-SNR schedule (`ztsnr` marker / `rescale_betas_zero_snr`).
    pub zero_terminal_snr: bool,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prediction {
            Prediction::Epsilon => f.write_str("SDXL base-type, epsilon prediction")?,
            Prediction::V => f.write_str("SDXL base-type, v-prediction")?,
        }
        if self.zero_terminal_snr {
            f.write_str(", zero terminal SNR")?;
        }
        Ok(())
    }
}

const UNET: &str = "model.diffusion_model.";
const CLIP_L: &str = "conditioner.embedders.0.transformer.";
const BIG_G: &str = "conditioner.embedders.1.model.";
const VAE: &str = "first_stage_model.";

fn first_with(tensors: &BTreeMap<String, TensorInfo>, test: impl Fn(&str) -> bool) -> Option<&str> {
    tensors.keys().map(String::as_str).find(|k| test(k))
}

/// Whether keys look like a LoRA's (kohya, PEFT or diffusers naming).
pub fn lora_evidence(tensors: &BTreeMap<String, TensorInfo>) -> Option<&str> {
    first_with(tensors, |k| {
        k.starts_with("lora_")
            || k.contains(".lora_down.")
            || k.contains(".lora_up.")
            || k.contains(".lora_A.")
            || k.contains(".lora_B.")
            || k.contains(".lora.down.")
    })
}

fn refuse_in_channels(path: &Path, in_channels: usize) -> Result<(), CheckpointError> {
    let (family, reason) = match in_channels {
        4 => return Ok(()),
        9 => (
            "an SDXL inpainting model",
            "its UNet takes 9 input channels (latents, mask, masked image); inpainting models are not supported yet".to_string(),
        ),
        8 => (
            "an instruct-pix2pix model",
            "its UNet takes 8 input channels (latents and the source image)".to_string(),
        ),
        n => (
            "this UNet",
            format!("it takes {n} input channels; SDXL text-to-image models take 4"),
        ),
    };
    Err(CheckpointError::Unsupported {
        path: path.to_path_buf(),
        family,
        reason,
    })
}

/// Classifies a single `.safetensors` file from its keys and a few shapes.
pub fn classify_single_file(
    path: &Path,
    tensors: &BTreeMap<String, TensorInfo>,
) -> Result<Variant, CheckpointError> {
    let not_checkpoint = |kind, evidence: &str, hint| CheckpointError::NotACheckpoint {
        path: path.to_path_buf(),
        kind,
        evidence: format!("it has `{evidence}`"),
        hint,
    };
    let has = |prefix: &str| tensors.keys().any(|k| k.starts_with(prefix));

    if let Some(key) = lora_evidence(tensors) {
        return Err(not_checkpoint(
            "a LoRA",
            key,
            "; pass LoRA files with --lora",
        ));
    }
    if !has(UNET) {
        if let Some(key) = first_with(tensors, |k| {
            k.ends_with("decoder.conv_in.weight") || k.ends_with("post_quant_conv.weight")
        }) {
            return Err(not_checkpoint("a VAE-only file", key, ""));
        }
        if let Some(key) = first_with(tensors, |k| k.starts_with("time_embedding.")) {
            return Err(not_checkpoint(
                "a diffusers UNet file",
                key,
                "; give the whole diffusers folder instead",
            ));
        }
        if let Some(key) = first_with(tensors, |k| k.starts_with("text_model.")) {
            return Err(not_checkpoint("a text-encoder file", key, ""));
        }
        return Err(CheckpointError::Unknown {
            path: path.to_path_buf(),
            reason: "it has no UNet tensors (model.diffusion_model.*)".into(),
        });
    }
    let unsupported = |family, reason: &str| CheckpointError::Unsupported {
        path: path.to_path_buf(),
        family,
        reason: reason.into(),
    };
    if has("cond_stage_model.transformer.") {
        return Err(unsupported(
            "a Stable Diffusion 1.x checkpoint",
            "it has one CLIP-L text encoder (cond_stage_model.transformer.*); this engine runs SDXL",
        ));
    }
    if has("cond_stage_model.model.") {
        return Err(unsupported(
            "a Stable Diffusion 2.x checkpoint",
            "it has one OpenCLIP ViT-H text encoder (cond_stage_model.model.*); this engine runs SDXL",
        ));
    }
    if has("conditioner.embedders.0.model.") && !has("conditioner.embedders.1.") {
        return Err(unsupported(
            "the SDXL refiner",
            "it has only the bigG text encoder and aesthetic-score conditioning; use an SDXL base-type checkpoint",
        ));
    }
    if !has(CLIP_L) || !has(BIG_G) {
        return Err(not_checkpoint(
            "a UNet-only file",
            "model.diffusion_model.* but not both text encoders (conditioner.embedders.0/1.*)",
            "",
        ));
    }
    if !has(VAE) {
        return Err(CheckpointError::Unknown {
            path: path.to_path_buf(),
            reason: "it has a UNet and text encoders but no VAE (first_stage_model.*)".into(),
        });
    }
    if let Some(conv_in) = tensors.get(&format!("{UNET}input_blocks.0.0.weight")) {
        refuse_in_channels(path, conv_in.shape.get(1).copied().unwrap_or(0))?;
    }
    Ok(Variant {
        prediction: if tensors.contains_key("v_pred") {
            Prediction::V
        } else {
            Prediction::Epsilon
        },
        zero_terminal_snr: tensors.contains_key("ztsnr"),
    })
}

/// Classifies a diffusers folder from its `model_index.json`, component keys and scheduler.
pub fn classify_folder(
    path: &Path,
    class_name: &str,
    unet: &BTreeMap<String, TensorInfo>,
    has_text_encoder: bool,
    scheduler: &serde_json::Value,
) -> Result<Variant, CheckpointError> {
    let unsupported = |family, reason: &str| CheckpointError::Unsupported {
        path: path.to_path_buf(),
        family,
        reason: reason.into(),
    };
    if !has_text_encoder {
        return Err(unsupported(
            "the SDXL refiner",
            "the folder has no CLIP-L text_encoder; use an SDXL base-type model",
        ));
    }
    if !unet.contains_key("add_embedding.linear_1.weight") {
        return Err(unsupported(
            "a Stable Diffusion 1.x / 2.x model",
            &format!("{class_name}: its UNet has no text_time embedding; this engine runs SDXL"),
        ));
    }
    if let Some(conv_in) = unet.get("conv_in.weight") {
        refuse_in_channels(path, conv_in.shape.get(1).copied().unwrap_or(0))?;
    }
    let v = scheduler.get("prediction_type").and_then(|p| p.as_str()) == Some("v_prediction");
    Ok(Variant {
        prediction: if v {
            Prediction::V
        } else {
            Prediction::Epsilon
        },
        zero_terminal_snr: scheduler
            .get("rescale_betas_zero_snr")
            .and_then(|z| z.as_bool())
            .unwrap_or(false),
    })
}
