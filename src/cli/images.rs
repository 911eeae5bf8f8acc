//! Writing decoded images: VAE output in [-1, 1] to 8-bit RGB files, one per batch item, in the
//! format the path's extension names (png, jpg/jpeg, webp).

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::Tensor;

/// Saves each image of `image` (`[B, 3, H, W]`) as `output` for item 0 and `output` with `-i`
/// before the extension for item i; returns the paths written.
pub fn save(image: Tensor<4>, output: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let [b, _, h, w] = image.dims();
    let pixels = image
        .clamp(-1.0, 1.0)
        .add_scalar(1.0)
        .mul_scalar(127.5)
        .round()
        .permute([0, 2, 3, 1]) // [B, H, W, 3]
        .try_into_data()
        .map_err(|e| anyhow::anyhow!("reading the image from the device: {e:?}"))?
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading the image from the device: {e:?}"))?;
    let per_image = h * w * 3;
    let mut written = Vec::with_capacity(b);
    for i in 0..b {
        let rgb: Vec<u8> = pixels[i * per_image..(i + 1) * per_image]
            .iter()
            .map(|&v| v as u8)
            .collect();
        let path = numbered(output, i);
        image::RgbImage::from_raw(w as u32, h as u32, rgb)
            .context("image buffer")?
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
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
