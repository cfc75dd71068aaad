#!/usr/bin/env bash
# 2026-12-07d call 4 (≤ 7 min, no build; steps in priority order), linear_memory's PLAIN_A, now
# the default (call 3: correct against float64 in check cases 12–14, bf16 / fp16; prep 209 → 63 µs,
# but that machine's host was slower than its device, so its fwd+bwd timings measured the host):
# (1) interleaved A/B in one process with fla chunk_delta_rule (python/ab_knob_linear_memory.py:
# synced times and the device time of the kernels per call), η only then η + α; (2) the GPU tests
# of plain tiles (bf16 / fp16 / fp32, varlen) with the new default.
. "$(dirname "$0")/lib.sh"
AB="python3 python/ab_knob_linear_memory.py NESTED_KERNELS_LM_TRITON_PLAIN_A=0,1"
{
fg ab_eta 170 $AB --gates "" --rounds 5 --json "$OUT/ab_eta.json"
fg ab_alpha 100 $AB --gates a --rounds 3 --json "$OUT/ab_alpha.json"
fg gpu_plain 130 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k plain -p no:cacheprovider -rfE --tb=short
echo "=== done ($(now))"
} > "$OUT/call4.log" 2>&1
