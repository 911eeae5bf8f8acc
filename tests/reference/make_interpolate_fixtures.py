#!/usr/bin/env python3
"""Builds tests/fixtures/interpolate.json: what torch.nn.functional.interpolate gives in each mode
A1111's latent upscalers use (hires fix: `Latent`, `Latent (antialiased)`, `Latent (bicubic)`,
`Latent (bicubic antialiased)`, `Latent (nearest)`, `Latent (nearest-exact)`).

Never run in CI; pinned environment as make_fixtures.py:

    ~/refenv/bin/python tests/reference/make_interpolate_fixtures.py

Each case is a random float32 input [1, 1, h, w], an output size and a mode, with the output
torch gives on the CPU (`align_corners` left at its default, as A1111 calls it). Sizes cover
integer and fractional upscales, exactly twice (PyTorch's nearest special case) and downscales
(where antialiasing widens the filter).
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "interpolate.json"
MODES = [
    ("nearest", False),
    ("nearest-exact", False),
    ("bilinear", False),
    ("bilinear", True),
    ("bicubic", False),
    ("bicubic", True),
]
SIZES = [
    ((5, 7), (10, 14)),  # x2
    ((8, 8), (12, 12)),  # x1.5: a 64x64 image's latents, hires 1.5
    ((6, 9), (13, 20)),  # fractional
    ((16, 12), (40, 30)),  # x2.5
    ((9, 16), (4, 7)),  # down
    ((3, 3), (3, 3)),  # the same size
]


def main() -> int:
    g = torch.Generator("cpu").manual_seed(0)
    cases = []
    for (h, w), (oh, ow) in SIZES:
        x = torch.randn(1, 1, h, w, generator=g, dtype=torch.float32)
        for mode, antialias in MODES:
            y = F.interpolate(x, size=(oh, ow), mode=mode, antialias=antialias)
            cases.append(
                dict(
                    mode=mode,
                    antialias=antialias,
                    input=[h, w],
                    output=[oh, ow],
                    x=x.flatten().tolist(),
                    y=y.flatten().tolist(),
                )
            )
    FIXTURE.write_text(json.dumps(dict(torch=torch.__version__, cases=cases)))
    print(f"{FIXTURE}: {len(cases)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
