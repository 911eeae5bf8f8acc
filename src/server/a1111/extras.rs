//! A1111's Extras endpoints, `extra-single-image` and `extra-batch-images`: the body read as
//! A1111's `ExtrasBaseRequest` reads it (`modules/api/models.py`), the images' headers checked,
//! the upscale run as a job on the worker, and the answer in A1111's shape (`image` or
//! `images`, and `html_info`, the last image's infotext as `plaintext_to_html` writes it).
//! Face restoration (GFPGAN, CodeFormer) is not done: a visibility above 0 is a 422.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::convert::decode_image_bytes;
use super::fields::Fields;
use super::{converting, read_object};
use crate::image_io;
use crate::pipeline::extras::{ExtrasResize, ExtrasUpscale};
use crate::pipeline::hires::Method;
use crate::pipeline::{HiresUpscaler, UpscalerChoice};
use crate::server::backend::JobBackend;
use crate::server::error::ApiError;
use crate::server::jobs::Kind;

/// The Extras routes over any job backend.
pub fn routes<B: JobBackend>() -> Router<B> {
    Router::new()
        .route("/extra-single-image", post(single::<B>))
        .route("/extra-batch-images", post(batch::<B>))
}

/// An uploaded image's bytes and the size its header gives.
pub type Upload = (Arc<Vec<u8>>, (u32, u32));

/// An Extras body read: the upscale with its upscalers still by name, and the images (bytes as
/// uploaded, with the size their headers give).
#[derive(Debug)]
pub struct ExtrasAsk {
    pub upscaler_1: String,
    pub upscaler_2: String,
    pub visibility: f64,
    pub resize: ExtrasResize,
    pub images: Vec<Upload>,
}

impl ExtrasAsk {
    /// The upscale, its upscalers found by `resolve`, checked against each image's size. As in
    /// A1111, upscaler 1 `None` is no upscale; upscaler 2 is named even when its visibility
    /// is 0, and run only above it.
    pub fn upscale(
        &self,
        resolve: impl Fn(&str) -> Result<UpscalerChoice, ApiError>,
    ) -> Result<ExtrasUpscale, ApiError> {
        let pixel = |name: &str| -> Result<Option<UpscalerChoice>, ApiError> {
            match resolve(name)? {
                UpscalerChoice::Builtin(HiresUpscaler::None) => Ok(None),
                choice if matches!(choice.method(), Method::Latent(_)) => {
                    Err(ApiError::invalid(format!(
                        "`{name}` upscales latents; Extras needs a pixel or model upscaler \
                         (GET /sdapi/v1/upscalers lists them)"
                    )))
                }
                choice => Ok(Some(choice)),
            }
        };
        let upscaler = pixel(&self.upscaler_1)?;
        let second = match upscaler.is_some() {
            true => pixel(&self.upscaler_2)?.filter(|_| self.visibility > 0.0),
            false => None,
        };
        let upscale = ExtrasUpscale {
            upscaler,
            second: second.map(|s| (s, self.visibility)),
            resize: self.resize,
        };
        for (i, (_, (w, h))) in self.images.iter().enumerate() {
            upscale
                .check(*w, *h)
                .map_err(|e| ApiError::invalid(format!("image {i}: {e}")))?;
        }
        Ok(upscale)
    }
}

async fn single<B: JobBackend>(
    State(backend): State<B>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (mut images, html_info) = upscaled(&backend, body, false).await?;
    let image = images.pop().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "interrupted before the image was upscaled",
        )
    })?;
    Ok(Json(json!({"html_info": html_info, "image": image})))
}

async fn batch<B: JobBackend>(
    State(backend): State<B>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (images, html_info) = upscaled(&backend, body, true).await?;
    Ok(Json(json!({"html_info": html_info, "images": images})))
}

/// Either endpoint's body run: the PNGs in base64 and `html_info`.
async fn upscaled<B: JobBackend>(
    backend: &B,
    body: Bytes,
    batch: bool,
) -> Result<(Vec<String>, String), ApiError> {
    let map = read_object(body).await?;
    let ask = converting(move || read(&map, batch)).await?;
    let done = backend.extras(ask).await?;
    let images = done
        .images
        .iter()
        .map(|png| base64::engine::general_purpose::STANDARD.encode(png.as_slice()))
        .collect();
    Ok((images, html_info(&done.infotext)))
}

/// A body of either endpoint (`batch`: `imageList`, else `image`), with pydantic's bounds.
fn read(map: &Map<String, Value>, batch: bool) -> Result<ExtrasAsk, ApiError> {
    let f = Fields::of(Kind::Extras, map);
    let within = |name: &str, lo: f64, hi: f64| -> Result<f64, ApiError> {
        let v = f.float(name)?.unwrap_or(0.0);
        match (lo..=hi).contains(&v) {
            true => Ok(v),
            false => Err(ApiError::invalid(format!(
                "{name}: {v} is not in [{lo}, {hi}]"
            ))),
        }
    };
    for name in ["gfpgan_visibility", "codeformer_visibility"] {
        if within(name, 0.0, 1.0)? > 0.0 {
            return Err(ApiError::invalid(format!(
                "{name}: face restoration (GFPGAN, CodeFormer) is not done by this engine; send 0"
            )));
        }
    }
    within("codeformer_weight", 0.0, 1.0)?;
    let side = |name: &str| -> Result<u32, ApiError> {
        let v = f.int(name)?.unwrap_or(0);
        u32::try_from(v)
            .ok()
            .filter(|&v| v >= 1)
            .ok_or_else(|| ApiError::invalid(format!("{name}: {v} must be 1 or more")))
    };
    let resize = match f.int("resize_mode")? {
        Some(0) => ExtrasResize::By(within("upscaling_resize", 1.0, 8.0)?),
        Some(1) => ExtrasResize::To {
            width: side("upscaling_resize_w")?,
            height: side("upscaling_resize_h")?,
            crop: f.bool("upscaling_crop")?.unwrap_or(true),
        },
        other => {
            return Err(ApiError::invalid(format!(
                "resize_mode: {other:?} is not 0 (scale by) or 1 (scale to)"
            )))
        }
    };
    let name = |field: &str| -> Result<String, ApiError> {
        Ok(f.string(field)?.unwrap_or_else(|| "None".into()))
    };
    Ok(ExtrasAsk {
        upscaler_1: name("upscaler_1")?,
        upscaler_2: name("upscaler_2")?,
        visibility: within("extras_upscaler_2_visibility", 0.0, 1.0)?,
        resize,
        images: images(&f, batch)?,
    })
}

/// The uploaded images: `image` (one), or `imageList`'s `data` (`[{data, name}]`).
fn images(f: &Fields, batch: bool) -> Result<Vec<Upload>, ApiError> {
    let texts: Vec<&str> = match batch {
        false => match f.raw("image").and_then(Value::as_str) {
            Some(text) if !text.trim().is_empty() => vec![text],
            _ => return Err(ApiError::invalid("image: an image (base64) is needed")),
        },
        true => {
            let Some(Value::Array(list)) = f.raw("imageList") else {
                return Err(ApiError::invalid(
                    "imageList: a list of {data, name} is needed",
                ));
            };
            list.iter()
                .enumerate()
                .map(|(i, item)| {
                    item.get("data").and_then(Value::as_str).ok_or_else(|| {
                        ApiError::invalid(format!("imageList {i}: `data` (base64) is needed"))
                    })
                })
                .collect::<Result<_, _>>()?
        }
    };
    texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let bad = |e: String| ApiError::invalid(format!("image {i}: {e}"));
            let bytes = decode_image_bytes(text).map_err(bad)?;
            let size = image_io::upload_size(&bytes)
                .map_err(|e| bad(format!("Invalid encoded image ({e})")))?;
            Ok((Arc::new(bytes), size))
        })
        .collect()
}

/// A1111's `plaintext_to_html`: the text HTML-escaped (Python's `html.escape`), lines joined by
/// `<br>`, in a `<p>`.
fn html_info(text: &str) -> String {
    let escape = |line: &str| {
        line.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;")
    };
    let lines: Vec<String> = text.split('\n').map(escape).collect();
    format!("<p>{}</p>", lines.join("<br>\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_b64(w: u32, h: u32) -> String {
        let mut png = Vec::new();
        image_io::metadata::write_png_with_text(&image::RgbImage::new(w, h), &mut png, &[])
            .expect("encodes");
        base64::engine::general_purpose::STANDARD.encode(png)
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn bodies_read_as_a1111_reads_them() {
        let ask = read(&body(json!({"image": png_b64(8, 6)})), false).expect("reads");
        assert_eq!(ask.resize, ExtrasResize::By(2.0));
        assert_eq!(
            (ask.upscaler_1.as_str(), ask.upscaler_2.as_str()),
            ("None", "None")
        );
        assert_eq!(ask.images[0].1, (8, 6));
        let to = json!({"imageList": [{"data": png_b64(4, 4), "name": "a.png"}],
            "resize_mode": "1", "upscaling_resize_w": 64, "upscaling_resize_h": 32,
            "upscaling_crop": false, "upscaler_1": "Lanczos"});
        let ask = read(&body(to), true).expect("reads");
        assert_eq!(
            ask.resize,
            ExtrasResize::To {
                width: 64,
                height: 32,
                crop: false
            }
        );
        for bad in [
            json!({"image": png_b64(8, 6), "upscaling_resize": 9}),
            json!({"image": png_b64(8, 6), "resize_mode": 2}),
            json!({"image": png_b64(8, 6), "gfpgan_visibility": 0.5}),
            json!({"image": png_b64(8, 6), "extras_upscaler_2_visibility": 1.5}),
            json!({"image": "bm90IGFuIGltYWdl"}),
            json!({"image": ""}),
        ] {
            assert!(read(&body(bad.clone()), false).is_err(), "{bad}");
        }
        assert!(read(&body(json!({"imageList": [{"name": "a"}]})), true).is_err());
    }

    #[test]
    fn upscalers_resolve_as_a1111_uses_them() {
        let mut ask = read(&body(json!({"image": png_b64(8, 6)})), false).expect("reads");
        let builtin = |name: &str| match name {
            "None" => Ok(HiresUpscaler::None.into()),
            "Lanczos" => Ok(HiresUpscaler::Lanczos.into()),
            "Latent" => Ok(HiresUpscaler::Latent.into()),
            other => Err(ApiError::invalid(format!("{other}: no such upscaler"))),
        };
        assert_eq!(ask.upscale(builtin).expect("none").upscaler, None);
        (ask.upscaler_1, ask.upscaler_2) = ("Lanczos".into(), "Lanczos".into());
        let upscale = ask.upscale(builtin).expect("lanczos");
        assert_eq!(upscale.second, None, "visibility 0");
        ask.upscaler_2 = "Missing".into();
        assert!(ask.upscale(builtin).is_err(), "named even at visibility 0");
        ask.upscaler_1 = "Latent".into();
        assert!(
            ask.upscale(builtin).is_err(),
            "latents are no image upscaler"
        );
        ask.upscaler_1 = "Lanczos".into();
        ask.upscaler_2 = "None".into();
        ask.resize = ExtrasResize::By(8.0);
        ask.images[0].1 = (2048, 8);
        assert!(ask.upscale(builtin).is_err(), "16384 pixels wide");
        assert_eq!(
            html_info("a<b>, \"c\"\nd"),
            "<p>a&lt;b&gt;, &quot;c&quot;<br>\nd</p>"
        );
    }
}
