#!/usr/bin/env bash
# After 2026-12-06h_next.sh (≈ 6 min): where the time of mlp_memory's cuda backend goes now that the
# walk is cooperative. (1) build; (2) the per-kernel profile of one fwd+bwd at issue 4's shape with
# the backward's parts apart (`profile_kernels.py --backend cuda --order`); (3) an ncu profile of one
# cooperative walk launch (full set, source lines, stall reasons; compare with 2026-12-06g call 1's
# cluster walk: 14.86 ms, SM active 47 %, long-scoreboard stalls on weight fragments 46.7 %).
. "$(dirname "$0")/lib.sh"
DIAG="python3 docs/gpu_runs/scripts/2026-12-06g_walk_diag.py"
{
fg build 120 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg kernels 150 python3 python/profile_kernels.py mlp_memory --backend cuda --gates abm --target self --read chunk --reps 3 \
  --order 12 --json "$OUT/kernels.json"
echo "=== ncu ($(now))"
$TO 200 ncu --kernel-name regex:walk_kernel --launch-skip 1 --launch-count 1 --set full --import-source yes \
  -f -o "$OUT/walk" $DIAG profile > "$OUT/ncu_run.log" 2>&1; echo "rc=$?"; tail -5 "$OUT/ncu_run.log"
ncu -i "$OUT/walk.ncu-rep" --page details > "$OUT/walk_details.txt" 2>&1; echo "details rc=$?"
ncu -i "$OUT/walk.ncu-rep" --page source --csv --print-source sass > "$OUT/walk_source_sass.csv" 2>&1
gzip -f "$OUT/walk_source_sass.csv"; rm -f "$OUT/walk.ncu-rep"
echo "=== done ($(now))"
} > "$OUT/profile.log" 2>&1
