#!/usr/bin/env bash
# One prepared command for a machine with an NVIDIA GPU. It builds nothing: run it on the
# default binary built beforehand (one binary: SPIR-V and WGSL are chosen at run time):
#
#     scripts/gpu-bench.sh target/release/sdxl-wgpu
#
# In order: `devices`; `doctor --selftest` (the built-in tiny model on every compiler x
# precision against diffusers); then `bench --synthetic` at SIZES (default 1024x1024,832x1216)
# with WGSL and with SPIR-V (tensor cores where the driver has them), each twice in a fresh
# cache folder: the first process pays compilation and autotune (its rows' `1st +s` and
# kernel counts), the second finds them in the cache. When Python with torch and diffusers and
# CUDA is present (`PYTHON=...` to choose the interpreter), diffusers' SDXL UNet in fp16 on the
# same GPU with the same shapes, and our step times as ratios to it. Results go to $OUT (default
# ./gpu-bench-out); STEPS (default 4) applies. Meant to fit 10 minutes of device time.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 BINARY" >&2
    exit 2
fi
bin="$1"
out="${OUT:-gpu-bench-out}"
steps="${STEPS:-4}"
sizes="${SIZES:-1024x1024,832x1216}"
python="${PYTHON:-python3}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
started=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - started )) s] $*"; }

stamp devices
"$bin" devices | tee "$out/devices.txt"
stamp "doctor --selftest"
SDXL_WGPU_CACHE_DIR="$out/cache-selftest" "$bin" doctor --selftest | tee "$out/selftest.txt" || true

for compiler in wgsl spirv; do
    cache="$out/cache-$compiler"
    rm -rf "$cache"
    for run in first second; do
        stamp "bench --shader-compiler $compiler, $run process"
        SDXL_WGPU_CACHE_DIR="$cache" "$bin" --shader-compiler "$compiler" bench --synthetic \
            --size "$sizes" --steps "$steps" --json "$out/bench-$compiler-$run.json" \
            2> >(tee "$out/phases-$compiler-$run.txt" >&2) | tee "$out/bench-$compiler-$run.txt" || true
    done
done

if "$python" -c 'import torch, diffusers; assert torch.cuda.is_available()' 2>/dev/null; then
    stamp "diffusers SDXL UNet, fp16, CUDA"
    "$python" "$here/diffusers_unet_step.py" --size "$sizes" --steps "$steps" | tee "$out/diffusers.json"
    for file in "$out"/bench-*-second.json; do
        [ -f "$file" ] || continue
        "$python" - "$file" "$out/diffusers.json" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))["rows"]
theirs = json.load(open(sys.argv[2]))
for row in ours:
    size = f"{row['width']}x{row['height']}"
    if size in theirs:
        cores = " + tensor cores" if row.get("tensor_cores") else ""
        print(f"{row['compiler']}{cores} {row['precision']} {size}: step {row['step_s']*1e3:.1f} ms, "
              f"diffusers fp16 {theirs[size]*1e3:.1f} ms, ratio {row['step_s']/theirs[size]:.2f}x "
              f"({row['tflops']:.1f} TFLOP/s), VAE {row['vae_decode_s']:.2f} s, "
              f"peak {row['peak_memory_bytes']/2**30:.1f} GiB")
PY
    done
else
    echo "(no Python with torch + diffusers and CUDA: the diffusers comparison is skipped)"
fi
stamp done
