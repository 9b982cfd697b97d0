#!/usr/bin/env bash
# Builds the libFuzzer targets (build-sanitize/, clang, ASan + UBSan, CUDA off) and runs each
# for SECONDS (default 60) on a scratch copy of its seed corpus fuzz/corpus/<target>/, so the
# repository is never modified. Prints execs and crashes per target; exits 1 if any target
# found a crash, a sanitizer report, a leak or an input slower than FUZZ_TIMEOUT (default 1 s).
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 120 image idx
# FUZZ_KEEP_GOING=1 runs libFuzzer's fork mode, which goes on after a crash and collects every
# crashing input of the time given (for triage) instead of stopping at the first. FUZZ_JOBS=N
# runs N targets at a time (default 1: the development machine is shared; .ci/run uses 2).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for dir in fuzz/corpus/*/; do targets+=("$(basename "$dir")"); done
fi

scripts/configure_sanitize.sh
cmake --build build-sanitize -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

work="$(mktemp -d "${TMPDIR:-/tmp}/lattice-fuzz.XXXXXX")"

# Fuzzes one target; writes its table row and any findings to $work/<target>/report and marks a
# finding with $work/<target>/failed. Always returns 0, so targets can run side by side.
fuzz_target() {
  local target="$1" corpus="$work/$1/corpus" status=0 mode=() execs rate crashes
  mkdir -p "$corpus" "$work/$target/artifacts"
  cp fuzz/corpus/"$target"/* "$corpus"/
  [ "${FUZZ_KEEP_GOING:-0}" = 1 ] && mode=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  # One process per target. -max_len leaves room for two CIFAR records.
  build-sanitize/fuzz/fuzz_"$target" "$corpus" "${mode[@]}" -max_total_time="$seconds" \
    -timeout="${FUZZ_TIMEOUT:-1}" -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$work/$target/artifacts/" >"$work/$target/log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$target/log" | tail -1)
  if [ -z "$execs" ]; then  # fork mode: the last status line "#N: cov: ... exec/s R ..."
    execs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$work/$target/log" | tail -1)
    rate=$(sed -n 's/^#[0-9]*: cov:.* exec\/s \([0-9]*\).*/\1/p' "$work/$target/log" | tail -1)
  fi
  crashes=$(find "$work/$target/artifacts" -type f | wc -l)
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
  {
    printf '%-16s %12s %10s %8s\n' "$target" "${execs:-?}" "${rate:-?}" "$crashes"
    if [ "$crashes" -ne 0 ]; then
      grep -m 3 -E "ERROR:|runtime error|fuzz check failed|uncaught|deadly signal" \
        "$work/$target/log" | sed 's/^/    /' || true
      # The first few inputs (fork mode may collect dozens), each with its first 64 bytes in hex.
      find "$work/$target/artifacts" -type f | sort | head -5 | while read -r artifact; do
        echo "    input: $artifact ($(head -c 64 "$artifact" | od -An -tx1 | tr -d ' \n')...)"
      done
      [ "$crashes" -gt 5 ] && echo "    ... $((crashes - 5)) more in $work/$target/artifacts"
      echo "    log: $work/$target/log"
    fi
  } >"$work/$target/report"
  [ "$crashes" -eq 0 ] || touch "$work/$target/failed"
}

for target in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "${FUZZ_JOBS:-1}" ]; do wait -n; done
  fuzz_target "$target" &
done
wait

failed=0
printf '%-16s %12s %10s %8s\n' target execs execs/s crashes
for target in "${targets[@]}"; do
  cat "$work/$target/report"
  if [ -e "$work/$target/failed" ]; then failed=1; fi
done
if [ "$failed" -eq 0 ]; then rm -rf "$work"; fi
exit "$failed"
