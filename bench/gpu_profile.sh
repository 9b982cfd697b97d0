#!/usr/bin/env bash
# Where a GPU training step's time goes, on a GPU machine with a gpu_check bundle unpacked
# (scripts/gpu_check.sh --bundle; tar -xJf gpu_bundle.tar.xz): the llama step at several batch
# sizes and sequence lengths (time that barely grows with the work is host overhead), the same
# step in debug-sync mode (every launch waits), and Nsight Compute's time per kernel over three
# steps (the kernels taking the most GPU time, with their grids) where ncu is installed.
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
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || exit 0
timeout 120 "$ncu" --metrics gpu__time_duration.sum --print-summary per-kernel \
  --launch-count 3000 "$dir/bin/bench_llama" --device cuda --steps 2 --warmup 1 >/tmp/ncu_llama.txt 2>&1
python3 - /tmp/ncu_llama.txt <<'PY'
import re, sys
rows, name = [], None
for line in open(sys.argv[1]):
    if "Invocations" in line:
        name = line.strip()
        calls = int(re.search(r"Invocations\s*(\d+)", line).group(1))
    time = re.search(r"gpu__time_duration.sum\s+(\S+)\s+[\d.,]+\s+[\d.,]+\s+([\d.,]+)", line)
    if time and name:
        unit = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(time.group(1), 1.0)
        average = float(time.group(2).replace(",", "")) * unit
        rows.append((average * calls, calls, average, name))
        name = None
rows.sort(reverse=True)
print(f"ncu, llama 3 steps: {sum(r[0] for r in rows) / 1e3:.2f} ms of kernels in "
      f"{sum(r[1] for r in rows)} launches")
for total, calls, average, kernel in rows[:25]:
    grid = re.search(r"\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)", kernel)
    print(f"{total / 1e3:8.3f} ms {calls:5d} x {average:8.2f} us  {kernel.split(' (')[0][:80]} "
          f"{grid.group(0) if grid else ''}")
PY
