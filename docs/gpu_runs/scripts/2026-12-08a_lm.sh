#!/usr/bin/env bash
# 2026-12-08a (≤ 9 min, no build; main): 2026-12-07i_next.sh's checks plus a wider sweep. The two opt-in knobs
# of linear_memory's split gradient kernels, GRAD_ROWS=1 (H100-timed in 2026-12-07i: α+β+μ 13.16 → 12.65 ms)
# and NN_EPILOGUE=1 (never on a GPU). (1) quick verify with both on; (2) check cases 0 and 6 in bf16 and fp16
# with both on; (3) per-kernel sweep of α+β+μ: NN_EPILOGUE 0 / 1 × the n×n kernel's warps 4 / 8 × V block
# 16 / 32 with GRAD_ROWS=1 (sm_90 probe with both on: _grad_nn_kernel spills 2324 B at 4 warps / 32,
# 1096 B at 8 warps / 16), beside the defaults. Checks pass → GRAD_ROWS "1" the default for tiles with μ,
# NN_EPILOGUE and the n×n kernel's launch where the sweep shows them faster.
. "$(dirname "$0")/lib.sh"
ON="env NESTED_KERNELS_LM_TRITON_GRAD_ROWS=1 NESTED_KERNELS_LM_TRITON_NN_EPILOGUE=1"
{
fg verify 180 $ON python3 -m nested_kernels.verify --quick --backends triton --ops linear_memory --jobs 8
fg check 120 $ON python3 python/check_linear_memory_triton.py --cases 0,6 --dtypes bf16,fp16 --no-timing
fg sweep_base 40 python3 python/sweep_linear_memory_triton.py --gates abm --json "$OUT/sweep_base.json"
fg sweep 200 env NESTED_KERNELS_LM_TRITON_GRAD_ROWS=1 python3 python/sweep_linear_memory_triton.py --gates abm \
    --nn-epilogue 0,1 --warps-grad 4,8 --bv-grad 16,32 --json "$OUT/sweep.json"
echo "=== done ($(now))"
} > "$OUT/lm.log" 2>&1
