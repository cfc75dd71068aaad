#!/usr/bin/env bash
# 2026-12-06e: where mlp_memory's forward + backward time goes at issue 4's shape (B4 T4096 H8
# K=V=64 F256 C64, self target, read chunk, β = η, α + μ, bf16, triton defaults): per-kernel totals
# and the last call's longest kernels in launch order (the split backward's three parts share the
# name _bwd_kernel; their order is CHAIN, TOKENS, DQ_READ).
. "$(dirname "$0")/lib.sh"
{
fg profile_mlp 240 python3 python/profile_kernels.py mlp_memory --gates abm --target self --read chunk --reps 3 --order 12
echo "=== done ($(now))"
} > "$OUT/profile.log" 2>&1
