#!/usr/bin/env bash
# GPU call 6 of session 2026-11-26d (the rest of the device budget): verify --quick of mlp_memory
# with the F split and the tile-parallel prep kernel both on (the fastest configuration of call 5:
# 34.7 / 252 ms at the issue shape vs 70.6 / 419 ms by default), before making them the default.
set -u
cd "$(dirname "$0")/../../.."
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$PWD/.tcache
export PYTHONPATH=$PWD:$PWD/python
NESTED_KERNELS_MLP_TRITON_SPLIT=8 NESTED_KERNELS_MLP_TRITON_PREP=1 timeout -k 10 -s INT 330 \
    python3 -m nested_kernels.verify --quick --ops mlp_memory --backends triton --jobs 4 > "$OUT/verify_split8_prep.log" 2>&1
echo "rc=$?" >> "$OUT/verify_split8_prep.log"
