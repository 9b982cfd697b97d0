#!/usr/bin/env bash
# The install check (ctest's `install`): installs BUILD into a temporary prefix, then builds
# examples/external against it as a separate project with the cpu component only, runs it
# (it trains, saves its weights and checks the loss fell), checks that it links nothing of
# CUDA, and compiles the same program once more with pkg-config (lattice.pc, the shared
# library) when pkg-config is present.
#   scripts/test_install.sh BUILD [CXX]      CXX: the compiler (default: c++)
set -euo pipefail
build=$(cd "${1:?usage: scripts/test_install.sh BUILD [CXX]}" && pwd)
compiler=${2:-c++}
source_dir=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
cmake -S "$source_dir/examples/external" -B "$work/external" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$compiler" \
  -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/configure.log"
cmake --build "$work/external"
if grep -Eq 'cudart|cublas|libcudnn|libcuda' "$work/external/build.ninja"; then
  echo "test_install: the cpu component links CUDA:" >&2
  grep -Eo '[^ ]*(cudart|cublas|libcudnn|libcuda)[^ ]*' "$work/external/build.ninja" | sort -u >&2
  exit 1
fi
"$work/external/fit_mlp" "$work/cmake.safetensors"

if command -v pkg-config >/dev/null; then
  PKG_CONFIG_PATH=$(dirname "$(find "$work/prefix" -name lattice.pc)")
  export PKG_CONFIG_PATH
  read -ra flags < <(pkg-config --cflags --libs lattice)
  "$compiler" -O1 "$source_dir/examples/external/fit_mlp.cpp" "${flags[@]}" \
    -Wl,-rpath,"$(pkg-config --variable=libdir lattice)" -o "$work/fit_mlp_pkg_config"
  "$work/fit_mlp_pkg_config" "$work/pkg_config.safetensors"
fi
echo "test_install: the installed package builds and runs examples/external"
