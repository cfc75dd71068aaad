#!/usr/bin/env bash
# For a session after 2026-12-07h (≤ 9.5 min, no build), run with branch wip/prep-order checked out
# (or `git apply docs/wip/prep_order.patch`);
# carry .whl and .gpu_base = main's package (`rm -rf .gpu_base && mkdir .gpu_base && git archive main
# nested_kernels | tar -x -C .gpu_base`). On that branch linear_memory's _prep_kernel forms the masked read products (QKᵀ⊙·) and P before
# the (I + A)⁻¹ solve, so q, k and the gate matrices are not held through it (same arithmetic, new
# order; sm_90 probe, C64 K=V=128 bf16, 4 warps, spill stores per thread: α+β after 1228 → 616 B,
# HOPE α+β self 1252 → 684, C1 α+β self fp16 1952 → 1148, α+β+μ about unchanged). Not yet run on a
# GPU: (1) the quick verify (its C1 and C64 α+β+μ cases) and check case 1 (HOPE, C64) with the
# defaults; (2) per-kernel sweep of α+β and α+β+μ, PREP_MATRIX 0 / 1 (opt-in since 2026-12-07h) ×
# WARPS_PREP 4 / 8 (probe: 8 warps halve α+β+μ's spills), against the package before the reorder
# (main's, .gpu_base). Both pass and the prep is faster → merge the branch. If the matrix form's prep
# is faster, run 2026-12-07h_next2.sh (its checks) and make it the default (triton_backend._prep_matrix).
. "$(dirname "$0")/lib.sh"
SWEEP="python3 python/sweep_linear_memory_triton.py --gates ab,abm"
BASE="env PYTHONPATH=$PWD/.gpu_base:$PYTHONPATH"
{
fg verify 180 python3 -m nested_kernels.verify --quick --backends triton --ops linear_memory --jobs 8
fg check 60 python3 python/check_linear_memory_triton.py --cases 1 --dtypes bf16 --no-timing
fg sweep_main 220 $SWEEP --prep-matrix 0,1 --warps-prep 4,8 --json "$OUT/sweep_main.json"
fg sweep_base 100 $BASE $SWEEP --json "$OUT/sweep_base.json"
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
