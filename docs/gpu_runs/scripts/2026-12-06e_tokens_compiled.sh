#!/usr/bin/env bash
# 2026-12-06e call 4: mlp_memory's token gradients by autograd over all tiles with the tile algebra
# compiled (torch.compile, NESTED_KERNELS_MLP_TRITON_TOKENS=torch; call 3: eager, its elementwise
# ops unfused) and without the device syncs of the scatter. (1) timing at issue 4's shape: defaults
# (the kernel's PARTs 2 and 3), compiled, eager, beside titans-pytorch; (2) the quick GPU check
# with the compiled path; (3) its kernel profile.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
{
fg time 300 $MLP --no-check --no-large --no-torch --variants "torch tokens compiled:TOKENS=torch;torch tokens eager:TOKENS=torch,TOKENS_COMPILE=0" --json "$OUT/time.json"
fg check 200 env NESTED_KERNELS_MLP_TRITON_TOKENS=torch $MLP --quick --ref torch --no-timing
fg profile 90 env NESTED_KERNELS_MLP_TRITON_TOKENS=torch python3 python/profile_kernels.py mlp_memory --gates abm --target self --read chunk --reps 2 --order 8 --gaps 3
echo "=== done ($(now))"
} > "$OUT/call4.log" 2>&1
