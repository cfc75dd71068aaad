#!/usr/bin/env bash
# GPU call 11 of session 2026-11-26f: the float16 GPU tests of linear_memory (tf32r products by
# default, split gradient kernels with β or μ; pytest ids dtype1), with the whole call for them.
. "$(dirname "$0")/lib.sh"
fg gpu16 540 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k dtype1 -p no:cacheprovider > "$OUT/gpu16.log"
