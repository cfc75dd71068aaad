#!/usr/bin/env bash
# 2026-12-06g, first call: (1) build; (2) the K=V=32 chunk-64 cases of the CUDA walk with the
# refusal lifted, cuda and triton against the float64 reference (which part fails); (3) an ncu
# profile of one CUDA walk launch at issue 4's shape (full set, source lines, stall reasons);
# (4) the GPU tests not yet run: the walk's backward without kept residuals, mlp_memory under
# torch.compile with dynamo reset between the knob variants.
. "$(dirname "$0")/lib.sh"
DIAG="python3 docs/gpu_runs/scripts/2026-12-06g_walk_diag.py"
{
fg build 150 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg k32 120 $DIAG k32
echo "=== ncu ($(now))"
$TO 200 ncu --kernel-name regex:walk_kernel --launch-skip 1 --launch-count 1 --set full --import-source yes \
  -f -o "$OUT/walk" $DIAG profile > "$OUT/ncu_run.log" 2>&1; echo "rc=$?"; tail -5 "$OUT/ncu_run.log"
ncu -i "$OUT/walk.ncu-rep" --page details > "$OUT/walk_details.txt" 2>&1; echo "details rc=$?"
ncu -i "$OUT/walk.ncu-rep" --page source --csv --print-source cuda > "$OUT/walk_source_cuda.csv" 2>&1; echo "source rc=$?"
ncu -i "$OUT/walk.ncu-rep" --page source --csv --print-source sass > "$OUT/walk_source_sass.csv" 2>&1; echo "sass rc=$?"
fg tests 200 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short \
  "tests/ops/test_mlp_memory_cuda.py::test_gpu_walk_equals_triton_walk" \
  tests/ops/test_mlp_memory_triton.py -k "walk_equals or torch_compile"
echo "=== done ($(now))"
} > "$OUT/call1.log" 2>&1
