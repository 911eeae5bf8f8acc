#!/usr/bin/env python3
"""Builds tests/fixtures/pipeline_reference.safetensors (and tests/fixtures/init_64.png): whole
runs of diffusers' StableDiffusionXLPipeline and StableDiffusionXLImg2ImgPipeline on the tiny
model (f32, CPU generators), for the engine's pipeline to match. Per case:

- `final_latents` (before dividing by the VAE scaling factor) and `image`
  (`vae.decode(latents / scaling_factor).sample`, before clamping);
- `noise_pred_step0`: the guided prediction the scheduler gets at the first step;
- `noise` for cases run on injected noise (diffusers' `latents=` argument, i.e. before scaling by
  the initial sigma).

img2img cases start from the *posterior mean* of the init image (the engine's choice; diffusers
samples it): the mean, times the scaling factor, is passed as 4-channel `image`, which diffusers
uses as the initial latents as is; the noise added at the start step is then the generator's
first draw, as in the engine. Each case's request is in the metadata. Never run in CI; run after
make_fixtures.py in the pinned environment:

    ~/refenv/bin/python tests/reference/make_pipeline_fixtures.py
"""

import functools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UniPCMultistepScheduler,
)
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_text_fixtures import FOLDER, FIXTURES, tokenizers  # noqa: E402

NEG = "lowres, bad anatomy, worst quality, blurry"
INIT_IMAGE = FIXTURES / "init_64.png"

CASES = [
    # seeded (the engine draws the same noise from the same seed)
    dict(name="euler_a", prompt="1girl, solo, long hair, masterpiece, best quality",
         negative=NEG, width=64, height=64, steps=4, cfg=5.0, seed=42, sampler="euler_a", schedule="default"),
    dict(name="dpmpp_2m_karras", prompt="a cat sitting on a windowsill, sunset",
         negative="", width=96, height=64, steps=5, cfg=7.0, seed=7, sampler="dpmpp_2m", schedule="karras"),
    # CFG 1: diffusers runs no unconditional pass (do_classifier_free_guidance is false)
    dict(name="euler_a_cfg1", prompt="1girl, solo, long hair, masterpiece, best quality",
         negative=NEG, width=64, height=64, steps=4, cfg=1.0, seed=42, sampler="euler_a", schedule="default"),
    # injected noise
    dict(name="euler_noise", prompt="a lighthouse on a cliff, stormy sea", negative=NEG,
         width=96, height=64, steps=5, cfg=6.0, seed=0, noise_seed=1001, sampler="euler", schedule="default"),
    dict(name="dpmpp_2m_karras_noise", prompt="portrait of a knight, detailed armor", negative="",
         width=64, height=64, steps=6, cfg=7.0, seed=0, noise_seed=1002, sampler="dpmpp_2m", schedule="karras"),
    dict(name="ddim_noise", prompt="a watercolor fox in the snow", negative=NEG,
         width=64, height=96, steps=5, cfg=5.0, seed=0, noise_seed=1003, sampler="ddim", schedule="default",
         original_width=192, original_height=128, crop_top=16, crop_left=8),
    # every other sampler, 64x64, 3 steps (5 for DPM++ 3M SDE, whose third order needs them;
    # seeded: the stochastic ones draw step noise)
    *[dict(name=f"{sampler}_{schedule}", prompt="1girl, solo, silver hair, night sky", negative=NEG,
           width=64, height=64, steps=steps, cfg=6.0, seed=21, sampler=sampler, schedule=schedule)
      for sampler, schedule, steps in [
          ("heun", "default", 3), ("dpm2", "karras", 3), ("dpm2_a", "karras", 3), ("lms", "default", 3),
          ("dpmpp_2m_sde", "exponential", 3), ("dpmpp_3m_sde", "exponential", 5), ("unipc", "default", 3),
          ("plms", "default", 3), ("lcm", "default", 3), ("euler", "sgm_uniform", 3)]],
    # a zero-terminal-SNR v-prediction checkpoint (the tiny model read as one): rescaled betas,
    # trailing spacing, guidance rescale 0.7; and at CFG 1, one pass on the prompt, no rescale
    dict(name="vpred_ztsnr", prompt="1girl, solo, masterpiece", negative=NEG, width=64, height=64,
         steps=4, cfg=5.0, seed=5, sampler="euler", schedule="default", ztsnr=True, cfg_rescale=0.7),
    dict(name="vpred_ztsnr_cfg1", prompt="1girl, solo, masterpiece", negative=NEG, width=64, height=64,
         steps=3, cfg=1.0, seed=5, sampler="dpmpp_2m", schedule="default", ztsnr=True, cfg_rescale=0.7),
    # img2img from tests/fixtures/init_64.png at strength 0.6
    dict(name="img2img_euler", prompt="a red house by a lake, oil painting", negative=NEG,
         width=64, height=64, steps=10, cfg=6.0, seed=3, sampler="euler", schedule="default", strength=0.6),
    dict(name="img2img_euler_a", prompt="a red house by a lake, oil painting", negative="",
         width=64, height=64, steps=8, cfg=6.0, seed=11, sampler="euler_a", schedule="default", strength=0.6),
    dict(name="img2img_dpmpp_2m", prompt="a red house by a lake", negative=NEG,
         width=64, height=64, steps=10, cfg=7.0, seed=5, sampler="dpmpp_2m", schedule="default", strength=0.6),
    dict(name="img2img_ddim", prompt="a red house by a lake", negative=NEG,
         width=64, height=64, steps=10, cfg=7.0, seed=9, sampler="ddim", schedule="default", strength=0.6),
    # LCM as SDXL's img2img pipeline runs it (the txt2img timesteps entered part-way, not the
    # SD 1.5 LCM pipeline's strength-based set), and a two-call sampler entered part-way
    dict(name="img2img_lcm", prompt="a red house by a lake", negative=NEG,
         width=64, height=64, steps=4, cfg=1.5, seed=13, sampler="lcm", schedule="default", strength=0.6),
    dict(name="img2img_heun", prompt="a red house by a lake", negative=NEG,
         width=64, height=64, steps=5, cfg=6.0, seed=17, sampler="heun", schedule="default", strength=0.6),
]


# our sampler name -> diffusers scheduler and its options
SCHEDULERS = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpm2": (KDPM2DiscreteScheduler, {}),
    "dpm2_a": (KDPM2AncestralDiscreteScheduler, {}),
    "lms": (LMSDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2)),
    "dpmpp_2m_sde": (DPMSolverMultistepScheduler, dict(algorithm_type="sde-dpmsolver++", solver_order=2)),
    "dpmpp_3m_sde": (DPMSolverMultistepScheduler, dict(algorithm_type="sde-dpmsolver++", solver_order=3)),
    "unipc": (UniPCMultistepScheduler, {}),
    # SDXL base's DDIM settings (the tiny folder's Euler config lacks them)
    "ddim": (DDIMScheduler, dict(clip_sample=False, set_alpha_to_one=False)),
    "plms": (PNDMScheduler, dict(skip_prk_steps=True, set_alpha_to_one=False)),
    "lcm": (LCMScheduler, {}),
}
SCHEDULES = {
    "default": {},
    "sgm_uniform": dict(timestep_spacing="trailing"),
    "karras": dict(use_karras_sigmas=True),
    "exponential": dict(use_exponential_sigmas=True),
}


def scheduler_for(case, base):
    cls, options = SCHEDULERS[case["sampler"]]
    extra = dict(options, **SCHEDULES[case["schedule"]])
    if case.get("ztsnr"):
        extra.update(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction")
    return cls.from_config(base, **extra)


def init_image() -> Image.Image:
    """A deterministic 64x64 picture: gradients, a disc and a little seeded noise."""
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    r = x * 4
    g = y * 4
    b = np.where((x - 40) ** 2 + (y - 24) ** 2 < 150, 230, 60).astype(np.float32)
    rgb = np.stack([r, g, b], -1) + np.random.default_rng(0).normal(0, 8, (64, 64, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def record_first_prediction(scheduler, store):
    step = scheduler.step

    # functools.wraps keeps step's signature visible: the pipeline passes `generator` only to a
    # step() whose signature names it
    @functools.wraps(step)
    def wrapped(model_output, *args, **kwargs):
        store.setdefault("noise_pred_step0", model_output.detach().clone())
        return step(model_output, *args, **kwargs)

    scheduler.step = wrapped


def pipelines():
    """The tiny model's txt2img and img2img pipelines (f32, sharing their components)."""
    with tempfile.TemporaryDirectory() as d:
        tok, tok_2 = tokenizers(Path(d))
        pipe = StableDiffusionXLPipeline.from_pretrained(
            FOLDER, tokenizer=tok, tokenizer_2=tok_2, variant="fp16", torch_dtype=torch.float32
        )
    return pipe, StableDiffusionXLImg2ImgPipeline(**pipe.components)


def main() -> int:
    pipe, img2img = pipelines()
    base = pipe.scheduler.config
    sf = pipe.vae.config.scaling_factor
    init_image().save(INIT_IMAGE)
    image_in = Image.open(INIT_IMAGE).convert("RGB")
    tensors = {}
    for case in CASES:
        store = {}
        scheduler = scheduler_for(case, base)
        record_first_prediction(scheduler, store)
        g = torch.Generator("cpu").manual_seed(case["seed"])
        common = dict(
            prompt=case["prompt"], negative_prompt=case["negative"] or None,
            num_inference_steps=case["steps"], guidance_scale=case["cfg"], generator=g, output_type="latent",
        )
        if "cfg_rescale" in case:
            common["guidance_rescale"] = case["cfg_rescale"]
        if "original_width" in case:
            common.update(original_size=(case["original_height"], case["original_width"]),
                          crops_coords_top_left=(case["crop_top"], case["crop_left"]))
        with torch.no_grad():
            if "strength" in case:
                img2img.scheduler = scheduler
                pixels = img2img.image_processor.preprocess(image_in)
                mean = img2img.vae.encode(pixels).latent_dist.mean * sf
                latents = img2img(image=mean, strength=case["strength"], **common).images
            else:
                pipe.scheduler = scheduler
                noise = None
                if "noise_seed" in case:
                    shape = (1, 4, case["height"] // 8, case["width"] // 8)
                    noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(case["noise_seed"]))
                    tensors[f"{case['name']}.noise"] = noise.contiguous()
                latents = pipe(width=case["width"], height=case["height"], latents=noise, **common).images
            image = pipe.vae.decode(latents / sf).sample
        tensors[f"{case['name']}.final_latents"] = latents.contiguous()
        tensors[f"{case['name']}.image"] = image.contiguous()
        tensors[f"{case['name']}.noise_pred_step0"] = store["noise_pred_step0"].contiguous()
        print(case["name"], list(latents.shape), float(latents.abs().max()), float(image.abs().max()))
    path = FIXTURES / "pipeline_reference.safetensors"
    save_file(tensors, path, metadata={"cases": json.dumps({c["name"]: c for c in CASES})})
    print(path, INIT_IMAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
