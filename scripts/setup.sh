#!/usr/bin/env bash
# Installs the Debian packages Lattice builds and tests with. Idempotent: when everything is
# present it prints nothing and touches nothing. The CUDA toolkit is optional and not installed
# here; CMake compiles the CUDA kernels when it finds nvcc.
set -euo pipefail

packages=(
  build-essential cmake ninja-build clang-format pkg-config
  doctest-dev libcli11-dev libdnnl-dev
  nlohmann-json3-dev libtomlplusplus-dev zlib1g-dev libstb-dev libjpeg62-turbo-dev libpng-dev
  libsentencepiece-dev liblapack-dev
  # Data-parallel training (mpirun -np N <trainer>) and its test.
  openmpi-bin libopenmpi-dev
  gnuplot-nox dataset-fashion-mnist
  # English prose for the llama trainer (fortunes and the King James Bible).
  fortunes bible-kjv
  # The sanitizer and fuzz builds (scripts/sanitize.sh, scripts/fuzz.sh): clang with its
  # ASan/UBSan/libFuzzer runtimes and LLVM's OpenMP runtime (clang++ -fopenmp links libomp).
  clang libclang-rt-14-dev libomp-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
