#!/usr/bin/env python3
"""Builds tests/fixtures/inpaint_reference.safetensors (and tests/fixtures/mask_64.png): whole
runs of diffusers' StableDiffusionXLInpaintPipeline on the tiny model (a 4-channel UNet: the
masked blend of the noised original after every step), f32, CPU generators, for the engine's
inpainting to match. Per case: `final_latents` (before dividing by the VAE scaling factor) and
`image` (`vae.decode(latents / scaling_factor).sample`, before clamping, before any overlay).

As in make_pipeline_fixtures.py, the init image (tests/fixtures/init_64.png) enters as the
*posterior mean* of its encoding times the scaling factor, passed as 4-channel `image`: diffusers
then uses it as the image latents as is (no posterior sample, no masked-image encoding), and the
generator's first draw is the start noise, as in the engine. The mask is a disc with a soft edge
and a bar, neither on the 8-pixel grid, so the cases pin diffusers' mask rule: binarised at 0.5,
then nearest-downsampled to the latents (each 8x8 block takes its top-left pixel). Strength 1.0
starts from pure noise (diffusers' `is_strength_max`). Never run in CI; run after
make_pipeline_fixtures.py in the pinned environment:

    ~/refenv/bin/python tests/reference/make_inpaint_fixtures.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionXLInpaintPipeline
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_pipeline_fixtures import INIT_IMAGE, NEG, pipelines, scheduler_for  # noqa: E402
from make_text_fixtures import FIXTURES  # noqa: E402

MASK_IMAGE = FIXTURES / "mask_64.png"

CASES = [
    dict(name="inpaint_euler", prompt="a red house by a lake, oil painting", negative=NEG,
         width=64, height=64, steps=10, cfg=6.0, seed=3, sampler="euler", schedule="default", strength=0.75),
    dict(name="inpaint_dpmpp_2m", prompt="a red house by a lake", negative=NEG,
         width=64, height=64, steps=8, cfg=7.0, seed=5, sampler="dpmpp_2m", schedule="default", strength=0.6),
    dict(name="inpaint_ddim", prompt="a red house by a lake", negative="",
         width=64, height=64, steps=6, cfg=5.0, seed=9, sampler="ddim", schedule="default", strength=0.8),
    # strength 1: pure noise at the start, the original still blended in after each step
    dict(name="inpaint_euler_a_full", prompt="a cat on a wall", negative=NEG,
         width=64, height=64, steps=5, cfg=6.0, seed=11, sampler="euler_a", schedule="default", strength=1.0),
]


def mask_image() -> Image.Image:
    """64x64 L: a disc (centre 37, 27, radius 15) whose edge falls off linearly over 6 pixels,
    and a bar at rows 50..57, columns 5..27."""
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    r = np.sqrt((x - 37) ** 2 + (y - 27) ** 2)
    disc = np.clip((18 - r) / 6, 0, 1) * 255
    bar = np.where((y >= 50) & (y < 57) & (x >= 5) & (x < 27), 255, 0)
    return Image.fromarray(np.maximum(disc, bar).round().astype(np.uint8), mode="L")


def main() -> int:
    pipe, _ = pipelines()
    inpaint = StableDiffusionXLInpaintPipeline(**pipe.components)
    base = pipe.scheduler.config
    sf = pipe.vae.config.scaling_factor
    mask_image().save(MASK_IMAGE)
    image_in = Image.open(INIT_IMAGE).convert("RGB")
    mask_in = Image.open(MASK_IMAGE)
    tensors = {}
    for case in CASES:
        inpaint.scheduler = scheduler_for(case, base)
        g = torch.Generator("cpu").manual_seed(case["seed"])
        with torch.no_grad():
            pixels = inpaint.image_processor.preprocess(image_in)
            mean = inpaint.vae.encode(pixels).latent_dist.mean * sf
            latents = inpaint(
                prompt=case["prompt"], negative_prompt=case["negative"] or None, image=mean,
                mask_image=mask_in, width=case["width"], height=case["height"],
                strength=case["strength"], num_inference_steps=case["steps"],
                guidance_scale=case["cfg"], generator=g, output_type="latent",
            ).images
            image = pipe.vae.decode(latents / sf).sample
        tensors[f"{case['name']}.final_latents"] = latents.contiguous()
        tensors[f"{case['name']}.image"] = image.contiguous()
        print(case["name"], list(latents.shape), float(latents.abs().max()), float(image.abs().max()))
    path = FIXTURES / "inpaint_reference.safetensors"
    save_file(tensors, path, metadata={"cases": json.dumps({c["name"]: c for c in CASES})})
    print(path, MASK_IMAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
