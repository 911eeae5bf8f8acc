#!/usr/bin/env python3
"""Builds tests/fixtures/torch_randn.json: what torch.randn gives with a seeded CPU generator.

Never run in CI; pinned environment as make_fixtures.py:

    ~/refenv/bin/python tests/reference/make_noise_fixtures.py

Each case is a seed and a sequence of draws from one generator (`torch.randn(n, generator=g)`,
float32), so the tests see both the values and the generator state carried between draws
(including the cached second Box-Muller value of draws under 16 values). Large draws keep their
first and last 64 values and their sum.
"""

import json
import sys
from pathlib import Path

import torch

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "torch_randn.json"
CASES = [
    (0, [1, 5, 15]),
    (42, [16, 17, 31, 100]),
    (1234, [3, 40, 1, 1, 2]),
    (2**32 + 7, [65536]),  # seeds use their low 32 bits
    (987654321, [2 * 4 * 128 * 128, 4 * 4 * 96 * 80 + 3]),
    (2**63 - 1, [7, 33]),
]


def main() -> int:
    cases = []
    for seed, sizes in CASES:
        g = torch.Generator("cpu").manual_seed(seed)
        draws = []
        for n in sizes:
            x = torch.randn(n, generator=g, dtype=torch.float32)
            v = x.tolist()
            draw = dict(n=n, sum=float(x.double().sum()))
            if n <= 128:
                draw["values"] = v
            else:
                draw["head"], draw["tail"] = v[:64], v[-64:]
            draws.append(draw)
        cases.append(dict(seed=seed, draws=draws))
    FIXTURE.write_text(json.dumps(dict(torch=torch.__version__, cases=cases)))
    print(f"{FIXTURE}: {len(cases)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
