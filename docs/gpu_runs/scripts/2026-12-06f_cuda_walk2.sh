#!/usr/bin/env bash
# 2026-12-06f, second call: the CUDA walk with unrolled k loops (compile-time GEMM sizes: all
# fragment loads of a tile issued before its products) and unrolled cluster sums. Build; the GPU
# tests call 2 did not reach (the walk against the Triton walk with and without kept residuals,
# the last two reference rows in bf16, the two fp16 rows (ids dtype7, dtype8)); timing at issue 4's shape beside triton.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
{
fg build 240 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg time 120 $MLP --no-check --no-large --no-torch --no-titans --cuda --variants "" --json "$OUT/time.json"
fg tests 300 python3 -m pytest -q -m gpu tests/ops/test_mlp_memory_cuda.py -p no:cacheprovider \
  -k "walk_equals or dtype7 or dtype8 or (matches_reference and (external-before or self-after))"
echo "=== done ($(now))"
} > "$OUT/cuda_walk2.log" 2>&1
