#!/usr/bin/env bash
# 2026-12-07i (≤ 6.5 min, no build; branch wip/grad-rows or main once merged): linear_memory's opt-in
# GRAD_ROWS (_grad_rows_kernel stores every product of a tile with its states — K M0, K S0, V M0, V S0,
# K dMe, K dSe, the read's and tile-end sums — and _grad_nn_kernel reads them: no state loads, no K-deep
# products in the n×n kernel). CPU: interpreter tests against float64 and the split (test_grad_rows);
# sm_90 probe α+β+μ C64 K=V=128 bf16: rows kernel 214 regs, no spills; n×n kernel spill stores 5664 B
# (4 warps) / 4764 B (8 warps) per thread against 5432 B at 8 warps without. Steps: (1) check cases 0, 1
# (C64: abm external, ab self varlen), 6, 11 (C1: abm external, abm self) in bf16 with it on; (2)
# per-kernel sweep of α+β+μ, GRAD_ROWS 0 / 1 × WARPS_GRAD 4 / 8; (3) A/B beside fla (synced and device).
. "$(dirname "$0")/lib.sh"
{
fg check 150 env NESTED_KERNELS_LM_TRITON_GRAD_ROWS=1 python3 python/check_linear_memory_triton.py --cases 0,1,6,11 \
    --dtypes bf16 --no-timing
fg sweep 150 python3 python/sweep_linear_memory_triton.py --gates abm --grad-rows 0,1 --warps-grad 4,8 \
    --json "$OUT/sweep_rows.json"
fg ab 80 python3 python/ab_knob_linear_memory.py NESTED_KERNELS_LM_TRITON_GRAD_ROWS=0,1 --gates abm --rounds 3 \
    --json "$OUT/ab_rows.json"
echo "=== done ($(now))"
} > "$OUT/rows.log" 2>&1
