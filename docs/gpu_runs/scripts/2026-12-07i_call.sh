#!/usr/bin/env bash
# 2026-12-07i, one call (≤ 9.5 min, no build) on branch wip/gpu-07i = main + the prep order
# (docs/wip/prep_order.patch) + GRAD_ROWS (branch wip/grad-rows; details in 2026-12-07i_rows.sh and
# docs/linear_memory_triton.md "GRAD_ROWS"); carry .whl and .gpu_base = main's package (`git archive main
# nested_kernels`). Steps: (1) check cases 0, 1 (C64: abm external, ab self varlen), 6, 11 (C1: abm
# external, abm self) in bf16 with GRAD_ROWS=2 — the prep order runs in every case; (2) check case 0 with
# PREP_MATRIX=1; (3) per-kernel sweep of α+β+μ: GRAD_ROWS 0 / 1 / 2 × PREP_MATRIX 0 / 1; (4) the same with
# main's package (the prep before the reorder); (5) A/B of GRAD_ROWS 0 / 2 beside fla.
. "$(dirname "$0")/lib.sh"
BASE="env PYTHONPATH=$PWD/.gpu_base:$PYTHONPATH"
{
fg check 150 env NESTED_KERNELS_LM_TRITON_GRAD_ROWS=2 python3 python/check_linear_memory_triton.py --cases 0,1,6,11 \
    --dtypes bf16 --no-timing
fg check_matrix 50 env NESTED_KERNELS_LM_TRITON_PREP_MATRIX=1 python3 python/check_linear_memory_triton.py --cases 0 \
    --dtypes bf16 --no-timing
fg sweep 180 python3 python/sweep_linear_memory_triton.py --gates abm --grad-rows 0,1,2 --prep-matrix 0,1 \
    --json "$OUT/sweep.json"
fg sweep_base 80 $BASE python3 python/sweep_linear_memory_triton.py --gates abm --json "$OUT/sweep_base.json"
fg ab 80 python3 python/ab_knob_linear_memory.py NESTED_KERNELS_LM_TRITON_GRAD_ROWS=0,2 --gates abm --rounds 3 \
    --json "$OUT/ab_rows.json"
echo "=== done ($(now))"
} > "$OUT/call.log" 2>&1
