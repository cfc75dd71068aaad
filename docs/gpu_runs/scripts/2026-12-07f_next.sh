#!/usr/bin/env bash
# For a session after 2026-12-07f (≤ 9 min, no build). (1) The other ops' Triton backends against
# float64 with core.fast_launch on (the 2026-12-07e_next2.sh GPU tests of them were cut by their step limit); if all pass, fast launch becomes
# the default. (2) Issue 3's η-only device time sits at 0.704× fla (target ≤ 0.7×): interleaved A/B
# beside fla of the walks' V block 16 (512 programs instead of 256; not tried since the walks took
# PLAIN_A and fused outputs). The plain kernels' 32-wide blocks are not worth a try: they lose wgmma.
# (3) The unprofiled launch timeline (profile_kernels.py --marks) with fast launch off and on, on one
# machine, written to files (fg's filter drops lines with "_kernel "): where the host still keeps the
# device waiting now that fast launch saves only ≈ 50 µs of a synced fwd+bwd (2026-12-07f).
. "$(dirname "$0")/lib.sh"
AB="python3 python/ab_knob_linear_memory.py"
{
fg verify 280 env NESTED_KERNELS_FAST_LAUNCH=1 python3 -m nested_kernels.verify --quick --backends triton \
    --ops mlp_memory,fast_mlp,linear_memory_step,mlp_memory_step,fast_mlp_step --jobs 8
fg ab_bv 110 $AB NESTED_KERNELS_LM_TRITON_BV=32,16 --rounds 3 --json "$OUT/ab_bv.json"
for v in 0 1; do
  echo "=== marks_$v ($(now))"
  $TO 60 env NESTED_KERNELS_FAST_LAUNCH=$v python3 python/profile_kernels.py linear_memory --gates "" --reps 1 \
      --marks 20 > "$OUT/marks_$v.txt" 2>&1
done
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
