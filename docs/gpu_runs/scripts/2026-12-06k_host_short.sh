#!/usr/bin/env bash
# 2026-12-06k, the short form of 2026-12-06k_host.sh for the device time left (≈ 2.5 min, main, no
# build): the update sweep at n = 512 timed queued; the check script's --queued host vs device ms
# per fwd+bwd call at C512 and for the CMS; the gelu C512 profile's idle gaps.
. "$(dirname "$0")/lib.sh"
{
fg sweep 40 python3 python/sweep_outer_fast_mlp.py --n 512 --reps 20 --configs 128,128,64,8,3,1
fg queued 150 python3 python/check_fast_mlp_triton.py --no-check --no-big --chunks 512 --queued \
  --json "$OUT/time_queued.json"
fg prof512 70 python3 python/profile_kernels.py fast_mlp --chunk 512 --mlp gelu --gaps 12
echo "=== done ($(now))"
} > "$OUT/host.log" 2>&1
