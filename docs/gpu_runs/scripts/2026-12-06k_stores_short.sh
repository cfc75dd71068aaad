#!/usr/bin/env bash
# 2026-12-06k (ran as call 4), the short form of a stores script for the device time left (≈ 1 min): the
# update GEMM alone, tensor-map stores (tma 1) beside plain stores (tma 2), queued; the bf16
# copies must agree ("vs first 0.0e+00").
. "$(dirname "$0")/lib.sh"
{
fg sweep 60 python3 python/sweep_outer_fast_mlp.py --n 512,1024 --reps 20 --configs "128,128,64,8,3,1;128,128,64,8,3,2"
echo "=== done ($(now))"
} > "$OUT/stores.log" 2>&1
