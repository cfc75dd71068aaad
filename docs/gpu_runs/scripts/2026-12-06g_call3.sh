#!/usr/bin/env bash
# 2026-12-06g, third call: (1) build; (2) the ill-conditioned configuration (self target without
# α: K=V=32 C64 F64 β+μ read after) in every dtype, now with tf32x3 products and a float32 tile
# VJP; (3) the CUDA walk's reference rows changed or added (K=V=32 with chunk 64, external and
# self with α), its refusals; (4) the op under torch.compile for the four knob variants, knobs now
# in the op's config.
. "$(dirname "$0")/lib.sh"
{
fg build 150 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg ill 120 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_triton.py \
  -k "realistic and bm-self-after and prep1-split-torchtok"
fg cuda 200 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_cuda.py \
  -k "unsupported or dtype4 or dtype6 or dtype7"
fg compile 220 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_triton.py -k torch_compile
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
