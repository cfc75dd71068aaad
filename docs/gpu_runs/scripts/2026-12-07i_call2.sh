#!/usr/bin/env bash
# 2026-12-07i call 2 (≤ 4 min, no build), branch wip/gpu-07i as call 1; carry .whl and .gpu_base (main's
# package). Call 1 swept α+β+μ only: here α+β (where the prep order halved the prep's spills) and the
# rows kernel's V block: per-kernel sweep GRAD_ROWS 0 / 1 × BV_ROWS 32 / 64 for α+β and α+β+μ, and α+β
# with main's package (the prep before the reorder).
. "$(dirname "$0")/lib.sh"
BASE="env PYTHONPATH=$PWD/.gpu_base:$PYTHONPATH"
{
fg sweep 150 python3 python/sweep_linear_memory_triton.py --gates ab,abm --grad-rows 0,1 --bv-rows 32,64 \
    --json "$OUT/sweep.json"
fg sweep_base 70 $BASE python3 python/sweep_linear_memory_triton.py --gates ab --json "$OUT/sweep_base.json"
echo "=== done ($(now))"
} > "$OUT/call2.log" 2>&1
