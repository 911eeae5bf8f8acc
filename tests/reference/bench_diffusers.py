"""The reference stack's figures for `sdxl-wgpu bench --synthetic`, on the same GPU.

Times diffusers' SDXL base UNet (random weights, the real architecture) for one denoising step
with CFG (batch 2), and its VAE decode, at the sizes given, in the precision given; prints one
JSON line per size. Run on a CUDA machine with torch and diffusers (requirements.txt pins the
versions the fixtures were made with; any recent torch works for timing):

    python3 tests/reference/bench_diffusers.py --size 1024x1024,1216x832 --precision f16
"""

import argparse
import json
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

# stabilityai/stable-diffusion-xl-base-1.0, unet/config.json and vae/config.json.
UNET = dict(
    act_fn="silu",
    addition_embed_type="text_time",
    addition_embed_type_num_heads=64,
    addition_time_embed_dim=256,
    attention_head_dim=[5, 10, 20],
    block_out_channels=[320, 640, 1280],
    cross_attention_dim=2048,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    in_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    out_channels=4,
    projection_class_embeddings_input_dim=2816,
    sample_size=128,
    transformer_layers_per_block=[1, 2, 10],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    use_linear_projection=True,
)
VAE = dict(
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    latent_channels=4,
    layers_per_block=2,
    sample_size=1024,
    scaling_factor=0.13025,
)


def timed(fn, warmup, runs):
    """Mean milliseconds of `fn` over `runs` calls after `warmup` calls, by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(runs):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1024x1024")
    ap.add_argument("--precision", default="f16", choices=["f16", "f32", "bf16"])
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    dtype = {"f16": torch.float16, "f32": torch.float32, "bf16": torch.bfloat16}[args.precision]
    dev = torch.device("cuda")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with dev:
        unet = UNet2DConditionModel(**UNET).to(dtype).eval()
        # diffusers upcasts SDXL's VAE to f32 for decoding (force_upcast).
        vae = AutoencoderKL(**VAE).to(torch.float32).eval()
    torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    for size in args.size.split(","):
        w, h = (int(v) for v in size.split("x"))
        torch.cuda.reset_peak_memory_stats()
        latents = torch.randn(2, 4, h // 8, w // 8, device=dev, dtype=dtype)  # [2, 4, H/8, W/8]
        context = torch.randn(2, 77, 2048, device=dev, dtype=dtype)
        added = {
            "text_embeds": torch.randn(2, 1280, device=dev, dtype=dtype),
            "time_ids": torch.tensor([[h, w, 0, 0, h, w]] * 2, device=dev, dtype=dtype),
        }
        t = torch.tensor(500, device=dev)
        with torch.inference_mode():
            step = lambda: unet(latents, t, context, added_cond_kwargs=added).sample
            t1 = time.perf_counter()
            step()
            torch.cuda.synchronize()
            first_ms = (time.perf_counter() - t1) * 1e3
            step_ms = timed(step, 2, args.steps)
            decode = lambda: vae.decode(latents[:1].float() / VAE["scaling_factor"]).sample
            decode_ms = timed(decode, 1, 3)
        print(
            json.dumps(
                dict(
                    stack=f"diffusers {__import__('diffusers').__version__} torch {torch.__version__}",
                    gpu=torch.cuda.get_device_name(),
                    precision=args.precision,
                    size=size,
                    build_s=round(build_s, 2),
                    first_step_ms=round(first_ms, 1),
                    unet_step_cfg_ms=round(step_ms, 2),
                    vae_decode_f32_ms=round(decode_ms, 2),
                    peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                )
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
