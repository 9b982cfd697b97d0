#!/usr/bin/env bash
# The README demo (until a trainer exists): the format table and a few worked quantizations
# with the `lattice` tool.
set -euo pipefail
lattice="$(dirname "$0")/../build/bin/lattice"

echo "== Every named lattice =="
"$lattice" formats
echo
echo "== 464 onto e4m3: a tie between 448 and the NaN code, so nearest-even gives 448 =="
"$lattice" cast 464 --to e4m3
echo
echo "== 0.1 onto bf16, and stochastically onto e2m1 (seeded) =="
"$lattice" cast 0.1 --to bf16
"$lattice" cast 0.1 --to e2m1 --round sr --seed 7
echo
values="0.1 -0.7 1.3 2.9 3.0 5.5 -0.02 0.26"
echo "== One block of 8 values through mxfp4 (e2m1 + ue8m0, OCP MX), nvfp4 and e4m3 =="
printf '%-10s %-12s %-12s %-12s\n' x mxfp4 nvfp4 e4m3
paste <(printf '%s\n' $values) \
      <(printf '%s\n' $values | "$lattice" quantize --format mxfp4 --block 8) \
      <(printf '%s\n' $values | "$lattice" quantize --format nvfp4 --block 8) \
      <(printf '%s\n' $values | "$lattice" quantize --format e4m3) |
  awk '{ printf "%-10s %-12s %-12s %-12s\n", $1, $2, $3, $4 }'
