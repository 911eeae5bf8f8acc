//! The worker's Extras jobs: each uploaded image decoded in its turn, upscaled as A1111's
//! Extras does ([`ExtrasUpscale`]), and encoded as a PNG that keeps its input's PNG text and
//! adds the `postprocessing` infotext, as A1111's `run_postprocessing` does
//! (<https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/postprocessing.py>).

use std::path::PathBuf;
use std::sync::Arc;

use image::RgbImage;

use super::jobs::{ExtrasWork, Failure, Job, Upscaled};
use super::worker::classify;
use crate::device::Gpu;
use crate::image_io::{self, metadata};
use crate::pipeline::extras::ExtrasUpscale;
use crate::pipeline::hires::{Method, ModelUpscaler, UpscalerChoice};
use crate::pipeline::upscale::{builtin_upscale_by, upscale_by};
use crate::pipeline::Error;
use crate::upscaler::{TileMode, Upscaler, UpscalerError};
use crate::weights::WeightDtype;

/// The model upscaler the last Extras job used and its file, kept for the next one.
pub type WarmUpscaler = Option<(PathBuf, Upscaler)>;

/// Runs `work`'s images in order (an interrupt ends it with those done); `warm` holds the model
/// upscaler between jobs.
pub fn run_extras(
    gpu: &Gpu,
    dtype: WeightDtype,
    warm: &mut WarmUpscaler,
    job: &Job,
    work: &ExtrasWork,
) -> Result<Upscaled, Failure> {
    let mut done = Upscaled {
        images: Vec::new(),
        infotext: String::new(),
    };
    for (i, bytes) in work.images.iter().enumerate() {
        if job.cancel.is_cancelled() {
            break;
        }
        job.update(|s| s.progress.iteration = i);
        let image = image_io::decode_upload(bytes).map_err(|e| Failure {
            status: 422,
            message: format!("image {i}: {e}"),
        })?;
        let mut upscale = |choice: &UpscalerChoice, image: &RgbImage, scale: f64| {
            upscale_with(gpu, dtype, warm, choice, image, scale)
        };
        let out = ExtrasUpscale::run(&work.upscale, &image, &mut upscale)
            .map_err(|e| classify(Error::Upscaler(e)))?;
        done.infotext = metadata::fields_line(&out.info);
        let png = png_of(&out.image, bytes, &done.infotext)?;
        done.images.push(Arc::new(png));
    }
    Ok(done)
}

/// One upscaler by `scale` as A1111's `Upscaler.upscale` runs it.
fn upscale_with(
    gpu: &Gpu,
    dtype: WeightDtype,
    warm: &mut WarmUpscaler,
    choice: &UpscalerChoice,
    image: &RgbImage,
    scale: f64,
) -> Result<RgbImage, UpscalerError> {
    match choice.method() {
        Method::Model(model) => upscale_by(
            load(gpu, dtype, warm, model)?,
            image,
            scale,
            TileMode::default(),
            gpu,
        ),
        Method::Pixel(filter) => builtin_upscale_by(Some(filter), image, scale),
        Method::Latent(_) => Err(UpscalerError::LatentOnly {
            name: choice.a1111_name().to_string(),
        }),
    }
}

/// The model in `warm`, loading it first when another (or none) is there.
fn load<'a>(
    gpu: &Gpu,
    dtype: WeightDtype,
    warm: &'a mut WarmUpscaler,
    model: &ModelUpscaler,
) -> Result<&'a Upscaler, UpscalerError> {
    if warm.as_ref().is_none_or(|(path, _)| *path != model.path) {
        *warm = None; // the previous one goes before the next loads
        *warm = Some((model.path.clone(), Upscaler::load(&model.path, gpu, dtype)?));
    }
    Ok(&warm.as_ref().expect("just loaded").1)
}

/// The PNG A1111 returns: the input's own PNG text chunks (its `parameters` last), then
/// `postprocessing`.
fn png_of(image: &RgbImage, input: &[u8], infotext: &str) -> Result<Vec<u8>, Failure> {
    let mut text = match metadata::is_png(input) {
        true => metadata::png_text(input).unwrap_or_default(),
        false => Default::default(),
    };
    text.remove("postprocessing");
    let parameters = text.remove("parameters");
    let mut chunks: Vec<(&str, &str)> =
        text.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if let Some(p) = &parameters {
        chunks.push(("parameters", p));
    }
    chunks.push(("postprocessing", infotext));
    let mut png = Vec::new();
    metadata::write_png_with_text(image, &mut png, &chunks)
        .map_err(|e| Failure::internal(format!("encoding a PNG: {e}")))?;
    Ok(png)
}
