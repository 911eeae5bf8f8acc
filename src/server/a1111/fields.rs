//! The fields of A1111's txt2img and img2img bodies, in A1111's order with its defaults (the
//! models `modules/api/models.py` generates from `StableDiffusionProcessingTxt2Img/Img2Img`,
//! A1111 v1.10), and reading them as pydantic v1 does: unknown fields ignored, `null` as
//! absent, numbers given as strings accepted.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use crate::field::{Field, FieldNames};
use crate::server::error::ApiError;
use crate::server::jobs::Kind;

/// The library's fields as A1111's bodies spell them, for error messages (`cfg_scale -1: ...`).
pub struct A1111Names;

impl FieldNames for A1111Names {
    fn spell(&self, field: Field) -> &'static str {
        match field {
            Field::Width => "width",
            Field::Height => "height",
            Field::Cfg => "cfg_scale",
            // not an A1111 field; the server never sets it
            Field::CfgRescale => "cfg_rescale",
            Field::Batch => "batch_size",
            Field::Strength => "denoising_strength",
            Field::Steps => "steps",
            Field::HiresScale => "hr_scale",
            Field::HiresSteps => "hr_second_pass_steps",
            Field::HiresDenoise => "denoising_strength",
            Field::HiresUpscaler => "hr_upscaler",
            Field::Schedule => "scheduler",
            // ours counts from 0: one less than A1111's
            Field::ClipSkip => "CLIP skip (CLIP_stop_at_last_layers - 1)",
            // a server takes no injected noise
            Field::InitNoise => "initial noise",
            Field::Backend => "backend",
            Field::LoraFolder => "the server's LoRA folder",
            Field::UpscalerFolder => "the server's upscaler folder",
            Field::Mask => "mask",
            Field::MaskBlur => "mask_blur",
        }
    }
}

/// `(field, default)` of both endpoints, in A1111's order.
fn shared_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("prompt", json!("")),
        ("negative_prompt", json!("")),
        ("styles", Value::Null),
        ("seed", json!(-1)),
        ("subseed", json!(-1)),
        ("subseed_strength", json!(0)),
        ("seed_resize_from_h", json!(-1)),
        ("seed_resize_from_w", json!(-1)),
        ("sampler_name", Value::Null),
        ("scheduler", Value::Null),
        ("batch_size", json!(1)),
        ("n_iter", json!(1)),
        ("steps", json!(50)),
        ("cfg_scale", json!(7.0)),
        ("width", json!(512)),
        ("height", json!(512)),
        ("restore_faces", Value::Null),
        ("tiling", Value::Null),
        ("do_not_save_samples", json!(false)),
        ("do_not_save_grid", json!(false)),
        ("eta", Value::Null),
        ("denoising_strength", Value::Null),
        ("s_min_uncond", Value::Null),
        ("s_churn", Value::Null),
        ("s_tmax", Value::Null),
        ("s_tmin", Value::Null),
        ("s_noise", Value::Null),
        ("override_settings", Value::Null),
        ("override_settings_restore_afterwards", json!(true)),
        ("refiner_checkpoint", Value::Null),
        ("refiner_switch_at", Value::Null),
        ("disable_extra_networks", json!(false)),
        ("firstpass_image", Value::Null),
        ("comments", Value::Null),
    ]
}

fn txt2img_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("enable_hr", json!(false)),
        ("firstphase_width", json!(0)),
        ("firstphase_height", json!(0)),
        ("hr_scale", json!(2.0)),
        ("hr_upscaler", Value::Null),
        ("hr_second_pass_steps", json!(0)),
        ("hr_resize_x", json!(0)),
        ("hr_resize_y", json!(0)),
        ("hr_checkpoint_name", Value::Null),
        ("hr_sampler_name", Value::Null),
        ("hr_scheduler", Value::Null),
        ("hr_prompt", json!("")),
        ("hr_negative_prompt", json!("")),
        ("force_task_id", Value::Null),
    ]
}

fn img2img_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("init_images", Value::Null),
        ("resize_mode", json!(0)),
        ("image_cfg_scale", Value::Null),
        ("mask", Value::Null),
        ("mask_blur_x", json!(4)),
        ("mask_blur_y", json!(4)),
        ("mask_blur", Value::Null),
        ("mask_round", json!(true)),
        ("inpainting_fill", json!(0)),
        ("inpaint_full_res", json!(true)),
        ("inpaint_full_res_padding", json!(0)),
        ("inpainting_mask_invert", json!(0)),
        ("initial_noise_multiplier", Value::Null),
        ("latent_mask", Value::Null),
        ("force_task_id", Value::Null),
    ]
}

/// The Extras endpoints' fields (`ExtrasBaseRequest`, then `image` and `imageList`).
fn extras_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("resize_mode", json!(0)),
        ("show_extras_results", json!(true)),
        ("gfpgan_visibility", json!(0)),
        ("codeformer_visibility", json!(0)),
        ("codeformer_weight", json!(0)),
        ("upscaling_resize", json!(2)),
        ("upscaling_resize_w", json!(512)),
        ("upscaling_resize_h", json!(512)),
        ("upscaling_crop", json!(true)),
        ("upscaler_1", json!("None")),
        ("upscaler_2", json!("None")),
        ("extras_upscaler_2_visibility", json!(0)),
        ("upscale_first", json!(false)),
        ("image", json!("")),
        ("imageList", json!([])),
    ]
}

/// The API's additional fields (after the processing class's).
fn additional_fields(kind: Kind) -> Vec<(&'static str, Value)> {
    let mut fields = vec![
        ("sampler_index", json!("Euler")),
        ("script_name", Value::Null),
        ("script_args", json!([])),
        ("send_images", json!(true)),
        ("save_images", json!(false)),
        ("alwayson_scripts", json!({})),
        ("infotext", Value::Null),
    ];
    if kind == Kind::Img2img {
        fields.insert(0, ("include_init_images", json!(false)));
        fields.insert(0, ("denoising_strength", json!(0.75)));
    }
    fields
}

/// A body's fields with A1111's defaults filled in: what `parameters` echoes, and what the
/// request is read from.
pub struct Fields {
    pub values: Map<String, Value>,
}

impl Fields {
    /// The body's known fields over the defaults of `kind`'s endpoint (a body field given
    /// as `null` takes the default).
    pub fn of(kind: Kind, body: &Map<String, Value>) -> Self {
        let table = match kind {
            Kind::Extras => extras_fields(),
            _ => {
                let mut table = shared_fields();
                table.extend(match kind {
                    Kind::Img2img => img2img_fields(),
                    _ => txt2img_fields(),
                });
                table.extend(additional_fields(kind));
                table
            }
        };
        let mut values = Map::new();
        for (name, default) in table {
            let given = body.get(name).filter(|v| !v.is_null()).cloned();
            values.insert(name.to_string(), given.unwrap_or(default));
        }
        Fields { values }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !v.is_null())
    }

    /// An integer: a JSON number (a fraction truncated, as pydantic v1 does) or a numeric
    /// string.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let parsed = match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{name}: value is not a valid integer")))
    }

    /// A non-negative integer that fits a `usize`.
    pub fn count(&self, name: &str) -> Result<Option<usize>, ApiError> {
        match self.int(name)? {
            None => Ok(None),
            Some(n) => usize::try_from(n)
                .map(Some)
                .map_err(|_| ApiError::invalid(format!("{name}: {n} must be 0 or more"))),
        }
    }

    /// A finite float: a JSON number or a numeric string.
    pub fn float(&self, name: &str) -> Result<Option<f64>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let parsed = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(f) if f.is_finite() => Ok(Some(f)),
            _ => Err(ApiError::invalid(format!(
                "{name}: value is not a valid number"
            ))),
        }
    }

    /// A bool: `true`/`false`, 0/1, or their spellings as strings.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_f64() {
                Some(0.0) => Some(false),
                Some(1.0) => Some(true),
                _ => None,
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{name}: value is not a valid boolean")))
    }

    /// A string (a number given for it is taken as its text, as pydantic v1 does).
    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        Ok(self.text(name)?.map(Cow::into_owned))
    }

    /// [`string`](Self::string), borrowed from the body when it is a JSON string (a 7 MB
    /// prompt is checked, not copied).
    pub fn text(&self, name: &str) -> Result<Option<Cow<'_, str>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(Cow::Borrowed(s))),
            Some(Value::Number(n)) => Ok(Some(Cow::Owned(n.to_string()))),
            Some(_) => Err(ApiError::invalid(format!(
                "{name}: value is not a valid string"
            ))),
        }
    }

    /// The raw value, `None` for null.
    pub fn raw(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_leniency() {
        let body = json!({"steps": "20", "cfg_scale": 5, "seed": null, "unknown": 1, "tiling": 0})
            .as_object()
            .cloned()
            .unwrap();
        let f = Fields::of(Kind::Txt2img, &body);
        assert_eq!(f.int("steps").unwrap(), Some(20));
        assert_eq!(f.float("cfg_scale").unwrap(), Some(5.0));
        assert_eq!(f.int("seed").unwrap(), Some(-1));
        assert_eq!(f.bool("tiling").unwrap(), Some(false));
        assert_eq!(f.string("sampler_index").unwrap().as_deref(), Some("Euler"));
        assert!(!f.values.contains_key("unknown"));
        assert!(!f.values.contains_key("init_images"));
        let keys: Vec<&String> = f.values.keys().collect();
        assert!(keys.len() > 40);
        let i = Fields::of(Kind::Img2img, &Map::new());
        assert_eq!(i.float("denoising_strength").unwrap(), Some(0.75));
        let bad = json!({"steps": "many"}).as_object().cloned().unwrap();
        let e = Fields::of(Kind::Txt2img, &bad).int("steps").unwrap_err();
        assert_eq!(e.detail, "steps: value is not a valid integer");
    }
}
