#!/usr/bin/env bash
# 2026-12-06j call 3 (branch wip/j-gpu = main + wip/j-persist + wip/j-fm-streams): two ways to hide
# fast_mlp's update GEMM (H100 profile at C512 before: update launches ≈ 9.3 of 18.3 ms of kernel
# time per fwd+bwd, docs/gpu_runs/2026-11-26g_call7/prof_c512.log).
# * persistent update GEMM (7th/8th field of NESTED_KERNELS_FAST_MLP_OUTER): one flattened loop over
#   tile × token block per program, the next tile's operand loads issued during this tile's
#   epilogue; the epilogue in two halves (181 KB shared at 128×128×64, 3 stages);
# * NESTED_KERNELS_FAST_MLP_STREAMS=1: the second layer's update on a second CUDA stream beside the
#   next products (forward: from _out_kernel on; backward: from _b2_kernel on).
# (1) the update GEMM alone at issue 5's shape (the tile grid beside persistent forms, each launch's
# bf16 copy against the tile grid's); (2) GPU tests: persistent vs tile grid and streams on vs off
# (bit-identical but η's gradient); (3) the op's timing at C1024, C512 and the CMS (check script,
# one process per variant, the static MLP in each run): default, persistent, streams.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py --no-check --chunks 1024,512 --no-big"
PERSIST=${PERSIST:-128,128,64,8,3,1,1,1}
{
fg sweep 100 python3 python/sweep_outer_fast_mlp.py --n 1024,512 --reps 10 \
  --configs "128,128,64,8,3,1;128,128,64,8,3,1,1,1;128,128,64,8,4,1,1,1;128,128,32,8,4,1,1,1"
fg test 130 python3 -m pytest -q -m gpu -p no:cacheprovider tests/ops/test_fast_mlp_triton.py \
  -k "persistent_update_matches or streams_match"
fg time 110 $FM --json "$OUT/time_default.json"
fg time_persist 100 env NESTED_KERNELS_FAST_MLP_OUTER=$PERSIST $FM --json "$OUT/time_persist.json"
fg time_streams 100 env NESTED_KERNELS_FAST_MLP_STREAMS=1 $FM --json "$OUT/time_streams.json"
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
