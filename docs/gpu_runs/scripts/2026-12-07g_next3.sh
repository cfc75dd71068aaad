#!/usr/bin/env bash
# For a session after 2026-12-07g (≤ 8 min, no build), after 2026-12-07g_next.sh: fresh timings of
# issue 3's gated targets, last measured 2026-12-06d (C64 α+β+μ 5.48× fla) and 2026-11-26f (C1 + μ:
# 21.9× faster than fla's momentum rule, 5.37× fla's delta rule), beside both fla rules in the same
# process: C64 α+β, α+β+μ and the HOPE case, then C1 η only, η + μ and α+β+μ.
. "$(dirname "$0")/lib.sh"
CHECK="python3 python/check_linear_memory_triton.py --no-check"
{
fg c64 220 $CHECK --timed 1,3,4 --json "$OUT/c64_gated.json"
fg c1 240 $CHECK --C 1 --timed 0,5,3 --json "$OUT/c1.json"
echo "=== done ($(now))"
} > "$OUT/next3.log" 2>&1
