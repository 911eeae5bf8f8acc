//! SDXL base 1.0 without its 7 GB file: the real tensor list of its single file (name, dtype,
//! shape of every tensor, `sdxl_base_1.0_single_file_keys.tsv`) gives a checkpoint known by its
//! header alone (architecture and key tables, no loading), or one whose weights are generated
//! in memory (`sdxl-wgpu bench --synthetic`: the full-size architecture's speed and memory on
//! any machine). A synthetic LoRA for it: `lora::write_synthetic_lora`.

use std::path::Path;

use memmap2::MmapMut;

use super::{Checkpoint, CheckpointError};
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
            continue; // the table is a constant of this crate: `tests/no_device/manifest.rs` reads it whole
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
        // first touching 7 GB in 4 KiB pages costs more than generating it: ask for huge pages
        // (a hint; where the kernel has none it changes nothing)
        #[cfg(target_os = "linux")]
        let _ = data.advise(memmap2::Advice::HugePage);
        let phase = crate::phase::start(format!(
            "generate synthetic weights ({:.2} GB)",
            len as f64 / 1e9
        ));
        fill_synthetic(&header, &mut data);
        let rate = len as f64 / 1e9 / phase.elapsed().as_secs_f64().max(1e-9);
        phase.done(format!("{rate:.2} GB/s"));
        let data = data.make_read_only().map_err(io)?;
        let file = SafetensorsFile::in_memory(Path::new(NAME), header, data);
        Checkpoint::from_file(file)
    }
}

/// Elements generated per task: large enough that a task outweighs scheduling it, small
/// enough that SDXL's 2,515 tensors (the largest of 26 M values) spread over every core.
const CHUNK: usize = 1 << 16;

/// Writes generated weights into `data`, the tensors' bytes at `header`'s offsets: pseudo-random
/// values uniform in +-1/sqrt(fan-in) for matrices and kernels (activations stay of order one
/// through the whole network, so f16 runs stay finite as with a trained model), +-0.1 for
/// vectors, zeros for integer tensors (`position_ids`, which the loader ignores). Every core
/// fills its share; half floats are converted a chunk at a time (`half`'s vectorised F16C path
/// where the CPU has it).
pub fn fill_synthetic(header: &Header, data: &mut [u8]) {
    use rayon::prelude::*;
    let mut infos: Vec<&TensorInfo> = header.tensors.values().collect();
    infos.sort_by_key(|info| info.start);
    // disjoint byte ranges, one per tensor inside `data`
    let mut tensors = Vec::with_capacity(infos.len());
    let (mut rest, mut at) = (data, 0);
    for info in infos {
        if info.start < at || info.end > at + rest.len() {
            continue; // overlapping or outside: not a layout `manifest_header` makes
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(info.start - at);
        let (bytes, tail) = tail.split_at_mut(info.end - info.start);
        (rest, at) = (tail, info.end);
        tensors.push((info, bytes));
    }
    tensors.into_par_iter().for_each(|(info, bytes)| {
        let size = info.dtype.size().max(1);
        bytes
            .par_chunks_mut(CHUNK * size)
            .enumerate()
            .for_each(|(c, chunk)| fill_chunk(info, c * CHUNK, chunk));
    });
}

/// Elements `first..` of the tensor `info`, as bytes.
fn fill_chunk(info: &TensorInfo, first: usize, bytes: &mut [u8]) {
    let fan_in: usize = info.shape.iter().skip(1).product::<usize>().max(1);
    let scale = if info.shape.len() >= 2 {
        1.0 / (fan_in as f32).sqrt()
    } else {
        0.1
    };
    let n = bytes.len() / info.dtype.size().max(1);
    // a multiplicative hash of the element's index, in [-1, 1)
    let values: Vec<f32> = (first..first + n)
        .map(|i| {
            let h = (i as u32 ^ info.start as u32).wrapping_mul(2_654_435_761) >> 8;
            scale * (h as f32 / 8_388_608.0 - 1.0)
        })
        .collect();
    use half::slice::HalfFloatSliceExt;
    match info.dtype {
        Dtype::F16 => {
            let mut halves = vec![half::f16::ZERO; n];
            halves.convert_from_f32_slice(&values);
            write(bytes, &halves, |v| v.to_le_bytes());
        }
        Dtype::BF16 => {
            let mut halves = vec![half::bf16::ZERO; n];
            halves.convert_from_f32_slice(&values);
            write(bytes, &halves, |v| v.to_le_bytes());
        }
        Dtype::F32 => write(bytes, &values, |v| v.to_le_bytes()),
        _ => bytes.fill(0),
    }
}

/// `values` into `bytes`, `N` bytes each.
fn write<T: Copy, const N: usize>(bytes: &mut [u8], values: &[T], le: impl Fn(T) -> [u8; N]) {
    for (element, &v) in bytes.chunks_exact_mut(N).zip(values) {
        element.copy_from_slice(&le(v));
    }
}
