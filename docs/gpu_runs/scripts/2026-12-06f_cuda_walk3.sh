#!/usr/bin/env bash
# 2026-12-06f, third call: the reference case that failed in call 3 (bm, self target, read after,
# gelu, C64, K=V=32, F256, bf16), with its error report, and the walk-vs-Triton test without kept
# residuals (cut by call 3's limit).
. "$(dirname "$0")/lib.sh"
{
fg build 150 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg tests 120 python3 -m pytest -q -m gpu tests/ops/test_mlp_memory_cuda.py -p no:cacheprovider --tb=short \
  -k "dtype6 or walk_equals_triton_walk[0]"
echo "=== done ($(now))"
} > "$OUT/cuda_walk3.log" 2>&1
