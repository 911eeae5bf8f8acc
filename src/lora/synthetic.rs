//! A kohya LoRA of any rank for any detected architecture, with generated values: what `sdxl-wgpu
//! bench` and the benchmarks time LoRA swaps with, without a real file at hand. Module names come
//! from the same rule [`super::LoraTable`] reads them with.

use std::io::Write;
use std::path::Path;

use super::keys::{kohya_unet_module, layers, strip};
use crate::checkpoint::keys::{unet, Layout};
use crate::checkpoint::ModelConfig;

/// The UNet layers a synthetic LoRA adapts: every attention projection and feed-forward linear
/// (what kohya's default SDXL LoRA trains).
const ADAPTED: [&str; 6] = [
    ".to_q",
    ".to_k",
    ".to_v",
    ".to_out.0",
    ".ff.net.0.proj",
    ".ff.net.2",
];

/// Writes a kohya LoRA of rank `rank` (alpha rank/2) on every attention and feed-forward
/// linear of `cfg`'s UNet to `path`, f16, small varied values. Returns the file's size.
pub fn write_synthetic_lora(cfg: &ModelConfig, rank: usize, path: &Path) -> std::io::Result<u64> {
    let mut header = serde_json::Map::new();
    let mut tensors: Vec<Vec<usize>> = Vec::new();
    let mut offset = 0usize;
    let table = unet::table(&cfg.unet, Layout::SingleFile);
    for row in layers(&table) {
        let layer = strip(&row.canonical);
        if !ADAPTED.iter().any(|s| layer.ends_with(s)) || row.shape.len() != 2 {
            continue;
        }
        let module = kohya_unet_module(row);
        let (out, inp) = (row.shape[0], row.shape[1]);
        for (part, shape) in [
            ("lora_down.weight", vec![rank, inp]),
            ("lora_up.weight", vec![out, rank]),
            ("alpha", vec![]),
        ] {
            let len = 2 * shape.iter().product::<usize>();
            header.insert(
                format!("{module}.{part}"),
                serde_json::json!({"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + len]}),
            );
            tensors.push(shape);
            offset += len;
        }
    }
    let mut json = serde_json::to_vec(&header)?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(path)?);
    out.write_all(&(json.len() as u64).to_le_bytes())?;
    out.write_all(&json)?;
    for shape in &tensors {
        // alpha (a scalar: the empty product is one value) rank/2; small varied values elsewhere
        let n: usize = shape.iter().product();
        let bytes: Vec<u8> = (0..n)
            .flat_map(|i| {
                let v = if shape.is_empty() {
                    rank as f32 / 2.0
                } else {
                    0.01 * ((i % 7) as f32 - 3.0)
                };
                half::f16::from_f32(v).to_le_bytes()
            })
            .collect();
        out.write_all(&bytes)?;
    }
    out.flush()?;
    Ok(8 + json.len() as u64 + offset as u64)
}
