// Regression tests for what the fuzz targets in fuzz/ found in the parsers, one case per
// finding, each with the input that exposed it (the sweep grid limit is tested in test_sweep,
// the format widths in test_format).
#include <doctest/doctest.h>

#include "data_test_files.h"
#include "optim/schedule.h"

using namespace lattice;
using lattice::test::error_message;

TEST_CASE("a schedule refuses a negative step instead of a NaN multiplier (0/0 in warmup)") {
  // fuzz_schedule: spec "" evaluated at step -1 gave -nan (warmup of 0 steps: (s+1)/0).
  const optim::Schedule constant = optim::parse_schedule("");
  CHECK(error_message([&] { constant.multiplier(-1); }) ==
        "[schedule] step -1, expected >= 0 (steps count updates from 0)");
  CHECK(constant.multiplier(0) == 1.0);
  const optim::Schedule warm = optim::parse_schedule("warmup:4,cosine", 10);
  CHECK(error_message([&] { warm.multiplier(-3); }) ==
        "[schedule] step -3, expected >= 0 (steps count updates from 0)");
  CHECK(warm.multiplier(0) == 0.25);
}
