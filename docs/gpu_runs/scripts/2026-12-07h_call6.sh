#!/usr/bin/env bash
# 2026-12-07h call 6 (≤ 5 min, no build): _plain_d_kernel's K block 128 made the default for η-only
# plain tiles (call 3): the plain GPU tests and check cases 12–14 (bf16, fp16) with it.
. "$(dirname "$0")/lib.sh"
{
fg gpu_plain 200 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k "gpu_plain or plain_d"
fg check 70 python3 python/check_linear_memory_triton.py --cases 12,13,14 --dtypes bf16,fp16 --no-timing
echo "=== done ($(now))"
} > "$OUT/call6.log" 2>&1
