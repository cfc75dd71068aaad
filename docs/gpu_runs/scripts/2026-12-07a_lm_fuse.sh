#!/usr/bin/env bash
# 2026-12-07a (≈ 7 min, no build): linear_memory's forward walk writing the outputs
# (NESTED_KERNELS_LM_TRITON_FUSE_OUT=1, no _out_kernel) — the GPU verify of the triton backend with
# it, then the issue-shape timing (B4 T4096 H16 K=V=128 C64 bf16, fla chunk_delta_rule in the same
# process) without and with it (η only, α+β+μ; --queued: back-to-back device time too).
. "$(dirname "$0")/lib.sh"
CK="python3 python/check_linear_memory_triton.py --no-check --timed 0,3 --queued"
{
fg verify_fuse 240 env NESTED_KERNELS_LM_TRITON_FUSE_OUT=1 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton
fg time_off 130 $CK --json "$OUT/time_off.json"
fg time_fuse 130 env NESTED_KERNELS_LM_TRITON_FUSE_OUT=1 $CK --json "$OUT/time_fuse.json"
echo "=== done ($(now))"
} > "$OUT/lm_fuse.log" 2>&1
