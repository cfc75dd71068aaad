#!/usr/bin/env bash
# For a session after 2026-12-07f (≤ 7 min, no build). (1) The other ops' Triton backends against
# float64 with core.fast_launch on (the 2026-12-07e_next2.sh GPU tests of them were cut by their step limit); if all pass, fast launch becomes
# the default. (2) Issue 3's η-only device time sits at 0.704× fla (target ≤ 0.7×): interleaved A/B
# beside fla of the walks' V block 16 (512 programs instead of 256; not tried since the walks took
# PLAIN_A and fused outputs). The plain kernels' 32-wide blocks are not worth a try: they lose wgmma.
. "$(dirname "$0")/lib.sh"
AB="python3 python/ab_knob_linear_memory.py"
{
fg verify 280 env NESTED_KERNELS_FAST_LAUNCH=1 python3 -m nested_kernels.verify --quick --backends triton \
    --ops mlp_memory,fast_mlp,linear_memory_step,mlp_memory_step,fast_mlp_step --jobs 8
fg ab_bv 110 $AB NESTED_KERNELS_LM_TRITON_BV=32,16 --rounds 3 --json "$OUT/ab_bv.json"
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
