#!/usr/bin/env python3
"""Builds the UNet and VAE reference fixture: diffusers' outputs on the tiny model, in f32.

Never run in CI. Run after make_fixtures.py, in the same pinned environment:

    ~/refenv/bin/python tests/reference/make_unet_vae_fixtures.py

Writes tests/fixtures/unet_vae_reference.safetensors with, per case, the inputs and diffusers'
output (all f32; the case list and the timesteps / add_time_ids are in the metadata):
  unet_square.*   batch 2, 16x16 latents, 77-token context, two timesteps and micro-conditionings
  unet_odd.*      batch 1, 10x14 latents (non-square, not a multiple of 4: diffusers then passes
                  upsample sizes), a 154-token (two-chunk) context
  vae_decode.*    latents [1, 4, 8, 12] -> image [1, 3, 64, 96] (`vae.decode(z).sample`)
  vae_encode.*    image [1, 3, 64, 96] -> latent_dist.mean and .logvar
"""

import json
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FOLDER = FIXTURES / "tiny-sdxl"


def main() -> int:
    torch.manual_seed(4242)
    unet = UNet2DConditionModel.from_pretrained(FOLDER / "unet", variant="fp16", torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(FOLDER / "vae", variant="fp16", torch_dtype=torch.float32).eval()
    context_dim = unet.config.cross_attention_dim
    pooled_dim = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim

    tensors, meta = {}, {}
    with torch.no_grad():
        for name, shape, tokens, timesteps, time_ids in [
            ("unet_square", (2, 4, 16, 16), 77, [999.0, 261.0],
             [[128, 128, 0, 0, 128, 128], [96, 160, 8, 16, 128, 128]]),
            ("unet_odd", (1, 4, 10, 14), 154, [500.0], [[80, 112, 0, 0, 80, 112]]),
        ]:
            b = shape[0]
            latents = torch.randn(shape)
            context = torch.randn(b, tokens, context_dim)
            pooled = torch.randn(b, pooled_dim)
            ids = torch.tensor(time_ids, dtype=torch.float32)
            out = unet(
                latents, torch.tensor(timesteps), encoder_hidden_states=context,
                added_cond_kwargs={"text_embeds": pooled, "time_ids": ids},
            ).sample
            tensors.update({
                f"{name}.latents": latents, f"{name}.context": context,
                f"{name}.pooled": pooled, f"{name}.output": out,
            })
            meta[name] = dict(timesteps=timesteps, add_time_ids=time_ids)

        z = torch.randn(1, 4, 8, 12)
        tensors["vae_decode.latents"] = z
        tensors["vae_decode.image"] = vae.decode(z).sample
        image = torch.rand(1, 3, 64, 96) * 2 - 1
        dist = vae.encode(image).latent_dist
        tensors["vae_encode.image"] = image
        tensors["vae_encode.mean"] = dist.mean
        tensors["vae_encode.logvar"] = dist.logvar

    path = FIXTURES / "unet_vae_reference.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"cases": json.dumps(meta)})
    print(f"{path}: {len(tensors)} tensors")
    for k, v in tensors.items():
        print(f"  {k}: {list(v.shape)} max |x| {v.abs().max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
