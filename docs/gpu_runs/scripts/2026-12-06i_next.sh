#!/usr/bin/env bash
# Next mlp_memory GPU call after 2026-12-06i (≈ 8 min): (1) the triton GPU tests 2026-12-06h_next.sh's
# 160 s step did not reach (the realistic bm / external / after row in bf16, the runaway case with
# precision="float32" in bf16 and fp16, the torch.compile test); (2) the bench suite's mlp_memory rows
# of the cuda backend (auto since 2026-12-06i) beside titans-pytorch (call 4 of 2026-12-06i took the
# slow torch rows and was cut before titans).
. "$(dirname "$0")/lib.sh"
T="python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short -v"
{
fg build 120 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg triton 300 $T tests/ops/test_mlp_memory_triton.py \
  -k "prep1-split-torchtok and (runaway or (realistic and bm-external and dtype0) or torch_compile)"
fg bench_mlp 150 python3 -m pytest bench -q -k "mlp_memory and not step and (cuda or titans)" \
  --bench-csv "$OUT/bench_mlp.csv" -p no:cacheprovider
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
