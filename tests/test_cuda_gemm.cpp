// CUDA GEMM, quantized-GEMM, optimizer, quantizer-gradient and Hadamard kernels against their
// CPU twins. Bitwise where the arithmetic is the same sequence of IEEE operations (selections,
// single adds and multiplies, the quantizers, the butterflies); within a stated tolerance where
// the GPU sums in another order (cuBLAS, the double reductions) or fuses multiply-adds where
// gcc may not (the optimizer updates, the gradient estimators' double arithmetic).
// Without a GPU the parity cases skip; the API must then fail cleanly.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "core/scalar/bits.h"
#include "core/scalar/round.h"
#include "cuda_support.h"
#include "kernels/device_memory.h"
#include "kernels/gemm.h"
#include "kernels/hadamard.h"
#include "kernels/optimizer.h"
#include "kernels/quantized_gemm.h"
#include "kernels/quantizer_gradient.h"
#include "tensor/quantizer.h"

using namespace lattice;
using lattice::test::DeviceArray;

TEST_CASE("without a CUDA device the GEMM-family CUDA kernels throw instead of crashing") {
  if (cuda_available()) return;
  float x[4] = {1, 2, 3, 4}, y[4] = {};
  CHECK_THROWS_AS(gemm_cuda(dense_gemm(2, 2, 1, false, false), 1.0f, x, x, 0.0f, y), Error);
  const float* operands[1] = {x};
  CHECK_THROWS_AS(
      gemm_bf16_batched_cuda(dense_gemm(2, 2, 1, false, false), operands, operands, y, 1), Error);
  const uint16_t bits[4] = {};
  const uint16_t* bit_operands[1] = {bits};
  CHECK_THROWS_AS(gemm_bf16_bits_batched_cuda(dense_gemm(2, 2, 1, false, false), bit_operands,
                                              bit_operands, y, 1),
                  Error);
  CHECK_THROWS_AS(add_running_sum_cuda(y, x, 4), Error);
  CHECK_THROWS_AS(sgd_update_cuda(y, x, nullptr, 4, SgdStep{.lr = 0.1f}), Error);
  CHECK_THROWS_AS(max_abs_cuda(x, 4), Error);
  CHECK_THROWS_AS(random_hadamard_cuda(y, 1, 4, 1, 4, RandomStream{}, false), Error);
  GemmRecipe recipe;
  recipe.step_gradient = StepGradient::spline;
  CHECK_THROWS_AS(quantizer_gradient_elementwise_cuda(x, x, y, 4, e2m1, recipe), Error);
  MESSAGE("no CUDA device here: the GEMM-family GPU parity tests skip");
}

#if defined(LATTICE_CUDA)
namespace {

/// n values uniform in [lo, hi), from a Philox stream (never all zeros).
template <typename T = float>
std::vector<T> uniform(int64_t n, double lo, double hi, uint64_t seed) {
  const RandomStream random{.seed = seed, .subsequence = 7};
  std::vector<T> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    x[size_t(i)] = T(lo + (hi - lo) * (double(random.word(uint64_t(i))) / 4294967296.0));
  return x;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

/// The same bits, or NaN in both (x86 and CUDA make NaNs with different payloads).
bool same_values(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(std::isnan(a[i]) && std::isnan(b[i])))
      return false;
  return true;
}

/// The first index where |got - want| > tolerance(i) (NaN differing from non-NaN counts), or -1.
template <typename T, typename Tolerance>
int64_t first_mismatch(const std::vector<T>& got, const std::vector<T>& want, Tolerance tolerance) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i]) && std::isnan(got[i])) continue;
    if (!(std::fabs(double(got[i]) - double(want[i])) <= tolerance(int64_t(i)))) return int64_t(i);
  }
  return -1;
}

/// Elements whose bits differ (reported next to a tolerance check).
int64_t differing_bits(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t count = 0;
  for (size_t i = 0; i < a.size(); ++i)
    count +=
        std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(std::isnan(a[i]) && std::isnan(b[i]));
  return count;
}

}  // namespace

TEST_CASE("CUDA gemm matches the reference GEMM (TF32 off) over shapes, transposes and strides") {
  if (!cuda_available()) return;
  struct Case {
    int64_t M, N, K;
  };
  // Few output tiles and a long K (17 x 3 x 257, 65 x 33 x 1001, 40 x 24 x 4096,
  // 200 x 130 x 600) run as chunks of K, the last one shorter or not.
  const Case cases[] = {{1, 1, 1},    {3, 17, 33},    {17, 3, 257},   {33, 257, 3},
                        {64, 64, 64}, {65, 33, 1001}, {40, 24, 4096}, {200, 130, 600},
                        {1, 300, 7},  {5, 7, 0},      {0, 5, 3},      {4, 0, 3}};
  const float alphas_betas[][2] = {{1.0f, 0.0f}, {0.5f, -1.25f}, {-2.0f, 1.0f}};
  uint64_t seed = 1;
  for (const Case& c : cases)
    for (int transposes = 0; transposes < 4; ++transposes)
      for (int padded = 0; padded < 2; ++padded)
        for (const auto& ab : alphas_betas) {
          GemmShape s = dense_gemm(c.M, c.N, c.K, transposes & 1, transposes & 2);
          if (padded) s.lda += 3, s.ldb += 5, s.ldc += 2;
          const float alpha = ab[0], beta = ab[1];
          const int64_t a_rows = s.transpose_a ? c.K : c.M, b_rows = s.transpose_b ? c.N : c.K;
          const std::vector<float> a = uniform(a_rows * s.lda, -1, 1, ++seed);
          const std::vector<float> b = uniform(b_rows * s.ldb, -1, 1, ++seed);
          std::vector<float> c0 = uniform(c.M * s.ldc, -1, 1, ++seed);
          // beta = 0 must overwrite C: NaN there must not reach the result.
          if (beta == 0.0f)
            for (size_t i = 0; i < c0.size(); i += 3)
              c0[i] = std::numeric_limits<float>::quiet_NaN();
          std::vector<float> expected = c0;
          gemm_reference_cpu(s, alpha, a.data(), b.data(), beta, expected.data());
          DeviceArray<float> da(a), db(b), dc(c0);
          gemm_cuda(s, alpha, da.data, db.data, beta, dc.data);
          const std::vector<float> got = dc.download();
          INFO("gemm M=", c.M, " N=", c.N, " K=", c.K, " transpose_a=", s.transpose_a,
               " transpose_b=", s.transpose_b, " lda=", s.lda, " ldb=", s.ldb, " ldc=", s.ldc,
               " alpha=", alpha, " beta=", beta);
          // Relative to the magnitudes summed: |alpha| sum_k |a_ik b_kj| + |beta c_ij|.
          const auto tolerance = [&](int64_t e) {
            const int64_t i = e / s.ldc, j = e % s.ldc;
            if (j >= c.N) return 0.0;  // padding between rows: untouched
            double magnitude = beta == 0.0f ? 0.0 : std::fabs(double(beta) * c0[size_t(e)]);
            for (int64_t k = 0; k < c.K; ++k) {
              const float a_ik =
                  s.transpose_a ? a[size_t(k * s.lda + i)] : a[size_t(i * s.lda + k)];
              const float b_kj =
                  s.transpose_b ? b[size_t(j * s.ldb + k)] : b[size_t(k * s.ldb + j)];
              magnitude += std::fabs(double(alpha) * a_ik * b_kj);
            }
            return 1e-5 * magnitude;
          };
          const int64_t bad = first_mismatch(got, expected, tolerance);
          CAPTURE(bad);
          CHECK(bad == -1);
          if (bad >= 0) MESSAGE("got ", got[size_t(bad)], ", want ", expected[size_t(bad)]);
        }
}

TEST_CASE("CUDA gemm_batched runs every entry of a batch like gemm_cpu on each, in one call") {
  if (!cuda_available()) return;
  // Entries at irregular offsets of shared buffers (attention's heads are views), transposed B;
  // and entries at equal distances with one B for all (the strided-batched call).
  for (const bool equal_distances : {false, true})
    for (const int64_t count : {1, 5, 64}) {
      const GemmShape s = dense_gemm(17, 9, 33, false, true);
      const int64_t a_size = s.M * s.lda, b_size = s.N * s.ldb, c_size = s.M * s.ldc;
      const std::vector<float> a = uniform(count * a_size + 7, -1, 1, 31);
      const std::vector<float> b = uniform(count * b_size + 3, -1, 1, 32);
      DeviceArray<float> da(a), db(b), dc(count * c_size);
      dc.poison();
      std::vector<const float*> host_a, host_b, device_a, device_b;
      std::vector<float*> device_c;
      std::vector<float> expected(static_cast<size_t>(count * c_size));
      for (int64_t i = 0; i < count; ++i) {
        // Entry i reads A at (i * 7) % 5 + i * a_size and B at (count - 1 - i) * b_size, or A at
        // i * a_size and B at 0.
        const int64_t a_at = i * a_size + (equal_distances ? 0 : (i * 7) % 5);
        const int64_t b_at = equal_distances ? 0 : (count - 1 - i) * b_size;
        gemm_cpu(s, 1.0f, a.data() + a_at, b.data() + b_at, 0.0f, expected.data() + i * c_size);
        device_a.push_back(da.data + a_at);
        device_b.push_back(db.data + b_at);
        device_c.push_back(dc.data + i * c_size);
      }
      gemm_batched_cuda(s, 1.0f, device_a.data(), device_b.data(), 0.0f, device_c.data(), count);
      const std::vector<float> got = dc.download();
      INFO("gemm_batched count=", count, " equal_distances=", equal_distances);
      // |a|, |b| <= 1, so sum_k |a b| <= K.
      const int64_t bad =
          first_mismatch(got, expected, [&](int64_t) { return 1e-5 * double(s.K); });
      CAPTURE(bad);
      CHECK(bad == -1);
    }
}

TEST_CASE("CUDA bf16 GEMMs, of fp32 values narrowed and of bf16 bits, make the fp32 products") {
  if (!cuda_available()) return;
  struct Case {
    int64_t M, N, K, count;
    bool shared_a, shared_b, equal_distances;
  };
  // One entry with a long K (the chunked path), batches with one operand shared (a linear
  // layer's weight, or attention's heads), entries at irregular offsets (the fp32 fallback of
  // gemm_bf16_batched, one product per entry for the bits), and an empty sum.
  const Case cases[] = {
      {3, 17, 33, 1, false, false, true},    {40, 24, 4096, 1, false, false, true},
      {65, 33, 1001, 1, false, false, true}, {17, 9, 33, 5, false, true, true},
      {17, 9, 33, 5, true, false, true},     {128, 64, 128, 8, false, false, true},
      {17, 9, 33, 4, false, false, false},   {5, 7, 0, 3, false, false, true}};
  uint64_t seed = 100;
  for (const Case& c : cases)
    for (int transposes = 0; transposes < 4; ++transposes) {
      GemmShape s = dense_gemm(c.M, c.N, c.K, transposes & 1, transposes & 2);
      s.lda += 3, s.ldb += 1;  // strided rows, narrowed or read in place; C is packed
      const int64_t a_size = (s.transpose_a ? c.K : c.M) * s.lda;
      const int64_t b_size = (s.transpose_b ? c.N : c.K) * s.ldb;
      // bf16 values in [-1, 1): every product is exact in fp32.
      std::vector<float> a = uniform(c.count * a_size + 5, -1, 1, ++seed);
      std::vector<float> b = uniform(c.count * b_size + 5, -1, 1, ++seed);
      std::vector<uint16_t> a_bits, b_bits;
      for (float& v : a) a_bits.push_back(bf16_bits(v = round_to_bf16_nearest_even(v)));
      for (float& v : b) b_bits.push_back(bf16_bits(v = round_to_bf16_nearest_even(v)));
      DeviceArray<float> da(a), db(b), dc(c.count * c.M * c.N);
      DeviceArray<uint16_t> da_bits(a_bits), db_bits(b_bits);
      std::vector<const float*> device_a, device_b;
      std::vector<const uint16_t*> device_a_bits, device_b_bits;
      std::vector<float> expected(static_cast<size_t>(c.count * c.M * c.N));
      for (int64_t i = 0; i < c.count; ++i) {
        const int64_t skew = c.equal_distances ? 0 : (i * 3) % 5;
        const int64_t a_at = c.shared_a ? 0 : i * a_size + skew;
        const int64_t b_at = c.shared_b ? 0 : i * b_size + skew;
        gemm_reference_cpu(s, 1.0f, a.data() + a_at, b.data() + b_at, 0.0f,
                           expected.data() + i * c.M * c.N);
        device_a.push_back(da.data + a_at);
        device_b.push_back(db.data + b_at);
        device_a_bits.push_back(da_bits.data + a_at);
        device_b_bits.push_back(db_bits.data + b_at);
      }
      INFO("M=", c.M, " N=", c.N, " K=", c.K, " count=", c.count, " transpose_a=", s.transpose_a,
           " transpose_b=", s.transpose_b, " shared_a=", c.shared_a, " shared_b=", c.shared_b,
           " equal_distances=", c.equal_distances);
      for (bool bits : {false, true}) {
        CAPTURE(bits);
        dc.poison();
        if (bits)
          gemm_bf16_bits_batched_cuda(s, device_a_bits.data(), device_b_bits.data(), dc.data,
                                      c.count);
        else
          gemm_bf16_batched_cuda(s, device_a.data(), device_b.data(), dc.data, c.count);
        const std::vector<float> got = dc.download();
        // The products are exact; only the order of the fp32 sums differs: |a|, |b| < 1, so
        // sum_k |a b| < K.
        const int64_t bad =
            first_mismatch(got, expected, [&](int64_t) { return 1e-5 * double(c.K); });
        CAPTURE(bad);
        CHECK(bad == -1);
        if (bad >= 0) MESSAGE("got ", got[size_t(bad)], ", want ", expected[size_t(bad)]);
      }
    }
}

TEST_CASE("CUDA batched_gemm_f64 sums in k order like the CPU") {
  if (!cuda_available()) return;
  struct Case {
    int64_t batches, M, N, K;
  };
  for (const Case c :
       {Case{1, 1, 1, 1}, Case{3, 3, 17, 33}, Case{2, 17, 5, 257}, Case{1, 4, 4, 0}}) {
    const std::vector<double> a = uniform<double>(c.batches * c.M * c.K, -1, 1, 21);
    const std::vector<double> b = uniform<double>(c.batches * c.K * c.N, -1, 1, 22);
    std::vector<double> expected(static_cast<size_t>(c.batches * c.M * c.N));
    batched_gemm_f64_cpu(a.data(), b.data(), expected.data(), c.batches, c.M, c.N, c.K);
    DeviceArray<double> da(a), db(b), dc(c.batches * c.M * c.N);
    dc.poison();
    batched_gemm_f64_cuda(da.data, db.data, dc.data, c.batches, c.M, c.N, c.K);
    const std::vector<double> got = dc.download();
    INFO("batched_gemm_f64 batches=", c.batches, " M=", c.M, " N=", c.N, " K=", c.K);
    // gcc may fuse some of the CPU's k steps into FMAs, the GPU never does: each step differs
    // by at most one rounding of its product, so 2 K eps of sum_k |a b| bounds the difference.
    const auto tolerance = [&](int64_t e) {
      const int64_t i = e / (c.M * c.N), r = (e / c.N) % c.M, col = e % c.N;
      double magnitude = 0;
      for (int64_t k = 0; k < c.K; ++k)
        magnitude += std::fabs(a[size_t(i * c.M * c.K + r * c.K + k)] *
                               b[size_t(i * c.K * c.N + k * c.N + col)]);
      return 2.0 * double(c.K) * 0x1p-52 * magnitude;
    };
    CHECK(first_mismatch(got, expected, tolerance) == -1);
  }
}

TEST_CASE("CUDA add_running_sum gives the CPU's bits") {
  if (!cuda_available()) return;
  for (int64_t n : {1, 3, 17, 1001}) {
    std::vector<float> partial = uniform(n, -3, 3, 31);
    const std::vector<float> total = uniform(n, -3, 3, 32);
    DeviceArray<float> dp(partial), dt(total);
    add_running_sum_cpu(partial.data(), total.data(), n);
    add_running_sum_cuda(dp.data, dt.data, n);
    INFO("add_running_sum n=", n);
    CHECK(same_bits(dp.download(), partial));
  }
}

namespace {

/// Fused and unfused multiply-adds differ by about an ulp of the larger product: 1e-6 relative
/// plus 1e-7 absolute (the inputs are O(1), so cancellation to near zero leaves ~1e-8 error).
bool optimizer_close(const std::vector<float>& got, const std::vector<float>& want) {
  const int64_t bad = first_mismatch(
      got, want, [&](int64_t i) { return 1e-6 * std::fabs(want[size_t(i)]) + 1e-7; });
  if (bad >= 0) MESSAGE("element ", bad, ": got ", got[size_t(bad)], ", want ", want[size_t(bad)]);
  return bad == -1;
}

}  // namespace

TEST_CASE("CUDA optimizer updates match the CPU within fp32 multiply-add rounding") {
  if (!cuda_available()) return;
  for (int64_t n : {1, 17, 1003, 40001}) {  // 40001: past the CPU's OpenMP threshold
    const std::vector<float> w0 = uniform(n, -1, 1, 41), g = uniform(n, -1, 1, 42);
    const std::vector<float> m0 = uniform(n, -0.1, 0.1, 43), v0 = uniform(n, 0, 0.01, 44);
    DeviceArray<float> dg(g);
    const SgdStep sgd_steps[] = {
        {.lr = 0.1f, .weight_decay = 0.01f},
        {.lr = 0.1f, .weight_decay = 0.01f, .momentum = 0.9f, .dampened = 1.0f, .first = true},
        {.lr = 0.05f, .weight_decay = 0.0f, .momentum = 0.9f, .dampened = 0.7f},
        {.lr = 0.05f,
         .weight_decay = 0.001f,
         .momentum = 0.8f,
         .dampened = 1.0f,
         .nesterov = true}};
    for (const SgdStep& step : sgd_steps) {
      std::vector<float> w = w0, buffer = m0;
      DeviceArray<float> dw(w0), dbuf(m0);
      sgd_update_cpu(w.data(), g.data(), step.momentum == 0 ? nullptr : buffer.data(), n, step);
      sgd_update_cuda(dw.data, dg.data, step.momentum == 0 ? nullptr : dbuf.data, n, step);
      INFO("sgd_update n=", n, " momentum=", step.momentum, " nesterov=", step.nesterov,
           " first=", step.first);
      CHECK(optimizer_close(dw.download(), w));
      CHECK(optimizer_close(dbuf.download(), buffer));
    }
    const AdamStep adam{.step_size = 1e-3f / 0.1f,
                        .inv_bias_correction2_sqrt = 1.0f / std::sqrt(0.001f),
                        .beta1 = 0.9f,
                        .one_minus_beta1 = 0.1f,
                        .beta2 = 0.999f,
                        .one_minus_beta2 = 0.001f,
                        .eps = 1e-8f};
    AdamStep adamw = adam, adam_l2 = adam;
    adamw.decay = 1.0f - 1e-3f * 0.01f;
    adam_l2.l2 = 0.01f;
    for (const AdamStep& step : {adamw, adam_l2}) {
      std::vector<float> w = w0, m = m0, v = v0;
      DeviceArray<float> dw(w0), dm(m0), dv(v0);
      adam_update_cpu(w.data(), m.data(), v.data(), g.data(), n, step);
      adam_update_cuda(dw.data, dm.data, dv.data, dg.data, n, step);
      INFO("adam_update n=", n, " decay=", step.decay, " l2=", step.l2);
      CHECK(optimizer_close(dw.download(), w));
      CHECK(optimizer_close(dm.download(), m));
      CHECK(optimizer_close(dv.download(), v));
    }
    for (bool reset : {false, true}) {
      const StableSpamStep step{.adam = adamw,
                                .clip_threshold = 0.5f,
                                .clip_factor = 0.25f,
                                .renormalise = 0.8f,
                                .reset = reset};
      std::vector<float> w = w0, m = m0, v = v0;
      DeviceArray<float> dw(w0), dm(m0), dv(v0);
      stable_spam_update_cpu(w.data(), m.data(), v.data(), g.data(), n, step);
      stable_spam_update_cuda(dw.data, dm.data, dv.data, dg.data, n, step);
      INFO("stable_spam_update n=", n, " reset=", reset);
      CHECK(optimizer_close(dw.download(), w));
      CHECK(optimizer_close(dm.download(), m));
      CHECK(optimizer_close(dv.download(), v));
    }
  }
}

TEST_CASE("CUDA optimizer reductions: max_abs, all_finite, scale_in_place bitwise; sums in order") {
  if (!cuda_available()) return;
  for (int64_t n : {0, 1, 17, 1003, 40001, 100003}) {
    std::vector<float> x = uniform(n, -2, 2, 51);
    if (n > 5) x[size_t(n / 2)] = -7.5f;  // the max magnitude is negative
    DeviceArray<float> dx(x);
    INFO("optimizer reductions n=", n);
    CHECK(max_abs_cuda(dx.data, n) == max_abs_cpu(x.data(), n));
    const float* host_array = x.data();
    const float* device_array = dx.data;
    CHECK(all_finite_cuda(&device_array, &n, 1) == all_finite_cpu(&host_array, &n, 1));
    // The CPU and GPU both sum in double, over different trees: n eps of the sum bounds it.
    const double bound = double(n) * 0x1p-52;
    const double sum = sum_of_squares_cpu(x.data(), n);
    CHECK(std::fabs(sum_of_squares_cuda(dx.data, n) - sum) <= bound * sum);
    const double clipped = clipped_sum_of_squares_cpu(x.data(), n, 1.0f, 0.3f);
    CHECK(std::fabs(clipped_sum_of_squares_cuda(dx.data, n, 1.0f, 0.3f) - clipped) <=
          bound * clipped);
    scale_in_place_cpu(x.data(), n, 0.37f);
    scale_in_place_cuda(dx.data, n, 0.37f);
    CHECK(same_bits(dx.download(), x));
    if (n > 1002) {
      for (float bad :
           {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
        x[1002] = bad;
        dx.upload(x);
        CAPTURE(bad);
        CHECK(all_finite_cpu(&host_array, &n, 1) == false);
        CHECK(all_finite_cuda(&device_array, &n, 1) == false);
        // The bad array among finite ones: one answer for all of them.
        const float* device_arrays[] = {dx.data, dx.data + 1002, dx.data + 1003};
        const int64_t sizes[] = {1002, 1, n - 1003};
        CHECK(all_finite_cuda(device_arrays, sizes, 3) == false);
        CHECK(all_finite_cuda(device_arrays + 2, sizes + 2, 1) == true);
      }
    }
  }
}

TEST_CASE("CUDA random_hadamard gives the CPU's bits") {
  if (!cuda_available()) return;
  struct Case {
    int64_t outer, length, inner;
    int block;
  };
  const Case cases[] = {{1, 16, 1, 16}, {3, 37, 5, 8},  {2, 1031, 1, 256}, {1, 4096, 1, 4096},
                        {2, 5, 3, 1},   {4, 64, 3, 32}, {1, 3, 1, 4},      {2, 2048, 2, 1024}};
  const RandomStream signs{.seed = 5, .subsequence = 1};
  for (const Case& c : cases)
    for (bool inverse : {false, true}) {
      const int64_t n = c.outer * c.length * c.inner;
      std::vector<float> x = uniform(n, -1, 1, 61);
      DeviceArray<float> dx(x);
      random_hadamard_cpu(x.data(), c.outer, c.length, c.inner, c.block, signs, inverse);
      random_hadamard_cuda(dx.data, c.outer, c.length, c.inner, c.block, signs, inverse);
      INFO("random_hadamard outer=", c.outer, " length=", c.length, " inner=", c.inner,
           " block=", c.block, " inverse=", inverse);
      CHECK(same_bits(dx.download(), x));
    }
}

namespace {

struct NamedRecipe {
  const char* name;
  GemmRecipe recipe;
};

std::vector<NamedRecipe> gradient_recipes() {
  const auto make = [](MaxApprox max, StepGradient step, ScaleGradient scale,
                       TensorScaleGradient tensor) {
    GemmRecipe r;
    r.max_approx = max;
    r.step_gradient = step;
    r.scale_gradient = scale;
    r.tensor_scale_gradient = tensor;
    return r;
  };
  using M = MaxApprox;
  using S = StepGradient;
  using C = ScaleGradient;
  using T = TensorScaleGradient;
  return {{"straight-through", GemmRecipe{}},
          {"baseline step", make(M::ste, S::baseline, C::ste, T::ignore)},
          {"spline step+scale, absmax, tensor absmax",
           make(M::absmax, S::spline, C::spline, T::absmax)},
          {"sigmoid step, baseline scale, hardsoftmax, tensor ste",
           make(M::hardsoftmax, S::sigmoid, C::baseline, T::ste)},
          {"softsoftmax, spline scale, tensor absmax",
           make(M::softsoftmax, S::ste, C::spline, T::absmax)},
          {"absmax, baseline step", make(M::absmax, S::baseline, C::ste, T::ste)}};
}

/// The estimators evaluate exp, log and pow in double (CUDA's differ from glibc's in the last
/// ulp) and multiply-add in double (fused differently by nvcc and gcc) before rounding to fp32:
/// results agree to a float rounding of each term, 1e-5 relative plus 1e-6 of the largest
/// gradient (a term added to a near-cancelling sum).
bool gradient_close(const std::vector<float>& got, const std::vector<float>& want) {
  double largest = 0;
  for (float v : want)
    if (std::isfinite(v)) largest = std::max(largest, double(std::fabs(v)));
  const int64_t bad = first_mismatch(
      got, want, [&](int64_t i) { return 1e-5 * std::fabs(want[size_t(i)]) + 1e-6 * largest; });
  if (bad >= 0) MESSAGE("element ", bad, ": got ", got[size_t(bad)], ", want ", want[size_t(bad)]);
  const int64_t differing = differing_bits(got, want);
  if (differing > 0) MESSAGE(differing, " of ", want.size(), " elements differ in their bits");
  return bad == -1;
}

}  // namespace

TEST_CASE("CUDA quantizer gradients and recipe quantization match the CPU") {
  if (!cuda_available()) return;
  // Elementwise: the step surrogate at u = x, over e2m1's range and past its saturation.
  for (int64_t n : {1, 17, 1003}) {
    const std::vector<float> x = uniform(n, -8, 8, 71), grad_y = uniform(n, -1, 1, 72);
    DeviceArray<float> dx(x), dgy(grad_y), dgx(n);
    for (const NamedRecipe& r : gradient_recipes()) {
      std::vector<float> expected(static_cast<size_t>(n));
      quantizer_gradient_elementwise_cpu(x.data(), grad_y.data(), expected.data(), n, e2m1,
                                         r.recipe);
      dgx.poison();
      quantizer_gradient_elementwise_cuda(dx.data, dgy.data, dgx.data, n, e2m1, r.recipe);
      INFO("quantizer_gradient_elementwise n=", n, " recipe: ", r.name);
      CHECK(gradient_close(dgx.download(), expected));
    }
  }
  BlockScaling encode{.block_size = 16,
                      .scale_format = ue5m3,
                      .rule = ScaleRule::encode,
                      .scale_rounding = RoundingMode::stochastic,
                      .tensor_scale = true};
  struct Quant {
    std::string name;
    Format element;
    BlockScaling scaling;
  };
  std::vector<Quant> quantizers;
  for (const char* name : {"mxfp4", "nvfp4", "mxfp8"}) {
    const Quantizer q = parse_quantizer(name);
    quantizers.push_back({name, q.element, *q.scaling});
  }
  quantizers.push_back({"encode ue5m3 sr scales", e2m1, encode});
  const RandomStream random{.seed = 13, .subsequence = 4};
  struct Shape {
    int64_t outer, length, inner;
  };
  for (const Shape& shape : {Shape{1, 1, 1}, Shape{3, 100, 5}, Shape{2, 1003, 1}})
    for (const Quant& q : quantizers)
      for (const char* rounding_name : {"rne", "sr"}) {
        const BlockLayout layout{shape.outer, shape.length, shape.inner, q.scaling.block_size};
        const int64_t n = shape.outer * shape.length * shape.inner;
        std::vector<float> x = uniform(n, -3, 3, 73);
        for (int64_t i = 0; i < n; i += 11) x[size_t(i)] *= 1e-3f;  // small and tied values
        if (n > 40) x[40] = -x[7 % n];
        if (n > 200) x[200] = std::numeric_limits<float>::infinity();  // a NaN-scale block
        const std::vector<float> grad_y = uniform(n, -1, 1, 74);
        const Rounding rounding = parse_rounding(rounding_name);
        DeviceArray<float> dx(x), dgy(grad_y), dout(n);
        for (const NamedRecipe& r : gradient_recipes()) {
          INFO("quantizer ", q.name, " rounding ", rounding_name, " shape (", shape.outer, ", ",
               shape.length, ", ", shape.inner, ") recipe: ", r.name);
          std::vector<float> expected(static_cast<size_t>(n));
          recipe_quantize_blocks_cpu(x.data(), expected.data(), layout, q.element, rounding,
                                     q.scaling, r.recipe, random);
          dout.poison();
          recipe_quantize_blocks_cuda(dx.data, dout.data, layout, q.element, rounding, q.scaling,
                                      r.recipe, random);
          {
            INFO("kernel recipe_quantize_blocks (bitwise, NaN payloads aside)");
            CHECK(same_values(dout.download(), expected));
          }
          quantizer_gradient_blocks_cpu(x.data(), grad_y.data(), expected.data(), layout, q.element,
                                        rounding, q.scaling, r.recipe, random);
          dout.poison();
          quantizer_gradient_blocks_cuda(dx.data, dgy.data, dout.data, layout, q.element, rounding,
                                         q.scaling, r.recipe, random);
          INFO("kernel quantizer_gradient_blocks");
          CHECK(gradient_close(dout.download(), expected));
        }
      }
}
#endif
