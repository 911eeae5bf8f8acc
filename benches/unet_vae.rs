//! One UNet step (batch 2: CFG's negative and positive) and one VAE decode: ms each, and the
//! device memory the pools hold afterwards. Then attention alone at SDXL's full-size shapes
//! (the UNet's self- and cross-attention of levels 1 and 2, the VAE's single 512-wide head) on
//! both ways it can run, burn's fused kernels and sliced matmul -> softmax -> matmul, beside the
//! device's choice (`AttentionKernel::for_device`).
//!
//! `cargo bench --bench unet_vae` runs the full-size architecture (the synthetic SDXL checkpoint
//! of `benches/load.rs`) at 1024x1024 and 768x768 on a hardware adapter, and the tiny reference
//! model at 256x256 on a software one. `SDXL_BENCH_CHECKPOINT`, `SDXL_BENCH_BACKEND`,
//! `SDXL_BENCH_PRECISION=f32` and `SDXL_BENCH_RUNS=N` (default 5) apply; `SDXL_BENCH_SIZES=512,768`
//! overrides the image sizes. The VAE decodes in f32 (the default) with auto tiling.
//! `SDXL_BENCH_ATTENTION_SIZES` (default 512 on a software adapter, 1024 on a hardware one)
//! sets the image sizes whose attention shapes are timed.

use std::time::Instant;

use burn::tensor::{FloatDType, Tensor, TensorData};
use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::device;
use sdxl_wgpu::nn::attention::{attention, AttentionKernel};
use sdxl_wgpu::vae::{VaeLimits, VaeTiling};
use sdxl_wgpu::weights::WeightDtype;

mod common;

fn main() -> anyhow::Result<()> {
    let (gpu, dtype, path) = common::model_bench()?;
    let software = gpu.adapter.is_software();
    let runs = common::runs(5);
    let sizes: Vec<usize> = match std::env::var("SDXL_BENCH_SIZES") {
        Ok(s) => s.split(',').filter_map(|v| v.trim().parse().ok()).collect(),
        Err(_) if software => vec![256],
        Err(_) => vec![1024, 768],
    };

    let checkpoint = Checkpoint::open(&path)?;
    let models = checkpoint.load(&gpu, dtype)?;
    let cfg = &checkpoint.config;
    println!(
        "adapter: {} ({}), {dtype:?} weights, model {}",
        gpu.adapter.name,
        gpu.adapter.api,
        path.display()
    );
    let device = &gpu.device;
    let limits = VaeLimits::for_adapter(gpu.adapter.max_tensor_bytes());
    let sync = || device.sync().map_err(|e| anyhow::anyhow!("{e:?}"));

    for size in sizes {
        let latent = size / 8;
        let filled = |shape: Vec<usize>| -> Tensor<4> {
            let n = shape.iter().product::<usize>();
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            Tensor::from_data(TensorData::new(v, shape), device)
        };
        let latents = filled(vec![2, cfg.unet.in_channels, latent, latent]);
        let context: Tensor<3> = filled(vec![1, 2, 77, cfg.unet.context_dim]).squeeze_dim(0);
        let pooled_dim = cfg.unet.addition_embed_dim - 6 * cfg.unet.addition_time_embed_dim;
        let pooled: Tensor<2> = filled(vec![1, 1, 2, pooled_dim])
            .squeeze_dim::<3>(0)
            .squeeze_dim(0);
        let s = size as f32;
        let ids = [[s, s, 0.0, 0.0, s, s]; 2];
        let step = || -> anyhow::Result<f64> {
            let start = Instant::now();
            let out = models.unet.forward(
                latents.clone(),
                &[999.0, 999.0],
                context.clone(),
                pooled.clone(),
                &ids,
                sdxl_wgpu::nn::Adapt::NONE,
            );
            std::hint::black_box(out.into_data());
            sync()?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        };
        let (unet_mean, unet_min) = timed(runs, step)?;
        let unet_mem = device::memory_in_use(device);

        let z = filled(vec![1, cfg.vae.latent_channels, latent, latent]);
        let mut plan = None;
        let mut decode = || -> anyhow::Result<f64> {
            let start = Instant::now();
            let (image, p) = models.vae.decode_tiled(
                &cfg.vae,
                z.clone(),
                FloatDType::F32,
                VaeTiling::Auto,
                &limits,
            )?;
            plan = p;
            std::hint::black_box(image.into_data());
            sync()?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        };
        let (vae_mean, vae_min) = timed(runs, &mut decode)?;
        let vae_mem = device::memory_in_use(device);

        let mib = |m: Option<(u64, u64)>| {
            m.map_or("n/a".to_string(), |(_, r)| format!("{} MiB", r >> 20))
        };
        println!(
            "{size}x{size}: UNet step (batch 2) {unet_mean:.1} ms mean, {unet_min:.1} ms min, pools {}; \
             VAE decode (f32, {}) {vae_mean:.1} ms mean, {vae_min:.1} ms min, pools {}",
            mib(unet_mem),
            match plan {
                Some(p) => format!("tiled {}+{} latents", p.tile, p.overlap),
                None => "untiled".to_string(),
            },
            mib(vae_mem)
        );
    }
    attention_ways(&gpu, dtype, runs)
}

/// Each attention shape of SDXL at the image sizes asked, timed on both ways attention runs.
fn attention_ways(gpu: &sdxl_wgpu::Gpu, dtype: WeightDtype, runs: usize) -> anyhow::Result<()> {
    let sizes: Vec<usize> = match std::env::var("SDXL_BENCH_ATTENTION_SIZES") {
        Ok(s) => s.split(',').filter_map(|v| v.trim().parse().ok()).collect(),
        Err(_) if gpu.adapter.is_software() => vec![512],
        Err(_) => vec![1024],
    };
    let device = &gpu.device;
    let sync = || device.sync().map_err(|e| anyhow::anyhow!("{e:?}"));
    let compute = if dtype == WeightDtype::F16 {
        FloatDType::F16
    } else {
        FloatDType::F32
    };
    println!("attention (device's choice: {:?})", gpu.attention);
    for size in sizes {
        let l = size / 8;
        // (what, batch, heads, query tokens, key tokens, head width, dtype)
        let unet = |what, heads, nq, nk| (what, 2, heads, nq, nk, 64, compute);
        let (level1, level2) = ((l / 2).pow(2), (l / 4).pow(2));
        let shapes = [
            unet("UNet level 1 self", 10, level1, level1),
            unet("UNet level 1 cross", 10, level1, 77),
            unet("UNet level 2 self", 20, level2, level2),
            ("VAE mid-block", 1, 1, l * l, l * l, 512, FloatDType::F32),
        ];
        for (what, b, heads, nq, nk, d, dtype) in shapes {
            let filled = |n: usize, seed: usize| -> Tensor<4> {
                let v: Vec<f32> = (0..b * heads * n * d)
                    .map(|i| ((i * 7919 + seed) % 2001) as f32 / 2000.0 - 0.5)
                    .collect();
                Tensor::<4>::from_data(TensorData::new(v, [b, heads, n, d]), device).cast(dtype)
            };
            let (q, k, v) = (filled(nq, 1), filled(nk, 2), filled(nk, 3));
            let shape = format!("{size}x{size} {what} [{b}, {heads}, {nq}x{nk}, {d}] {dtype:?}:");
            // sliced first: the fused kernels' first call at a wide head can take minutes on a
            // software adapter (autotune included)
            for (name, kernel) in [
                ("sliced", AttentionKernel::SLICED),
                ("fused", AttentionKernel::FUSED),
            ] {
                let (mean, min) = timed(runs, || {
                    let start = Instant::now();
                    let out = attention(q.clone(), k.clone(), v.clone(), false, kernel);
                    std::hint::black_box(out.into_data());
                    sync()?;
                    Ok(start.elapsed().as_secs_f64() * 1e3)
                })?;
                println!("{shape} {name} {mean:.1} ms mean ({min:.1} min)");
            }
        }
    }
    Ok(())
}

/// Mean and minimum of `runs` timed calls after one warm-up call (autotune, shader compiles).
fn timed(runs: usize, mut f: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<(f64, f64)> {
    f()?;
    let times = (0..runs)
        .map(|_| f())
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    Ok((mean, times.iter().copied().fold(f64::INFINITY, f64::min)))
}
