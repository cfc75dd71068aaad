#!/usr/bin/env bash
# 2026-12-06i call 3, as run (right after 2026-12-06h_profile.sh on the same warm machine, commit
# d6456d0 + nothing): the two variants of the walk-vs-Triton-walk test that 2026-12-06h_next.sh's
# 150 s step did not reach (kept residuals off with the cooperative exchange; clusters forced).
mkdir -p $OUT; timeout 330 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short -v --durations=0 tests/ops/test_mlp_memory_cuda.py -k "walk_equals and not 1-auto" > $OUT/walk.log 2>&1; echo rc=$?; grep -v Warning $OUT/walk.log | tail -20
