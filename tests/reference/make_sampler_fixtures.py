#!/usr/bin/env python3
"""Builds tests/fixtures/sampler_runs.json: whole sampling loops of diffusers' schedulers with a
stand-in model, so the tests check the stepping rules, the model-input scaling, the initial
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
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
)

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
CONFIG = json.loads((ROOT / "tiny-sdxl" / "scheduler" / "scheduler_config.json").read_text())
SHAPE = (1, 4, 8, 8)


def model(x, t):
    return 0.8 * torch.tanh(x) + 0.05 * float(t) / 1000.0


def main() -> int:
    runs = []
    for sampler, cls, karras_options in [
        ("euler", EulerDiscreteScheduler, [False, True]),
        ("euler_a", EulerAncestralDiscreteScheduler, [False]),
        ("dpmpp_2m", DPMSolverMultistepScheduler, [False, True]),
        ("ddim", DDIMScheduler, [False]),
    ]:
        for karras in karras_options:
            for prediction in ["epsilon", "v_prediction"]:
                for steps in [6, 16]:
                    extra = dict(prediction_type=prediction)
                    if sampler == "dpmpp_2m":
                        extra.update(algorithm_type="dpmsolver++", solver_order=2)
                    if sampler == "ddim":
                        # SDXL base's scheduler_config.json sets these (the tiny folder's Euler
                        # config, written by diffusers 0.35, does not carry them)
                        extra.update(clip_sample=False, set_alpha_to_one=False)
                    if karras:
                        extra["use_karras_sigmas"] = True
                    s = cls.from_config(CONFIG, **extra)
                    s.set_timesteps(steps)
                    seed = 1000 + steps
                    g = torch.Generator("cpu").manual_seed(seed)
                    x = torch.randn(SHAPE, generator=g) * s.init_noise_sigma
                    first = None
                    for t in s.timesteps:
                        out = model(s.scale_model_input(x, t), t)
                        x = s.step(out, t, x, generator=g).prev_sample
                        if first is None:
                            first = x.flatten().tolist()
                    runs.append(dict(sampler=sampler, karras=karras, prediction=prediction, steps=steps,
                                     seed=seed, first_step=first, final=x.flatten().tolist()))
    path = ROOT / "sampler_runs.json"
    path.write_text(json.dumps(dict(shape=SHAPE, runs=runs)))
    print(f"{path}: {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
