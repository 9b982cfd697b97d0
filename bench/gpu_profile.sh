#!/usr/bin/env bash
# Where a GPU training step's time goes, on a GPU machine with a gpu_check bundle unpacked
# (scripts/gpu_check.sh --bundle; tar -xJf gpu_bundle.tar.xz): the llama step at several batch
# sizes and sequence lengths (time that barely grows with the work is host overhead), the same
# step in debug-sync mode (every launch waits).
# Usage: bench/gpu_profile.sh [BUNDLE_DIR]   (default gpu_bundle)
set -uo pipefail
dir=$(cd "${1:-gpu_bundle}" && pwd) || exit 1
export LD_LIBRARY_PATH="$dir/lib:$(dirname "$(find /usr /opt -name 'libcublas.so.13' 2>/dev/null | head -1)"):${LD_LIBRARY_PATH:-}"
llama() { "$dir/bin/bench_llama" --device cuda --steps 20 --warmup 5 "$@" | grep -oE 'b[0-9]+x[0-9]+|median [0-9.]+ ms/step' | paste -sd' '; }
for shape in "16 128" "4 128" "64 128" "16 512"; do
  set -- $shape
  echo "llama batch $1 seq $2: $(llama --batch "$1" --seq "$2")"
done
echo "llama batch 16 seq 128, LATTICE_CUDA_SYNC=1: $(LATTICE_CUDA_SYNC=1 llama)"
