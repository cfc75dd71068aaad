#!/usr/bin/env bash
# 2026-12-06i call 4, as run (same warm machine, commit d6456d0): the bench suite's mlp_memory rows.
# The filter took the torch backend's rows too (≈ 0.7 s per fwd+bwd), so the 200 s limit cut the
# run before the titans-pytorch rows; next time filter "(triton or cuda or titans)".
mkdir -p $OUT; timeout 200 python3 -m pytest bench -q -k "mlp_memory and not step" --bench-csv "$OUT/bench_mlp.csv" -p no:cacheprovider > $OUT/bench.log 2>&1; echo rc=$?; grep -v Warning $OUT/bench.log | tail -25; cat $OUT/bench_mlp.csv | cut -c1-200
