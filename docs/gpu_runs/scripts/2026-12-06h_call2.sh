#!/usr/bin/env bash
# 2026-12-06h call 2, on branch wip/h-coop (main + the cooperative CUDA walk): (1) build; (2) the
# runaway case with precision="float32" (bf16, fp32) and the realistic K=32 C64 row (the non-finite
# outputs of call 1 were runaway test data: docs/mlp_memory_triton.md); (3) the CUDA walk's tests,
# verbose, with a stack dump of any test running past 60 s (call 1's ran out of its 90 s after one
# test: a hang of the cooperative walk?).
. "$(dirname "$0")/lib.sh"
{
fg build 120 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg runaway 120 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_triton.py \
  -k "(runaway or (realistic and bm-external)) and prep1-split-torchtok"
fg cuda 270 python3 -m pytest -v -m gpu -p no:cacheprovider --tb=short -o faulthandler_timeout=60 --durations=0 \
  tests/ops/test_mlp_memory_cuda.py -k "walk_equals or matches_reference or unsupported"
echo "=== done ($(now))"
} > "$OUT/call2.log" 2>&1
