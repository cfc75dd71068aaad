#!/usr/bin/env bash
# 2026-12-06g, third call: (1) build; (2) timing at issue 4's shape of the CUDA walk as a
# cooperative launch (the default now: all 128 CTAs at once, partial sums through a global scratch,
# W1 / W2 slices kept in shared memory), triton and titans-pytorch beside (the cluster exchange is
# timed only through the tests: little device time left); (3) the CUDA walk's GPU tests (reference rows incl. K=V=32
# with chunk 64, walk vs Triton walk with both exchanges, refusals); (4) the ill-conditioned
# configuration (self target without α) on triton in every dtype, now with tf32x3 products; (5) the
# torch.compile test's two knob variants that failed together before (PREP=0 then PREP=1), knobs
# now in the op's config.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --cuda --variants="
{
fg build 150 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg time_coop 150 $MLP --json "$OUT/time_coop.json"
fg cuda 200 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_cuda.py \
  -k "walk_equals or unsupported or dtype0 or dtype4 or dtype6 or dtype7"
fg ill 90 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_triton.py \
  -k "realistic and bm-self-after and prep1-split-torchtok"
fg compile 110 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_triton.py \
  -k "torch_compile and not split"
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
