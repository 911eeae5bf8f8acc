#!/usr/bin/env python3
"""Builds tests/fixtures/sampler_runs.json: whole sampling loops of diffusers' schedulers with a
stand-in model, for each sampler, schedule and prediction type, and zero-terminal-SNR v-prediction, so the tests check the stepping rules, the model-input scaling, the initial
noise and (Euler a) the order of per-step noise draws, without a UNet.

The stand-in model is `0.8 * tanh(x_in) + 0.05 * t / 1000`, applied to the scaled model input.
Each run: `g = torch.Generator("cpu").manual_seed(seed)`, `x = randn(shape, g) * init_noise_sigma`,
then for each timestep `x = step(model(scale_model_input(x, t), t), t, x, generator=g)`.
Never run in CI; pinned environment:

    ~/refenv/bin/python tests/reference/make_sampler_fixtures.py
"""

import json
import sys
from pathlib import Path

import torch
import inspect

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
    UniPCMultistepScheduler,
)

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
CONFIG = json.loads((ROOT / "tiny-sdxl" / "scheduler" / "scheduler_config.json").read_text())
SHAPE = (1, 4, 4, 4)


def model(x, t):
    return 0.8 * torch.tanh(x) + 0.05 * float(t) / 1000.0


# our name, scheduler class, its options, the schedules it runs with (karras etc. as in
# make_schedule_fixtures.py)
SAMPLERS = [
    ("euler", EulerDiscreteScheduler, {}, ["default", "karras", "sgm_uniform", "exponential", "beta"]),
    ("euler_a", EulerAncestralDiscreteScheduler, {}, ["default", "sgm_uniform"]),
    ("heun", HeunDiscreteScheduler, {}, ["default", "karras", "sgm_uniform", "exponential", "beta"]),
    ("dpm2", KDPM2DiscreteScheduler, {}, ["default", "karras", "sgm_uniform", "exponential", "beta"]),
    ("dpm2_a", KDPM2AncestralDiscreteScheduler, {}, ["default", "karras", "sgm_uniform", "exponential", "beta"]),
    ("lms", LMSDiscreteScheduler, {}, ["default", "karras", "sgm_uniform", "exponential", "beta"]),
    ("dpmpp_2m", DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2),
     ["default", "karras", "sgm_uniform", "exponential", "beta"]),
    ("dpmpp_2m_sde", DPMSolverMultistepScheduler, dict(algorithm_type="sde-dpmsolver++", solver_order=2),
     ["default", "karras", "sgm_uniform", "exponential", "beta"]),
    ("dpmpp_3m_sde", DPMSolverMultistepScheduler, dict(algorithm_type="sde-dpmsolver++", solver_order=3),
     ["default", "karras", "sgm_uniform", "exponential", "beta"]),
    ("unipc", UniPCMultistepScheduler, {}, ["default", "karras", "sgm_uniform", "exponential", "beta"]),
    # SDXL base's scheduler_config.json sets these (the tiny folder's Euler config, written by
    # diffusers 0.35, does not carry them)
    ("ddim", DDIMScheduler, dict(clip_sample=False, set_alpha_to_one=False), ["default", "sgm_uniform"]),
    ("plms", PNDMScheduler, dict(skip_prk_steps=True, set_alpha_to_one=False), ["default", "sgm_uniform"]),
    ("lcm", LCMScheduler, {}, ["default"]),
]
SCHEDULES = {
    "default": {},
    "sgm_uniform": dict(timestep_spacing="trailing"),
    "karras": dict(use_karras_sigmas=True),
    "exponential": dict(use_exponential_sigmas=True),
    "beta": dict(use_beta_sigmas=True),
}
# a zero-terminal-SNR v-prediction checkpoint's scheduler
ZTSNR = dict(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction")


def f32(values):
    """f32 values, written with the 9 significant digits that keep them exact."""
    return [float(f"{v:.9g}") for v in values]


def run(cls, extra, steps):
    """One whole loop; the latents after the first step and at the end."""
    s = cls.from_config(CONFIG, **extra)
    s.set_timesteps(steps)
    seed = 1000 + steps
    g = torch.Generator("cpu").manual_seed(seed)
    x = torch.randn(SHAPE, generator=g) * s.init_noise_sigma
    first = None
    # the stochastic steps take the generator (LMS, Heun and DPM2 take none)
    takes_generator = "generator" in inspect.signature(s.step).parameters
    for t in s.timesteps:
        out = model(s.scale_model_input(x, t), t)
        extra = dict(generator=g) if takes_generator else {}
        x = s.step(out, t, x, **extra).prev_sample
        if first is None:
            first = f32(x.flatten().tolist())
    return dict(steps=steps, seed=seed, calls=len(s.timesteps), first_step=first,
                final=f32(x.flatten().tolist()))


def main() -> int:
    runs = []
    for sampler, cls, options, schedules in SAMPLERS:
        for schedule in schedules:
            for prediction in ["epsilon", "v_prediction"]:
                for steps in [6, 16]:
                    extra = dict(options, prediction_type=prediction, **SCHEDULES[schedule])
                    runs.append(dict(sampler=sampler, schedule=schedule, ztsnr=False,
                                     prediction=prediction, **run(cls, extra, steps)))
        if "rescale_betas_zero_snr" not in inspect.signature(cls.__init__).parameters:
            continue
        for steps in [5, 16]:
            extra = dict(options, **ZTSNR)
            runs.append(dict(sampler=sampler, schedule="default", ztsnr=True,
                             prediction="v_prediction", **run(cls, extra, steps)))
    path = ROOT / "sampler_runs.json"
    path.write_text(json.dumps(dict(shape=SHAPE, runs=runs)))
    print(f"{path}: {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
