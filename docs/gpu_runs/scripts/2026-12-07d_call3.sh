#!/usr/bin/env bash
# 2026-12-07d call 3 (≤ 9 min, no build; steps in priority order, a shorter limit cuts the last
# ones), linear_memory's PLAIN_A (new, never GPU-run: plain external tiles keep one n×n A per tile
# instead of per-token Qw and ou; the fused forward walk writes O = diag(a) Q M0 + A (V − K M0)):
# (1) the plain check cases 12, 13, 14 (new) against float64 with NESTED_KERNELS_LM_TRITON_PLAIN_A=1,
# bf16 / fp16; (2) the issue-shape timing (B4 T4096 H16 K=V=128 C64 bf16, η only and η + α, fla
# chunk_delta_rule in the first process, --queued) with the knob off, on, on with 8 walk warps
# (sm_90 probe: 255 registers and 8 B of spill stores at 4 warps, none at 8); (3) the per-kernel
# profile with it on; (4) the quick GPU verify of linear_memory's triton backend with it on.
. "$(dirname "$0")/lib.sh"
CK="python3 python/check_linear_memory_triton.py --no-check --queued"
A="env NESTED_KERNELS_LM_TRITON_PLAIN_A=1"
{
fg check_a 150 $A python3 python/check_linear_memory_triton.py --cases 12,13,14 --dtypes bf16,fp16 --no-timing
fg time_off 150 $CK --timed 0,6 --json "$OUT/time_off.json"
fg time_a 90 $A $CK --timed 0,6 --no-fla --json "$OUT/time_a.json"
fg time_a8 60 $A NESTED_KERNELS_LM_TRITON_WARPS_STATE=8 $CK --timed 0 --no-fla --json "$OUT/time_a8.json"
fg prof_a 40 $A python3 python/profile_kernels.py linear_memory --gates "" --backend triton --json "$OUT/prof_a.json"
fg verify_a 110 $A python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
