#!/usr/bin/env python3
"""Builds tests/fixtures/hires_reference.safetensors: A1111's hires fix with latent upscalers as
diffusers runs it on the tiny model (f32, CPU generators), for the engine's hires pass to match.

Per case: the first pass (StableDiffusionXLPipeline, output_type="latent", Generator(seed)); its
latents resized with F.interpolate in the upscaler's mode to A1111's target, or (a pixel upscaler)
decoded, made 8-bit as A1111 does (truncating), resized by Pillow (or through a model upscaler as
spandrel runs it, then Pillow's Lanczos) and encoded to the posterior mean
times the scaling factor (the engine's img2img start); cropped as A1111's `sample_hr_pass` slices
them when both sides are given; then
StableDiffusionXLImg2ImgPipeline with those 4-channel latents as `image` (used as the initial
latents as they are), a fresh Generator(seed), `num_inference_steps` = the hires steps and
`strength` = the hires denoising strength: the noise added is that generator's first draw, the
size conditioning the high-res size's own. Stored: `first_latents`, `final_latents` (before
dividing by the VAE scaling factor) and `image` (the VAE output before clamping).

Never run in CI; run after make_fixtures.py in the pinned environment:

    ~/refenv/bin/python tests/reference/make_hires_fixtures.py
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import numpy as np
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_pipeline_fixtures import NEG, pipelines, scheduler_for  # noqa: E402
from make_text_fixtures import FIXTURES  # noqa: E402

# our upscaler spelling -> F.interpolate's mode and antialias (A1111's shared.latent_upscale_modes)
UPSCALERS = {
    "latent": ("bilinear", False),
    "latent-antialiased": ("bilinear", True),
    "latent-bicubic": ("bicubic", False),
    "latent-bicubic-antialiased": ("bicubic", True),
    "latent-nearest": ("nearest", False),
    "latent-nearest-exact": ("nearest-exact", False),
}
PIXEL_UPSCALERS = {"lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}

CASES = [
    # a scale: 64x64 -> int(64 x 1.5) = 96, bilinear; 4 hires steps at 0.5 run 2
    dict(name="hires_scale_euler", prompt="1girl, solo, long hair, masterpiece", negative=NEG,
         width=64, height=64, steps=4, cfg=6.0, seed=8, sampler="euler", schedule="default",
         hires_scale=1.5, hires_upscaler="latent", hires_steps=4, hires_denoise=0.5),
    # both sides: 64x64 covers 96x64 at 96x96, 4 latent rows cut (2 from each end); bicubic
    # antialiased; the ancestral sampler's noise continues the second pass's generator
    dict(name="hires_resize_euler_a", prompt="a lighthouse on a cliff, stormy sea", negative="",
         width=64, height=64, steps=3, cfg=5.0, seed=12, sampler="euler_a", schedule="default",
         hires_resize=[96, 64], hires_upscaler="latent-bicubic-antialiased", hires_steps=5,
         hires_denoise=0.6),
    # a pixel upscaler: decoded, Pillow's Lanczos to 96x96, encoded again
    dict(name="hires_lanczos_euler", prompt="a red fox in the snow", negative=NEG,
         width=64, height=64, steps=3, cfg=6.0, seed=30, sampler="euler", schedule="default",
         hires_scale=1.5, hires_upscaler="lanczos", hires_steps=4, hires_denoise=0.5),
    # a model upscaler (tests/fixtures/upscalers/compact_x4.pth, as spandrel runs it): one x4
    # pass covers 64x64 -> 128x128, Lanczos down to 128x128... and the image to 96x96
    dict(name="hires_model_euler", prompt="a castle at dusk", negative="",
         width=64, height=64, steps=3, cfg=5.0, seed=5, sampler="euler", schedule="default",
         hires_scale=1.5, hires_upscaler="compact_x4", hires_steps=4, hires_denoise=0.5),
]
UPSCALER_MODELS = FIXTURES / "upscalers"


def target(case):
    """A1111's calculate_target_resolution: (to_x, to_y, truncate_x, truncate_y)."""
    w, h = case["width"], case["height"]
    if "hires_scale" in case:
        return int(w * case["hires_scale"]), int(h * case["hires_scale"]), 0, 0
    x, y = case["hires_resize"]
    if w / h < x / y:
        to_x, to_y = x, x * h // w
    else:
        to_x, to_y = y * w // h, y
    return to_x, to_y, (to_x - x) // 8, (to_y - y) // 8


def model_pass(model, image):
    """One pass of a model upscaler on an 8-bit RGB image: RGB in [0, 1], the output clamped and
    rounded to 8 bits (the engine's `upscaler::tiles`, one tile)."""
    x = torch.from_numpy(np.moveaxis(np.array(image).astype(np.float32) / 255.0, 2, 0))[None]
    y = model(x).clamp(0.0, 1.0)[0]
    return Image.fromarray(np.round(np.moveaxis(y.numpy(), 0, 2) * 255.0).astype(np.uint8))


def model_resize(model, image, size):
    """A1111's `resize_image(0, ...)` with a model upscaler: `Upscaler.upscale` by the larger
    ratio (passes until the image covers int(side x scale) // 8 * 8, Lanczos to that), then
    Lanczos to `size` (`modules/upscaler.py`, `modules/images.py`)."""
    (w, h), (tw, th) = image.size, size
    scale = max(tw / w, th / h)
    if scale > 1.0:
        dest = (int(w * scale) // 8 * 8, int(h * scale) // 8 * 8)
        for _ in range(3):
            shape = image.size
            image = model_pass(model, image)
            if image.size == shape or (image.width >= dest[0] and image.height >= dest[1]):
                break
        if image.size != dest:
            image = image.resize(dest, resample=Image.Resampling.LANCZOS)
    if image.size != size:
        image = image.resize(size, resample=Image.Resampling.LANCZOS)
    return image


def pixel_upscale(pipe, latents, size, resize):
    """A1111's pixel path between the passes, encoding to the posterior mean."""
    sf = pipe.vae.config.scaling_factor
    decoded = torch.clamp((pipe.vae.decode(latents / sf).sample + 1.0) / 2.0, min=0.0, max=1.0)
    out = []
    for x in decoded:
        pixels = (255.0 * np.moveaxis(x.numpy(), 0, 2)).astype(np.uint8)
        image = resize(Image.fromarray(pixels), size)
        x = torch.from_numpy(np.moveaxis(np.array(image).astype(np.float32) / 255.0, 2, 0))[None]
        out.append(pipe.vae.encode(x * 2 - 1).latent_dist.mean * sf)
    return torch.cat(out)


def upscale(pipe, latents, case):
    to_x, to_y, tx, ty = target(case)
    size = (to_x // 8 * 8, to_y // 8 * 8)
    if case["hires_upscaler"] in PIXEL_UPSCALERS:
        resample = PIXEL_UPSCALERS[case["hires_upscaler"]]
        x = pixel_upscale(pipe, latents, size, lambda im, s: im.resize(s, resample=resample))
    elif case["hires_upscaler"] not in UPSCALERS:
        import spandrel  # the reference for model upscalers
        path = UPSCALER_MODELS / f"{case['hires_upscaler']}.pth"
        model = spandrel.ModelLoader().load_from_file(str(path)).model.eval()
        x = pixel_upscale(pipe, latents, size, lambda im, s: model_resize(model, im, s))
    else:
        mode, antialias = UPSCALERS[case["hires_upscaler"]]
        x = F.interpolate(latents, size=(to_y // 8, to_x // 8), mode=mode, antialias=antialias)
    # A1111's sample_hr_pass slicing
    return x[:, :, ty // 2: x.shape[2] - (ty + 1) // 2, tx // 2: x.shape[3] - (tx + 1) // 2]


def main() -> int:
    pipe, img2img = pipelines()
    base = pipe.scheduler.config
    sf = pipe.vae.config.scaling_factor
    tensors = {}
    for case in CASES:
        common = dict(prompt=case["prompt"], negative_prompt=case["negative"] or None,
                      guidance_scale=case["cfg"], output_type="latent")
        with torch.no_grad():
            pipe.scheduler = scheduler_for(case, base)
            first = pipe(width=case["width"], height=case["height"], num_inference_steps=case["steps"],
                         generator=torch.Generator("cpu").manual_seed(case["seed"]), **common).images
            up = upscale(pipe, first, case)
            img2img.scheduler = scheduler_for(case, base)
            latents = img2img(image=up.contiguous(), strength=case["hires_denoise"],
                              num_inference_steps=case["hires_steps"],
                              generator=torch.Generator("cpu").manual_seed(case["seed"]), **common).images
            image = pipe.vae.decode(latents / sf).sample
        name = case["name"]
        tensors[f"{name}.first_latents"] = first.contiguous()
        tensors[f"{name}.final_latents"] = latents.contiguous()
        tensors[f"{name}.image"] = image.contiguous()
        print(name, list(first.shape), list(latents.shape), float(image.abs().max()))
    path = FIXTURES / "hires_reference.safetensors"
    save_file(tensors, path, metadata={"cases": json.dumps({c["name"]: c for c in CASES})})
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
