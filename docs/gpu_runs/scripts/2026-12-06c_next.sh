#!/usr/bin/env bash
# Next GPU call after 2026-12-06c (not run yet). (1) fast_mlp at C512 / C256 in the dual form (with
# the blocks of 2026-12-06c) and materialised, same run: does AUTO_MAX_CHUNK = 256 still hold?
# (2) per-kernel profile of gelu C64 fwd+bwd in the dual form, eager (graphs off, so the kernels
# are those of the walk): which products remain; (3) linear_memory's timing table (η only, α+β,
# α+β+μ) beside fla with the n×n hand-off (2026-12-06c call 4 lost it to a compile timeout);
# (4) the bench suite's fast_mlp / CMS rows of the triton backend and the static MLP (CSV).
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py --no-check --no-big --no-cms --chunks 512,256"
{
fg dual 90 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --json "$OUT/time_dual.json"
fg mat 90 env NESTED_KERNELS_FAST_MLP_FORM=materialized $FM --json "$OUT/time_mat.json"
fg prof 60 env NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=0 python3 python/profile_kernels.py fast_mlp --mlp gelu --chunk 64 --reps 2
fg lm 200 python3 python/check_linear_memory_triton.py --no-check --timed 0,1,3 --json "$OUT/time_lm.json"
fg bench 150 python3 -m pytest bench -q -k "(fast_mlp or cms) and (triton or static)" --bench-csv "$OUT/bench.csv" -p no:cacheprovider
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
