#!/usr/bin/env python3
"""Times one step of diffusers' SDXL UNet (random weights from SDXL base 1.0's real config) at
the shapes `sdxl-wgpu bench --synthetic` runs: batch 2 (classifier-free guidance), a 77-token
context, fp16 on the GPU. Prints JSON: {"WIDTHxHEIGHT": seconds per step, ...}.

Used by scripts/gpu-bench.sh as the reference our step time is compared with; needs torch and
diffusers (tests/reference/requirements.txt pins the versions the fixtures were made with).
"""

import argparse
import json
import time

import torch
from diffusers import UNet2DConditionModel

# stabilityai/stable-diffusion-xl-base-1.0, unet/config.json (the fields that shape the model)
SDXL_UNET = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    norm_num_groups=32,
)


def step_seconds(unet, width, height, steps, device, dtype):
    latents = torch.randn(2, 4, height // 8, width // 8, device=device, dtype=dtype)
    context = torch.randn(2, 77, 2048, device=device, dtype=dtype)
    extra = {
        "text_embeds": torch.randn(2, 1280, device=device, dtype=dtype),
        "time_ids": torch.tensor([[height, width, 0, 0, height, width]] * 2, device=device, dtype=dtype),
    }
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(3):  # warm-up: kernel selection, allocator
            unet(latents, 999, encoder_hidden_states=context, added_cond_kwargs=extra)
        sync()
        start = time.perf_counter()
        for i in range(steps):
            unet(latents, 999 - i, encoder_hidden_states=context, added_cond_kwargs=extra)
        sync()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="1024x1024,768x768")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="fp16", choices=["fp16", "fp32"])
    args = parser.parse_args()
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SDXL_UNET).to(args.device, dtype).eval()
    results = {}
    for size in args.size.split(","):
        width, height = (int(v) for v in size.lower().split("x"))
        results[size] = step_seconds(unet, width, height, args.steps, args.device, dtype)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
