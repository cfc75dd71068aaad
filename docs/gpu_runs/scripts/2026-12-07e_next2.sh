#!/usr/bin/env bash
# For a session after 2026-12-07e, after 2026-12-07e_call4.sh (≤ 9 min, no build): core.fast_launch
# (NESTED_KERNELS_FAST_LAUNCH=1) on the other ops — their Triton GPU tests with it on, then
# fast_mlp at C64 (the dual form, launch-bound) and C512 and the eager decode steps timed with it
# off and on (separate processes, off first).
. "$(dirname "$0")/lib.sh"
FL="env NESTED_KERNELS_FAST_LAUNCH=1"
{
fg tests 240 $FL python3 -m pytest -q -m gpu tests/ops/test_mlp_memory_triton.py tests/ops/test_fast_mlp_triton.py \
    tests/ops/test_linear_memory_step_triton.py tests/ops/test_mlp_memory_step_triton.py \
    tests/ops/test_fast_mlp_step_triton.py -p no:cacheprovider -rfE --tb=short
for v in 0 1; do
  fg fast_mlp_$v 100 env NESTED_KERNELS_FAST_LAUNCH=$v python3 python/check_fast_mlp_triton.py --no-check --no-big \
      --no-cms --chunks 64,512 --json "$OUT/fast_mlp_$v.json"
  fg steps_$v 40 env NESTED_KERNELS_FAST_LAUNCH=$v python3 python/check_steps_triton.py --quick --no-check \
      --json "$OUT/steps_$v.json"
done
echo "=== done ($(now))"
} > "$OUT/next2.log" 2>&1
