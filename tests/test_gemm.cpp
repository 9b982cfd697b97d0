// CPU GEMM (oneDNN) against the fp64-accumulating reference loop, for every transpose
// combination, padded leading dimensions, alpha/beta and empty sizes.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "kernels/gemm.h"

using namespace lattice;

namespace {
std::vector<float> random_matrix(int64_t count, uint64_t seed) {
  std::vector<float> m(static_cast<size_t>(count));
  const RandomStream random{.seed = seed};
  for (int64_t i = 0; i < count; ++i)
    m[size_t(i)] = float(random.word(uint64_t(i))) / 4294967296.0f * 2.0f - 1.0f;
  return m;
}
}  // namespace

TEST_CASE("gemm_cpu equals the reference within fp32 accumulation error for all transposes") {
  const int64_t M = 37, N = 53, K = 71, pad = 5;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      GemmShape s = dense_gemm(M, N, K, ta, tb);
      s.lda += pad, s.ldb += pad, s.ldc += pad;  // strided rows
      const std::vector<float> a = random_matrix((ta ? K : M) * s.lda, 1);
      const std::vector<float> b = random_matrix((tb ? N : K) * s.ldb, 2);
      std::vector<float> c = random_matrix(M * s.ldc, 3), expected = c;
      gemm_cpu(s, 0.5f, a.data(), b.data(), 2.0f, c.data());
      gemm_reference_cpu(s, 0.5f, a.data(), b.data(), 2.0f, expected.data());
      double worst = 0.0;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j)
          worst = std::max(worst, std::fabs(double(c[size_t(i * s.ldc + j)]) -
                                            double(expected[size_t(i * s.ldc + j)])));
      // |terms| <= 1: K products summed in fp32 err by at most ~K * 2^-24 each.
      CHECK(worst < double(K) * 6e-8 + 1e-6);
      // Padding columns are untouched.
      CHECK(c[size_t(N)] == expected[size_t(N)]);
    }
  }
}

TEST_CASE("gemm_cpu with beta = 0 overwrites C, and empty sizes are no-ops") {
  const GemmShape s = dense_gemm(2, 2, 3, false, false);
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {1, 0, 0, 1, 1, 1};
  std::vector<float> c = {NAN, NAN, NAN, NAN};
  gemm_cpu(s, 1.0f, a.data(), b.data(), 0.0f, c.data());
  CHECK(c == std::vector<float>{4, 5, 10, 11});
  gemm_cpu(dense_gemm(0, 2, 3, false, false), 1.0f, a.data(), b.data(), 0.0f, c.data());
  gemm_cpu(dense_gemm(2, 2, 0, false, false), 1.0f, a.data(), b.data(), 0.0f, c.data());
  CHECK(c == std::vector<float>{0, 0, 0, 0});  // K = 0: C = beta * C + 0
}

TEST_CASE("gemm_cpu rejects leading dimensions smaller than the rows they hold") {
  GemmShape s = dense_gemm(4, 4, 4, false, false);
  s.lda = 3;
  std::vector<float> m(16);
  CHECK_THROWS_AS(gemm_cpu(s, 1.0f, m.data(), m.data(), 0.0f, m.data()), Error);
}
