#!/usr/bin/env bash
# 2026-12-06e call 5: mlp_memory with the new defaults — token and gate gradients by the compiled
# autograd VJP over all tiles (tile_grads.py) and the prep kernel's rows kept with the forward's
# residuals (the backward no longer runs _prep_kernel). (1) timing at issue 4's shape beside the
# kernel's token PARTs (NESTED_KERNELS_MLP_TRITON_TOKENS=triton) and titans-pytorch; (2) verify
# --quick for mlp_memory (every backend); (3) the quick GPU check; (4) the kernel profile.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
{
fg time 200 $MLP --no-check --no-large --no-torch --variants "token PARTs in triton:TOKENS=triton" --json "$OUT/time.json"
fg verify 180 python3 -m nested_kernels.verify --quick --ops mlp_memory
fg check 120 $MLP --quick --ref torch --no-timing
fg profile 60 python3 python/profile_kernels.py mlp_memory --gates abm --target self --read chunk --reps 2 --order 6
echo "=== done ($(now))"
} > "$OUT/call5.log" 2>&1
