#!/usr/bin/env bash
# GPU call 1 of session 2026-11-26g: fast_mlp's update GEMM in new structures — W's tile loaded
# before the products (prefetch), persistent programs, and the tensor-descriptor (TMA) kernel
# `_outer_tma_kernel` — swept per launch against cuBLAS, then the op timed (check script) with the
# default kernel and two TMA configurations in the same call; the op's checks run with TMA on.
. "$(dirname "$0")/lib.sh"
SW="python3 python/sweep_outer_fast_mlp.py --n 1024,512,64"
FM="python3 python/check_fast_mlp_triton.py"
TMA=128,128,64,8,3,0,0,1
TMAP=128,128,64,8,3,0,1,1
bg w_sweep 300 $SW --reps 1
bg check_tma 300 env NESTED_KERNELS_FAST_MLP_OUTER=$TMA $FM --no-time
bg w_fm_tma 300 env NESTED_KERNELS_FAST_MLP_OUTER=$TMA $FM --no-check
bg w_fm_tmap 300 env NESTED_KERNELS_FAST_MLP_OUTER=$TMAP $FM --no-check
wait
{
fg sweep 90 $SW
fg fast_default 100 $FM --no-check
fg fast_tma 100 env NESTED_KERNELS_FAST_MLP_OUTER=$TMA $FM --no-check
fg fast_tma_persist 100 env NESTED_KERNELS_FAST_MLP_OUTER=$TMAP $FM --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
tail -n 5 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
cat "$OUT"/check_tma.log "$OUT"/time.log > "$OUT/all.txt"
