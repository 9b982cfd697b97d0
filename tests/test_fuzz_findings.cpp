// Regression tests for what the fuzz targets in fuzz/ found in the parsers, one case per
// finding, each with the input that exposed it.
#include <doctest/doctest.h>

#include "data_test_files.h"
#include "optim/schedule.h"
#include "tools/sweep.h"

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

TEST_CASE("a sweep grid of more than 100000 points is refused before it is built in memory") {
  // 17 axes of 2 values: 131072 points, each a vector of 17 strings, built before any check.
  std::string text = "trainer = \"mnist\"\n[grid]\n";
  for (int axis = 0; axis < 17; ++axis) text += concat("flag", axis, " = [1, 2]\n");
  const tools::SweepSpec spec = tools::parse_sweep_text(text, "big.toml");
  CHECK(
      error_message([&] { tools::expand_sweep(spec); }) ==
      "[sweep] big.toml: the grid has 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * "
      "2 * 2 points, more than 100000; expected a smaller grid");
}
