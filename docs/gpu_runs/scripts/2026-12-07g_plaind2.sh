#!/usr/bin/env bash
# 2026-12-07g call 2 (warm, after 2026-12-07g_plaind.sh, whose η-only A/B was cut by its step
# limit): the η-only A/B of PLAIN_D beside fla, then the per-kernel profile with it off and on.
. "$(dirname "$0")/lib.sh"
{
fg ab_eta 240 python3 python/ab_knob_linear_memory.py NESTED_KERNELS_LM_TRITON_PLAIN_D=0,1 --rounds 3 --json "$OUT/ab_plaind.json"
for v in 0 1; do
  echo "=== prof_$v ($(now))"
  $TO 60 env NESTED_KERNELS_LM_TRITON_PLAIN_D=$v python3 python/profile_kernels.py linear_memory --gates "" --reps 3 > "$OUT/prof_$v.txt" 2>&1
done
echo "=== done ($(now))"
} > "$OUT/plaind2.log" 2>&1
