#!/usr/bin/env bash
# 2026-12-07g call 4 (≤ 3 min, the session's last device seconds): _plain_d_kernel with one program
# per tile and head (BLOCK_PLAIN 128) forming D (PLAIN_D_FORM 1) or reading the kept D (0): check
# case 12 (bf16) each, then per-kernel device time against the default (BLOCK_PLAIN 64) at issue 3's
# shape, η only (profiles written to files: fg's filter drops lines with "_kernel ").
. "$(dirname "$0")/lib.sh"
{
for form in 1 0; do
  fg check_128_$form 45 env NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=128 NESTED_KERNELS_LM_TRITON_PLAIN_D_FORM=$form \
      python3 python/check_linear_memory_triton.py --cases 12 --dtypes bf16 --no-timing
done
for v in 64,0 128,1 128,0; do
  b=${v%,*}; f=${v#*,}
  echo "=== prof_${b}_$f ($(now))"
  $TO 30 env NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=$b NESTED_KERNELS_LM_TRITON_PLAIN_D_FORM=$f \
      python3 python/profile_kernels.py linear_memory --gates "" --reps 3 > "$OUT/prof_${b}_$f.txt" 2>&1
done
echo "=== done ($(now))"
} > "$OUT/call4.log" 2>&1
