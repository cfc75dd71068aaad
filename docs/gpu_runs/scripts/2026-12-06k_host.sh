#!/usr/bin/env bash
# 2026-12-06k (≈ 6 min, main, no build: the Triton path only): is fast_mlp's C512 / C1024 / CMS
# fwd+bwd paced by the host? ncu in 2026-12-06k call 2 put one W1-update launch at 258 µs (H200,
# base clock) while python/sweep_outer_fast_mlp.py reported 0.40 ms "per launch": the sweep timed
# each launch alone on an idle GPU, so the launch's host work (~100–200 µs for the descriptor
# kernel) was counted. (1) the sweep, now queued back to back (device time without the host's);
# (2) the check script's timing with --queued: device and host ms per fwd+bwd call launched back to
# back (host ≥ device: host-bound); (3) torch.profiler of gelu C512: busy / idle device time, the
# longest gaps, and the cProfile of the forward's host work.
. "$(dirname "$0")/lib.sh"
{
fg sweep 60 python3 python/sweep_outer_fast_mlp.py --n 512,1024 --reps 20 --configs 128,128,64,8,3,1 --parts
fg queued 200 python3 python/check_fast_mlp_triton.py --no-check --no-big --chunks 1024,512 --queued \
  --json "$OUT/time_queued.json"
fg prof512 120 python3 python/profile_kernels.py fast_mlp --chunk 512 --mlp gelu --gaps 12 --host
echo "=== done ($(now))"
} > "$OUT/host.log" 2>&1
