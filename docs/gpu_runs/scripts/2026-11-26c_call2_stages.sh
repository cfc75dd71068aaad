#!/usr/bin/env bash
# GPU call 2 of session 2026-11-26c: correctness of the pipelined tile walks (STAGES=2) and a
# per-kernel sweep of stages × BV × state warps for η only and α+β+μ (B4 T4096 H16 K=V=128 C64 bf16).
set -u
cd "$(dirname "$0")/../../.."
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$PWD/.tcache PYTHONPATH=$PWD:$PWD/python
T0=$(date +%s)
( NESTED_KERNELS_LM_TRITON_STAGES=2 timeout -s ABRT 500 python3 -m nested_kernels.verify --quick --ops linear_memory \
    --backends triton --jobs 5 > "$OUT/verify_stages2.log" 2>&1; echo "rc=$? ($(( $(date +%s) - T0 )) s)" >> "$OUT/verify_stages2.log" ) &
export NESTED_KERNELS_LM_TRITON_BV_GRAD=32
timeout -s ABRT 560 python3 python/sweep_linear_memory_triton.py --gates ,abm --stages 0,2 --bv 32,64 \
    --warps-state 4,8 --reps 5 --json "$OUT/sweep.json" > "$OUT/sweep.log" 2>&1
echo "sweep rc=$? ($(( $(date +%s) - T0 )) s)" >> "$OUT/sweep.log"
wait
cat "$OUT/verify_stages2.log" "$OUT/sweep.log" > "$OUT/all.txt"
