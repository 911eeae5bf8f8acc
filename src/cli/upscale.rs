//! `sdxl-wgpu upscale --model FILE --input IMAGE|FOLDER [--scale S] --output IMAGE|FOLDER`: an
//! image (or every image of a folder) through a model upscaler as A1111's Extras tab runs it
//! (`pipeline::upscale`: repeated passes until the target is covered, Lanczos to sides that are
//! multiples of 8), in tiles the adapter holds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use super::values::spelled;
use super::{gpu, say};
use sdxl_wgpu::device::{Backend, Precision};
use sdxl_wgpu::image_io::{self, OutputFormat};
use sdxl_wgpu::pipeline::upscale::upscale_by;
use sdxl_wgpu::upscaler::{TileMode, Tiling, Upscaler, UpscalerFile, A1111_TILE, OVERLAP};

#[derive(Args, Debug)]
pub struct UpscaleArgs {
    /// An upscaler model: ESRGAN / Real-ESRGAN RRDBNet or Real-ESRGAN compact, `.pth` or
    /// `.safetensors`.
    #[arg(long)]
    model: PathBuf,
    /// An image (PNG, JPEG, WebP), or a folder: every image in it.
    #[arg(long)]
    input: PathBuf,
    /// The output image (.png, .jpg, .webp), or a folder for a folder's images (same names).
    #[arg(long)]
    output: PathBuf,
    /// How much larger each side gets; default: the model's scale. Sides are rounded down to
    /// multiples of 8, as A1111 does.
    #[arg(long)]
    scale: Option<f64>,
    /// Tile side in input pixels; default: the largest the adapter's buffers hold (at most 512).
    #[arg(long, conflicts_with = "a1111_tiles")]
    tile: Option<usize>,
    /// Cut tiles as A1111 does (192 pixels, 8 of overlap, BGR, 8 bits per tile, its grid
    /// paste): its images pixel for pixel, at some cost in seams and speed.
    #[arg(long)]
    a1111_tiles: bool,
    #[arg(long, value_parser = spelled::<Precision>(), default_value_t = Precision::Auto)]
    precision: Precision,
    #[arg(long, value_parser = spelled::<Backend>(), default_value_t = Backend::Auto)]
    backend: Backend,
}

pub fn run(args: UpscaleArgs) -> anyhow::Result<()> {
    let pairs = pairs(&args.input, &args.output)?;
    if let Some(scale) = args.scale {
        if !(scale > 0.0 && scale <= 16.0) {
            bail!("the scale must be in (0, 16], not {scale}");
        }
    }
    if args.tile.is_some_and(|t| !(16..=2048).contains(&t)) {
        bail!("a tile side must be in 16..=2048 pixels");
    }
    let file = UpscalerFile::open(&args.model)?; // before the device comes up
    let info = file.info;
    let gpu = gpu::open(args.backend)?;
    let dtype = gpu::weight_dtype(&gpu, args.precision);
    let model = Upscaler::build(&file, &gpu, dtype)?;
    drop(file);
    let scale = args.scale.unwrap_or(info.scale as f64);
    let tiles = match (args.a1111_tiles, args.tile) {
        (true, _) => TileMode::A1111,
        (false, Some(tile)) => TileMode::Blended(Some(Tiling {
            tile,
            overlap: OVERLAP.min(tile / 4),
        })),
        (false, None) => TileMode::Blended(Some(Tiling::for_buffer(
            &model,
            gpu.adapter.max_tensor_bytes(),
        )?)),
    };
    let tiles_said = match tiles {
        TileMode::Blended(Some(t)) => format!("{}-pixel tiles", t.tile),
        _ => format!("A1111's {A1111_TILE}-pixel tiles"),
    };
    say!(
        "{}: {}, x{}",
        args.model.display(),
        info.describe(),
        info.scale
    )?;
    for (input, output) in pairs {
        let start = Instant::now();
        let image = image_io::read(&input)?;
        let out = upscale_by(&model, &image, scale, tiles, &gpu)?;
        image_io::save(&out, &output, None)?;
        say!(
            "{} ({}x{}) -> {} ({}x{}) in {:.2} s, {}",
            input.display(),
            image.width(),
            image.height(),
            output.display(),
            out.width(),
            out.height(),
            start.elapsed().as_secs_f64(),
            tiles_said
        )?;
    }
    Ok(())
}

/// Each input image and where its result goes: one file to one file, or a folder's images
/// (sorted by name) into a folder, under the same names.
fn pairs(input: &Path, output: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    if !input.is_dir() {
        OutputFormat::of(output)?;
        return Ok(vec![(input.to_path_buf(), output.to_path_buf())]);
    }
    if output.exists() && !output.is_dir() {
        bail!(
            "{}: the input is a folder, so the output must be one too",
            output.display()
        );
    }
    let mut images: Vec<PathBuf> = std::fs::read_dir(input)
        .with_context(|| format!("{}: cannot list", input.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file() && OutputFormat::of(p).is_ok())
        .collect();
    images.sort();
    if images.is_empty() {
        bail!("{}: no PNG, JPEG or WebP images in it", input.display());
    }
    std::fs::create_dir_all(output)
        .with_context(|| format!("{}: cannot create", output.display()))?;
    Ok(images
        .into_iter()
        .map(|p| {
            let name = p.file_name().expect("a file").to_owned();
            (p, output.join(name))
        })
        .collect())
}
