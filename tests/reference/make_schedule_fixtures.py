#!/usr/bin/env python3
"""Builds tests/fixtures/schedules.json: diffusers' timesteps and sigmas for SDXL's scheduler
config (scaled_linear betas 0.00085-0.012, 1000 steps, leading spacing, steps_offset 1) with
EulerDiscrete, EulerAncestralDiscrete, DPMSolverMultistep (dpmsolver++, order 2) and DDIM, with
and without Karras sigmas where diffusers has them. Never run in CI; pinned environment:

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
)

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
CONFIG = json.loads((ROOT / "tiny-sdxl" / "scheduler" / "scheduler_config.json").read_text())
STEPS = [1, 2, 3, 7, 20, 25, 28, 30, 50, 100, 999, 1000]


def main() -> int:
    cases = []
    for sampler, cls, karras_options in [
        ("euler", EulerDiscreteScheduler, [False, True]),
        ("euler_a", EulerAncestralDiscreteScheduler, [False]),
        ("dpmpp_2m", DPMSolverMultistepScheduler, [False, True]),
        ("ddim", DDIMScheduler, [False]),
    ]:
        for karras in karras_options:
            extra = dict(algorithm_type="dpmsolver++", solver_order=2) if sampler == "dpmpp_2m" else {}
            if karras:
                extra["use_karras_sigmas"] = True
            s = cls.from_config(CONFIG, **extra)
            for steps in STEPS:
                s.set_timesteps(steps)
                case = dict(sampler=sampler, karras=karras, steps=steps,
                            timesteps=[float(t) for t in s.timesteps])
                if hasattr(s, "sigmas"):
                    case["sigmas"] = [float(x) for x in s.sigmas]
                    case["init_noise_sigma"] = float(s.init_noise_sigma)
                cases.append(case)
    path = ROOT / "schedules.json"
    path.write_text(json.dumps(dict(config=CONFIG, cases=cases)))
    print(f"{path}: {len(cases)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
