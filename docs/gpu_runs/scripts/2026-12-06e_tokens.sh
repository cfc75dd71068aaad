#!/usr/bin/env bash
# 2026-12-06e call 2: mlp_memory's token and gate gradients by autograd over all tiles at once
# (NESTED_KERNELS_MLP_TRITON_TOKENS=torch, tile_grads.py) instead of _bwd_kernel's PARTs 2 and 3
# (32.7 + 0.74 of ≈ 60 ms fwd+bwd in call 1's profile). (1) timing at issue 4's shape beside the
# defaults and titans-pytorch; (2) the GPU check (bf16, fp32) with it; (3) its kernel profile.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
{
fg time 170 $MLP --no-check --no-large --no-torch --variants "torch tokens:TOKENS=torch" --json "$OUT/time.json"
fg check 330 env NESTED_KERNELS_MLP_TRITON_TOKENS=torch $MLP --dtypes bf16,fp32 --ref torch --no-timing
fg profile 90 env NESTED_KERNELS_MLP_TRITON_TOKENS=torch python3 python/profile_kernels.py mlp_memory --gates abm --target self --read chunk --reps 3 --order 12
echo "=== done ($(now))"
} > "$OUT/call2.log" 2>&1
