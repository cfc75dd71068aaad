#!/usr/bin/env bash
# GPU call 9 of session 2026-11-26g: main's final fast_mlp through the benchmark suite
# (pytest bench, fast_mlp and CMS rows with their static-MLP peers, CSV) and the check script's
# timing once more, nothing else running beside them.
. "$(dirname "$0")/lib.sh"
{
fg bench 420 python3 -m pytest bench -q -k "fast_mlp or cms" --bench-csv "$OUT/bench_fast_mlp_cms.csv" -p no:cacheprovider
fg fast_default 100 python3 python/check_fast_mlp_triton.py --no-check
echo "=== done ($(now))"
} > "$OUT/time.log" 2>&1
