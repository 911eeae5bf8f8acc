//! A model upscaler at full size: ESRGAN's 4x RRDBNet as users download it (23 blocks, 64
//! wide; random weights in a synthetic old-layout file, `target/bench-data/rrdb-4x-23b.
//! safetensors`, written once) on an N x N image (`SDXL_BENCH_SIZE`; default 1024 on a
//! hardware adapter, 128 on a software one, where 1024 takes hours): load time, upscale time
//! (tiles from the adapter's buffers) and the process's peak anonymous memory meanwhile (on a
//! software adapter the device's memory is the host's). `SDXL_BENCH_RUNS=N` (default 2),
//! `SDXL_BENCH_BACKEND` and `SDXL_BENCH_PRECISION=f32` apply.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use sdxl_wgpu::pipeline::upscale::upscale_by;
use sdxl_wgpu::upscaler::{TileMode, Tiling, Upscaler};

mod common;

const BLOCKS: usize = 23;
const WIDTH: usize = 64;
const GROWTH: usize = 32;

fn main() -> anyhow::Result<()> {
    let (gpu, dtype, _) = common::model_bench()?;
    let size = common::env_usize(
        "SDXL_BENCH_SIZE",
        if gpu.adapter.is_software() { 128 } else { 1024 },
    );
    println!(
        "adapter: {} ({}), weights {dtype:?}",
        gpu.adapter.name, gpu.adapter.api
    );
    let path = synthetic_rrdb()?;
    let start = Instant::now();
    let model = Upscaler::load(&path, &gpu, dtype)?;
    gpu.sync()?;
    println!(
        "load {} ({}): {:.2} s",
        path.display(),
        model.info.describe(),
        start.elapsed().as_secs_f64()
    );
    let tiling = Tiling::for_buffer(&model, gpu.adapter.max_tensor_bytes())?;
    let image = image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x ^ y) % 239) as u8])
    });
    for run in 0..common::runs(2) {
        let sampler = common::RssSampler::start();
        let start = Instant::now();
        let out = upscale_by(&model, &image, 4.0, TileMode::Blended(Some(tiling)), &gpu)?;
        let seconds = start.elapsed().as_secs_f64();
        let peak = sampler.stop();
        println!(
            "run {run}: {size}x{size} -> {}x{} in {seconds:.2} s ({:.1} input Mpx/min), \
             {}-pixel tiles, peak anonymous RSS {} MiB{}",
            out.width(),
            out.height(),
            (size * size) as f64 / 1e6 / seconds * 60.0,
            tiling.tile,
            peak >> 20,
            if run == 0 { " (kernels compiled)" } else { "" },
        );
    }
    Ok(())
}

/// The synthetic 4x RRDBNet in the old ESRGAN layout, f16, weights ~ N(0, 1/fan_in) from a
/// fixed xorshift stream (written once).
fn synthetic_rrdb() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let path = dir.join("rrdb-4x-23b.safetensors");
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)?;
    let mut shapes: Vec<(String, Vec<usize>)> = Vec::new();
    let mut conv = |name: String, out: usize, inp: usize| {
        shapes.push((format!("{name}.weight"), vec![out, inp, 3, 3]));
        shapes.push((format!("{name}.bias"), vec![out]));
    };
    conv("model.0".into(), WIDTH, 3);
    for n in 0..BLOCKS {
        for k in 1..=3 {
            for j in 1..=5 {
                let inp = WIDTH + (j - 1) * GROWTH;
                let out = if j == 5 { WIDTH } else { GROWTH };
                conv(format!("model.1.sub.{n}.RDB{k}.conv{j}.0"), out, inp);
            }
        }
    }
    conv(format!("model.1.sub.{BLOCKS}"), WIDTH, WIDTH);
    for layer in [3, 6, 8] {
        conv(format!("model.{layer}"), WIDTH, WIDTH);
    }
    conv("model.10".into(), 3, WIDTH);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut data: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, shape) in shapes {
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        let scale = if shape.len() == 1 {
            0.01
        } else {
            (1.0 / fan_in as f32).sqrt()
        };
        let n: usize = shape.iter().product();
        let bytes = (0..n)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let uniform = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                half::f16::from_f32(uniform * scale * 1.7).to_le_bytes()
            })
            .collect();
        data.insert(name, (shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(name, (shape, bytes))| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F16,
                shape.clone(),
                bytes,
            )?;
            Ok((name.clone(), view))
        })
        .collect::<anyhow::Result<_>>()?;
    safetensors::serialize_to_file(views, None, &path)?;
    Ok(path)
}
