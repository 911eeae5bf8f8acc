#!/usr/bin/env bash
# What the hosted CI runners record of their adapter (.github/workflows/ci.yml): `devices`,
# `doctor` and a tiny `bench` (the test model, 64x64, 2 steps) on one graphics API, as JSON in
# bench-out/. Usage: scripts/ci-bench.sh vulkan|dx12|metal|gl. Builds the CLI without the NATS
# feature (nothing here uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:?usage: scripts/ci-bench.sh vulkan|dx12|metal|gl}"
features=cli
[ "$backend" = metal ] && features=cli,metal
cargo build --release --quiet --no-default-features --features "$features"
bin=target/release/sdxl-wgpu
mkdir -p bench-out
"$bin" devices --json > bench-out/devices.json
# doctor exits 1 on a failing check: keep its report, and fail after the bench.
status=0
"$bin" doctor --backend "$backend" --model tests/fixtures/tiny-sdxl.safetensors --json \
    > bench-out/doctor.json || status=$?
"$bin" bench --model tests/fixtures/tiny-sdxl.safetensors --backend "$backend" \
    --size 64x64 --steps 2 --json bench-out/bench.json
cat bench-out/bench.json
exit "$status"
