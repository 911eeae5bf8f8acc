//! Images in and out: reading an init image and fitting it to the target size, turning decoded
//! tensors into 8-bit RGB files (PNG, JPEG, WebP by extension) with the generation's metadata
//! (PNG text chunks, see [`metadata`]; EXIF in JPEG and WebP, see [`exif`]).

pub mod exif;
pub mod fill;
pub mod mask;
pub mod metadata;
pub mod resample;

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::{self, FilterType};
use image::{
    DynamicImage, ExtendedColorType, GrayImage, ImageBuffer, ImageEncoder, Pixel, RgbImage,
};

pub use metadata::{parameters, ImageMetadata};

use crate::files;

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

/// The most pixels an init image file may have (8192 x 8192, or any shape of that area).
pub const MAX_INIT_PIXELS: u64 = 8192 * 8192;
/// The most pixels an image a client uploads may have (4096 x 4096, or any shape of that area):
/// a server decodes what any client sends, so each decode stays near 120 MB.
pub const MAX_UPLOAD_PIXELS: u64 = 4096 * 4096;
/// The longest side of an init image.
pub const MAX_INIT_SIDE: u32 = 32768;

/// Reads an image file (PNG, JPEG, WebP) as 8-bit RGB, if it is a regular file and its size
/// is within [`MAX_INIT_PIXELS`] and [`MAX_INIT_SIDE`]: the size is read from the header, and
/// the decoder runs under those limits, so a huge or lying file costs a message, not memory.
pub fn read(path: &Path) -> Result<RgbImage, ImageError> {
    read_any(path).map(DynamicImage::into_rgb8) // no copy when the file is RGB already
}

/// An inpainting mask file, read as [`read`] reads an init image, as A1111 reads a mask
/// ([`mask::binary_mask`]: the alpha where it has some, else the luminance; white repaints).
pub fn read_mask(path: &Path) -> Result<GrayImage, ImageError> {
    read_any(path).map(mask::binary_mask)
}

/// [`read`] before the conversion to RGB.
fn read_any(path: &Path) -> Result<DynamicImage, ImageError> {
    decode_limited(MAX_INIT_PIXELS, || {
        let file = files::open_regular(path).map_err(|e| e.to_string())?;
        Ok(BufReader::new(file))
    })
    .map_err(|reason| ImageError::Read {
        path: path.to_path_buf(),
        reason,
    })
}

/// [`read`] for an image a client uploads, under [`MAX_UPLOAD_PIXELS`]; the error is the
/// reason alone.
pub fn decode_upload(bytes: &[u8]) -> Result<RgbImage, String> {
    decode_limited(MAX_UPLOAD_PIXELS, || Ok(std::io::Cursor::new(bytes))).map(|i| i.into_rgb8())
}

/// [`read_mask`] for a mask a client uploads, under [`MAX_UPLOAD_PIXELS`].
pub fn decode_upload_mask(bytes: &[u8]) -> Result<GrayImage, String> {
    decode_limited(MAX_UPLOAD_PIXELS, || Ok(std::io::Cursor::new(bytes))).map(mask::binary_mask)
}

/// The size an uploaded image's header gives, checked as [`decode_upload`] checks it, without
/// decoding its pixels.
pub fn upload_size(bytes: &[u8]) -> Result<(u32, u32), String> {
    checked_size(MAX_UPLOAD_PIXELS, &|| Ok(std::io::Cursor::new(bytes)))
}

/// Decodes what `open` gives (opened twice: once for the header's size, once for the pixels)
/// when the header says at most `max_pixels`, with the decoder's allocations bounded to match.
fn decode_limited<R: std::io::BufRead + std::io::Seek>(
    max_pixels: u64,
    open: impl Fn() -> Result<R, String>,
) -> Result<DynamicImage, String> {
    checked_size(max_pixels, &open)?;
    limited_reader(max_pixels, &open)?
        .decode()
        .map_err(|e| e.to_string())
}

/// The header's size of what `open` gives, refused past `max_pixels` or [`MAX_INIT_SIDE`].
fn checked_size<R: std::io::BufRead + std::io::Seek>(
    max_pixels: u64,
    open: &dyn Fn() -> Result<R, String>,
) -> Result<(u32, u32), String> {
    let (w, h) = limited_reader(max_pixels, open)?
        .into_dimensions()
        .map_err(|e| e.to_string())?;
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(format!(
            "{w}x{h} is {} pixels, more than the {max_pixels} an init image may have; \
             scale it down first",
            u64::from(w) * u64::from(h)
        ));
    }
    Ok((w, h))
}

/// A reader of what `open` gives, its format guessed from the bytes, under the limits.
fn limited_reader<R: std::io::BufRead + std::io::Seek>(
    max_pixels: u64,
    open: &dyn Fn() -> Result<R, String>,
) -> Result<image::ImageReader<R>, String> {
    let mut reader = image::ImageReader::new(open()?)
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_INIT_SIDE);
    limits.max_image_height = Some(MAX_INIT_SIDE);
    limits.max_alloc = Some(max_pixels * 8);
    reader.limits(limits);
    Ok(reader)
}

/// Pillow's `image.crop((x, y, x + width, y + height))`: black where it reaches past the image
/// (also `Image.new("RGB", ...)` with `image` pasted at `(-x, -y)`).
pub fn pil_crop(image: &RgbImage, x: i64, y: i64, width: u32, height: u32) -> RgbImage {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    RgbImage::from_fn(width, height, |i, j| {
        let (sx, sy) = (x + i64::from(i), y + i64::from(j));
        match sx >= 0 && sy >= 0 && sx < w && sy < h {
            true => *image.get_pixel(sx as u32, sy as u32),
            false => image::Rgb([0, 0, 0]),
        }
    })
}

/// How an image (an init image, its mask) of another size is brought to a target size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fit {
    /// Scaled to cover it, the centre cut out (A1111's resize mode 1, "crop and resize").
    #[default]
    Cover,
    /// Scaled to it, the aspect ratio not kept (A1111's resize mode 0, "just resize").
    Stretch,
}

impl Fit {
    /// `image` at exactly `width x height` (Lanczos3), unchanged when it already is. `Cover`
    /// cuts the centred part with the target's aspect ratio out first (in the image's own
    /// pixels), so memory stays at the source plus the target whatever their shapes.
    pub fn apply<P: Pixel<Subpixel = u8> + 'static>(
        self,
        image: &ImageBuffer<P, Vec<u8>>,
        width: usize,
        height: usize,
    ) -> ImageBuffer<P, Vec<u8>> {
        let (w, h) = (width as u32, height as u32);
        if image.dimensions() == (w, h) {
            return image.clone();
        }
        if self == Fit::Stretch {
            return imageops::resize(image, w, h, FilterType::Lanczos3);
        }
        let (iw, ih) = image.dimensions();
        // the scale that makes the image cover the target, source pixels -> target pixels
        let scale = (f64::from(w) / f64::from(iw)).max(f64::from(h) / f64::from(ih));
        let cw = ((f64::from(w) / scale).round() as u32).clamp(1, iw);
        let ch = ((f64::from(h) / scale).round() as u32).clamp(1, ih);
        let crop = imageops::crop_imm(image, (iw - cw) / 2, (ih - ch) / 2, cw, ch);
        imageops::resize(&*crop, w, h, FilterType::Lanczos3) // from the view: no copy of the crop
    }
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

/// Decoded images `[B, 3, H, W]` (about [-1, 1]) as 8-bit RGB images, rounded (diffusers).
pub fn to_rgb(images: Tensor<4>) -> Result<Vec<RgbImage>, ImageError> {
    rgb_of(
        images
            .clamp(-1.0, 1.0)
            .add_scalar(1.0)
            .mul_scalar(127.5)
            .round(),
    )
}

/// [`to_rgb`] as A1111 turns decoded images into pictures between its passes:
/// `255 * clamp((x + 1) / 2, 0, 1)`, truncated (`astype(np.uint8)`).
pub fn to_rgb_truncated(images: Tensor<4>) -> Result<Vec<RgbImage>, ImageError> {
    rgb_of(
        images
            .add_scalar(1.0)
            .div_scalar(2.0)
            .clamp(0.0, 1.0)
            .mul_scalar(255.0)
            .floor(),
    )
}

/// Whole values in [0, 255] `[B, 3, H, W]` as 8-bit RGB images.
fn rgb_of(images: Tensor<4>) -> Result<Vec<RgbImage>, ImageError> {
    let [b, _, h, w] = images.dims();
    let pixels = images
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
    // JPEG's EXIF segment holds 64 KB: a longer infotext is cut there (PNG and WebP keep it all)
    let exif = |max: usize| {
        metadata.map(|m| exif::user_comment_exif(&exif::fit_comment(&m.parameters, max)))
    };
    match format {
        OutputFormat::Png => {
            metadata::write_png(image, &mut writer, metadata).map_err(|e| e.to_string())
        }
        OutputFormat::Jpeg => {
            let exif = exif(exif::JPEG_MAX_EXIF_BYTES);
            encode(JpegEncoder::new(&mut writer), image, exif)
        }
        OutputFormat::WebP => encode(
            WebPEncoder::new_lossless(&mut writer),
            image,
            exif(usize::MAX),
        ),
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

    /// A 40,000-character prompt: PNG and WebP keep the infotext whole; JPEG, whose EXIF segment
    /// holds 64 KB, gets the prompt cut with `…` and the settings line whole, in a valid file.
    #[test]
    fn long_infotexts_fit_the_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]));
        let settings = "Steps: 20, Sampler: Euler, Seed: 1";
        let metadata = ImageMetadata {
            parameters: format!(
                "{}\nNegative prompt: bad\n{settings}",
                "猫 girl, ".repeat(5000)
            ),
            json: "{}".into(),
        };
        for name in ["long.jpg", "long.webp", "long.png"] {
            let path = dir.path().join(name);
            save(&image, &path, Some(&metadata)).expect("saves");
            let decoded = image::open(&path).expect("decodes");
            assert_eq!((decoded.width(), decoded.height()), (8, 8));
            let text = match name {
                "long.png" => metadata::read_png_text(&path).expect("chunks")["parameters"].clone(),
                _ => exif::read_user_comment(&exif_of(&path).expect("EXIF")).expect("comment"),
            };
            if name == "long.jpg" {
                assert!(
                    text.ends_with(&format!("…\n{settings}")),
                    "{}",
                    &text[text.len() - 80..]
                );
                assert!(text.encode_utf16().count() * 2 + 52 <= exif::JPEG_MAX_EXIF_BYTES);
                assert!(metadata
                    .parameters
                    .starts_with(text.split('…').next().expect("head")));
            } else {
                assert_eq!(text, metadata.parameters, "{name}");
            }
        }
    }

    /// Fitting cuts the source first: a 1x8000 strip fitted to 1024x1024 scales one pixel, not an
    /// 8-million-pixel-tall intermediate; the centre is kept.
    #[test]
    fn fit_crops_in_source_pixels_before_scaling() {
        let strip = RgbImage::from_fn(1, 8000, |_, y| image::Rgb([(y / 32) as u8, 0, 0]));
        let fitted = Fit::Cover.apply(&strip, 1024, 1024);
        assert_eq!(fitted.dimensions(), (1024, 1024));
        assert!(
            fitted.pixels().all(|p| p[0] == 124 || p[0] == 125),
            "the centre row"
        );
        // a wide image keeps its middle: left third red, middle green, right third blue
        let wide = RgbImage::from_fn(300, 100, |x, _| match x / 100 {
            0 => image::Rgb([255, 0, 0]),
            1 => image::Rgb([0, 255, 0]),
            _ => image::Rgb([0, 0, 255]),
        });
        let square = Fit::Cover.apply(&wide, 64, 64);
        assert_eq!(square.get_pixel(32, 32).0, [0, 255, 0]);
        assert_eq!(
            Fit::Cover.apply(&wide, 300, 100),
            wide,
            "same size: unchanged"
        );
    }

    /// Only regular files are read, and an image claiming more pixels than the budget is refused
    /// from its header, before any pixel is decoded.
    #[test]
    fn init_images_are_read_within_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read(dir.path()).expect_err("a folder");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // a 60-byte PNG that claims 81 million pixels: its IHDR, an empty IDAT, IEND
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            [
                &(data.len() as u32).to_be_bytes()[..],
                kind,
                data,
                &crc.sum().to_be_bytes(),
            ]
            .concat()
        };
        let mut ihdr = [9000u32.to_be_bytes(), 9000u32.to_be_bytes()].concat();
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
        let huge = dir.path().join("huge.png");
        let bytes = [
            &b"\x89PNG\r\n\x1a\n"[..],
            &chunk(b"IHDR", &ihdr),
            &chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0, 0, 0, 0, 1]),
            &chunk(b"IEND", &[]),
        ]
        .concat();
        std::fs::write(&huge, bytes).expect("write");
        let err = read(&huge).expect_err("over the budget");
        assert!(err.to_string().contains("9000x9000"), "{err}");
        let fine = dir.path().join("fine.png");
        RgbImage::from_pixel(4, 3, image::Rgb([1, 2, 3]))
            .save(&fine)
            .expect("save");
        assert_eq!(read(&fine).expect("reads").dimensions(), (4, 3));
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
