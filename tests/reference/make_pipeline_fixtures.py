#!/usr/bin/env python3
"""Builds tests/fixtures/pipeline_reference.safetensors: whole txt2img runs of diffusers'
StableDiffusionXLPipeline on the tiny model (f32, CPU generator), for the engine's pipeline to
match: the final latents (before dividing by the VAE scaling factor) and the decoded image
(`vae.decode(latents / scaling_factor).sample`, before clamping). Each case's request is in the
metadata. Never run in CI; run after make_fixtures.py in the pinned environment:

    ~/refenv/bin/python tests/reference/make_pipeline_fixtures.py
"""

import json
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_text_fixtures import FOLDER, FIXTURES, tokenizers  # noqa: E402

CASES = [
    dict(name="euler_a", prompt="1girl, solo, long hair, masterpiece, best quality",
         negative="lowres, bad anatomy, worst quality, blurry", width=64, height=64, steps=4, cfg=5.0,
         seed=42, sampler="euler_a", schedule="default"),
    dict(name="dpmpp_2m_karras", prompt="a cat sitting on a windowsill, sunset",
         negative="", width=96, height=64, steps=5, cfg=7.0, seed=7, sampler="dpmpp_2m", schedule="karras"),
]


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        tok, tok_2 = tokenizers(Path(d))
        pipe = StableDiffusionXLPipeline.from_pretrained(
            FOLDER, tokenizer=tok, tokenizer_2=tok_2, variant="fp16", torch_dtype=torch.float32
        )
    base = pipe.scheduler.config
    tensors = {}
    for case in CASES:
        if case["sampler"] == "euler_a":
            pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(base)
        else:
            pipe.scheduler = DPMSolverMultistepScheduler.from_config(
                base, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=case["schedule"] == "karras"
            )
        g = torch.Generator("cpu").manual_seed(case["seed"])
        with torch.no_grad():
            latents = pipe(
                prompt=case["prompt"], negative_prompt=case["negative"] or None,
                width=case["width"], height=case["height"], num_inference_steps=case["steps"],
                guidance_scale=case["cfg"], generator=g, output_type="latent",
            ).images
            image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        tensors[f"{case['name']}.final_latents"] = latents.contiguous()
        tensors[f"{case['name']}.image"] = image.contiguous()
        print(case["name"], list(latents.shape), float(latents.abs().max()), float(image.abs().max()))
    path = FIXTURES / "pipeline_reference.safetensors"
    save_file(tensors, path, metadata={"cases": json.dumps({c["name"]: c for c in CASES})})
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
