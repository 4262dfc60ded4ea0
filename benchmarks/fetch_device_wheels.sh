#!/usr/bin/env bash
# The Python packages solforge needs that the device machine's image lacks, as wheels in
# .whl/ (ignored by git), for `benchmarks/gpu_all.sh` to install there (see the device
# tool's README: the machine has no network).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
for pkg in pydantic pydantic-core annotated-types typing-inspection platformdirs; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "$pkg"
done
ls .whl
