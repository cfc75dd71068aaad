#!/usr/bin/env bash
# For a session after 2026-12-07i (≤ 8 min, no build; main): GRAD_ROWS=1 (opt-in since 2026-12-07i; the
# H100 ran its checks in bf16 only) before it becomes the default for tiles with μ: (1) the quick verify
# with it on; (2) check cases 0 and 6 (abm external C64 K=V=64, abm external C1) in bf16 and fp16 (fp16's
# products are tf32r) with it on; (3) per-kernel sweep of the rows kernel's warps and V block for α+β+μ.
# Both checks pass → `_grad_rows()` defaults to "1" for tiles with μ (triton_backend.py).
. "$(dirname "$0")/lib.sh"
{
fg verify 200 env NESTED_KERNELS_LM_TRITON_GRAD_ROWS=1 python3 -m nested_kernels.verify --quick --backends triton \
    --ops linear_memory --jobs 8
fg check 120 env NESTED_KERNELS_LM_TRITON_GRAD_ROWS=1 python3 python/check_linear_memory_triton.py --cases 0,6 \
    --dtypes bf16,fp16 --no-timing
fg sweep 150 python3 python/sweep_linear_memory_triton.py --gates abm --grad-rows 1 --warps-rows 4,8 --bv-rows 32,64 \
    --json "$OUT/sweep_rows.json"
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
