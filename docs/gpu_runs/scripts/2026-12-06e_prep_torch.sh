#!/usr/bin/env bash
# 2026-12-06e call 6 (last of the session's budget): mlp_memory's prep rows by batched torch ops
# (NESTED_KERNELS_MLP_TRITON_PREP_ROWS=torch, prep_torch.py) instead of _prep_kernel (3.46 ms per
# call in call 5). (1) timing at issue 4's shape, defaults vs torch rows, beside titans-pytorch;
# (2) the quick GPU check with torch rows; (3) fast_mlp C64 with the opt-in second layer off / from
# 2048 tokens again (call 1: 2048 was 5-6 % faster).
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
FM="python3 python/check_fast_mlp_triton.py --no-check --no-big --no-cms --chunks 64"
{
fg time 130 $MLP --no-check --no-large --no-torch --variants "prep rows by torch:PREP_ROWS=torch" --json "$OUT/time.json"
fg check 120 env NESTED_KERNELS_MLP_TRITON_PREP_ROWS=torch $MLP --quick --ref torch --no-timing
for v in off 2048; do
fg "layer2_$v" 45 env NESTED_KERNELS_FAST_MLP_DUAL_LAYER2=$v $FM --json "$OUT/fm_$v.json"
done
echo "=== done ($(now))"
} > "$OUT/call6.log" 2>&1
