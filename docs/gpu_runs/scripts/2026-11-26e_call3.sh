#!/usr/bin/env bash
# GPU call 3 of session 2026-11-26e: the plain-tile gradient kernels now compile with wgmma by
# default (NESTED_KERNELS_LM_TRITON_MMA_PLAIN=auto) while every other kernel keeps mma.sync. Call 2
# saw illegal memory accesses with MMA=auto on every kernel in 3 of 4 block/ptxas combinations:
# sweep the same combinations with only the plain kernels on wgmma, verify the quick linear_memory
# set, time C64 beside fla (η only, η+α, α+β+μ, α+β) and η+α with the fused gradient kernel.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
FUSED="env NESTED_KERNELS_LM_TRITON_GRAD_PLAIN=0"
SW="python3 python/sweep_linear_memory_triton.py --gates ,a --block-plain 32,64 --ptxas=-O1,-O3"
bg verify 240 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 4
bg w_lm 200 $LM $W --timed 0,6,3,1
bg w_fused 200 $FUSED $LM $W --no-fla --timed 6
bg w_sweep 220 $SW --reps 1
wait
{
fg lm64 100 $LM --timed 0,6,3,1 --queued
fg lm64_fused 40 $FUSED $LM --timed 6 --no-fla --queued
fg sweep 150 $SW --reps 5
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
