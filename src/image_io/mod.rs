//! Images in and out: reading an init image and fitting it to the target size, turning decoded
//! tensors into 8-bit RGB files (PNG, JPEG, WebP by extension) with the generation's metadata
//! (PNG text chunks, see [`metadata`]; EXIF in JPEG and WebP, see [`exif`]).

pub mod exif;
pub mod metadata;

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::{self, FilterType};
use image::{ExtendedColorType, ImageEncoder, RgbImage};

pub use metadata::{parameters, ImageMetadata};

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

/// Writes `image` in the format `path`'s extension names, with `metadata` where A1111 puts it:
/// PNG text chunks (`parameters` and our JSON), or for JPEG and WebP the `parameters` text as
/// EXIF `UserComment`. JPEG at quality 75, WebP lossless (what the `image` crate writes).
pub fn save(
    image: &RgbImage,
    path: &Path,
    metadata: Option<&ImageMetadata>,
) -> Result<(), ImageError> {
    let format = OutputFormat::of(path)?;
    let write_error = |reason: String| ImageError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::create(path).map_err(|e| write_error(e.to_string()))?;
    let mut writer = std::io::BufWriter::new(file);
    let exif = || metadata.map(|m| exif::user_comment_exif(&m.parameters));
    match format {
        OutputFormat::Png => {
            metadata::write_png(image, &mut writer, metadata).map_err(|e| e.to_string())
        }
        OutputFormat::Jpeg => encode(JpegEncoder::new(&mut writer), image, exif()),
        OutputFormat::WebP => encode(WebPEncoder::new_lossless(&mut writer), image, exif()),
    }
    // flushed here, not on drop, so that a full disk is an error and not a silent truncation
    .and_then(|()| writer.flush().map_err(|e| e.to_string()))
    .map_err(write_error)
}

/// The image formats [`save`] writes, by the path's extension (any case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Png,
    Jpeg,
    WebP,
}

impl OutputFormat {
    /// The format `path` names, or [`ImageError::Format`]: checked before a run so that an
    /// unwritable name fails before the work, not after.
    pub fn of(path: &Path) -> Result<Self, ImageError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("png") => Ok(OutputFormat::Png),
            Some("jpg" | "jpeg") => Ok(OutputFormat::Jpeg),
            Some("webp") => Ok(OutputFormat::WebP),
            _ => Err(ImageError::Format {
                path: path.to_path_buf(),
            }),
        }
    }
}

fn encode(
    mut encoder: impl ImageEncoder,
    image: &RgbImage,
    exif: Option<Vec<u8>>,
) -> Result<(), String> {
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif).map_err(|e| e.to_string())?;
    }
    let (w, h) = image.dimensions();
    encoder
        .write_image(image.as_raw(), w, h, ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageDecoder;

    /// The EXIF block a JPEG or WebP file carries, read with the `image` crate's decoders.
    fn exif_of(path: &Path) -> Option<Vec<u8>> {
        let reader = std::io::BufReader::new(std::fs::File::open(path).expect("open"));
        let mut decoder: Box<dyn ImageDecoder> = match path.extension().and_then(|e| e.to_str()) {
            Some("webp") => Box::new(image::codecs::webp::WebPDecoder::new(reader).expect("webp")),
            _ => Box::new(image::codecs::jpeg::JpegDecoder::new(reader).expect("jpeg")),
        };
        decoder.exif_metadata().expect("reads")
    }

    #[test]
    fn jpeg_and_webp_carry_the_infotext_as_exif_user_comment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = RgbImage::from_fn(16, 8, |x, y| image::Rgb([x as u8 * 16, y as u8 * 32, 7]));
        let metadata = ImageMetadata {
            parameters: "1girl, café\nNegative prompt: bad\nSteps: 20, Seed: 1".into(),
            json: "{}".into(),
        };
        for name in ["a.jpg", "a.jpeg", "a.webp"] {
            let path = dir.path().join(name);
            save(&image, &path, Some(&metadata)).expect("saves");
            let exif = exif_of(&path).expect("has EXIF");
            assert_eq!(
                exif::read_user_comment(&exif).as_deref(),
                Some(metadata.parameters.as_str()),
                "{name}"
            );
            let back = image::open(&path).expect("decodes").to_rgb8();
            assert_eq!(back.dimensions(), (16, 8));
            if name.ends_with("webp") {
                assert_eq!(back, image, "lossless");
            }
            save(&image, &path, None).expect("saves");
            assert_eq!(exif_of(&path), None, "{name} without metadata");
        }
    }

    /// A write that fails when the buffer is flushed (a full disk) is an error, not a truncated
    /// file reported as written.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
        for name in ["full.png", "full.jpg", "full.webp"] {
            let path = dir.path().join(name);
            std::os::unix::fs::symlink("/dev/full", &path).expect("symlink");
            let err = save(&image, &path, None).expect_err("no space");
            assert!(matches!(err, ImageError::Write { .. }), "{name}: {err}");
        }
    }
}
