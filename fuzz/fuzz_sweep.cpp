// Sweep files (tools/sweep.h): parse the TOML text and expand its grid and baselines.
#include "fuzz_support.h"
#include "tools/sweep.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lattice;
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_error_or_success([&] {
    const tools::SweepSpec spec = tools::parse_sweep_text(text, "fuzz.toml");
    const tools::Expansion expansion = tools::expand_sweep(spec);
    FUZZ_CHECK(int64_t(expansion.runs.size()) <= expansion.grid_points + 64, "runs ",
               expansion.runs.size(), " of ", expansion.grid_points, " grid points");
  });
  return 0;
}
