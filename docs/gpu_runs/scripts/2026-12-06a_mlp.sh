#!/usr/bin/env bash
# GPU call of session 2026-12-06a: mlp_memory operand precision, F block and the split backward.
# A CPU emulation of the chunk algebra with rounded operands (python/emulate_mlp_memory_precision.py,
# bf16 inputs, issue case, T = 1000 / 4096) gave worst errors 8e-4 / 1.8e-3 with tf32 operands and
# 8e-3 / 1.8e-2 with bf16 operands (bound 2e-2); the sm_90 probe (python/compile_mlp_memory_triton.py)
# gives the backward 49 KB (tf32x3) / 28 KB (tf32r) of spill stores per thread in one walk, 2.6 KB
# + 15 KB (tf32r) when split into the adjoint chain and the token gradients (BWD_SPLIT=1).
# The forward now keeps its residuals (no SAVE re-run in the backward) in every variant.
# (1) warm-up compiles of each variant in parallel; (2) the quick check (issue case + varlen/resume
# case, bf16, float64 torch witness) with tf32r + split and with the defaults (tf32x3, one walk); (3) issue-shape timing
# of the default and the variants with titans-pytorch in the same process; (4) K=V=128 F=512 (the
# titans shape, H4) with tf32r + split, whose one-walk backward aborts in LLVM on the CPU probe;
# (5) per-kernel profile.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
V1="tf32r:PRECISION=tf32r"
V2="tf32r split:PRECISION=tf32r,BWD_SPLIT=1"
V4="bf16 split:PRECISION=bf16,BWD_SPLIT=1"
W="--no-check --no-large --no-torch --no-titans --T 256 --warmup 1 --reps 1"
bg w_def 200 $MLP $W --variants ""
bg w_1 200 $MLP $W --variants "$V1"
bg w_2 200 $MLP $W --variants "$V2"
bg w_4 200 $MLP $W --variants "$V4"
bg chk_tf 220 env NESTED_KERNELS_MLP_TRITON_PRECISION=tf32r NESTED_KERNELS_MLP_TRITON_BWD_SPLIT=1 $MLP --quick --ref torch --no-timing
bg chk_def 220 $MLP --quick --ref torch --no-timing
wait
{
fg time 150 $MLP --no-check --no-large --no-torch --variants "$V1;$V2;$V4" --json "$OUT/time_mlp.json"
fg large 150 env NESTED_KERNELS_MLP_TRITON_PRECISION=tf32r NESTED_KERNELS_MLP_TRITON_BWD_SPLIT=1 $MLP --no-check --no-torch --no-titans --variants "" --warmup 1 --reps 3
fg prof 60 env NESTED_KERNELS_MLP_TRITON_PRECISION=tf32r NESTED_KERNELS_MLP_TRITON_BWD_SPLIT=1 python3 python/profile_kernels.py mlp_memory --gates abm --target self --read chunk --reps 2
echo "=== done ($(now))"
} > "$OUT/time.log" 2>&1
wait
cat "$OUT"/chk_*.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 6 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
