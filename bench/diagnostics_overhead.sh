#!/usr/bin/env bash
# What the lattice diagnostics cost: each trainer run with and without --diagnostics, in turn,
# REPEATS times; the ratio of their training time (summary.json's train_seconds, which counts
# the observed steps' instruments and leaves data loading out), median over the pairs. One
# thread (THREADS=N to change): the instruments' host work is serial, so this is the upper
# bound of their share, and a busy machine's spinning OpenMP barriers stay out of the ratio.
# Usage: bench/diagnostics_overhead.sh [INSTRUMENTS] [EVERY] [REPEATS]  (default: default 10 3)
set -euo pipefail
cd "$(dirname "$0")/.."
instruments=${1:-default} every=${2:-10} repeats=${3:-3}
bin=build/bin out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
train_seconds() { sed -n 's/.*"train_seconds": \([0-9.e+-]*\).*/\1/p' "$1/summary.json"; }
measure() {  # NAME TRAINER ARGS...
  local name=$1 trainer=$2 ratios=()
  shift 2
  for ((i = 0; i < repeats; i++)); do
    "$bin/$trainer" "$@" --threads "${THREADS:-1}" --out "$out/plain" --log-every 1000000 \
      2>/dev/null
    "$bin/$trainer" "$@" --threads "${THREADS:-1}" --out "$out/observed" --log-every 1000000 \
      --diagnostics "$instruments" --diagnostics-every "$every" 2>/dev/null
    ratios+=("$(awk -v a="$(train_seconds "$out/observed")" -v b="$(train_seconds "$out/plain")" \
      'BEGIN { printf "%.3f", a / b }')")
  done
  printf '%s\t%s every %s\tratios %s\tmedian %s\n' "$name" "$instruments" "$every" \
    "${ratios[*]}" "$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n "$(((repeats + 1) / 2))p")"
}
measure "mnist mlp, gemm=mxfp4,w=bf16" mnist --steps 100 --eval-batches 1 \
  --stack gemm=mxfp4,w=bf16
measure "llama d128 L2, w=bf16,a=bf16" llama --tokenizer byte --dim 128 --layers 2 --heads 4 \
  --seq 64 --batch 16 --steps 60 --eval-batches 1 --stack w=bf16,a=bf16
measure "vit d48 L2, bf16" vit --dim 48 --depth 2 --heads 2 --batch 32 --steps 60 \
  --eval-batches 1 --stack bf16
