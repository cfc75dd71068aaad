#!/usr/bin/env bash
# 2026-12-07b call 2 (≤ 8 min, no build), linear_memory at chunk_size 1 with self targets on the
# Triton kernels: the GPU check's cases 9, 10, 11 against float64 in bf16 / fp16 / fp32 (replacing
# 2026-12-07a_call1's T = 777 case whose memory decayed below float32's normal range), the verify's
# C1 self cases, and the timing at the issue shape (HOPE α+β self from an initial state).
. "$(dirname "$0")/lib.sh"
{
fg c1self 170 python3 python/check_linear_memory_triton.py --cases 9,10,11 --no-timing
fg c1verify 170 python3 -m nested_kernels.verify --ops linear_memory --backends triton --case "C1 self"
fg c1self_time 120 python3 python/check_linear_memory_triton.py --no-check --no-fla --C 1 --timed 4,5 --json "$OUT/time_c1.json"
echo "=== done ($(now))"
} > "$OUT/call2.log" 2>&1
