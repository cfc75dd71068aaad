#!/usr/bin/env bash
# 2026-12-06f: mlp_memory's CUDA forward walk (csrc/mlp_memory/walk.cu, backend "cuda" = the triton
# backend with this walk). Build the extension with the device's nvcc; (1) its GPU tests against the
# float64 reference and the Triton walk; (2) timing at issue 4's shape (B4 T4096 H8 K=V=64 F256 C64,
# self target, read chunk, β = η, α + μ, bf16) of the cuda and triton backends beside titans-pytorch;
# (3) the per-kernel profile of one cuda fwd+bwd.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
{
fg build 240 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg tests 200 python3 -m pytest -q -m gpu tests/ops/test_mlp_memory_cuda.py -p no:cacheprovider -x
fg time 120 $MLP --no-check --no-large --no-torch --cuda --variants "" --json "$OUT/time.json"
echo "=== done ($(now))"
} > "$OUT/cuda_walk.log" 2>&1
