#!/usr/bin/env bash
# Every GPU test and benchmark of solforge in one call on the device machine.
#
# Here (no GPU):  bash benchmarks/fetch_device_wheels.sh      # once: pydantic etc. into .whl/
# Device call:    carry [".whl"], command: bash benchmarks/gpu_all.sh
# Each step's output lands in $OUT (the device tool brings it back); record the tables in
# docs/measurements.md with the device, the date and this command.
set -uo pipefail
OUT=${OUT:-/tmp/solforge-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 SOLFORGE_CACHE_DIR=$OUT/cache
EVOLVE_BUDGET=${EVOLVE_BUDGET:-3m}
step() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }

step "device";        nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee "$OUT/device.txt"
step "calibrate";     python3 -m solforge.cli calibrate --device cuda 2>&1 | tee "$OUT/calibrate.txt"
step "cuda tests";    python3 -m pytest -q -m cuda tests -p no:cacheprovider 2>&1 | tail -40 | tee "$OUT/pytest_cuda.txt"
step "stability";     python3 benchmarks/harness_stability.py --device cuda 2>&1 | tee "$OUT/stability.txt"
step "baselines";     python3 benchmarks/suite_baselines.py --device cuda ${PROBLEMS:+--problems $PROBLEMS} 2>&1 | tee "$OUT/baselines.txt"
for p in rmsnorm_h4096 softmax_v128256 silu_and_mul_i14336; do
  step "evolve $p";   python3 -m solforge.cli evolve "$p" --device cuda --budget "$EVOLVE_BUDGET" --runs-root "$OUT/runs" 2>&1 | tail -40 | tee "$OUT/evolve_$p.txt"
done
