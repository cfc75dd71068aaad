#!/usr/bin/env bash
# Next GPU call after 2026-12-06g (on main): what this session could not run. (1) build; the
# ill-conditioned case (self target without α) on triton in every dtype with tf32x3 products;
# mlp_memory under torch.compile for the four knob variants (knobs now in the op's config); the
# CUDA walk's tests (K=V=32 chunk-64 rows, the refusals incl. precision='float32'); ≈ 7 min.
# (2) `2026-12-06e_next.sh 2` (bench rows of mlp_memory / fast_mlp / CMS, K=V=128 F=512).
# The cooperative CUDA walk is on branch wip/mlp-walk-coop: `2026-12-06g_call3b.sh` there.
. "$(dirname "$0")/lib.sh"
{
fg build 120 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg ill 100 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_triton.py \
  -k "realistic and bm-self-after and prep1-split-torchtok"
fg compile 200 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_triton.py -k torch_compile
fg cuda 180 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_cuda.py
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
