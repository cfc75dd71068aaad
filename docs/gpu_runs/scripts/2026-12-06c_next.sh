#!/usr/bin/env bash
# Next GPU call after 2026-12-06c (not run yet). (1) fast_mlp C512 forced into the dual form (with
# the blocks of 2026-12-06c; the bench rows below time C512 materialised, the auto choice, in the
# same run): does AUTO_MAX_CHUNK = 256 still hold? (2) C64 with the forward's W2₀ products folded
# (NESTED_KERNELS_FAST_MLP_DUAL_FOLD=1) against the default in the bench rows; (3) per-kernel
# profile of gelu C64 fwd+bwd in the dual form, eager (graphs off, so the kernels are the walk's);
# (4) linear_memory's timing table (η only, α+β, α+β+μ) beside fla with the n×n hand-off
# (2026-12-06c call 4 lost it to a compile timeout); (5) the bench suite's fast_mlp / CMS rows of
# the triton backend and the static MLP (CSV; CMS with and without states).
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py --no-check --no-big --no-cms"
{
fg dual512 70 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --chunks 512 --json "$OUT/time_dual512.json"
fg fold 60 env NESTED_KERNELS_FAST_MLP_DUAL_FOLD=1 $FM --chunks 64 --json "$OUT/time_fold.json"
fg prof 60 env NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=0 python3 python/profile_kernels.py fast_mlp --mlp gelu --chunk 64 --reps 2
fg lm 200 python3 python/check_linear_memory_triton.py --no-check --timed 0,1,3 --json "$OUT/time_lm.json"
fg bench 170 python3 -m pytest bench -q -k "(fast_mlp or cms) and (triton or static)" --bench-csv "$OUT/bench.csv" -p no:cacheprovider
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
