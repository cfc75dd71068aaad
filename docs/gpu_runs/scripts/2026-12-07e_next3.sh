#!/usr/bin/env bash
# For a session after 2026-12-07e (≤ 5 min, no build): linear_memory's plain token-gradient kernels
# with one 128-wide block (one program per tile and head: q, k, dO, W, dE read once instead of
# twice; ≈ 1.44 GB of traffic per fwd+bwd instead of ≈ 2.03) on mma.sync with 8 warps (sm_90 probe:
# 255 registers, no spills; 4 warps spill ≈ 700 B per thread) — interleaved A/B beside fla at issue
# 3's shape, then the plain GPU tests with it.
. "$(dirname "$0")/lib.sh"
{
fg ab 150 python3 python/ab_knob_linear_memory.py NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=64,128 \
    NESTED_KERNELS_LM_TRITON_WARPS_PLAIN=4,8 --rounds 3 --json "$OUT/ab_block_plain.json"
fg tests 100 env NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=128 NESTED_KERNELS_LM_TRITON_WARPS_PLAIN=8 python3 -m pytest -q -m gpu \
    tests/ops/test_linear_memory_triton.py -k plain -p no:cacheprovider -rfE --tb=short
echo "=== done ($(now))"
} > "$OUT/next3.log" 2>&1
