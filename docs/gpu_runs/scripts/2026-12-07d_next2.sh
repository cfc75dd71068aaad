#!/usr/bin/env bash
# For a session after 2026-12-07d (≤ 8 min, main, no build): linear_memory at issue 3's shape
# (η only, C64 bf16), where the device time is 0.71× fla and the synced time 0.83×: (1) the host's
# work per fwd+bwd call (cProfile of the calls launched back to back: where ≈ 1.2 ms of host time
# per call goes when our Python is ≈ 0.45 ms of it on a CPU); (2) interleaved A/B beside fla of the
# walks' pipelining depth (forward 2 → 3, PLAIN_A backward 2 → 3) and of 8 warps for the walks.
. "$(dirname "$0")/lib.sh"
AB="python3 python/ab_knob_linear_memory.py"
{
fg host 90 python3 python/check_linear_memory_triton.py --no-check --timed 0 --no-fla --profile-host --reps 10
fg ab_state 120 $AB NESTED_KERNELS_LM_TRITON_STAGES_STATE=2,3 --rounds 3 --json "$OUT/ab_state.json"
fg ab_adjoint 100 $AB NESTED_KERNELS_LM_TRITON_STAGES_ADJOINT=2,3 --rounds 3 --json "$OUT/ab_adjoint.json"
fg ab_warps 100 $AB NESTED_KERNELS_LM_TRITON_WARPS_STATE=4,8 --rounds 3 --json "$OUT/ab_warps.json"
echo "=== done ($(now))"
} > "$OUT/next2.log" 2>&1
