#!/usr/bin/env bash
# For a session after 2026-12-07e (≤ 5 min, no build; written for call 4 of 2026-12-07e, which got
# no machine): core.fast_launch (kept compiled kernels launched without JITFunction.run, opt-in
# NESTED_KERNELS_FAST_LAUNCH=1) on linear_memory's Triton launches — its GPU test and the plain GPU
# tests with it on, the interleaved A/B beside fla at issue 3's shape, the unprofiled launch
# timeline with it on (profile_kernels.py --marks; off: 2026-12-07e call 3), check cases 12–14 bf16
# with it on. If all pass and the A/B gains, make it the default (core/fast_launch.enabled).
. "$(dirname "$0")/lib.sh"
{
fg tests 80 env NESTED_KERNELS_FAST_LAUNCH=1 python3 -m pytest -q -m gpu tests/test_fast_launch.py tests/ops/test_linear_memory_triton.py -k "kept or plain" -p no:cacheprovider -rfE --tb=short
fg ab 100 python3 python/ab_knob_linear_memory.py NESTED_KERNELS_FAST_LAUNCH=0,1 --rounds 2 --json "$OUT/ab_fast.json"
fg marks_on 30 env NESTED_KERNELS_FAST_LAUNCH=1 python3 python/profile_kernels.py linear_memory --gates "" --reps 1 --marks 20
fg check 60 env NESTED_KERNELS_FAST_LAUNCH=1 python3 python/check_linear_memory_triton.py --cases 12,13,14 --dtypes bf16 --no-timing
echo "=== done ($(now))"
} > "$OUT/call4.log" 2>&1
