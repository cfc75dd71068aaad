# Set-up shared by the GPU call scripts of 2026-11-26d (source it first): repository root, $OUT,
# the peer wheels of .whl/ installed to /tmp/site, PYTHONPATH, and the helpers now (seconds since
# start), bg NAME SECONDS CMD… (in the background, log $OUT/NAME.log ending with its rc) and fg
# NAME SECONDS CMD… (in the foreground, a "=== NAME" header, warnings and kernel lines dropped);
# every timeout sends SIGINT, then KILL 10 s later.
set -u
cd "$(dirname "$0")/../../.."
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$PWD/.tcache
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
else   # a fresh checkout has no .whl/ (gitignored): docs/gpu_runs/scripts/fetch_wheels.sh, then carry it
  echo "lib.sh: no peer wheels in .whl/ (not carried?): fla and titans-pytorch will be missing" | tee "$OUT/NO_PEER_WHEELS"
fi
export PYTHONPATH=/tmp/site:$PWD:$PWD/python
T0=$(date +%s)
now() { echo "$(( $(date +%s) - T0 )) s"; }
TO="timeout -k 10 -s INT"
bg() { local n=$1 t=$2; shift 2; ( $TO "$t" "$@" > "$OUT/$n.log" 2>&1; echo "rc=$? ($(now))" >> "$OUT/$n.log" ) & }
fg() { local n=$1 t=$2; shift 2; echo "=== $n ($(now))"; $TO "$t" "$@" 2>&1 | grep -v "Warning\|warn(\|_kernel "; }
