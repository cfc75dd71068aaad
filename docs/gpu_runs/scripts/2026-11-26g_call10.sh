#!/usr/bin/env bash
# GPU call 10 of session 2026-11-26g: fast_mlp's update launches at n = 64 (C64, 254 launches per
# fwd+bwd, each bound by its 670 MB of weight traffic but running at ~1.7 TB/s): smaller tiles and
# fewer warps (more programs resident per SM) for the pointer and the descriptor kernels, swept per
# launch; the op timed with two candidates (they apply to every piece: only the C64 rows matter).
. "$(dirname "$0")/lib.sh"
CF="128,128,32,8,2,0;128,128,64,8,2,1;64,128,64,4,2,0;64,128,64,4,2,1;128,64,64,4,2,1;64,256,64,4,2,1;64,64,64,4,2,1;128,128,64,4,2,1;64,128,32,4,2,0;64,128,64,4,1,1"
SW="python3 python/sweep_outer_fast_mlp.py --n 64 --configs $CF"
FM="python3 python/check_fast_mlp_triton.py --no-check"
bg w_sweep 200 $SW --reps 1
bg w_a 250 env NESTED_KERNELS_FAST_MLP_OUTER=64,128,64,4,2,1 $FM
bg w_b 250 env NESTED_KERNELS_FAST_MLP_OUTER=64,128,64,4,2,0 $FM
wait
{
fg sweep 60 $SW
fg fast_default 100 $FM
fg fast_a 100 env NESTED_KERNELS_FAST_MLP_OUTER=64,128,64,4,2,1 $FM
fg fast_b 100 env NESTED_KERNELS_FAST_MLP_OUTER=64,128,64,4,2,0 $FM
echo "=== done ($(now))"
} > "$OUT/time.log"
