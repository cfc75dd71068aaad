#!/usr/bin/env bash
# GPU call 2 of session 2026-11-26g: the tensor-descriptor update GEMM with W's tile read before
# the products (prefetch), alone and with persistent programs (1 and 2 per SM), swept per launch;
# the op timed with the pointer kernel (default) and two TMA configurations in the same call; the
# C64 fwd+bwd profiled with the pointer kernel and with TMA (call 1: TMA's C64 backward ~60 ms
# slower although its n = 64 launches are not); the op's checks with TMA prefetch on.
. "$(dirname "$0")/lib.sh"
SW="python3 python/sweep_outer_fast_mlp.py --n 1024,512,64"
FM="python3 python/check_fast_mlp_triton.py"
PF="python3 python/profile_kernels.py fast_mlp --chunk 64 --mlp gelu --reps 2"
A=128,128,64,8,3,1,0,1
B=128,128,64,8,3,1,2,1
bg w_sweep 240 $SW --reps 1
bg check_a 240 env NESTED_KERNELS_FAST_MLP_OUTER=$A $FM --no-time
bg w_fm_a 240 env NESTED_KERNELS_FAST_MLP_OUTER=$A $FM --no-check
bg w_fm_b 240 env NESTED_KERNELS_FAST_MLP_OUTER=$B $FM --no-check
wait
{
fg sweep 80 $SW
fg fast_default 90 $FM --no-check
fg fast_tma_prefetch 90 env NESTED_KERNELS_FAST_MLP_OUTER=$A $FM --no-check
fg fast_tma_prefetch_persist2 90 env NESTED_KERNELS_FAST_MLP_OUTER=$B $FM --no-check
fg prof_c64_default 60 $PF
fg prof_c64_tma 60 env NESTED_KERNELS_FAST_MLP_OUTER=$A $PF
echo "=== done ($(now))"
} > "$OUT/time.log"
tail -n 5 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
cat "$OUT"/check_a.log "$OUT"/time.log > "$OUT/all.txt"
