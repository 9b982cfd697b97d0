// CPU GEMM through oneDNN's dnnl_sgemm (row-major, OpenMP threads), the float64 batched loop and
// the reference loop.
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>

#include "core/error.h"
#include "kernels/gemm.h"

namespace lattice {

void check_gemm_shape(const GemmShape& s) {
  LATTICE_CHECK(s.M >= 0 && s.N >= 0 && s.K >= 0, "[gemm] negative size (", s.M, ", ", s.N, ", ",
                s.K, ")");
  const int64_t a_cols = s.transpose_a ? s.M : s.K, b_cols = s.transpose_b ? s.K : s.N;
  LATTICE_CHECK(s.lda >= std::max<int64_t>(1, a_cols) && s.ldb >= std::max<int64_t>(1, b_cols) &&
                    s.ldc >= std::max<int64_t>(1, s.N),
                "[gemm] leading dimensions (", s.lda, ", ", s.ldb, ", ", s.ldc,
                ") are smaller than the rows they hold (", a_cols, ", ", b_cols, ", ", s.N, ")");
}

GemmShape dense_gemm(int64_t M, int64_t N, int64_t K, bool transpose_a, bool transpose_b) {
  return GemmShape{M,
                   N,
                   K,
                   transpose_a,
                   transpose_b,
                   std::max<int64_t>(1, transpose_a ? M : K),
                   std::max<int64_t>(1, transpose_b ? K : N),
                   std::max<int64_t>(1, N)};
}

void gemm_cpu(
    const GemmShape& s, float alpha, const float* a, const float* b, float beta, float* c) {
  check_gemm_shape(s);
  if (s.M == 0 || s.N == 0) return;
  if (s.K == 0) {  // C = beta * C, which oneDNN leaves untouched; beta = 0 overwrites NaN too
    for (int64_t i = 0; i < s.M; ++i)
      for (int64_t j = 0; j < s.N; ++j)
        c[i * s.ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * s.ldc + j];
    return;
  }
  const dnnl_status_t status = dnnl_sgemm(s.transpose_a ? 'T' : 'N', s.transpose_b ? 'T' : 'N', s.M,
                                          s.N, s.K, alpha, a, s.lda, b, s.ldb, beta, c, s.ldc);
  LATTICE_CHECK(status == dnnl_success, "[gemm] oneDNN sgemm failed with status ", int(status));
}

void gemm_batched_cpu(const GemmShape& shape,
                      float alpha,
                      const float* const* a,
                      const float* const* b,
                      float beta,
                      float* const* c,
                      int64_t count) {
  for (int64_t i = 0; i < count; ++i) gemm_cpu(shape, alpha, a[i], b[i], beta, c[i]);
}

void batched_gemm_f64_cpu(
    const double* a, const double* b, double* c, int64_t batches, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < batches; ++i)
    for (int64_t r = 0; r < M; ++r)
      for (int64_t col = 0; col < N; ++col) {
        double total = 0.0;
        for (int64_t k = 0; k < K; ++k)
          total += a[i * M * K + r * K + k] * b[i * K * N + k * N + col];
        c[i * M * N + r * N + col] = total;
      }
}

void gemm_reference_cpu(
    const GemmShape& s, float alpha, const float* a, const float* b, float beta, float* c) {
  check_gemm_shape(s);
  for (int64_t i = 0; i < s.M; ++i)
    for (int64_t j = 0; j < s.N; ++j) {
      double sum = 0.0;
      for (int64_t k = 0; k < s.K; ++k) {
        const float a_ik = s.transpose_a ? a[k * s.lda + i] : a[i * s.lda + k];
        const float b_kj = s.transpose_b ? b[j * s.ldb + k] : b[k * s.ldb + j];
        sum += double(a_ik) * double(b_kj);
      }
      float& out = c[i * s.ldc + j];
      // beta = 0 overwrites (NaN in C does not propagate), as BLAS specifies.
      out = float(double(alpha) * sum + (beta == 0.0f ? 0.0 : double(beta) * double(out)));
    }
}

}  // namespace lattice
