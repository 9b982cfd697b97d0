#!/usr/bin/env bash
# Builds the test suite with clang under AddressSanitizer + UndefinedBehaviorSanitizer into
# build-sanitize/ (CUDA off; the same folder holds the fuzz targets, see scripts/fuzz.sh) and
# runs it. Any sanitizer report fails the test that triggered it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/configure_sanitize.sh
cmake --build build-sanitize -j "$(nproc)" --target lattice_tests
# detect_leaks: the suite leaks nothing on purpose; halt_on_error keeps reports to one per test.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir build-sanitize --output-on-failure -j 2 "$@"
