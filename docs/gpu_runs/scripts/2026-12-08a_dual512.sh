#!/usr/bin/env bash
# 2026-12-08a (≤ 6 min, no build; main): fast_mlp at C512 (issue 5: gelu 3.92× against ≤ 3.5×) in the dual form
# with the second layer materialised per block (NESTED_KERNELS_FAST_MLP_DUAL_LAYER2) and other block sizes
# (NESTED_KERNELS_FAST_MLP_DUAL_BLOCK), beside the materialised form (auto at C512) in the same call.
# The dual form at C512 was last timed in 2026-12-06d (23.16 vs 21.57 ms gelu), before the second layer
# could be materialised per block; at C512 a block of 1024 tokens holds two chunks, so LAYER2=1 halves the
# second layer's weight passes against the materialised form and the first layer's are replaced by Grams.
. "$(dirname "$0")/lib.sh"
T="python3 python/check_fast_mlp_triton.py --no-check --no-cms --no-big"
D="env NESTED_KERNELS_FAST_MLP_FORM=dual"
{
fg materialized 90 env NESTED_KERNELS_FAST_MLP_FORM=materialized $T --chunks 512,1024 --json "$OUT/mat.json"
fg dual 60 $D $T --chunks 512 --json "$OUT/dual.json"
fg dual_l2_1 60 $D NESTED_KERNELS_FAST_MLP_DUAL_LAYER2=1 $T --chunks 512,1024 --json "$OUT/dual_l2_1.json"
fg dual_b512_l2_1 60 $D NESTED_KERNELS_FAST_MLP_DUAL_BLOCK=512 NESTED_KERNELS_FAST_MLP_DUAL_LAYER2=1 $T --chunks 512 \
    --json "$OUT/dual_b512_l2_1.json"
fg dual_b2048_l2_1 60 $D NESTED_KERNELS_FAST_MLP_DUAL_BLOCK=2048 NESTED_KERNELS_FAST_MLP_DUAL_LAYER2=1 $T \
    --chunks 512,1024 --json "$OUT/dual_b2048_l2_1.json"
fg dual_l2_off 60 $D NESTED_KERNELS_FAST_MLP_DUAL_LAYER2=off $T --chunks 512 --json "$OUT/dual_l2_off.json"
echo "=== done ($(now))"
} > "$OUT/dual512.log" 2>&1
