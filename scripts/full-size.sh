#!/usr/bin/env bash
# Full-size SDXL end to end on whatever adapter `--backend auto` picks, including a software one
# (lavapipe): the synthetic SDXL base 1.0 checkpoint (3.47 G parameters generated in memory),
# `bench --synthetic --steps 1` at each size, with every phase line (weights generated, upload,
# LoRA swap, text encode, each step, VAE decode, with the kernels each compiled and tuned) and
# the process's peak memory. Too slow for the test suite: on a 2-core machine with lavapipe,
# 512x512's cold pass took 75 minutes (UNet step 29, VAE decode 43, nearly all autotune) and
# 15.7 GB of memory; a warm step about 10 minutes.
#
#     scripts/full-size.sh [BINARY]            # default target/release/sdxl-wgpu
#
# SIZES (default 512x512), STEPS (default 1), PRECISION (default auto), LIMIT (seconds per size,
# default 3600: a size still running then is stopped, and its phase lines say how far it got)
# and OUT (default full-size-out) apply. It builds nothing: `cargo build --release` first.
set -euo pipefail
bin="${1:-target/release/sdxl-wgpu}"
out="${OUT:-full-size-out}"
sizes="${SIZES:-512x512}"
steps="${STEPS:-1}"
precision="${PRECISION:-auto}"
limit="${LIMIT:-3600}"
mkdir -p "$out"
"$bin" devices | tee "$out/devices.txt"
for size in ${sizes//,/ }; do
    echo "== bench --synthetic --size $size --steps $steps --precision $precision (at most ${limit} s)"
    status=0
    # GNU time's -v report gives the peak resident memory (of the largest process under it);
    # stderr carries the phase lines
    /usr/bin/time -v timeout "$limit" "$bin" bench --synthetic --size "$size" \
        --steps "$steps" --precision "$precision" --json "$out/bench-$size.json" \
        2> >(tee "$out/phases-$size.txt" >&2) | tee "$out/bench-$size.txt" || status=$?
    grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$out/phases-$size.txt" || true
    [ "$status" = 0 ] || echo "== $size: stopped or failed (status $status); the phase lines above say how far it got"
done
