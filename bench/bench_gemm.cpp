// CPU GEMM throughput (oneDNN sgemm) in GFLOP/s for square and MLP-shaped problems.
// Usage: bench_gemm [--repeats R]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "kernels/gemm.h"

using namespace lattice;

int main(int argc, char** argv) {
  const char* program = "bench_gemm";
  bench::Flags flags{{"repeats", "20"}};
  if (!bench::parse_flags(argc, argv, program, flags)) return 2;
  const std::optional<int64_t> repeat_count = bench::integer_flag(flags, "repeats", program, 1);
  if (!repeat_count) return 2;
  const int repeats = int(*repeat_count);
  struct Problem {
    const char* name;
    int64_t M, N, K;
  };
  const Problem problems[] = {{"512^3", 512, 512, 512},
                              {"mlp fwd 512x784 @ 784x256", 512, 256, 784},
                              {"mlp wgrad 256x512 @ 512x784", 256, 784, 512}};
  std::printf("oneDNN sgemm, %d threads, best of %d\n| %-28s | %8s |\n", omp_get_max_threads(),
              repeats, "problem", "GFLOP/s");
  for (const Problem& p : problems) {
    std::vector<float> a(size_t(p.M * p.K), 0.5f), b(size_t(p.K * p.N), 0.25f),
        c(size_t(p.M * p.N));
    const GemmShape shape = dense_gemm(p.M, p.N, p.K, false, false);
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
      const auto start = std::chrono::steady_clock::now();
      gemm_cpu(shape, 1.0f, a.data(), b.data(), 0.0f, c.data());
      best = std::min(
          best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::printf("| %-28s | %8.1f |\n", p.name, 2.0 * double(p.M * p.N * p.K) / best / 1e9);
  }
  return 0;
}
