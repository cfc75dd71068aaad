#!/usr/bin/env bash
# GPU call 10 of session 2026-11-26e: the float16 GPU tests of linear_memory (pytest ids dtype1)
# and the plain-tile verify cases, with float16 on tf32x3 (call 9's -k float16 selected nothing).
. "$(dirname "$0")/lib.sh"
bg verify 300 python3 -m nested_kernels.verify --ops linear_memory --backends triton --case "plain tiles" --jobs 2
bg gpu16 330 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k dtype1 -p no:cacheprovider
wait
cat "$OUT"/verify.log "$OUT"/gpu16.log > "$OUT/all.txt"
