#!/usr/bin/env python3
"""Builds tests/fixtures/upscalers/: tiny ESRGAN-family upscaler model files in the layouts and
containers found in the wild, and what spandrel (the PyTorch reference ComfyUI and chaiNNer load
these with) computes with them.

Never run in CI; pinned environment as make_fixtures.py (plus spandrel and torchvision):

    ~/refenv/bin/python tests/reference/make_upscaler_fixtures.py

Writes:

- `rrdb_old_x4.safetensors`: ESRGAN RRDBNet, old layout (`model.0.weight`,
  `model.1.sub.0.RDB1.conv1.0.weight`, ..., `model.10.bias`), 8 filters, 1 block, x4, float16.
- `rrdb_new_x4.pth`: the same weights in the BasicSR / Real-ESRGAN layout (`conv_first`,
  `body.0.rdb1.conv1`, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`, `conv_last`), wrapped as
  `{"params_ema": OrderedDict}`, float16, torch.save zip format.
- `rrdb_x2_unshuffle.pth`: Real-ESRGAN x2plus style, bfloat16 (pixel-unshuffle by 2 into 12 channels, then
  the x4 network: true scale 2), new layout, plain state dict, float32.
- `compact_x4.pth`: Real-ESRGAN SRVGGNetCompact (PReLU), `{"params": state_dict}`, float32.
- `not_allowed.pth`: a zip-format checkpoint whose pickle names `posix.system` (never loaded here).
- `legacy.pth`: a pre-1.6 (non-zip, `_use_new_zipfile_serialization=False`) checkpoint.
- `reference.safetensors` (float32): `input` [1, 3, 24, 20] and `input_odd` [1, 3, 23, 19], and per
  model file stem its raw output (`ModelLoader().load_from_file(..).model`, not the descriptor's
  call, which would clamp to [0, 1]) on `input`; `rrdb_x2_unshuffle_odd` is the x2 model on
  `input_odd` (spandrel reflect-pads to a multiple of 2 before unshuffling, then crops). The
  metadata holds each model's scale as `<stem>.scale`.
- `a1111_input.png` (200x24 RGB) and `a1111_tiles_compact_x4.png`: `compact_x4` run on it as
  AUTOMATIC1111 v1.10 runs a model upscaler (`a1111_upscale` below: its 192-pixel tiles with 8 of
  overlap, BGR in, 8 bits per tile, its grid paste), float32 on the CPU.

Weights are re-randomised so nothing is left at a trivial init: conv weights normal(0,
1/sqrt(fan_in)) (a flat std of 0.2 drives this net's activations to ~46000, at the edge of float16),
biases normal(0, 0.2), PReLU slopes uniform(0, 0.5); all rounded to float16-representable values so
the float16 files hold exactly the weights the outputs were computed with.
"""

import json
import math
import os
import re
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import safetensors.torch
import spandrel
import torch
from PIL import Image
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "upscalers"


def randomise(model: torch.nn.Module) -> torch.nn.Module:
    for name, p in model.named_parameters():
        if isinstance(model.get_submodule(name.rsplit(".", 1)[0]), torch.nn.PReLU):
            p.data.uniform_(0.0, 0.5)
        elif p.dim() == 1:
            p.data.normal_(0.0, 0.2)
        else:
            p.data.normal_(0.0, 1.0 / math.sqrt(p[0].numel()))
        p.data = p.data.half().float()
    return model.eval()


def old_to_new(old: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
    """Inverse of spandrel's ESRGAN `_to_old_arch` for the BasicSR / Real-ESRGAN names."""
    seq = sorted({int(k.split(".")[1]) for k in old})
    last = seq[-1]  # conv_last = max_upconv + 4, conv_hr = max_upconv + 2
    nb = max(int(k.split(".")[3]) for k in old if k.startswith("model.1.sub."))
    new = OrderedDict()
    for k, v in old.items():
        m = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", k)
        i = int(k.split(".")[1])
        kind = k.rsplit(".", 1)[1]
        if m:
            name = f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"
        elif k.startswith(f"model.1.sub.{nb}."):
            name = f"conv_body.{kind}"
        elif i == 0:
            name = f"conv_first.{kind}"
        elif i == last:
            name = f"conv_last.{kind}"
        elif i == last - 2:
            name = f"conv_hr.{kind}"
        else:
            assert i % 3 == 0, k
            name = f"conv_up{i // 3}.{kind}"
        new[name] = v.clone()
    return new


def save_legacy(obj, path: Path) -> None:
    """torch.save in the pre-1.6 format. Its storage keys are memory addresses; renumber them
    0, 1, ... (as BINUNICODE strings, both in the data pickle and in the key list after it) so the
    file is the same on every run."""
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    keys = []
    for m in re.finditer(rb"X(....)(\d{6,})", data, re.DOTALL):
        key = m[2][: int.from_bytes(m[1], "little")]
        if key not in keys:
            keys.append(key)
    for i, key in enumerate(keys):
        old = b"X" + len(key).to_bytes(4, "little") + key
        new = str(i).encode()
        data = data.replace(old, b"X" + len(new).to_bytes(4, "little") + new)
    path.write_bytes(data)
    assert torch.equal(torch.load(path, weights_only=True)["w"], obj["w"])


def save_sorted(tensors: dict, path: Path, metadata: dict) -> None:
    """safetensors' save_file writes the metadata in hash order; sort it so the file is the same
    on every run (the header keeps its length, so the offsets stay valid)."""
    safetensors.torch.save_file(tensors, path, metadata=metadata)
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n
    data[8:8 + n] = text.ljust(n, b" ")
    path.write_bytes(bytes(data))


def load(path: Path):
    desc = spandrel.ModelLoader().load_from_file(path)
    print(f"  spandrel: {path.name}: arch {desc.architecture.id}, scale {desc.scale}, "
          f"tags {desc.tags}, in {desc.input_channels}, out {desc.output_channels}, "
          f"size {desc.size_requirements}")
    return desc


def run(desc, x: torch.Tensor) -> torch.Tensor:
    model = desc.model.eval().float()
    with torch.no_grad():
        return model(x).contiguous()


class System:
    """Pickles as a call of os.system: what a restricted unpickler must refuse."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def a1111_tile(model, tile: Image.Image) -> Image.Image:
    """A1111's `upscale_without_tiling`: BGR in [0, 1] (float64, then float32), the network,
    clamped, times 255 truncated to uint8, back to RGB."""
    bgr = np.asarray(tile)[:, :, ::-1]
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)) / 255).float()
    with torch.no_grad():
        y = model(x.unsqueeze(0)).squeeze().float().clamp_(0, 1).numpy()
    out = (255.0 * np.moveaxis(y, 0, 2)).astype(np.uint8)[:, :, ::-1]
    return Image.fromarray(np.ascontiguousarray(out), "RGB")


def a1111_upscale(model, img: Image.Image, tile: int = 192, overlap: int = 8) -> Image.Image:
    """A1111 v1.10's `upscale_with_model` (`modules/upscaler_utils.py`) with `images.split_grid`
    and `images.combine_grid` (`modules/images.py`), the same steps written out here, since A1111
    is not an installable package: tiles cut by Pillow's crop (black past the image) at origins
    `int(i * (n - tile) / (count - 1))`, the last flush with the end; each tile's first `overlap`
    output columns pasted through a ramp mask `uint8(arange * 255 / overlap)`, then each row's
    first rows likewise."""
    w, h = img.size
    count = lambda n: math.ceil((n - overlap) / (tile - overlap))
    cols, rows = count(w), count(h)
    dx = (w - tile) / (cols - 1) if cols > 1 else 0
    dy = (h - tile) / (rows - 1) if rows > 1 else 0
    flush = lambda p, n: n - tile if p + tile >= n else p
    ys = [flush(int(r * dy), h) for r in range(rows)]
    xs = [flush(int(c * dx), w) for c in range(cols)]
    outs = [[a1111_tile(model, img.crop((x, y, x + tile, y + tile))) for x in xs] for y in ys]
    s = outs[0][0].width // tile
    ts, ov, W = tile * s, overlap * s, w * s
    ramp = np.arange(ov, dtype=np.float32) * 255 / ov
    mask_w = Image.fromarray(ramp.reshape(1, ov).repeat(ts, axis=0).astype(np.uint8), "L")
    mask_h = Image.fromarray(ramp.reshape(ov, 1).repeat(W, axis=1).astype(np.uint8), "L")
    combined = Image.new("RGB", (W, h * s))
    for y, row_tiles in zip(ys, outs):
        row = Image.new("RGB", (W, ts))
        for x, t in zip(xs, row_tiles):
            if x == 0:
                row.paste(t, (0, 0))
                continue
            row.paste(t.crop((0, 0, ov, ts)), (x * s, 0), mask=mask_w)
            row.paste(t.crop((ov, 0, ts, ts)), (x * s + ov, 0))
        if y == 0:
            combined.paste(row, (0, 0))
            continue
        combined.paste(row.crop((0, 0, W, ov)), (0, y * s), mask=mask_h)
        combined.paste(row.crop((0, ov, W, ts)), (0, y * s + ov))
    return combined


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    x = torch.rand(1, 3, 24, 20)
    x_odd = torch.rand(1, 3, 23, 19)
    tensors = {"input": x, "input_odd": x_odd}
    meta = {"torch": torch.__version__, "spandrel": spandrel.__version__}

    # 1. old layout, float16 safetensors
    torch.manual_seed(0)
    rrdb = randomise(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4))
    old = OrderedDict((k, v.half().contiguous()) for k, v in rrdb.state_dict().items())
    safetensors.torch.save_file(old, OUT / "rrdb_old_x4.safetensors")

    # 2. new layout, {"params_ema": ...}, float16
    torch.save({"params_ema": old_to_new(old)}, OUT / "rrdb_new_x4.pth")

    # 3. Real-ESRGAN x2plus style, plain state dict, bfloat16 (weights rounded to it). Real files keep the state dict's
    # `_metadata` attribute ({module path: {"version": 1}}, a BUILD in the pickle); mimic that with
    # the BasicSR module paths.
    torch.manual_seed(2)
    x2 = randomise(ESRGAN(in_nc=12, out_nc=3, num_filters=8, num_blocks=1, scale=4,
                          shuffle_factor=2))
    for p in x2.parameters():
        p.data = p.data.bfloat16().float()
    x2_new = old_to_new(OrderedDict((k, v.bfloat16()) for k, v in x2.state_dict().items()))
    x2_new._metadata = OrderedDict([("", {"version": 1})])
    for k in x2_new:
        parts = k.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            x2_new._metadata.setdefault(".".join(parts[:i]), {"version": 1})
    torch.save(x2_new, OUT / "rrdb_x2_unshuffle.pth")

    # 4. Compact (SRVGGNetCompact), {"params": state_dict} as Real-ESRGAN saves it, float32
    torch.manual_seed(3)
    compact = randomise(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4))
    torch.save({"params": compact.state_dict()}, OUT / "compact_x4.pth")

    # 5. files the loader must refuse (never loaded here)
    torch.save({"w": torch.zeros(2), "payload": System()}, OUT / "not_allowed.pth")
    save_legacy({"w": torch.zeros(2)}, OUT / "legacy.pth")

    # 6. spandrel's outputs
    expected_scale = {"rrdb_old_x4": 4, "rrdb_new_x4": 4, "rrdb_x2_unshuffle": 2, "compact_x4": 4}
    for stem, scale in expected_scale.items():
        path = next(OUT.glob(f"{stem}.*"))
        desc = load(path)
        assert desc.scale == scale, (stem, desc.scale)
        y = run(desc, x)
        assert y.shape == (1, 3, 24 * scale, 20 * scale), y.shape
        tensors[stem] = y
        meta[f"{stem}.scale"] = str(scale)
        meta[f"{stem}.arch"] = desc.architecture.id
        if stem == "rrdb_x2_unshuffle":
            y_odd = run(desc, x_odd)
            assert y_odd.shape == (1, 3, 46, 38), y_odd.shape
            tensors[f"{stem}_odd"] = y_odd
        print(f"  {stem}: output range [{y.min():.4f}, {y.max():.4f}], std {y.std():.4f}")

    # the two layouts are one model
    assert torch.equal(tensors["rrdb_old_x4"], tensors["rrdb_new_x4"])
    back = spandrel.ModelLoader().load_from_file(OUT / "rrdb_new_x4.pth").model.state_dict()
    assert list(back) == list(old) and all(torch.equal(back[k], old[k].float()) for k in old)
    # and spandrel's outputs are the outputs of the weights built here
    with torch.no_grad():
        assert torch.equal(rrdb(x), tensors["rrdb_old_x4"])
        assert torch.equal(x2(x_odd), tensors["rrdb_x2_unshuffle_odd"])
        assert torch.equal(compact(x), tensors["compact_x4"])

    save_sorted({k: v.float().contiguous() for k, v in tensors.items()},
                OUT / "reference.safetensors", meta)

    # 7. A1111's tiling: two columns (the second blended over the first), one row reaching
    # back past the image's top
    yy, xx = np.mgrid[0:24, 0:200]
    pattern = np.stack([(xx * 3 + yy) % 256, (yy * 4) % 256, (xx * yy) % 251], axis=-1)
    a1111_in = Image.fromarray(pattern.astype(np.uint8), "RGB")
    a1111_in.save(OUT / "a1111_input.png")
    a1111_upscale(compact, a1111_in).save(OUT / "a1111_tiles_compact_x4.png")
    total = 0
    for f in sorted(OUT.iterdir()):
        total += f.stat().st_size
        print(f"{f}: {f.stat().st_size} bytes")
    print(f"total {total} bytes; torch {torch.__version__}, spandrel {spandrel.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
