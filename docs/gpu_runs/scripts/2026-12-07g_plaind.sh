#!/usr/bin/env bash
# 2026-12-07g (≤ 9 min, no build; branch wip/plain-d): PLAIN_D — PLAIN_A tiles take their token
# gradients from rows the walks store (D = V − K M0 kept by the forward walk, dW by the backward
# walk) in one _plain_d_kernel instead of _plain_dv_kernel + _plain_dqk_kernel (≈ 30 % fewer bytes
# at issue 3's shape). Also A = QKᵀ⊙Φ_m no longer holds η on this branch (the walks scale by η),
# so the default path's walks changed too: GPU tests and check cases 12–14 with the knob off and
# on, then the interleaved A/B beside fla at issue 3's shape (η only, then α read "after").
. "$(dirname "$0")/lib.sh"
AB="python3 python/ab_knob_linear_memory.py"
{
for v in 1 0; do
  fg tests_$v 120 env NESTED_KERNELS_LM_TRITON_PLAIN_D=$v python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k "gpu_plain" -p no:cacheprovider -rfE --tb=short
  fg check_$v 90 env NESTED_KERNELS_LM_TRITON_PLAIN_D=$v python3 python/check_linear_memory_triton.py --cases 12,13,14 --dtypes bf16,fp16 --no-timing
done
fg ab_eta 110 $AB NESTED_KERNELS_LM_TRITON_PLAIN_D=0,1 --rounds 3 --json "$OUT/ab_plaind.json"
fg ab_alpha 90 $AB NESTED_KERNELS_LM_TRITON_PLAIN_D=0,1 --gates a --rounds 2 --json "$OUT/ab_plaind_a.json"
echo "=== done ($(now))"
} > "$OUT/plaind.log" 2>&1
