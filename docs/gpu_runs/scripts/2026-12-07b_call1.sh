#!/usr/bin/env bash
# 2026-12-07b call 1 (≈ 4.5 min, no build), linear_memory, in priority order: (0) the default GPU
# verify of the triton backend (the knob-off walk / output kernels' PTX changed with the
# fused-output arguments in 2026-12-07a and has not run on a GPU since); (1) the issue-shape timing
# (B4 T4096 H16 K=V=128 C64 bf16, η only, fla chunk_delta_rule in the same process; --queued:
# back-to-back device time too) without and with NESTED_KERNELS_LM_TRITON_FUSE_OUT=1 (its GPU
# verify passed in 2026-12-07a_call1 at 32793b8; the kernel code is unchanged since); (2) the C1
# self-target check's cases 9–11 against float64 (bf16 / fp16 / fp32), as far as time allows.
. "$(dirname "$0")/lib.sh"
CK="python3 python/check_linear_memory_triton.py --no-check --timed 0 --queued"
{
fg verify_default 110 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton
fg time_off 100 $CK --json "$OUT/time_off.json"
fg time_fuse 50 env NESTED_KERNELS_LM_TRITON_FUSE_OUT=1 $CK --no-fla --json "$OUT/time_fuse.json"
fg c1self 100 python3 python/check_linear_memory_triton.py --cases 9,10,11 --no-timing
echo "=== done ($(now))"
} > "$OUT/call1.log" 2>&1
