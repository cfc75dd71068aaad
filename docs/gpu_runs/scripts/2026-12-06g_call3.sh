#!/usr/bin/env bash
# 2026-12-06g, third call: (1) build; (2) timing at issue 4's shape of the CUDA walk as a
# cooperative launch (the default now: all 128 CTAs at once, partial sums through a global scratch,
# W1 / W2 slices kept in shared memory), triton and titans-pytorch beside (the cluster exchange is
# timed only through the tests: little device time left); (3) the CUDA walk's GPU tests (reference rows incl. K=V=32
# with chunk 64, walk vs Triton walk with both exchanges, refusals); (4) the ill-conditioned
# configuration (self target without α) on triton in every dtype, now with tf32x3 products. Cut to the
# device time left (548 s): the torch.compile test is not run.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --cuda --variants="
{
fg build 120 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg cuda 150 python3 -m pytest -q -x -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_cuda.py \
  -k "walk_equals or unsupported or dtype0 or dtype6 or dtype7"
fg time_coop 110 $MLP --json "$OUT/time_coop.json"
fg ill 80 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_triton.py \
  -k "realistic and bm-self-after and prep1-split-torchtok"
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
