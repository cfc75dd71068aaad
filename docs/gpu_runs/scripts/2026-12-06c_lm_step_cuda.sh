#!/usr/bin/env bash
# GPU call for branch wip/lm-step-cuda (2026-12-06c, not run yet): the CUDA linear_memory decode
# step. Build the extension (nvcc of the device), (1) its GPU tests against the float64 full op and
# the torch step, (2) the decode-step benchmark rows of the cuda, triton and torch steps (N64 H16
# K=V=128 C64 bf16, α+β+μ and no gates; floors 112 / 67.5 µs).
. "$(dirname "$0")/lib.sh"
{
fg build 300 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg test 120 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_step_cuda.py -p no:cacheprovider
fg bench 120 python3 -m pytest bench/bench_decode_step.py -q -k linear_memory --bench-csv "$OUT/bench_step.csv" -p no:cacheprovider
echo "=== done ($(now))"
} > "$OUT/lm_step_cuda.log" 2>&1
