#!/usr/bin/env bash
# 2026-12-06h call 3b, on main: call 3 cut to the last ≈ 5 minutes of device time — build, the CUDA
# walk against the Triton walk with the cooperative exchange (residuals kept), and at
# issue 4's shape (all 128 CTAs) the cuda backend against triton (output and gradients) with timing.
. "$(dirname "$0")/lib.sh"
{
fg build 100 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg issue_shape 80 python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --no-titans --cuda \
  --variants= --reps 3 --json "$OUT/issue_shape.json"
fg walk 70 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short -v --durations=0 \
  tests/ops/test_mlp_memory_cuda.py -k "walk_equals and 1-auto"
echo "=== done ($(now))"
} > "$OUT/call3b.log" 2>&1
