#!/usr/bin/env bash
# The peer wheels the GPU scripts install from .whl/ (gitignored, so a fresh checkout lacks them;
# run this here, on the machine with internet, then pass carry [".whl"] to the device call):
# flash-linear-attention / fla-core 0.6.0, titans-pytorch 0.5.5 and einops, without their
# dependencies (torch, triton and numpy are on the device machine).
set -eu
cd "$(dirname "$0")/../../.."
mkdir -p .whl
python3 -m pip download -q --no-deps -d .whl flash-linear-attention==0.6.0 fla-core==0.6.0 titans-pytorch==0.5.5 \
    einops==0.8.2
ls .whl
