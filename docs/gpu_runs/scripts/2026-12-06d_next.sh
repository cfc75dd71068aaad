#!/usr/bin/env bash
# Next GPU call after 2026-12-06d (not run yet): the opt-in materialised second layer of fast_mlp's
# dual walk with W2h's compute-dtype copy from its update pass and the W2_b kept with the forward's
# residuals (commits after 4ede98f, CPU-tested):
# (1) the dual-form GPU check with it on from 256 tokens (the check's blocks start at 128/256);
# (2) gelu / swiglu C64 fwd+bwd with it off, from 819 and from 2048 tokens, in one run; (3) the
# decode steps through verify (new in 2026-12-06d; needs the extension built for the cuda step).
. "$(dirname "$0")/lib.sh"
T="python3 python/check_fast_mlp_triton.py --no-check --no-big --no-cms --chunks 64"
{
fg check 170 env NESTED_KERNELS_FAST_MLP_FORM=dual NESTED_KERNELS_FAST_MLP_DUAL_LAYER2=256 python3 python/check_fast_mlp_triton.py --no-time
for v in off 819 2048; do
fg "layer2_$v" 60 env NESTED_KERNELS_FAST_MLP_DUAL_LAYER2=$v $T --json "$OUT/time_$v.json"
done
fg build 200 env NESTED_KERNELS_CUDA_ARCHS=90a python3 -m pip install -q --no-build-isolation --no-deps -e .
fg verify_steps 200 python3 -m nested_kernels.verify --quick --ops linear_memory_step,mlp_memory_step,fast_mlp_step
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
