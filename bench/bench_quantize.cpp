// Quantize throughput on the CPU: elementwise rounding and block quantization, in elements/s,
// next to a plain parallel array copy measured in the same run (the memory-bound ceiling).
// Usage: bench_quantize [--elements N] [--repeats R]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "kernels/quantize.h"
#include "tensor/quantizer.h"

using namespace lattice;

namespace {

/// Best-of-`repeats` seconds of `work`.
double best_seconds(int repeats, const std::function<void()>& work) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    work();
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    best = std::min(best, elapsed.count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const char* program = "bench_quantize";
  bench::Flags flags{{"elements", std::to_string(int64_t(1) << 25)}, {"repeats", "7"}};
  if (!bench::parse_flags(argc, argv, program, flags)) return 2;
  const std::optional<int64_t> elements = bench::integer_flag(flags, "elements", program, 1);
  const std::optional<int64_t> repeat_count = bench::integer_flag(flags, "repeats", program, 1);
  if (!elements || !repeat_count) return 2;
  const int64_t n = *elements;
  const int repeats = int(*repeat_count);
  std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  const RandomStream random{.seed = 42};
  for (int64_t i = 0; i < n; ++i)  // spread over many binades, with some tiny values
    x[size_t(i)] = (float(random.word(uint64_t(i))) / 4294967296.0f - 0.5f) * float(1 << (i % 12)) *
                   (i % 97 == 0 ? 1e-30f : 1.0f);

  const double copy = best_seconds(repeats, [&] {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) y[size_t(i)] = x[size_t(i)];
  });
  const double copy_rate = double(n) / copy;
  std::printf("quantize throughput, %lld elements, %d threads, best of %d\n", (long long)n,
              omp_get_max_threads(), repeats);
  std::printf("| %-26s | %12s | %8s |\n", "kernel", "Gelem/s", "vs copy");
  std::printf("|%s|%s|%s|\n", std::string(28, '-').c_str(), std::string(14, '-').c_str(),
              std::string(10, '-').c_str());
  std::printf("| %-26s | %12.3f | %7.0f%% |\n", "copy", copy_rate / 1e9, 100.0);

  const auto report = [&](const std::string& name, const Quantizer& q) {
    const int64_t shape[] = {n};
    const double seconds = best_seconds(repeats, [&] { quantize(q, x, y, shape, random); });
    std::printf("| %-26s | %12.3f | %7.0f%% |\n", name.c_str(), double(n) / seconds / 1e9,
                100.0 * copy / seconds);
  };
  for (const char* format : {"bf16", "fp16", "e4m3", "e2m1"}) {
    report(std::string(format) + " rne", parse_quantizer(format));
    Quantizer stochastic = parse_quantizer(format);
    stochastic.rounding = parse_rounding("sr");
    report(std::string(format) + " sr", stochastic);
  }
  for (const char* name : {"mxfp8", "mxfp4", "nvfp4"})
    report(std::string(name) + " rne", parse_quantizer(name));
  Quantizer mxfp4_sr = parse_quantizer("mxfp4");
  mxfp4_sr.rounding = parse_rounding("sr");
  report("mxfp4 sr", mxfp4_sr);
  return 0;
}
