#!/usr/bin/env bash
# 2026-12-07a (≈ 11 min, no build), linear_memory: (0) the default verify (the walk's and output
# kernel's default variants changed with the fused-output arguments); (1) the forward walk writing the outputs
# (NESTED_KERNELS_LM_TRITON_FUSE_OUT=1, no _out_kernel) — the GPU verify of the triton backend with
# it, then the issue-shape timing (B4 T4096 H16 K=V=128 C64 bf16, fla chunk_delta_rule in the same
# process) without and with it (η only, α+β+μ; --queued: back-to-back device time too);
# (2) chunk_size 1 with self targets on the Triton kernels (branch wip/c1-self, merged): the GPU
# check's cases 9, 10, 11 against float64 in bf16 / fp16 / fp32, and its timing at the issue shape
# (HOPE α+β self, beside the external momentum delta rule at C1).
. "$(dirname "$0")/lib.sh"
CK="python3 python/check_linear_memory_triton.py --no-check --timed 0,3 --queued"
{
fg c1self 120 python3 python/check_linear_memory_triton.py --cases 9,10,11 --no-timing
fg c1verify 150 python3 -m nested_kernels.verify --ops linear_memory --backends triton --case "C1 self"
fg verify_default 200 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton
fg verify_fuse 200 env NESTED_KERNELS_LM_TRITON_FUSE_OUT=1 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton
fg time_off 100 $CK --json "$OUT/time_off.json"
fg time_fuse 100 env NESTED_KERNELS_LM_TRITON_FUSE_OUT=1 $CK --json "$OUT/time_fuse.json"
fg c1self_time 60 python3 python/check_linear_memory_triton.py --no-check --no-fla --C 1 --timed 4,5 --json "$OUT/time_c1.json"
echo "=== done ($(now))"
} > "$OUT/lm_fuse.log" 2>&1
