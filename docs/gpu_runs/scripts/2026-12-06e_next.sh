#!/usr/bin/env bash
# Next GPU call after 2026-12-06e (not run yet): the session's new defaults in the benchmark suite
# and the wider GPU checks. (1) mlp_memory's GPU check (bf16, every case) with the token gradients
# by the compiled tile VJP and the prep rows by torch; (2) the suite's mlp_memory rows (titans-
# pytorch beside) and fast_mlp / CMS rows (C64 with the second layer from 2048 tokens, now the
# default; CMS with and without states); (3) mlp_memory at K=V=128 F=512 (throughput). Also the
# GPU tests of the triton backend in bf16 and the op under torch.compile (new in 2026-12-06e).
# Longer than one 10-minute call: `bash 2026-12-06e_next.sh 1` (checks, ≈ 8 min), then `… 2`
# (benchmarks and K=V=128, ≈ 7 min).
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
PART=${1:-1}
{
if [ "$PART" = 1 ]; then
fg check 300 $MLP --dtypes bf16 --ref torch --no-timing
fg gpu_tests 200 python3 -m pytest -q -m gpu tests/ops/test_mlp_memory_triton.py -k "torch_compile or bfloat16" -p no:cacheprovider
else
fg bench_mlp 150 python3 -m pytest bench -q -k "mlp_memory and not step and (triton or titans)" --bench-csv "$OUT/bench_mlp.csv" -p no:cacheprovider
fg bench_fm 90 python3 -m pytest bench -q -k "(fast_mlp or cms) and (triton or static) and (C64 or cms or static) and not bf16w and not step" --bench-csv "$OUT/bench_fm.csv" -p no:cacheprovider
fg large 200 $MLP --no-check --only-large --no-torch --json "$OUT/large.json"
fi
echo "=== done ($(now))"
} > "$OUT/next$PART.log" 2>&1
