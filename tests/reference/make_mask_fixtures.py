#!/usr/bin/env python3
"""Builds tests/fixtures/mask_blur.json and mask_fill.json. mask_blur.json: A1111's mask blur (OpenCV's `GaussianBlur` along x with
a (k, 1) kernel, then along y with (1, k), k = 2 * int(2.5 * sigma + 0.5) + 1, as
`StableDiffusionProcessingImg2Img.init` calls it) of small 8-bit masks, for
`src/image_io/mask.rs` to equal bit for bit. mask_fill.json: A1111's "fill" masked content
(`modules/masking.py` `fill`, written out below as it reads, Pillow doing the work) of small
images, for `src/image_io/fill.rs`. Never run in CI; run in the pinned environment
(requirements.txt: opencv-python-headless):

    ~/refenv/bin/python tests/reference/make_mask_fixtures.py
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def a1111_blur(mask: np.ndarray, x: int, y: int) -> np.ndarray:
    if x > 0:
        mask = cv2.GaussianBlur(mask, (2 * int(2.5 * x + 0.5) + 1, 1), x)
    if y > 0:
        mask = cv2.GaussianBlur(mask, (1, 2 * int(2.5 * y + 0.5) + 1), y)
    return mask


def a1111_fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111 v1.10.1 modules/masking.py `fill`."""
    image_mod = Image.new("RGBA", (image.width, image.height))
    image_masked = Image.new("RGBa", (image.width, image.height))
    image_masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    image_masked = image_masked.convert("RGBa")
    for radius, repeats in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)]:
        blurred = image_masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            image_mod.alpha_composite(blurred)
    return image_mod.convert("RGB")


def fill_cases(rng) -> list:
    cases = []
    for name, (w, h), blur in [("disc_40x30", (40, 30), 4), ("wide_300x7", (300, 7), 0)]:
        yy, xx = np.mgrid[0:h, 0:w]
        image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        image[..., 0] = (xx * 255 // max(w - 1, 1)).astype(np.uint8)
        mask = np.where((xx - w // 2) ** 2 + (yy - h // 2) ** 2 < (min(w, h) // 3) ** 2, 255, 0).astype(np.uint8)
        mask = a1111_blur(mask, blur, blur)
        filled = a1111_fill(Image.fromarray(image), Image.fromarray(mask))
        cases.append(dict(name=name, width=w, height=h, image=image.flatten().tolist(),
                          mask=mask.flatten().tolist(), filled=np.array(filled).flatten().tolist()))
    return cases


def main() -> int:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:20, 0:24]
    disc = np.where((xx - 9) ** 2 + (yy - 11) ** 2 < 40, 255, 0).astype(np.uint8)
    cases = []
    for name, mask, x, y in [
        ("disc_4_4", disc, 4, 4),
        ("disc_1_3", disc, 1, 3),
        ("noise_2_0", rng.integers(0, 256, (9, 13)).astype(np.uint8), 2, 0),
        ("noise_0_5", rng.integers(0, 256, (9, 13)).astype(np.uint8), 0, 5),
        # kernels far wider than the image: mirrored again and again
        ("row_16_16", rng.integers(0, 256, (1, 5)).astype(np.uint8), 16, 16),
        ("tall_64_2", rng.integers(0, 256, (30, 3)).astype(np.uint8), 64, 2),
    ]:
        cases.append(dict(name=name, width=int(mask.shape[1]), height=int(mask.shape[0]), blur=[x, y],
                          mask=mask.flatten().tolist(), blurred=a1111_blur(mask, x, y).flatten().tolist()))
    path = FIXTURES / "mask_blur.json"
    path.write_text(json.dumps(dict(opencv=cv2.__version__, cases=cases)) + "\n")
    fill = FIXTURES / "mask_fill.json"
    fill.write_text(json.dumps(fill_cases(np.random.default_rng(3))) + "\n")
    print(path, fill)
    return 0


if __name__ == "__main__":
    sys.exit(main())
