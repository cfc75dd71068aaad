#!/usr/bin/env bash
# For a session after 2026-12-06k (≈ 8 min, main, no build): what 2026-12-06k left waiting, in one
# call. (1) The op's descriptor tests compiled on the GPU, with the update GEMM's tensor-map stores
# (tma 1, default) and plain stores (tma 2, PTR_STORES); (2) the update alone, both forms, queued
# (the copies must agree: "vs first 0.0e+00"), and tma 2 with other tiles / stages (sm_90 probe:
# 128×128 2 stages 66 KB / 106 registers → 2 programs per SM; 128×64 or 64×128 with 4 warps, 3
# stages 74 KB / 134 or 110 registers → 3; 64×128 2 stages → 4); (3) the check script's timing C1024 / C512 / CMS
# with --queued (device and host ms per fwd+bwd call launched back to back: host ≥ device means
# host-bound), default then tma 2; (4) the gelu C512 profile's idle gaps. Make tma 2 the default at
# ≥ 256 tokens (`_outer_config`) if (1) passes and (3) is not slower.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py --no-check --no-big --chunks 1024,512 --queued"
{
fg test 120 python3 -m pytest -q -p no:cacheprovider tests/ops/test_fast_mlp_triton.py -k "descriptor_update_kernel_in_the_op"
fg sweep 90 python3 python/sweep_outer_fast_mlp.py --n 512,1024 --reps 20 \
  --configs "128,128,64,8,3,1;128,128,64,8,3,2;128,128,64,8,2,2;128,64,64,4,3,2;64,128,64,4,3,2;64,128,64,4,2,2"
fg time_tma1 150 $FM --json "$OUT/time_tma1.json"
fg time_tma2 150 env NESTED_KERNELS_FAST_MLP_OUTER=128,128,64,8,3,2 $FM --json "$OUT/time_tma2.json"

echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
