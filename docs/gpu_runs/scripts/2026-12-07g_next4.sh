#!/usr/bin/env bash
# For a session after 2026-12-07g (≤ 7 min, no build), lowest priority of the waiting scripts:
# issue 3's α+β+μ is dominated by the split gradient kernels (2026-12-06j call 2, µs per fwd+bwd:
# _grad_nn_kernel 5955, _grad_dk_kernel 2522 of 12830), whose V block and warps were last swept
# before the split's n×n hand-off (sm_90 probe of _grad_nn_kernel, spill stores per thread: 7956 B
# at BV_GRAD 32 / 4 warps, 7572 B at 8 warps, 6668 B at BV_GRAD 16). Per-kernel sweep over both.
. "$(dirname "$0")/lib.sh"
{
fg sweep 400 python3 python/sweep_linear_memory_triton.py --gates abm --bv-grad 32,16 --warps-grad 4,8 \
    --json "$OUT/sweep_grad_abm.json"
echo "=== done ($(now))"
} > "$OUT/next4.log" 2>&1
