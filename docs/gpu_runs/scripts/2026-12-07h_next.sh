#!/usr/bin/env bash
# For a session after 2026-12-07h (≤ 9 min, no build): linear_memory's PREP_MATRIX (opt-in since
# 2026-12-07h, CPU-tested only): _prep_kernel forms the factors of external-target tiles with β
# from n×n matrices (triton_fwd._matrix_factors: one product per factor and column block, the n×n
# ones at tf32). (1) the quick verify and check case 0 (abm ext after C64 K=V=64) in three dtypes
# with it on; (2) per-kernel sweep of α+β and α+β+μ at issue 3's shape over PREP_MATRIX 0/1 ×
# WARPS_PREP 4/8 (sm_90 probe, spill stores per thread, 4 / 8 warps: ab after 1228 / 1020 B off,
# 1264 / 1160 on; abm after 2176 / 1408 off, 2488 / 1724 on). If it passes and the prep is faster,
# make it the default (triton_backend._prep_matrix) and the faster warps WARPS_PREP's default.
. "$(dirname "$0")/lib.sh"
{
fg verify 220 env NESTED_KERNELS_LM_TRITON_PREP_MATRIX=1 python3 -m nested_kernels.verify --quick --backends triton \
    --ops linear_memory --jobs 8
fg check 100 env NESTED_KERNELS_LM_TRITON_PREP_MATRIX=1 python3 python/check_linear_memory_triton.py --cases 0 \
    --dtypes bf16,fp16,fp32 --no-timing
fg sweep 200 python3 python/sweep_linear_memory_triton.py --gates ab,abm --prep-matrix 0,1 --warps-prep 4,8 \
    --json "$OUT/sweep_prep.json"
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
