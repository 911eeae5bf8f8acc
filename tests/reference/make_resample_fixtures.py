#!/usr/bin/env python3
"""Builds tests/fixtures/resample.json: what Pillow's Image.resize gives on 8-bit RGB with the
LANCZOS and NEAREST filters (A1111's "Lanczos" and "Nearest" upscalers call exactly these).

Never run in CI; pinned environment as make_fixtures.py (Pillow as diffusers installs it):

    ~/refenv/bin/python tests/reference/make_resample_fixtures.py

Each case is a random image, a target size and a filter, with Pillow's output bytes. Sizes cover
each axis alone, both, enlarging and reducing (where Lanczos widens its support), and 1.5x.
"""

import json
import sys
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "resample.json"
SIZES = [
    ((7, 5), (14, 10)),
    ((7, 5), (11, 13)),
    ((16, 12), (5, 4)),
    ((9, 9), (9, 17)),  # vertical only
    ((9, 9), (20, 9)),  # horizontal only
    ((32, 24), (48, 36)),  # a hires fix's 1.5x
    ((12, 8), (11, 25)),
]
FILTERS = {"lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}


def main() -> int:
    rng = np.random.default_rng(0)
    cases = []
    for (w, h), (ow, oh) in SIZES:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        # a smooth part too, so the rounding of flat areas is tested, not only noise
        pixels[: h // 2] = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None]
        image = Image.fromarray(pixels, "RGB")
        for name, filt in FILTERS.items():
            out = image.resize((ow, oh), resample=filt)
            cases.append(dict(filter=name, input=[w, h], output=[ow, oh],
                              pixels=pixels.flatten().tolist(),
                              expected=np.asarray(out).flatten().tolist()))
    FIXTURE.write_text(json.dumps(dict(pillow=PIL.__version__, cases=cases)))
    print(f"{FIXTURE}: {len(cases)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
