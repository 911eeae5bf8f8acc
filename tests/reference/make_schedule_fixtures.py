#!/usr/bin/env python3
"""Builds tests/fixtures/schedules.json: diffusers' timesteps and sigmas for SDXL's scheduler
config (scaled_linear betas 0.00085-0.012, 1000 steps, leading spacing, steps_offset 1) with
EulerDiscrete, EulerAncestralDiscrete, DPMSolverMultistep (dpmsolver++, order 2) and DDIM, for
each schedule diffusers has for them (default, SGM Uniform = trailing spacing, Karras,
exponential), and for zero-terminal-SNR checkpoints (`rescale_betas_zero_snr`, trailing).
Never run in CI; pinned environment:

    ~/refenv/bin/python tests/reference/make_schedule_fixtures.py
"""

import json
import sys
from pathlib import Path

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
STEPS = [1, 2, 3, 7, 20, 25, 28, 30, 50, 100, 999, 1000]
# the newer schedules at fewer counts (1, odd, even), to keep the fixture small
FEW_STEPS = [1, 2, 3, 7, 25, 30]

# our schedule name -> the scheduler options that make it
SCHEDULES = {
    "default": {},
    "sgm_uniform": dict(timestep_spacing="trailing"),
    "karras": dict(use_karras_sigmas=True),
    "exponential": dict(use_exponential_sigmas=True),
    "beta": dict(use_beta_sigmas=True),
}
SAMPLERS = [
    ("euler", EulerDiscreteScheduler, ["default", "sgm_uniform", "karras", "exponential", "beta"]),
    ("euler_a", EulerAncestralDiscreteScheduler, ["default", "sgm_uniform"]),
    ("heun", HeunDiscreteScheduler, ["default", "sgm_uniform", "karras", "exponential", "beta"]),
    ("dpm2", KDPM2DiscreteScheduler, ["default", "sgm_uniform", "karras", "exponential", "beta"]),
    ("dpm2_a", KDPM2AncestralDiscreteScheduler, ["default", "sgm_uniform", "karras", "exponential", "beta"]),
    ("lms", LMSDiscreteScheduler, ["default", "sgm_uniform", "karras", "exponential", "beta"]),
    ("dpmpp_2m", DPMSolverMultistepScheduler, ["default", "sgm_uniform", "karras", "exponential", "beta"]),
    ("ddim", DDIMScheduler, ["default", "sgm_uniform"]),
    ("unipc", UniPCMultistepScheduler, ["default", "sgm_uniform", "karras", "exponential", "beta"]),
    ("plms", PNDMScheduler, ["default", "sgm_uniform"]),
    ("lcm", LCMScheduler, ["default"]),
]
# the samplers checked at every count in STEPS
FIRST = ("euler", "euler_a", "dpmpp_2m", "ddim")
# samplers that call the model twice per step (diffusers interleaves their timesteps and sigmas)
INTERLEAVED = ("heun", "dpm2", "dpm2_a")
# how a zero-terminal-SNR checkpoint is run: rescaled betas, trailing spacing as its default
ZTSNR = dict(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction")


def options(sampler, schedule, ztsnr):
    extra = dict(algorithm_type="dpmsolver++", solver_order=2) if sampler == "dpmpp_2m" else {}
    if sampler == "plms":
        extra = dict(skip_prk_steps=True, set_alpha_to_one=False)
    if ztsnr:
        extra.update(ZTSNR)
    extra.update(SCHEDULES[schedule])
    return extra


def main() -> int:
    cases = []
    for sampler, cls, schedules in SAMPLERS:
        # diffusers rescales to zero terminal SNR only in these
        ztsnr_options = [False, True] if sampler in ("euler", "euler_a", "dpmpp_2m", "ddim", "unipc") else [False]
        for ztsnr in ztsnr_options:
            for schedule in schedules:
                s = cls.from_config(CONFIG, **options(sampler, schedule, ztsnr))
                full = schedule in ("default", "karras") and not ztsnr and sampler in FIRST
                for steps in STEPS if full else FEW_STEPS:
                    s.set_timesteps(steps)
                    calls = 2 * steps - 1 if sampler in INTERLEAVED else steps
                    if sampler == "plms" and steps > 1:
                        calls = steps + 1  # the warm-up calls the second timestep twice
                    if len(s.timesteps) != calls:
                        continue  # NumPy's float arange gives trailing spacing one step more
                    # the timestep of every model call; sigmas one per step and the final 0
                    case = dict(sampler=sampler, schedule=schedule, ztsnr=ztsnr, steps=steps,
                                timesteps=[float(f"{t:.9g}") for t in s.timesteps])
                    if hasattr(s, "sigmas"):
                        sigmas = [float(f"{x:.9g}") for x in s.sigmas]
                        if sampler in INTERLEAVED:
                            sigmas = ([sigmas[0]] + sigmas[1::2])[: steps + 1]
                        case["sigmas"] = sigmas
                        case["init_noise_sigma"] = float(s.init_noise_sigma)
                    cases.append(case)
    path = ROOT / "schedules.json"
    # the training tables every schedule starts from, plain and rescaled to zero terminal SNR
    train = {
        name: [float(a) for a in EulerDiscreteScheduler.from_config(CONFIG, **extra).alphas_cumprod]
        for name, extra in [("sdxl", {}), ("ztsnr", dict(rescale_betas_zero_snr=True))]
    }
    path.write_text(json.dumps(dict(config=CONFIG, alphas_cumprod=train, cases=cases)))
    print(f"{path}: {len(cases)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
