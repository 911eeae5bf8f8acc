#!/usr/bin/env bash
# One prepared command for a machine with an NVIDIA GPU. It builds nothing: run it on binaries
# built beforehand, the default build (WGSL) and, if there is one, a `--features vulkan-spirv`
# build:
#
#     scripts/gpu-bench.sh target/release/sdxl-wgpu [path/to/spirv/sdxl-wgpu]
#
# For each binary: `doctor` (adapter, driver, compiler, cooperative-matrix kernels) and `bench
# --synthetic` at 1024x1024 and 768x768 (the SPIR-V build compared with the WGSL one). When
# Python with torch and diffusers is present (`PYTHON=...` to choose the interpreter), it also
# times diffusers' SDXL UNet in fp16 on the same GPU with the same shapes (random weights from
# the real config) and prints our step time as a ratio to it. Results go to $OUT (default
# ./gpu-bench-out). STEPS (default 10) and SIZES apply.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 WGSL_BINARY [SPIRV_BINARY]" >&2
    exit 2
fi
out="${OUT:-gpu-bench-out}"
steps="${STEPS:-10}"
sizes="${SIZES:-1024x1024,768x768}"
python="${PYTHON:-python3}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"

run_build() { # name binary [compare-with]
    local name="$1" bin="$2" compare=()
    [ -n "${3:-}" ] && compare=(--compare "$3")
    echo "== $name: $bin"
    "$bin" doctor | tee "$out/doctor-$name.txt" || true
    "$bin" bench --synthetic --size "$sizes" --steps "$steps" \
        --json "$out/bench-$name.json" "${compare[@]}" | tee "$out/bench-$name.txt"
}

run_build wgsl "$1"
builds=(wgsl)
if [ $# -ge 2 ]; then
    run_build spirv "$2" "$out/bench-wgsl.json"
    builds+=(spirv)
fi

if "$python" -c 'import torch, diffusers; assert torch.cuda.is_available()' 2>/dev/null; then
    echo "== diffusers SDXL UNet, fp16, CUDA"
    "$python" "$here/diffusers_unet_step.py" --size "$sizes" --steps "$steps" | tee "$out/diffusers.json"
    for build in "${builds[@]}"; do
        "$python" - "$out/bench-$build.json" "$out/diffusers.json" "$build" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))["rows"]
theirs = json.load(open(sys.argv[2]))
for row in ours:
    size = f"{row['width']}x{row['height']}"
    if size in theirs:
        print(f"{sys.argv[3]} {row['precision']} {size}: step {row['step_s']*1e3:.1f} ms, "
              f"diffusers fp16 {theirs[size]*1e3:.1f} ms, ratio {row['step_s']/theirs[size]:.2f}x "
              f"({row['tflops']:.1f} TFLOP/s)")
PY
    done
else
    echo "(no Python with torch + diffusers and CUDA: the diffusers comparison is skipped)"
fi
