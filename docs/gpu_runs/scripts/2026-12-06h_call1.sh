#!/usr/bin/env bash
# 2026-12-06h call 1, on branch wip/h-combined (main + the cooperative CUDA walk of wip/mlp-walk-coop
# + the tile VJP by (I + A_β)⁻¹ products of wip/mlp-vjp-inverse): build; the CUDA walk against the
# Triton walk (cooperative and cluster exchange) and the issue case against the float64 reference;
# timing at issue 4's shape (cuda beside triton); the triton timing again with the VJP-by-inverse
# patch reversed (the A/B of the same machine); the quick check with it; the ill-conditioned test.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
P=docs/gpu_runs/scripts/2026-12-06h_vjp_inverse.patch
flip() { patch -s $1 -p1 < $P || git apply $1 $P; }
{
fg build 120 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg cuda 90 python3 -m pytest -q -x -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_cuda.py \
  -k "walk_equals or dtype0"
fg time_inverse 80 $MLP --no-check --no-large --no-torch --no-titans --cuda --variants= --reps 5 --json "$OUT/time_inverse.json"
flip -R && echo "(vjp-by-inverse reversed: triangular solves)"
fg time_solve 60 $MLP --no-check --no-large --no-torch --no-titans --variants= --reps 5 --json "$OUT/time_solve.json"
flip "" && echo "(vjp-by-inverse applied again)"
fg quick 120 $MLP --quick --ref torch --no-timing
fg ill 90 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_triton.py \
  -k "realistic and bm-self-after and prep1-split-torchtok"
echo "=== done ($(now))"
} > "$OUT/call1.log" 2>&1
