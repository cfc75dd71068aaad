#!/usr/bin/env bash
# For a session after 2026-12-07e (≤ 7 min, no build): linear_memory's plain token gradients at
# issue 3's shape — (1) _plain_grad_kernel (NESTED_KERNELS_LM_TRITON_PLAIN_FUSED=1: one program per
# tile and head, ≈ 0.92 GB of traffic per call instead of ≈ 2.03; sm_90 probe: 560 B of spill
# stores per thread at 8 warps), its GPU tests and an interleaved A/B beside fla; (2) the two
# kernels with one 128-wide block on 8 warps (≈ 1.44 GB; mma.sync, no spills), A/B beside fla.
. "$(dirname "$0")/lib.sh"
AB="python3 python/ab_knob_linear_memory.py"
{
fg tests 100 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k plain_fused -p no:cacheprovider -rfE --tb=short
fg ab_fused 120 $AB NESTED_KERNELS_LM_TRITON_PLAIN_FUSED=0,1 --rounds 3 --json "$OUT/ab_fused.json"
fg ab_block 120 $AB NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=64,128 NESTED_KERNELS_LM_TRITON_WARPS_PLAIN=4,8 --rounds 3 \
    --json "$OUT/ab_block_plain.json"
fg prof 40 env NESTED_KERNELS_LM_TRITON_PLAIN_FUSED=1 python3 python/profile_kernels.py linear_memory --gates "" --reps 3
echo "=== done ($(now))"
} > "$OUT/next3.log" 2>&1
