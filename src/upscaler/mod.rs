//! Model upscalers: the ESRGAN family users download for hires fix and A1111's Extras
//! (4x-UltraSharp, R-ESRGAN 4x+ Anime6B, NMKD's models: RRDBNets in the old ESRGAN or the
//! BasicSR layout, and Real-ESRGAN's compact network), read from `.safetensors` or `.pth`
//! (through the restricted pickle reader: no code in a file is run), detected from key names
//! and shapes ([`layout`]), and run in tiles the adapter's buffers hold ([`tiles`]) on 8-bit
//! RGB images. What A1111 does around one pass (repeated passes, the Lanczos resize to the
//! target) is [`crate::pipeline::upscale`]'s.

mod a1111_tiles;
mod compact;
mod error;
pub mod layout;
mod rrdb;
mod tiles;

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Tensor, TensorData};
use image::RgbImage;

pub use a1111_tiles::{A1111_OVERLAP, A1111_TILE};
pub use error::UpscalerError;
pub use layout::{Arch, UpscalerInfo};
pub use tiles::{TileMode, Tiling, OVERLAP};

use crate::device::Gpu;
use crate::weights::{self, SafetensorsFile, WeightDtype};
use compact::CompactNet;
use rrdb::RrdbNet;

/// The file extensions upscaler files have.
pub const EXTENSIONS: &[&str] = &["safetensors", "pth"];
/// The largest upscaled side (the engine's largest image side).
pub const MAX_OUTPUT_SIDE: u64 = 8192;
/// The smallest input side: a pixel-unshuffle by 4 reflects up to 3 rows, which needs 4.
pub const MIN_INPUT_SIDE: u32 = 4;

/// An upscaler file opened once (a `.pth` read into memory, a `.safetensors` mapped) and
/// recognised: what it holds is known before a device is touched.
pub struct UpscalerFile {
    path: PathBuf,
    file: SafetensorsFile,
    pub info: UpscalerInfo,
}

impl UpscalerFile {
    /// Opens the upscaler file at `path` and tells what network it holds.
    pub fn open(path: &Path) -> Result<Self, UpscalerError> {
        let file = weights::open_any(path)?;
        let info = layout::detect(&file)?.info;
        Ok(UpscalerFile {
            path: path.to_path_buf(),
            file,
            info,
        })
    }
}

/// What the upscaler file at `path` holds, without loading it.
pub fn inspect(path: &Path) -> Result<UpscalerInfo, UpscalerError> {
    Ok(UpscalerFile::open(path)?.info)
}

enum Net {
    Rrdb(Box<RrdbNet>),
    Compact(CompactNet),
}

/// A loaded upscaler network.
pub struct Upscaler {
    net: Net,
    pub info: UpscalerInfo,
    dtype: DType,
}

impl Upscaler {
    /// Loads the upscaler at `path` on `gpu` with weights in `dtype` (compute follows).
    pub fn load(path: &Path, gpu: &Gpu, dtype: WeightDtype) -> Result<Self, UpscalerError> {
        Self::build(&UpscalerFile::open(path)?, gpu, dtype)
    }

    /// Builds the network an opened upscaler file holds on `gpu` with weights in `dtype` (f16,
    /// else f32: the networks compute in their weights' dtype).
    pub fn build(
        opened: &UpscalerFile,
        gpu: &Gpu,
        dtype: WeightDtype,
    ) -> Result<Self, UpscalerError> {
        let dtype = match dtype {
            WeightDtype::F16 => WeightDtype::F16,
            _ => WeightDtype::F32,
        };
        let layout = layout::detect(&opened.file)?;
        let info = layout.info;
        if info.in_channels != 3 || info.out_channels != 3 {
            return Err(UpscalerError::Channels {
                path: opened.path.clone(),
                inputs: info.in_channels,
                outputs: info.out_channels,
            });
        }
        weights::check_fits(&layout, dtype, &gpu.adapter)?;
        let net = weights::build(&layout, gpu, dtype, &mut |_, _, _| {}, |w| {
            Ok(match info.arch {
                Arch::Rrdb {
                    blocks,
                    stages,
                    unshuffle,
                    ..
                } => Net::Rrdb(Box::new(RrdbNet::load(w, blocks, stages, unshuffle)?)),
                Arch::Compact { convs, .. } => {
                    Net::Compact(CompactNet::load(w, convs, info.scale)?)
                }
            })
        })?;
        let dtype = match dtype {
            WeightDtype::F16 => DType::F16,
            _ => DType::F32,
        };
        Ok(Upscaler { net, info, dtype })
    }

    /// The network on `[B, 3, H, W]` RGB in [0, 1]: `[B, 3, H*scale, W*scale]`, unclamped, in
    /// f32.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = x.cast(self.dtype);
        let y = match &self.net {
            Net::Rrdb(net) => net.forward(x),
            Net::Compact(net) => net.forward(x),
        };
        y.cast(DType::F32)
    }

    /// Bytes of the largest activation per input pixel, in the network's dtype: the 3x3
    /// convolutions' unfolded input at the output size (RRDBNet's last stages), or at the
    /// input size with a dense block's widest concatenation (and the compact network's).
    pub fn peak_bytes_per_pixel(&self) -> u64 {
        let element = if self.dtype == DType::F16 { 2 } else { 4 };
        let per_pixel = match self.info.arch {
            Arch::Rrdb { width, stages, .. } => {
                let hr = 9 * width * (1 << (2 * stages));
                hr.max(9 * (width + 4 * 32))
            }
            Arch::Compact { width, .. } => 9 * width.max(3 * self.info.scale.pow(2)),
        };
        per_pixel as u64 * element
    }

    /// `image` upscaled by the network's scale, in `tiling`'s tiles; rounded to 8 bits.
    pub fn upscale(
        &self,
        image: &RgbImage,
        tiling: Tiling,
        gpu: &Gpu,
    ) -> Result<RgbImage, UpscalerError> {
        self.check_size(image, MIN_INPUT_SIDE)?;
        let (w, h) = image.dimensions();
        let values: Vec<f32> = image
            .as_raw()
            .iter()
            .map(|&v| f32::from(v) / 255.0)
            .collect();
        let hwc = Tensor::<3>::from_data(
            TensorData::new(values, [h as usize, w as usize, 3]),
            &gpu.device,
        );
        let x = hwc.permute([2, 0, 1]).unsqueeze::<4>(); // [1, 3, H, W]
        tiles::run(self, x, tiling)
    }

    /// `image` upscaled by the network's scale as A1111 runs it (see [`a1111_tiles`]).
    pub fn upscale_a1111(&self, image: &RgbImage, gpu: &Gpu) -> Result<RgbImage, UpscalerError> {
        // A1111's grid has no tile at all for a side not past the overlap
        self.check_size(image, MIN_INPUT_SIDE.max(A1111_OVERLAP + 1))?;
        a1111_tiles::upscale(self, image, gpu)
    }

    /// `image` upscaled in `mode`'s tiles.
    pub fn upscale_in(
        &self,
        image: &RgbImage,
        mode: TileMode,
        gpu: &Gpu,
    ) -> Result<RgbImage, UpscalerError> {
        match mode {
            TileMode::Blended(Some(tiling)) => self.upscale(image, tiling, gpu),
            TileMode::Blended(None) => {
                let tiling = Tiling::for_buffer(self, gpu.adapter.max_tensor_bytes())?;
                self.upscale(image, tiling, gpu)
            }
            TileMode::A1111 => self.upscale_a1111(image, gpu),
        }
    }

    /// Refuses an image with a side under `min`, or whose upscale passes the largest side.
    fn check_size(&self, image: &RgbImage, min: u32) -> Result<(), UpscalerError> {
        let (w, h) = image.dimensions();
        if w < min || h < min {
            return Err(UpscalerError::TooSmall {
                width: w,
                height: h,
                min,
            });
        }
        let s = self.info.scale as u64;
        if u64::from(w) * s > MAX_OUTPUT_SIDE || u64::from(h) * s > MAX_OUTPUT_SIDE {
            return Err(UpscalerError::TooLarge {
                width: u64::from(w) * s,
                height: u64::from(h) * s,
                max: MAX_OUTPUT_SIDE,
            });
        }
        Ok(())
    }
}
