// CPU GEMM (oneDNN) against the fp64-accumulating reference loop, for every transpose
// combination, padded leading dimensions, alpha/beta and empty sizes; the bf16 GEMM of bf16
// operands likewise where the CPU has it, and its refusal where it does not.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "core/scalar/bits.h"
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

TEST_CASE("plan_k_split cuts long K of few-tile GEMMs into whole chunks covering K once") {
  // The tiny LLaMA's weight gradients and FFN down projection, a 1 x 1 output, and shapes with
  // enough tiles or too short a K, which stay whole.
  struct Case {
    int64_t M, N, K, chunks;
  };
  for (const Case c : {Case{256, 256, 2048, 16}, Case{688, 256, 2048, 11}, Case{2048, 256, 688, 4},
                       Case{1, 1, 100000, 125}, Case{1, 1, 255, 1}, Case{2048, 2048, 4096, 1},
                       Case{1024, 1024, 8192, 2}, Case{0, 5, 4096, 32}, Case{5, 7, 0, 1}}) {
    const KSplit split = plan_k_split(c.M, c.N, c.K);
    INFO("M=", c.M, " N=", c.N, " K=", c.K);
    CHECK(split.chunks == c.chunks);
    if (split.chunks == 1) {
      CHECK(split.chunk == c.K);
      continue;
    }
    CHECK(split.chunk % 32 == 0);
    CHECK(split.chunk >= 128);
    // Every k in exactly one chunk: the chunks before the last are whole, the last is not empty.
    CHECK((split.chunks - 1) * split.chunk < c.K);
    CHECK(split.chunks * split.chunk >= c.K);
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

namespace {

/// A random matrix of bf16 values in [-1, 1): each fp32 value with its low 16 bits cleared.
std::vector<float> random_bf16_matrix(int64_t count, uint64_t seed) {
  std::vector<float> m = random_matrix(count, seed);
  for (float& v : m) {
    uint32_t bits = 0;
    std::memcpy(&bits, &v, 4);
    bits &= 0xFFFF0000u;
    std::memcpy(&v, &bits, 4);
  }
  return m;
}

}  // namespace

TEST_CASE("gemm_bf16_batched_cpu equals the reference on bf16 operands, batched and broadcast") {
  if (!native_bf16_gemm_cpu()) {
    // Elsewhere it refuses rather than running oneDNN's slow emulation.
    const std::vector<float> a(4), b(4);
    const float* as[] = {a.data()};
    const float* bs[] = {b.data()};
    std::vector<float> c(4);
    CHECK_THROWS_WITH_AS(
        gemm_bf16_batched_cpu(dense_gemm(2, 2, 2, false, false), as, bs, c.data(), 1),
        doctest::Contains("[gemm] this CPU has no native bf16 GEMM"), Error);
    return;
  }
  const int64_t M = 37, N = 53, K = 71, count = 3;
  for (int64_t pad : {0, 5})  // dense matrices, read in place as bf16 bits; strided ones
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int shared : {0, 1, 2, 3}) {  // bit 0: one A for every entry; bit 1: one B
          const bool shared_a = shared & 1, shared_b = shared & 2;
          CAPTURE(pad);
          CAPTURE(ta);
          CAPTURE(tb);
          CAPTURE(shared);
          GemmShape s = dense_gemm(M, N, K, ta, tb);
          s.lda += pad, s.ldb += pad;  // strided rows (the output is packed)
          const int64_t a_size = (ta ? K : M) * s.lda, b_size = (tb ? N : K) * s.ldb;
          const std::vector<float> a = random_bf16_matrix(count * a_size, 1);
          const std::vector<float> b = random_bf16_matrix(count * b_size, 2);
          std::vector<const float*> as, bs;
          for (int64_t i = 0; i < count; ++i) {
            as.push_back(a.data() + (shared_a ? 0 : i * a_size));
            bs.push_back(b.data() + (shared_b ? 0 : i * b_size));
          }
          std::vector<float> c(size_t(count * M * N), NAN);
          gemm_bf16_batched_cpu(s, as.data(), bs.data(), c.data(), count);
          // The same operands as bf16 bits give the same bits.
          std::vector<uint16_t> a16, b16;
          for (float v : a) a16.push_back(bf16_bits(v));
          for (float v : b) b16.push_back(bf16_bits(v));
          std::vector<const uint16_t*> a16s, b16s;
          for (int64_t i = 0; i < count; ++i) {
            a16s.push_back(a16.data() + (as[size_t(i)] - a.data()));
            b16s.push_back(b16.data() + (bs[size_t(i)] - b.data()));
          }
          std::vector<float> c_bits(c.size(), NAN);
          gemm_bf16_bits_batched_cpu(s, a16s.data(), b16s.data(), c_bits.data(), count);
          CHECK(std::memcmp(c_bits.data(), c.data(), c.size() * sizeof(float)) == 0);
          double worst = 0.0;
          for (int64_t i = 0; i < count; ++i) {
            std::vector<float> expected(size_t(M * N));
            GemmShape packed = s;
            packed.ldc = N;
            gemm_reference_cpu(packed, 1.0f, as[size_t(i)], bs[size_t(i)], 0.0f, expected.data());
            for (int64_t j = 0; j < M * N; ++j)
              worst = std::max(
                  worst, std::fabs(double(c[size_t(i * M * N + j)]) - double(expected[size_t(j)])));
          }
          // The products are exact; only the fp32 sums of K terms of size <= 1 round.
          CHECK(worst < double(K) * 6e-8 + 1e-6);
        }
}

TEST_CASE("gemm_bf16_batched_cpu sums exactly where fp32 can, and keeps NaN and inf") {
  if (!native_bf16_gemm_cpu()) return;  // the refusal is tested above
  // Multiples of 1/16 in [-2, 2): every partial sum is exact in fp32, so any order gives the
  // reference's bits.
  const int64_t M = 19, N = 23, K = 300;
  std::vector<float> a(size_t(M * K)), b(size_t(K * N));
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(int(i * 7 % 64) - 32) / 16.0f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = float(int(i * 5 % 64) - 32) / 16.0f;
  a[size_t(2 * K + 3)] = NAN;       // row 2 of the product
  b[size_t(5 * N + 4)] = INFINITY;  // column 4
  const GemmShape s = dense_gemm(M, N, K, false, false);
  const float* as[] = {a.data()};
  const float* bs[] = {b.data()};
  std::vector<float> c(size_t(M * N)), expected(size_t(M * N));
  gemm_bf16_batched_cpu(s, as, bs, c.data(), 1);
  gemm_reference_cpu(s, 1.0f, a.data(), b.data(), 0.0f, expected.data());
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      CAPTURE(i);
      CAPTURE(j);
      const float got = c[size_t(i * N + j)], want = expected[size_t(i * N + j)];
      if (std::isnan(want))
        CHECK(std::isnan(got));
      else
        CHECK(got == want);
    }
  CHECK(std::isnan(c[size_t(2 * N)]));
  CHECK(std::isinf(c[size_t(4)]));
}

TEST_CASE("gemm_bf16_batched_cpu: K = 0 writes zeros, empty sizes are no-ops, strided C refused") {
  if (!native_bf16_gemm_cpu()) return;
  const std::vector<float> a = {1, 2}, b = {1, 2};
  const float* as[] = {a.data()};
  const float* bs[] = {b.data()};
  std::vector<float> c = {NAN, NAN, NAN, NAN};
  gemm_bf16_batched_cpu(dense_gemm(2, 2, 0, false, false), as, bs, c.data(), 1);
  CHECK(c == std::vector<float>{0, 0, 0, 0});
  gemm_bf16_batched_cpu(dense_gemm(0, 2, 1, false, false), as, bs, c.data(), 1);
  GemmShape strided = dense_gemm(1, 1, 2, false, true);
  strided.ldc = 2;
  CHECK_THROWS_WITH_AS(gemm_bf16_batched_cpu(strided, as, bs, c.data(), 1),
                       doctest::Contains("[gemm] the bf16 GEMM writes packed output"), Error);
}
