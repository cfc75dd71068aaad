#!/usr/bin/env bash
# 2026-12-07f call 5 (≤ 5 min, no build): the other ops' Triton backends against the float64
# reference with core.fast_launch on (NESTED_KERNELS_FAST_LAUNCH=1) — 2026-12-07e_next2.sh's GPU
# tests of them were cut by their step limit after 5 passes (call 3). linear_memory's passed in
# calls 1 and 4. If every case passes, fast launch becomes the default.
. "$(dirname "$0")/lib.sh"
{
fg verify 280 env NESTED_KERNELS_FAST_LAUNCH=1 python3 -m nested_kernels.verify --quick --backends triton \
    --ops mlp_memory,fast_mlp,self_modifying_titans,linear_memory_step,mlp_memory_step,fast_mlp_step --jobs 8
echo "=== done ($(now))"
} > "$OUT/call5.log" 2>&1
