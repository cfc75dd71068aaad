#!/usr/bin/env bash
# For a session after 2026-12-07h, after 2026-12-07h_next.sh (≤ 5 min, no build): linear_memory's
# PREP_MATRIX (opt-in, CPU-tested only: _prep_kernel forms the factors of external-target tiles with
# β from n×n matrices, triton_fwd._matrix_factors) on the GPU: the quick verify and check case 0
# (abm ext after C64 K=V=64) in three dtypes with it on. Both pass → it may become the default.
. "$(dirname "$0")/lib.sh"
{
fg verify 180 env NESTED_KERNELS_LM_TRITON_PREP_MATRIX=1 python3 -m nested_kernels.verify --quick --backends triton \
    --ops linear_memory --jobs 8
fg check 100 env NESTED_KERNELS_LM_TRITON_PREP_MATRIX=1 python3 python/check_linear_memory_triton.py --cases 0 \
    --dtypes bf16,fp16,fp32 --no-timing
echo "=== done ($(now))"
} > "$OUT/next2.log" 2>&1
