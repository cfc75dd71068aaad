#!/usr/bin/env bash
# GPU call 4 of session 2026-11-26e: wgmma for the split gradient kernels (β or μ tiles)?
# Sweep NESTED_KERNELS_LM_TRITON_MMA_GRAD v2/auto × BV_GRAD 32/64 for α+β+μ and α+β (C64 K=V=128
# bf16, per-kernel µs); time C64 beside fla after the ptxas change (η only, η+α); fast_mlp after
# last session's budget change (C64 regressed 31.9× → 40.2× static in 2026-11-26d call 2).
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
SW="python3 python/sweep_linear_memory_triton.py --gates ab,abm --mma-grad v2,auto --bv-grad 32,64"
bg w_sweep 220 $SW --reps 1
bg w_lm 200 $LM $W --timed 0,6
wait
{
fg sweep 150 $SW --reps 3
fg lm64 70 $LM --timed 0,6 --queued
fg fast 100 python3 python/check_fast_mlp_triton.py --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
