#!/usr/bin/env bash
# For a session after 2026-12-07g (≤ 9.5 min, no build). (1) linear_memory's quick verify with the
# defaults of 2026-12-07g (PLAIN_D for η-only PLAIN_A tiles, A without η, fast launch on): its
# GPU tests and check cases 12–14 passed on the branch (2026-12-07g call 1), the whole quick set has
# not run since. (2) _plain_d_kernel with one program per tile and head (BLOCK_PLAIN 128: dW, dO, q,
# k read once), forming D = V − K M0 itself (PLAIN_D_FORM 1, opt-in: the forward keeps no D; sm_90
# probe 892 B of spill stores per thread at 8 warps) or reading the kept D (PLAIN_D_FORM 0, the
# default, 200 B), checked (case 12, bf16) and then timed against 64 beside fla at issue 3's shape.
# If forming D passes and pays, make it the default (triton_backend._plain_d_forms). (3) The walks' V block 16 against 32 (2026-12-07f_next.sh step 2, cut by
# its step limit in 2026-12-07g call 3 while fla compiled: longer limits here; sm_90 probe: the
# backward walk's 108 B of spill stores per thread go at 16) and wgmma for the prep and the walks
# (MMA auto; "mixed" faulted for α+β in 2026-11-26e, η only never timed since PLAIN_A), one run.
. "$(dirname "$0")/lib.sh"
AB="python3 python/ab_knob_linear_memory.py"
{
fg verify 170 python3 -m nested_kernels.verify --quick --backends triton --ops linear_memory --jobs 8
for form in 1 0; do
  fg check_128_$form 40 env NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=128 NESTED_KERNELS_LM_TRITON_PLAIN_D_FORM=$form \
      python3 python/check_linear_memory_triton.py --cases 12 --dtypes bf16 --no-timing
done
fg ab_block 170 $AB NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=64,128,128 NESTED_KERNELS_LM_TRITON_PLAIN_D_FORM=1,1,0 \
    --rounds 3 --json "$OUT/ab_block.json"
fg ab_bv 150 $AB NESTED_KERNELS_LM_TRITON_BV=32,16,32 NESTED_KERNELS_LM_TRITON_MMA=v2,v2,auto --rounds 2 \
    --json "$OUT/ab_bv.json"
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
