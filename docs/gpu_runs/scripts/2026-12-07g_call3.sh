#!/usr/bin/env bash
# 2026-12-07g call 3 (warm, ≤ 7 min): the other ops' Triton backends against float64 with
# core.fast_launch on (2026-12-07f_next.sh's first step; if all pass, fast launch becomes the
# default), then the walks' V block 16 against 32 with PLAIN_D on, beside fla.
. "$(dirname "$0")/lib.sh"
{
fg verify 280 env NESTED_KERNELS_FAST_LAUNCH=1 python3 -m nested_kernels.verify --quick --backends triton \
    --ops mlp_memory,fast_mlp,linear_memory_step,mlp_memory_step,fast_mlp_step --jobs 8
fg ab_bv 110 python3 python/ab_knob_linear_memory.py NESTED_KERNELS_LM_TRITON_PLAIN_D=1,1 NESTED_KERNELS_LM_TRITON_BV=32,16 \
    --rounds 2 --json "$OUT/ab_bv.json"
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
