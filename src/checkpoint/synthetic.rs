//! SDXL base 1.0 without its 7 GB file: the real tensor list of its single file (name, dtype,
//! shape of every tensor, `sdxl_base_1.0_single_file_keys.tsv`) gives a checkpoint known by its
//! header alone (architecture and key tables, no loading), or one whose weights are generated
//! in memory (`sdxl-wgpu bench --synthetic`: the full-size architecture's speed and memory on
//! any machine). A synthetic LoRA for it: `lora::write_synthetic_lora`.

use std::path::Path;

use memmap2::MmapMut;

use super::{Checkpoint, CheckpointError};
use crate::checkpoint::source::Source;
use crate::weights::{Dtype, Header, SafetensorsFile, TensorInfo, WeightError};

/// Every tensor of `sd_xl_base_1.0.safetensors`: `name \t dtype \t [shape]`, after a title row.
pub const SDXL_BASE_MANIFEST: &str = include_str!("sdxl_base_1.0_single_file_keys.tsv");

/// The name the manifest's checkpoints go by in messages.
const NAME: &str = "sd_xl_base_1.0.safetensors";

/// The manifest as a safetensors header, tensors laid out back to back; and the data's length.
pub fn manifest_header() -> (Header, usize) {
    let mut header = Header::default();
    let mut offset = 0;
    for line in SDXL_BASE_MANIFEST.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(dtype), Some(shape)) = (cols.get(1).and_then(|d| Dtype::parse(d)), cols.get(2))
        else {
            continue; // the table is a constant of this crate: `tests/manifest.rs` reads it whole
        };
        let shape: Vec<usize> = serde_json::from_str(shape).unwrap_or_default();
        let len = dtype.size() * shape.iter().product::<usize>();
        let info = TensorInfo {
            dtype,
            shape,
            start: offset,
            end: offset + len,
        };
        header.tensors.insert(cols[0].to_string(), info);
        offset += len;
    }
    (header, offset)
}

impl Checkpoint {
    /// SDXL base 1.0 known by its tensor list only: its architecture and key tables (loading
    /// it is an error).
    pub fn sdxl_base_manifest() -> Result<Checkpoint, CheckpointError> {
        Checkpoint::from_header(NAME, manifest_header().0)
    }

    /// SDXL base 1.0's architecture with generated weights held in memory (about 7 GB of RAM,
    /// nothing on disk; [`fill_synthetic`]'s values, the same for every run): speed and memory
    /// are the real model's, its images noise.
    pub fn sdxl_base_synthetic() -> Result<Checkpoint, CheckpointError> {
        let (header, len) = manifest_header();
        let io = |source| {
            CheckpointError::Weights(WeightError::Io {
                path: NAME.into(),
                source,
            })
        };
        let mut data = MmapMut::map_anon(len.max(1)).map_err(io)?;
        fill_synthetic(&header, &mut data);
        let data = data.make_read_only().map_err(io)?;
        let file = SafetensorsFile::in_memory(Path::new(NAME), header, data);
        Checkpoint::from_source(Source::single_file(file))
    }
}

/// Writes generated weights into `data`, the tensors' bytes at `header`'s offsets: pseudo-random
/// values uniform in +-1/sqrt(fan-in) for matrices and kernels (activations stay of order one
/// through the whole network, so f16 runs stay finite as with a trained model), +-0.1 for
/// vectors, zeros for integer tensors (`position_ids`, which the loader ignores).
pub fn fill_synthetic(header: &Header, data: &mut [u8]) {
    for info in header.tensors.values() {
        let Some(bytes) = data.get_mut(info.start..info.end) else {
            continue;
        };
        let fan_in: usize = info.shape.iter().skip(1).product::<usize>().max(1);
        let scale = if info.shape.len() >= 2 {
            1.0 / (fan_in as f32).sqrt()
        } else {
            0.1
        };
        // a multiplicative hash of the index, in [-1, 1)
        let value = |i: usize| {
            let h = (i as u32 ^ info.start as u32).wrapping_mul(2_654_435_761) >> 8;
            scale * (h as f32 / 8_388_608.0 - 1.0)
        };
        match info.dtype {
            Dtype::F16 => fill(bytes, |i| half::f16::from_f32(value(i)).to_le_bytes()),
            Dtype::BF16 => fill(bytes, |i| half::bf16::from_f32(value(i)).to_le_bytes()),
            Dtype::F32 => fill(bytes, |i| value(i).to_le_bytes()),
            _ => bytes.fill(0),
        }
    }
}

/// Writes `value(i)`'s `N` bytes as element `i` of `bytes`.
fn fill<const N: usize>(bytes: &mut [u8], value: impl Fn(usize) -> [u8; N]) {
    for (i, element) in bytes.chunks_exact_mut(N).enumerate() {
        element.copy_from_slice(&value(i));
    }
}
