#!/usr/bin/env bash
# For a session after 2026-12-06j (≈ 4 min): why fast_mlp's update GEMM takes ≈ the sum, not the
# maximum, of its product time and its weight traffic (H100 2026-12-06j call 3, G4 D2048 F8192 bf16,
# n = 512: 0.445 ms per W1 update against cuBLAS's bare product 0.145 ms and ≈ 0.22 ms for the 670 MB
# the epilogue moves; two 98 KB programs per SM). First the W1 update taken apart (sweep --parts:
# the product alone with a float32 or a bf16 store, with W's read, the full update, and torch moving
# W's bytes without a product); then ncu (full set, SASS source) of one W1-update launch
# of the default tile grid (the 5th launch: after the comparison call and the warm-ups). Read from
# update_details.txt: DRAM and L2 throughput, tensor pipe activity, achieved occupancy (2 CTAs per SM?),
# warp stall reasons (long scoreboard / barrier / TMA waits).
. "$(dirname "$0")/lib.sh"
{
fg parts 60 python3 python/sweep_outer_fast_mlp.py --n 512,1024 --reps 10 --configs "128,128,64,8,3,1" --parts
echo "=== ncu ($(now))"
$TO 150 ncu --kernel-name regex:_outer_tma_kernel --launch-skip 4 --launch-count 1 --set full --import-source yes \
  -f -o "$OUT/update" python3 python/sweep_outer_fast_mlp.py --n 512 --reps 2 --configs "128,128,64,8,3,1" \
  > "$OUT/ncu_run.log" 2>&1; echo "rc=$?"; tail -5 "$OUT/ncu_run.log"
ncu -i "$OUT/update.ncu-rep" --page details > "$OUT/update_details.txt" 2>&1; echo "details rc=$?"
ncu -i "$OUT/update.ncu-rep" --page source --csv --print-source sass > "$OUT/update_source_sass.csv" 2>&1
gzip -f "$OUT/update_source_sass.csv"; rm -f "$OUT/update.ncu-rep"
echo "=== done ($(now))"
} > "$OUT/ncu_update.log" 2>&1
