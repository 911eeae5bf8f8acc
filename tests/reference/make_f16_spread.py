#!/usr/bin/env python3
"""Builds tests/fixtures/f16_spread.json: how far diffusers' own fp16 run of the tiny model lands
from its f32 run, for the pipeline cases on injected noise (tests/fixtures/
pipeline_reference.safetensors, whose f32 final latents are the reference). The engine's f16 run
of the same request must land within about the same distance (relative L2 of the final latents,
||f16 - f32|| / ||f32||). Never run in CI; run after make_pipeline_fixtures.py in the pinned
environment:

    ~/refenv/bin/python tests/reference/make_f16_spread.py
"""

import json
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_pipeline_fixtures import CASES, scheduler_for  # noqa: E402
from make_text_fixtures import FOLDER, FIXTURES, tokenizers  # noqa: E402


def main() -> int:
    reference = load_file(FIXTURES / "pipeline_reference.safetensors")
    with tempfile.TemporaryDirectory() as d:
        tok, tok_2 = tokenizers(Path(d))
        pipe = StableDiffusionXLPipeline.from_pretrained(
            FOLDER, tokenizer=tok, tokenizer_2=tok_2, variant="fp16", torch_dtype=torch.float16
        )
    base = pipe.scheduler.config
    spread = {}
    for case in CASES:
        if "noise_seed" not in case:
            continue
        name = case["name"]
        pipe.scheduler = scheduler_for(case, base)
        noise = reference[f"{name}.noise"].to(torch.float16)
        common = dict(
            prompt=case["prompt"], negative_prompt=case["negative"] or None,
            num_inference_steps=case["steps"], guidance_scale=case["cfg"], output_type="latent",
            generator=torch.Generator("cpu").manual_seed(case["seed"]),
        )
        if "original_width" in case:
            common.update(original_size=(case["original_height"], case["original_width"]),
                          crops_coords_top_left=(case["crop_top"], case["crop_left"]))
        with torch.no_grad():
            latents = pipe(width=case["width"], height=case["height"], latents=noise, **common).images
        want = reference[f"{name}.final_latents"]
        rel = float((latents.float() - want).norm() / want.norm())
        spread[name] = {"diffusers_f16_relative_l2": rel}
        print(name, f"{rel:.3e}")
    path = FIXTURES / "f16_spread.json"
    meta = {"torch": torch.__version__, "device": "cpu", "dtype": "float16"}
    path.write_text(json.dumps({"generated_with": meta, "cases": spread}, indent=2) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
