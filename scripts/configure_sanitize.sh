#!/usr/bin/env bash
# Configures (once) build-sanitize/: clang, CUDA off, -O1 with debug lines, ASan + UBSan, and
# the libFuzzer targets; a unity build, as scripts/build.sh explains. Shared by
# scripts/sanitize.sh and scripts/fuzz.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build-sanitize/build.ninja ]; then
  CC=clang CXX=clang++ cmake -S . -B build-sanitize -G Ninja -DLATTICE_CUDA_ENABLE=OFF \
    -DLATTICE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_UNITY_BUILD=ON \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" >/dev/null
fi
