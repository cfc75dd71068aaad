#!/usr/bin/env bash
# For a session after 2026-12-07i (≤ 9 min, no build; main): two opt-in knobs of linear_memory's split
# gradient kernels, CPU-tested (interpreter) — GRAD_ROWS=1 (H100-checked in bf16 and timed: α+β+μ 13.16 → 12.65
# ms device per fwd+bwd) and NN_EPILOGUE=1 (never on a GPU; the n×n kernel's after-loop algebra in a kernel
# of its own). (1) The quick verify with both on; (2) check cases 0 and 6 (abm external C64 K=V=64, abm
# external C1) in bf16 and fp16 with both on; (3) per-kernel sweep of α+β+μ: GRAD_ROWS 0 / 1 × NN_EPILOGUE 0 / 1
# and the rows kernel's warps and V block (WARPS_ROWS 4 / 8 × BV_ROWS 32 / 64 with both on). Checks pass → make GRAD_ROWS "1" the default
# for tiles with μ (`_grad_rows()`), and NN_EPILOGUE too where the sweep shows it faster.
. "$(dirname "$0")/lib.sh"
ON="env NESTED_KERNELS_LM_TRITON_GRAD_ROWS=1 NESTED_KERNELS_LM_TRITON_NN_EPILOGUE=1"
{
fg verify 180 $ON python3 -m nested_kernels.verify --quick --backends triton --ops linear_memory --jobs 8
fg check 120 $ON python3 python/check_linear_memory_triton.py --cases 0,6 --dtypes bf16,fp16 --no-timing
fg sweep 150 python3 python/sweep_linear_memory_triton.py --gates abm --grad-rows 0,1 --nn-epilogue 0,1 \
    --json "$OUT/sweep.json"
fg sweep_rows 90 $ON python3 python/sweep_linear_memory_triton.py --gates abm --warps-rows 4,8 --bv-rows 32,64 \
    --json "$OUT/sweep_rows.json"
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
