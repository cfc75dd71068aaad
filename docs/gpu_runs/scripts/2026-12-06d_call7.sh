#!/usr/bin/env bash
# 2026-12-06d call 7: the final default of the session (second layer not materialised unless
# NESTED_KERNELS_FAST_MLP_DUAL_LAYER2 asks): fast_mlp GPU tests and the dual-form GPU check.
. "$(dirname "$0")/lib.sh"
{
fg gputest 100 python3 -m pytest -q -m gpu tests/ops/test_fast_mlp_triton.py -p no:cacheprovider
fg check 170 env NESTED_KERNELS_FAST_MLP_FORM=dual python3 python/check_fast_mlp_triton.py --no-time
echo "=== done ($(now))"
} > "$OUT/call7.log" 2>&1
