//! Images in and out: reading an init image and fitting it to the target size, turning decoded
//! tensors into 8-bit RGB files (PNG, JPEG, WebP by extension) with the generation's metadata in
//! PNGs (see [`metadata`]).

pub mod metadata;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::{self, FilterType};
use image::RgbImage;

pub use metadata::{lora_hash, model_hash, parameters, ImageMetadata};

/// An image that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot read the image: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: cannot write the image: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path}: unsupported output format (use .png, .jpg, .jpeg or .webp)")]
    Format { path: PathBuf },
    #[error("reading the image from the device: {0}")]
    Device(String),
}

/// Reads an image file (PNG, JPEG, WebP) as 8-bit RGB.
pub fn read(path: &Path) -> Result<RgbImage, ImageError> {
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| ImageError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let image = reader.decode().map_err(|e| ImageError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(image.to_rgb8())
}

/// `image` at exactly `width x height`: unchanged when it already is; otherwise scaled (Lanczos3)
/// to cover the target with its aspect ratio kept, then cropped to it around the centre.
pub fn fit(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let (w, h) = (width as u32, height as u32);
    if image.dimensions() == (w, h) {
        return image.clone();
    }
    let (iw, ih) = (f64::from(image.width()), f64::from(image.height()));
    let scale = (f64::from(w) / iw).max(f64::from(h) / ih);
    let sw = ((iw * scale).round() as u32).max(w);
    let sh = ((ih * scale).round() as u32).max(h);
    let scaled = imageops::resize(image, sw, sh, FilterType::Lanczos3);
    imageops::crop_imm(&scaled, (sw - w) / 2, (sh - h) / 2, w, h).to_image()
}

/// `[1, 3, H, W]` f32 in [-1, 1], as diffusers' image processor normalises (`x / 255 * 2 - 1`).
pub fn to_tensor(image: &RgbImage, device: &Device) -> Tensor<4> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let values: Vec<f32> = image
        .as_raw()
        .iter()
        .map(|&v| 2.0 * (f32::from(v) / 255.0) - 1.0)
        .collect();
    let hwc = Tensor::<3>::from_data(TensorData::new(values, [h, w, 3]), device);
    hwc.permute([2, 0, 1]).unsqueeze::<4>() // [1, 3, H, W]
}

/// Decoded images `[B, 3, H, W]` (about [-1, 1]) as 8-bit RGB images.
pub fn to_rgb(images: Tensor<4>) -> Result<Vec<RgbImage>, ImageError> {
    let [b, _, h, w] = images.dims();
    let pixels = images
        .clamp(-1.0, 1.0)
        .add_scalar(1.0)
        .mul_scalar(127.5)
        .round()
        .permute([0, 2, 3, 1]) // [B, H, W, 3]
        .try_into_data()
        .map_err(|e| ImageError::Device(format!("{e:?}")))?
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| ImageError::Device(format!("{e:?}")))?;
    let per_image = h * w * 3;
    Ok(pixels
        .chunks_exact(per_image)
        .take(b)
        .map(|chunk| {
            let rgb = chunk.iter().map(|&v| v as u8).collect();
            RgbImage::from_raw(w as u32, h as u32, rgb).expect("h * w * 3 values")
        })
        .collect())
}

/// Writes `image` in the format `path`'s extension names; PNGs carry `metadata` as text
/// chunks (other formats are written without it).
pub fn save(
    image: &RgbImage,
    path: &Path,
    metadata: Option<&ImageMetadata>,
) -> Result<(), ImageError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let write_error = |reason: String| ImageError::Write {
        path: path.to_path_buf(),
        reason,
    };
    match ext.as_deref() {
        Some("png") => {
            let file = std::fs::File::create(path).map_err(|e| write_error(e.to_string()))?;
            metadata::write_png(image, std::io::BufWriter::new(file), metadata)
                .map_err(|e| write_error(e.to_string()))
        }
        Some("jpg" | "jpeg" | "webp") => image.save(path).map_err(|e| write_error(e.to_string())),
        _ => Err(ImageError::Format {
            path: path.to_path_buf(),
        }),
    }
}

/// `out.png` for item 0, `out-1.png` for item 1, ...
pub fn numbered(path: &Path, i: usize) -> PathBuf {
    if i == 0 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{i}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{i}"),
    };
    path.with_file_name(name)
}
