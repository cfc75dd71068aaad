#!/usr/bin/env bash
# 2026-12-06j: fast_mlp's update GEMM in a persistent form (one flattened loop over tile × token
# block per program, so the next tile's operand loads are issued during this tile's epilogue;
# HALVES: the epilogue in two halves of 64 columns, 181 KB of shared memory at 128×128×64 with 3
# stages). (1) the update GEMM alone at issue 5's shape (sweep_outer_fast_mlp.py: the default tile
# grid beside persistent forms); (2) the GPU check with the persistent form forced on every update
# (NESTED_KERNELS_FAST_MLP_OUTER, all pieces on the descriptor kernel); (3) the op's timing at C1024,
# C512 and the CMS, default then the persistent form, each beside the static MLP of its run.
# Optional STREAMS=1: the opt-in second-stream overlap (wip/j-fm-streams) — its GPU test and timing.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
PERSIST=${PERSIST:-128,128,64,8,3,1,1,1}
{
fg sweep 130 python3 python/sweep_outer_fast_mlp.py --n 1024,512 --reps 10 \
  --configs "128,128,64,8,3,1;128,128,64,8,3,1,1,1;128,128,64,8,4,1,1,1;128,128,32,8,4,1,1,1;128,128,32,8,3,1,1,0"
fg check 170 env NESTED_KERNELS_FAST_MLP_OUTER=$PERSIST $FM --no-time
fg time 90 $FM --no-check --no-big --chunks 1024,512 --json "$OUT/time_default.json"
fg time_persist 90 env NESTED_KERNELS_FAST_MLP_OUTER=$PERSIST $FM --no-check --no-big --chunks 1024,512 \
  --json "$OUT/time_persist.json"
echo "=== done ($(now))"
} > "$OUT/persist.log" 2>&1
