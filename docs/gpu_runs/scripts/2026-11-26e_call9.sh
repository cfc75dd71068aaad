#!/usr/bin/env bash
# GPU call 9 of session 2026-11-26e: float16 inputs now default to tf32x3 products (and the fused
# gradient kernel): the float16 verify cases (full set) and the float16 GPU tests of linear_memory.
. "$(dirname "$0")/lib.sh"
bg verify 300 python3 -m nested_kernels.verify --ops linear_memory --backends triton --case fp16 --jobs 2
bg gpu16 330 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k float16 -p no:cacheprovider
wait
cat "$OUT"/verify.log "$OUT"/gpu16.log > "$OUT/all.txt"
