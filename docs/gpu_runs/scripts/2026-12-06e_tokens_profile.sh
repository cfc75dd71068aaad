#!/usr/bin/env bash
# 2026-12-06e call 3: where the time of mlp_memory's token gradients by autograd over all tiles
# (NESTED_KERNELS_MLP_TRITON_TOKENS=torch) goes — 67.2 ms fwd+bwd against 61.7 with the kernel's
# PARTs 2 and 3 in call 2 — by torch ops and input shapes, at issue 4's shape.
. "$(dirname "$0")/lib.sh"
{
fg profile 150 env NESTED_KERNELS_MLP_TRITON_TOKENS=torch python3 python/profile_kernels.py mlp_memory --gates abm --target self --read chunk --reps 2 --order 8 --shapes 40 --gaps 5
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
