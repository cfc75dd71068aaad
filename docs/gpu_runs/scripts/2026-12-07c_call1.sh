#!/usr/bin/env bash
# 2026-12-07c call 1 (≤ 9.5 min; steps in priority order, a shorter limit cuts the last ones),
# linear_memory: (1) while the extension builds in the background: the issue-shape timing
# (B4 T4096 H16 K=V=128 C64 bf16, η only, fla chunk_delta_rule
# in the same process, --queued) with the defaults, with NESTED_KERNELS_LM_TRITON_FUSE_OUT=1 (GPU
# verify 7/7 in 2026-12-07a_call1, kernel code unchanged since) and with
# NESTED_KERNELS_LM_TRITON_PLAIN_OUT=1 (new: the forward and the backward's adjoint walk form plain
# tiles from the inputs, no prep kernel; never GPU-run; first checked against float64 in the same
# process: cases 12, 13 are plain tiles, bf16 / fp16), also with 8 warps in the walks; (2) three
# processes at once: the experimental CUDA walks' GPU tests (csrc/linear_memory/walk.cu against
# float64 and the triton backend, bf16 / fp16), the C1 self-target check cases 9–11 against
# float64;
# (3) timing cuda vs triton walks, η only.
. "$(dirname "$0")/lib.sh"
CK="python3 python/check_linear_memory_triton.py --no-check --timed 0 --queued"
TESTS="python3 -m pytest -q -m gpu tests/ops/test_linear_memory_cuda.py -p no:cacheprovider"
{
bg build 280 env NVCC_THREADS=4 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg time_off 130 $CK --json "$OUT/time_off.json"
fg plain 150 env NESTED_KERNELS_LM_TRITON_PLAIN_OUT=1 python3 python/check_linear_memory_triton.py --cases 12,13 \
    --dtypes bf16,fp16 --timed 0 --queued --no-fla --json "$OUT/time_plain.json"
fg time_fuse 80 env NESTED_KERNELS_LM_TRITON_FUSE_OUT=1 $CK --no-fla --json "$OUT/time_fuse.json"
wait
tail -3 "$OUT/build.log"
bg tests_bf16 140 $TESTS -k "bf16 or triton_walks"
bg tests_fp16 140 $TESTS -k fp16
bg c1self 140 python3 python/check_linear_memory_triton.py --cases 9,10,11 --no-timing
wait
cat "$OUT/tests_bf16.log" "$OUT/tests_fp16.log" "$OUT/c1self.log"
fg time_cuda 70 $CK --no-fla --backends triton,cuda --json "$OUT/time_cuda.json"
fg time_plain8 60 env NESTED_KERNELS_LM_TRITON_PLAIN_OUT=1 NESTED_KERNELS_LM_TRITON_WARPS_STATE=8 $CK --no-fla \
    --json "$OUT/time_plain8.json"
echo "=== done ($(now))"
} > "$OUT/call1.log" 2>&1
