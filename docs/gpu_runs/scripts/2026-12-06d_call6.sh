#!/usr/bin/env bash
# 2026-12-06d call 6: where the dual walk's materialised second layer should start
# (NESTED_KERNELS_FAST_MLP_DUAL_LAYER2, tokens; call 5's default ≈ 819 at D2048 F8192 lost 1 ms
# in the backward at gelu C64): gelu / swiglu C64 fwd+bwd with off, 2048 and 3072 in one run.
. "$(dirname "$0")/lib.sh"
T="python3 python/check_fast_mlp_triton.py --no-check --no-big --no-cms --chunks 64"
{
for v in off 2048 3072; do
fg "layer2_$v" 60 env NESTED_KERNELS_FAST_MLP_DUAL_LAYER2=$v $T --json "$OUT/time_$v.json"
done
echo "=== done ($(now))"
} > "$OUT/call6.log" 2>&1
