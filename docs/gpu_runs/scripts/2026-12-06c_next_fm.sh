#!/usr/bin/env bash
# Next GPU call after 2026-12-06c for fast_mlp (not run yet). (1) the GPU check in the dual form
# (since the last check: block-triangular SX and input-gradient Grams, 2026-12-06c, CPU-tested);
# (2) C512 forced into the dual form (the bench rows below time C512 materialised, the auto choice,
# in the same run): does AUTO_MAX_CHUNK = 256 still hold? (3) C64 with the forward's W2₀ products
# folded (NESTED_KERNELS_FAST_MLP_DUAL_FOLD=1) against the default in the bench rows; (4) per-kernel
# profile of gelu C64 fwd+bwd in the dual form, eager (graphs off, so the kernels are the walk's);
# (5) the bench suite's fast_mlp / CMS rows of the triton backend and the static MLP (CSV; CMS with
# and without states).
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
T="$FM --no-check --no-big --no-cms"
{
fg check 160 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --no-time
fg dual512 60 env NESTED_KERNELS_FAST_MLP_FORM=dual $T --chunks 512 --json "$OUT/time_dual512.json"
fg fold 50 env NESTED_KERNELS_FAST_MLP_DUAL_FOLD=1 $T --chunks 64 --json "$OUT/time_fold.json"
fg prof 60 env NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=0 python3 python/profile_kernels.py fast_mlp --mlp gelu --chunk 64 --reps 2
fg bench 170 python3 -m pytest bench -q -k "(fast_mlp or cms) and (triton or static)" --bench-csv "$OUT/bench.csv" -p no:cacheprovider
echo "=== done ($(now))"
} > "$OUT/next_fm.log" 2>&1
