#!/usr/bin/env bash
# 2026-12-06k (≈ 3.5 min, main, no build): the update GEMM with the master and its copy written by
# plain stores (tma 2, PTR_STORES) against the tensor-map stores (tma 1, the default). ncu of the
# default (2026-12-06k call 2) put ≈ 13 % of its stall samples on the waits for each tensor-map
# store to leave shared memory before the next store and the program's end. (1) the op's tests
# with every update on the descriptor kernel, both forms, compiled on the GPU; (2) the update alone
# at issue 5's shape, both forms, queued (the bf16 copies must agree: "vs first 0.0e+00"); (3) the
# op's fwd+bwd at C1024 / C512, default then tma 2 (NESTED_KERNELS_FAST_MLP_OUTER forces the
# tile for every update).
. "$(dirname "$0")/lib.sh"
{
fg test 90 python3 -m pytest -q -p no:cacheprovider tests/ops/test_fast_mlp_triton.py -k "descriptor_update_kernel_in_the_op"
fg sweep 50 python3 python/sweep_outer_fast_mlp.py --n 512,1024 --reps 20 --configs "128,128,64,8,3,1;128,128,64,8,3,2"
fg time_tma1 75 python3 python/check_fast_mlp_triton.py --no-check --no-big --no-cms --chunks 1024,512 \
  --json "$OUT/time_tma1.json"
fg time_tma2 75 env NESTED_KERNELS_FAST_MLP_OUTER=128,128,64,8,3,2 python3 python/check_fast_mlp_triton.py \
  --no-check --no-big --no-cms --chunks 1024,512 --json "$OUT/time_tma2.json"
echo "=== done ($(now))"
} > "$OUT/stores.log" 2>&1
