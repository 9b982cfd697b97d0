// LR schedule specs (optim/schedule.h): parse with and without a run length, print, parse the
// print back, and evaluate the multiplier over the run, which must stay finite.
#include <cmath>

#include "fuzz_support.h"
#include "optim/schedule.h"

namespace {

bool same(const lattice::optim::Schedule& a, const lattice::optim::Schedule& b) {
  return a.shape == b.shape && a.warmup_steps == b.warmup_steps &&
         a.min_multiplier == b.min_multiplier && a.decay_fraction == b.decay_fraction &&
         a.total_steps == b.total_steps;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lattice;
  const std::string spec(reinterpret_cast<const char*>(data), size);
  for (const int64_t total_steps : {int64_t(0), int64_t(1000)}) {
    fuzz::expect_error_or_success([&] {
      const optim::Schedule schedule = optim::parse_schedule(spec, total_steps);
      const std::string printed = optim::to_string(schedule);
      const optim::Schedule again = optim::parse_schedule(printed, total_steps);
      FUZZ_CHECK(same(again, schedule) && optim::to_string(again) == printed, "schedule \"", spec,
                 "\" prints \"", printed, "\", which reads back as \"", optim::to_string(again),
                 "\"");
      // Negative steps last: they must throw lattice::Error, which ends this input.
      for (const int64_t step : {int64_t(0), int64_t(1), total_steps / 2, total_steps,
                                 total_steps + 1, int64_t(1) << 40, total_steps - 1}) {
        const double multiplier = schedule.multiplier(step);
        FUZZ_CHECK(std::isfinite(multiplier), "schedule \"", spec, "\" at step ", step, ": ",
                   multiplier);
      }
    });
  }
  return 0;
}
