#!/usr/bin/env bash
# GPU call of session 2026-12-06a: mlp_memory operand precision and F block. A CPU emulation of
# the chunk algebra with rounded operands (bf16 inputs, issue case, T = 1000 / 4096) gave worst
# errors 8e-4 / 1.8e-3 with tf32 operands and 8e-3 / 1.8e-2 with bf16 operands (bound 2e-2), so
# tf32r (operands rounded to tf32, one dot instead of tf32x3's three) may be accurate enough for
# 16-bit inputs. (1) warm-up compiles of each variant in parallel; (2) the quick check (issue
# case + varlen/resume case, bf16, float64 torch witness) with tf32r and with bf16 operands;
# (3) issue-shape timing of the default and the variants with titans-pytorch in the same process;
# (4) per-kernel profile with tf32r.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
VAR="tf32r:PRECISION=tf32r;tf32r BF32:PRECISION=tf32r,BF=32;tf32r BF64:PRECISION=tf32r,BF=64;bf16:PRECISION=bf16;bf16 BF64:PRECISION=bf16,BF=64"
W="--no-check --no-large --no-torch --no-titans --T 256 --warmup 1 --reps 1"
bg w_def 240 $MLP $W --variants ""
bg w_tf 240 $MLP $W --variants "tf32r:PRECISION=tf32r"
bg w_tf32 240 $MLP $W --variants "tf32r BF32:PRECISION=tf32r,BF=32"
bg w_tf64 240 $MLP $W --variants "tf32r BF64:PRECISION=tf32r,BF=64"
bg w_bf 240 $MLP $W --variants "bf16:PRECISION=bf16"
bg w_bf64 240 $MLP $W --variants "bf16 BF64:PRECISION=bf16,BF=64"
bg chk_tf 280 env NESTED_KERNELS_MLP_TRITON_PRECISION=tf32r $MLP --quick --ref torch --no-timing
wait
bg chk_bf 150 env NESTED_KERNELS_MLP_TRITON_PRECISION=bf16 $MLP --quick --ref torch --no-timing
{
fg time 200 $MLP --no-check --no-large --no-torch --variants "$VAR" --json "$OUT/time_mlp.json"
fg prof_tf32r 90 env NESTED_KERNELS_MLP_TRITON_PRECISION=tf32r python3 python/profile_kernels.py mlp_memory --gates abm --target self --read chunk --reps 2
echo "=== done ($(now))"
} > "$OUT/time.log" 2>&1
wait
cat "$OUT"/chk_*.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 6 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
