#!/usr/bin/env bash
# 2026-12-07e call 4 (≤ 6 min, no build): core.fast_launch (kept compiled kernels launched without
# JITFunction.run) on linear_memory's Triton launches — its GPU test, the plain GPU tests and check
# cases 12–14 bf16 with it on (the default), the unprofiled launch timeline with it on / off
# (profile_kernels.py --marks), and the interleaved A/B beside fla at issue 3's shape.
. "$(dirname "$0")/lib.sh"
{
fg tests 150 python3 -m pytest -q -m gpu tests/test_fast_launch.py tests/ops/test_linear_memory_triton.py -k "fast_launch or kept or plain" -p no:cacheprovider -rfE --tb=short
fg check 90 python3 python/check_linear_memory_triton.py --cases 12,13,14 --dtypes bf16 --no-timing
fg marks_on 40 python3 python/profile_kernels.py linear_memory --gates "" --reps 1 --marks 20
fg marks_off 40 env NESTED_KERNELS_FAST_LAUNCH=0 python3 python/profile_kernels.py linear_memory --gates "" --reps 1 --marks 20
fg ab 110 python3 python/ab_knob_linear_memory.py NESTED_KERNELS_FAST_LAUNCH=0,1 --rounds 3 --json "$OUT/ab_fast.json"
echo "=== done ($(now))"
} > "$OUT/call4.log" 2>&1
